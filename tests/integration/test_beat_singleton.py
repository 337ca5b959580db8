"""Singleton beat: two `celery beat` processes on one Redis enqueue each tick once.

No worker runs, so every message beat publishes stays in the `default` list, where a watcher
polling at 20 Hz notes when it arrived and which process published it (the `origin` header,
`gen<pid>@<host>`). With a 1 s interval schedule a single scheduler sends at most one message
per second: it stores the entry's last run time as it sends, and the next run is due one
interval later. So a window of W seconds holds at most floor(W) + 1 ticks, and no two arrive
less than a second apart (less the 50 ms polling and publish jitter); two schedulers would send
about 2 W messages, half of them closer than that.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import Stack, kill_group
from harness.processes import wait_until
from tests.support.beat import LOCK, beat_env, gaps, start_beat, watch

LOCK_TIMEOUT, LOOP_INTERVAL = 5, 1
TASK = "periodic.expire_trials"
BEAT_ENV = beat_env("every-second", TASK, LOCK_TIMEOUT, LOOP_INTERVAL)
WINDOW = 8.0
#: Arrival gaps below this mean a tick was sent twice (1 s interval, less polling jitter).
MIN_GAP = 0.8


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A Redis and a database for two beats and no worker."""
    s = Stack.start(tmp_path, env=BEAT_ENV)
    yield s
    s.close()


def test_two_beats_enqueue_each_tick_once_and_the_follower_takes_over(
    stack: Stack, record_property: pytest.RecordProperty
) -> None:
    beats = {name: start_beat(stack, f"beat-{name}") for name in ("a", "b")}

    def holders() -> list[str]:
        return [k for k, (_, log) in beats.items() if "beat: Acquired lock" in log.read_text()]

    [leader] = wait_until(holders, timeout=30, what="a beat holding the lock")
    follower = "b" if leader == "a" else "a"
    wait_until(
        lambda: "beat: Starting" in beats[follower][1].read_text(),
        timeout=30,
        what="the second beat started",
    )
    leader_token = stack.broker().get(LOCK)
    assert leader_token

    steady, tokens = watch(stack.broker(), TASK, WINDOW)
    origins = {t.origin for t in steady}
    assert len(origins) == 1, origins
    assert WINDOW * 0.7 - 1 <= len(steady) <= WINDOW + 1, len(steady)
    assert min(gaps(steady)) >= MIN_GAP, gaps(steady)
    assert tokens == [] and holders() == [leader]
    assert "Sending due task" not in beats[follower][1].read_text()

    kill_group(beats[leader][0])
    killed_at = time.monotonic()
    after, tokens = watch(stack.broker(), TASK, LOCK_TIMEOUT + LOOP_INTERVAL + 4)
    taken = [at for at, token in tokens if token not in (None, leader_token)]
    assert taken, f"nobody took the lock over: {tokens}"
    lock_takeover = taken[0] - killed_at
    assert after, "no tick after the takeover"
    first_tick = after[0].at - killed_at
    assert first_tick >= lock_takeover
    new_origins = {t.origin for t in after}
    assert len(new_origins) == 1 and not new_origins & origins
    assert min(gaps(after), default=MIN_GAP) >= MIN_GAP, gaps(after)
    assert sorted(holders()) == ["a", "b"]

    summary = (
        f"{len(steady)} ticks in {WINDOW:.0f}s from one of two beats (min gap "
        f"{min(gaps(steady)):.2f}s); leader SIGKILLed: lock taken over after "
        f"{lock_takeover:.2f}s, first tick after {first_tick:.2f}s "
        f"(bound {LOCK_TIMEOUT + LOOP_INTERVAL}s)"
    )
    record_property("summary", summary)
    print(summary)
    assert lock_takeover <= LOCK_TIMEOUT + LOOP_INTERVAL + 0.5
