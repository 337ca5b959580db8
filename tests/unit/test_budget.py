"""The time budget: the numbers every deadline derives from (contract 3)."""

from __future__ import annotations

import pytest

from service import budget


def test_the_longest_countdown_leaves_room_for_the_longest_run() -> None:
    settings = {"task_time_limit": 300}
    assert budget.visibility_timeout(settings) == 3600
    assert budget.max_delay(settings) == 3600 - 300
    settings = {"task_time_limit": 600, "broker_transport_options": {"visibility_timeout": 7200}}
    assert budget.max_delay(settings) == 7200 - 600


def test_a_long_limit_stretches_the_visibility_timeout_past_it() -> None:
    assert budget.visibility_timeout({"task_time_limit": 5000}) == 5000 + 300


def test_a_task_counts_as_in_flight_until_its_hard_limit_and_a_margin() -> None:
    assert budget.inflight_deadline(start=1000.0, hard=60.0) == 1000 + 60 + 30


def test_the_message_limit_wins_then_the_task_then_the_worker_then_the_setting() -> None:
    assert budget.hard_limit(10, 20, 30, 40) == 10
    assert budget.hard_limit(None, 20, 30, 40) == 20
    assert budget.hard_limit(None, None, 30, 40) == 30
    assert budget.hard_limit(None, None, None, 40) == 40
    assert budget.hard_limit(None, None, None, None) == budget.UNLIMITED_TASK_LIMIT


def test_only_pools_that_enforce_both_limits_may_run() -> None:
    assert budget.pool_refusal("prefork") is None and budget.pool_refusal("gevent") is None
    for pool in ("threads", "solo", "eventlet"):
        refusal = budget.pool_refusal(pool)
        assert refusal is not None and f"worker pool {pool!r} does not enforce" in refusal


def test_the_leak_guard_is_refused_where_there_is_no_pool_process_to_replace() -> None:
    assert budget.leak_guard_refusal("prefork", 1000, 200 * 1024) is None
    assert budget.leak_guard_refusal("gevent", 0, 0) is None
    assert budget.leak_guard_refusal("gevent", None, None) is None
    refusal = budget.leak_guard_refusal("gevent", 1000, 0)
    assert refusal is not None and "--max-tasks-per-child (1000)" in refusal
    refusal = budget.leak_guard_refusal("gevent", 0, 150 * 1024)
    assert refusal is not None and "--max-memory-per-child (153600)" in refusal


def test_gevent_is_refused_in_the_settings_where_it_would_come_unpatched() -> None:
    with pytest.raises(budget.ConfigError, match="worker_pool: 'gevent' must be chosen with"):
        budget.check({"worker_pool": "gevent", "task_time_limit": 300})
    with pytest.raises(budget.ConfigError, match="worker_pool: worker pool 'threads'"):
        budget.check({"worker_pool": "threads", "task_time_limit": 300})
    budget.check({"worker_pool": "prefork", "task_time_limit": 300})
    budget.check({"task_time_limit": 300})
