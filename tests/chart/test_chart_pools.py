"""Pools per worker group: prefork or gevent render, each with what it can guarantee; threads
and solo never do (they would not enforce the time limits)."""

from __future__ import annotations

import pytest

from tests.support.chart import container, one, render_error

WEBHOOKS = "rel-flask-celery-worker-webhooks"


def with_webhooks(**settings):
    """The default groups, the webhooks group's settings replaced by `settings`."""
    return {
        "workers": {
            "groups": [
                {"name": "general", "queues": ["default", "email"]},
                {"name": "reports", "queues": ["pdf", "exports"]},
                {"name": "webhooks", "queues": ["webhooks"], **settings},
            ]
        }
    }


def argv(c):
    return c["command"] + c.get("args", [])


def test_a_gevent_group_runs_its_concurrency_as_greenlets_and_keda_counts_them(render):
    docs = render(
        with_webhooks(pool="gevent", concurrency=50, maxTasksPerChild=0, maxMemoryPerChildMiB=0)
    )
    args = argv(container(one(docs, "Deployment", WEBHOOKS)))
    assert args[args.index("--pool") + 1] == "gevent"
    assert args[args.index("--concurrency") + 1] == "50"
    assert "--max-tasks-per-child" not in args and "--max-memory-per-child" not in args
    so = one(docs, "ScaledObject", WEBHOOKS)
    assert so["spec"]["advanced"]["scalingModifiers"]["target"] == "50"
    # the other groups keep prefork and their leak guard
    general = argv(container(one(docs, "Deployment", "rel-flask-celery-worker-general")))
    assert general[general.index("--pool") + 1] == "prefork"
    assert "--max-tasks-per-child" in general


def test_a_gevent_group_with_the_leak_guard_is_refused_naming_what_to_change(helm):
    # the defaults' leak guard (1000 tasks, 200 MiB) reaches a group that only sets its pool
    msg = render_error(helm, with_webhooks(pool="gevent", concurrency=50))
    assert (
        "workers.groups[2] (webhooks): pool gevent runs every task in one process, which has no "
        "pool process to replace, so maxTasksPerChild (1000) and maxMemoryPerChildMiB (200) "
        "would do nothing; set workers.groups[2].maxTasksPerChild and "
        "workers.groups[2].maxMemoryPerChildMiB to 0"
    ) in msg
    msg = render_error(helm, with_webhooks(pool="gevent", maxTasksPerChild=0))
    assert "maxTasksPerChild (0) and maxMemoryPerChildMiB (200)" in msg


@pytest.mark.parametrize("pool", ["threads", "solo", "eventlet"])
def test_pools_without_time_limits_are_refused_by_the_schema(helm, pool):
    msg = render_error(helm, with_webhooks(pool=pool))
    assert "value must be one of 'prefork', 'gevent'" in msg
