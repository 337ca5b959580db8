"""How the local stack keeps its processes running: one that exits on its own is started again
after a delay that begins at one second and doubles with each quick exit, up to thirty seconds,
and begins at one second again once the process has stayed up for a while.

A process that cannot start (Redis is away, say) is retried ever more slowly instead of being
hammered; one that ran for a long time and then died comes back at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Seconds before the first restart, and the longest wait between restarts.
FIRST_DELAY, LONGEST_DELAY = 1.0, 30.0
#: A process that stayed up this many seconds was healthy: its next restart waits FIRST_DELAY.
SETTLED_AFTER = 30.0


@dataclass
class Backoff:
    """The delays before the restarts of one process."""

    first: float = FIRST_DELAY
    longest: float = LONGEST_DELAY
    settled_after: float = SETTLED_AFTER
    _next: float = field(default=FIRST_DELAY, init=False)

    def __post_init__(self) -> None:
        self._next = self.first

    def delay(self, uptime: float) -> float:
        """Seconds to wait before restarting a process that exited after `uptime` seconds."""
        if uptime >= self.settled_after:
            self._next = self.first
        delay, self._next = self._next, min(self._next * 2, self.longest)
        return delay
