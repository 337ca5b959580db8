"""Tasks that exist only for tests, loaded into a worker with `--include`.

They run on the `default` queue (the routing table's default) and let a test hold a worker
busy for a known time.
"""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(name="tests.sleep", ignore_result=False)
def sleep(seconds: float) -> float:
    """Hold a pool process for `seconds`; return how long it slept."""
    started = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - started
