"""Each worker group's pool fits its memory limit: concurrency x maxMemoryPerChildMiB plus room
for the main process, or the kernel kills the pod before the leak guard replaces a process."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.chart import ROOT, render_error


def group(**settings: object) -> dict[str, object]:
    return {"workers": {"groups": [
        {"name": "general", "queues": ["default", "email"]},
        {"name": "reports", "queues": ["pdf", "exports"], **settings},
        {"name": "webhooks", "queues": ["webhooks"]},
    ]}}  # fmt: skip


def test_the_chart_defaults_and_the_dev_values_fit(render):
    render({})
    render(yaml.safe_load(Path(ROOT / "k8s-dev" / "values-dev.yaml").read_text()))


def test_a_group_whose_pool_outgrows_its_limit_is_refused_naming_what_to_change(helm):
    msg = render_error(helm, group(maxMemoryPerChildMiB=300))
    assert (
        "workers.groups[1] (reports): concurrency (4) x maxMemoryPerChildMiB (300) + "
        "mainProcessMemoryMiB (160) = 1360 MiB exceeds resources.limits.memory (1Gi = 1024 MiB), "
        "so the kernel OOM-kills the pod, and every task running in it, before the leak guard "
        "replaces a pool process; lower workers.groups[1].maxMemoryPerChildMiB to at most 216, "
        "or workers.groups[1].concurrency, or raise workers.groups[1].resources.limits.memory to "
        "at least 1360Mi (or workers.defaults.*)."
    ) in msg
    assert "workers.groups[0]" not in msg and "workers.groups[2]" not in msg


def test_every_group_over_its_limit_is_named_in_one_message(helm):
    msg = render_error(helm, {"workers": {"defaults": {"concurrency": 8}}})
    for i, name in enumerate(("general", "reports", "webhooks")):
        assert f"workers.groups[{i}] ({name}): concurrency (8) x maxMemoryPerChildMiB" in msg


def test_the_room_for_the_main_process_counts(helm):
    msg = render_error(helm, group(mainProcessMemoryMiB=300))
    assert "mainProcessMemoryMiB (300) = 1100 MiB exceeds resources.limits.memory" in msg


def test_a_group_without_a_memory_cap_is_not_checked(render):
    render(group(concurrency=16, maxMemoryPerChildMiB=0))
