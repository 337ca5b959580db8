"""The cluster tests' verdicts (tests/support/e2e_observe.py) on made-up snapshots: no cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.e2e_observe import (
    PodState,
    effective_more_than_once,
    image_values,
    ledger_due_times,
    pod_changes,
    pod_state,
    replicas_moved,
    rolled_out,
    rose_and_fell,
    skip_reason,
    tick_runs,
    ticks_run_twice,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_the_tests_skip_until_a_context_and_an_image_are_named() -> None:
    assert "opt-in" in str(skip_reason("", "", "/bin/helm", True))
    assert "opt-in" in str(skip_reason("kind-x", "", "/bin/helm", True))
    assert "kubernetes Python client" in str(skip_reason("kind-x", "img", "/bin/helm", False))
    assert "make helm" in str(skip_reason("kind-x", "img", None, True))
    assert skip_reason("kind-x", "img", "/bin/helm", True) is None


@pytest.mark.parametrize(
    ("image", "flags"),
    [
        ("localhost:5001/fc:dev", ["image.repository=localhost:5001/fc", "image.tag=dev"]),
        ("localhost:5001/fc", ["image.repository=localhost:5001/fc"]),
        ("r/fc@sha256:ab", ["image.repository=r/fc", "image.digest=sha256:ab"]),
    ],
)
def test_image_values_split_a_reference(image: str, flags: list[str]) -> None:
    assert image_values(image)[1::2] == flags


def deployment(generation: int, observed: int, wanted: int, **status: int) -> dict:
    return {
        "kind": "Deployment",
        "metadata": {"generation": generation},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": observed, **status},
    }


def test_a_deployment_has_rolled_out_when_every_wanted_replica_is_new_and_available() -> None:
    done = {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    assert rolled_out(deployment(3, 3, 2, **done))
    assert not rolled_out(deployment(4, 3, 2, **done))  # the new spec not seen yet
    assert not rolled_out(deployment(3, 3, 2, replicas=3, updatedReplicas=2, availableReplicas=2))
    assert not rolled_out(deployment(3, 3, 2, replicas=2, updatedReplicas=2, availableReplicas=1))
    assert rolled_out(deployment(2, 2, 0))  # a group KEDA scaled to zero


def test_a_statefulset_has_rolled_out_when_its_revisions_agree_and_pods_are_ready() -> None:
    sts = {
        "kind": "StatefulSet",
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "currentRevision": "a",
            "updateRevision": "a",
        },
    }
    assert rolled_out(sts)
    assert not rolled_out({**sts, "status": {**sts["status"], "updateRevision": "b"}})
    assert not rolled_out({**sts, "status": {**sts["status"], "readyReplicas": 0}})


def test_pod_state_adds_up_the_restarts_of_every_container() -> None:
    pod = {
        "metadata": {"uid": "u1"},
        "status": {"containerStatuses": [{"restartCount": 1}, {"restartCount": 2}]},
    }
    assert pod_state(pod) == PodState("u1", 3)
    assert pod_state({"metadata": {"uid": "u2"}, "status": {}}) == PodState("u2", 0)


def test_pod_changes_name_every_replaced_restarted_gone_or_new_pod() -> None:
    before = {"redis-0": PodState("a", 0), "postgresql-0": PodState("b", 1)}
    assert pod_changes(before, dict(before)) == []
    assert pod_changes(before, {**before, "redis-0": PodState("c", 0)}) == [
        "redis-0: replaced (uid a -> c)"
    ]
    assert pod_changes(before, {**before, "postgresql-0": PodState("b", 2)}) == [
        "postgresql-0: restarted (1 -> 2 restarts)"
    ]
    assert pod_changes(before, {"redis-0": PodState("a", 0), "x-0": PodState("d", 0)}) == [
        "postgresql-0: gone",
        "x-0: new",
    ]


def key(entry: str, at: datetime) -> str:
    return f"beat:{entry}:{at.isoformat()}"


def test_ledger_due_times_read_one_entrys_keys_oldest_first() -> None:
    keys = [key("e", T0 + timedelta(seconds=3)), key("other", T0), key("e", T0), "webhook:1"]
    assert ledger_due_times(keys, "e") == [T0, T0 + timedelta(seconds=3)]


def test_a_tick_whose_effect_ran_under_two_keys_is_found() -> None:
    every_three = [T0 + timedelta(seconds=3 * i) for i in range(5)]
    assert ticks_run_twice(every_three, 3.0) == []
    # the same tick, its due time computed again from the clock a moment later
    again = T0 + timedelta(seconds=6.4)
    assert ticks_run_twice([*every_three, again], 3.0) == [
        ((T0 + timedelta(seconds=6)).isoformat(), again.isoformat())
    ]


def meta(entry: str, due: str, result: object, status: str = "SUCCESS") -> dict:
    kwargs = {"schedule_entry": entry, "scheduled_at": due}
    return {"status": status, "kwargs": kwargs, "result": result}


def test_tick_runs_group_one_entrys_finished_runs_by_due_time() -> None:
    metas = [
        meta("e", "t1", {"expired": 0}),
        meta("e", "t1", {"status": "duplicate"}),
        meta("e", "t2", None, status="STARTED"),
        meta("other", "t1", {"expired": 0}),
        {"status": "SUCCESS", "kwargs": {}, "result": 5},
    ]
    assert tick_runs(metas, "e") == {"t1": [{"expired": 0}, {"status": "duplicate"}]}


def test_a_tick_that_ran_with_effect_twice_is_found_and_a_folded_repeat_is_not() -> None:
    folded = {"t1": [{"expired": 0}, {"status": "duplicate", "result": {"expired": 0}}]}
    assert effective_more_than_once(folded) == {}
    assert effective_more_than_once({"t1": [{"expired": 1}], "t2": [{"expired": 0}] * 2}) == {
        "t2": 2
    }


def test_replicas_moved_names_each_group_whose_count_changed() -> None:
    history = [
        {"reports": 0, "general": 1, "webhooks": 0},
        {"reports": 2, "general": 1, "webhooks": 0},
        {"reports": 2, "general": 2, "webhooks": 0},
        {"reports": 0, "general": 1},
    ]
    assert replicas_moved(history, ["general", "webhooks"]) == {
        "general": [1, 2, 1],
        "webhooks": [0, -1],
    }
    assert replicas_moved(history[:2], ["general", "webhooks"]) == {}


def test_rose_and_fell_needs_a_rise_above_the_start_and_a_return_to_it() -> None:
    assert rose_and_fell([{"r": 0}, {"r": 1}, {"r": 3}, {"r": 0}], "r")
    assert not rose_and_fell([{"r": 0}, {"r": 2}, {"r": 1}], "r")  # not back
    assert not rose_and_fell([{"r": 0}, {"r": 0}, {"r": 0}], "r")  # never rose
    assert not rose_and_fell([{"r": 1}, {"r": 0}, {"r": 1}], "r")  # fell first, never rose
