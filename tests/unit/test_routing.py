"""The routing table (contract 2): every task routed, every queue consumed by one group."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from service import create_app
from service.routing import QUEUES, TASK_ROUTES, WORKER_GROUPS, unknown_queues_message
from tests.support import chart_queues

VALUES = Path(__file__).resolve().parents[2] / "charts" / "flask-celery" / "values.yaml"


def registered_tasks() -> set[str]:
    celery_app = create_app().extensions["celery"]
    return {
        name
        for name, task in celery_app.tasks.items()
        if type(task).__module__.startswith("service.")
    }


def test_every_registered_task_has_a_route() -> None:
    assert registered_tasks() == set(TASK_ROUTES)


def test_every_route_names_a_declared_queue() -> None:
    assert set(TASK_ROUTES.values()) <= set(QUEUES)


def test_every_queue_is_consumed_by_exactly_one_worker_group() -> None:
    consumed = [q for queues in WORKER_GROUPS.values() for q in queues]
    assert sorted(consumed) == sorted(QUEUES)


def test_every_queue_has_a_route() -> None:
    assert set(QUEUES) == set(TASK_ROUTES.values())


def test_celery_routes_each_task_to_its_queue() -> None:
    router = create_app().extensions["celery"].amqp.router
    for name, queue in TASK_ROUTES.items():
        assert router.route({}, name)["queue"].name == queue


def test_chart_default_worker_groups_match_the_routing_table() -> None:
    if not VALUES.exists():
        pytest.fail(f"{VALUES} is missing")
    groups = yaml.safe_load(VALUES.read_text())["workers"]["groups"]
    assert {g["name"]: tuple(g["queues"]) for g in groups} == WORKER_GROUPS


def test_unknown_queues_message_names_each_unknown_queue_and_the_known_ones() -> None:
    message = unknown_queues_message(["default", "bulk", "slow"], QUEUES)
    assert "'bulk', 'slow'" in message and "'default'" not in message
    assert "default, email, pdf, exports, webhooks" in message


def test_known_queues_need_no_message() -> None:
    assert unknown_queues_message(["webhooks", "default"], QUEUES) == ""


def test_the_charts_copy_of_the_queues_is_current() -> None:
    assert chart_queues.is_current(), "run `python -m tests.support.chart_queues --write`"


def test_a_stale_copy_of_the_queues_fails_the_check_until_rewritten(tmp_path: Path) -> None:
    copy = tmp_path / chart_queues.QUEUES_FILE
    copy.parent.mkdir(parents=True)
    copy.write_text(chart_queues.render().replace("- webhooks\n", "", 1))
    assert chart_queues.main(["--check", "--root", str(tmp_path)]) == 1
    assert chart_queues.main(["--write", "--root", str(tmp_path)]) == 0
    assert chart_queues.main(["--check", "--root", str(tmp_path)]) == 0
    assert yaml.safe_load(copy.read_text())["queues"] == list(QUEUES)
