"""The stack's one console: every process's output line by line, each line behind its source's
padded name (coloured on a terminal), so that interleaved logs stay readable and whole.

Every line is redacted (`service.redact`) on its way out: a child's own output (Redis, Flower,
an exception printed before logging is set up) does not pass the service's log filter, and a
broker URL named in FLASK_CELERY__BROKER_URL may carry a password.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import IO

from service.redact import redact

COLOURS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94", "91")


class Console:
    """Prints lines from many sources, each behind its padded name, coloured on a terminal."""

    def __init__(self, names: Sequence[str], colour: bool) -> None:
        self.width = max(map(len, names))
        self.colours = {n: COLOURS[i % len(COLOURS)] for i, n in enumerate(names) if colour}
        self._lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        prefix = f"{name:<{self.width}} |"
        if name in self.colours:
            prefix = f"\033[{self.colours[name]}m{prefix}\033[0m"
        with self._lock:
            print(prefix, redact(line), flush=True)

    def pump(self, name: str, stream: IO[bytes]) -> threading.Thread:
        """Re-print each line of `stream` under `name`, from a thread, until it closes."""

        def run() -> None:
            for raw in iter(stream.readline, b""):
                self.say(name, raw.decode(errors="replace").rstrip())

        thread = threading.Thread(target=run, name=f"pump-{name}", daemon=True)
        thread.start()
        return thread
