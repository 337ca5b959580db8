"""The restart delays of `make run`'s supervisor: doubling from one second up to thirty, and
back to one second for a process that had stayed up a while."""

from __future__ import annotations

from devstack.supervise import FIRST_DELAY, LONGEST_DELAY, SETTLED_AFTER, Backoff


def test_quick_exits_double_the_delay_up_to_the_longest() -> None:
    backoff = Backoff()
    delays = [backoff.delay(uptime=0.5) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert (FIRST_DELAY, LONGEST_DELAY) == (1, 30)


def test_a_process_that_stayed_up_is_restarted_after_the_first_delay_again() -> None:
    backoff = Backoff()
    for _ in range(4):
        backoff.delay(uptime=0.5)
    assert backoff.delay(uptime=SETTLED_AFTER) == FIRST_DELAY
    assert backoff.delay(uptime=0.5) == 2 * FIRST_DELAY
