"""Container probes that cost nothing: `python -m service.worker.probes worker [--max-age S]`.

Exits 0 when the worker's heartbeat file (see `service.worker.heartbeat`) was touched within
`--max-age` seconds, 1 otherwise, with the reason on stderr. Imports nothing heavy, so the
probe process starts in a few milliseconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

DEFAULT_HEARTBEAT_FILE = "/tmp/celery-worker-heartbeat"


def check_worker(path: str, max_age: float) -> str | None:
    """None when the heartbeat is fresh; else why the worker is not live."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return f"no heartbeat file at {path}: the worker is not consuming"
    if age > max_age:
        return f"heartbeat {age:.0f}s old (limit {max_age:.0f}s): the worker stopped consuming"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m service.worker.probes")
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("--max-age", type=float, default=60.0)
    parser.add_argument(
        "--file",
        default=os.environ.get("FLASK_WORKER_HEARTBEAT_FILE", DEFAULT_HEARTBEAT_FILE),
    )
    args = parser.parse_args(argv)
    problem = check_worker(args.file, args.max_age)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
