"""Container probes that cost next to nothing: `python -m service.worker.probes ROLE [--max-age S]`.

`worker`: exits 0 when the worker's heartbeat file (see `service.worker.heartbeat`) was touched
within `--max-age` seconds, 1 otherwise, with the reason on stderr. Imports nothing heavy, so the
probe process starts in a few milliseconds.

`beat`: exits 0 when the leading beat recorded its last tick (`service.beat.LAST_TICK_KEY`)
within `--max-age` seconds, 1 when the tick is older or missing: the scheduler loop stopped, or
this beat never became the leader. It reads beat's Redis (FLASK_CELERY__REDBEAT_REDIS_URL, else
FLASK_CELERY__BROKER_URL, with the credentials and CA of FLASK_REDIS_*) and imports the Redis
client only for that. A Redis that does not
answer passes, with the reason on stderr: beat rides out Redis outages by itself, so restarting
it would not help, and the late tick shows on the exporter's beat metric.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

DEFAULT_HEARTBEAT_FILE = "/tmp/celery-worker-heartbeat"
#: `service.beat.LAST_TICK_KEY`, spelled out so the probe does not import Celery.
LAST_TICK_KEY = "flask_celery:beat:last_tick"
#: Seconds the beat probe waits for Redis, well inside a probe's timeout.
REDIS_TIMEOUT = 3.0


def check_worker(path: str, max_age: float) -> str | None:
    """None when the heartbeat is fresh; else why the worker is not live."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return f"no heartbeat file at {path}: the worker is not consuming"
    if age > max_age:
        return f"heartbeat {age:.0f}s old (limit {max_age:.0f}s): the worker stopped consuming"
    return None


def beat_redis_url() -> str | None:
    """Beat's Redis, as the beat container's environment names it."""
    return os.environ.get("FLASK_CELERY__REDBEAT_REDIS_URL") or os.environ.get(
        "FLASK_CELERY__BROKER_URL"
    )


def check_beat(url: str, max_age: float) -> tuple[str | None, str | None]:
    """(problem, note): problem None when beat ticked within `max_age` seconds; note says why
    the probe passed without knowing (Redis does not answer)."""
    import redis  # only here: the worker probe stays free of it

    from ..redis_options import RedisAccess, verifying
    from ..redis_options import client as redis_client

    # credentials and TLS as the app's own connections have them (service.redis_options)
    access = RedisAccess.from_environ(os.environ)
    client = redis_client(
        access.url(url, "beat's Redis URL"),
        verifying(access.ca_file),
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
    )
    try:
        raw = client.get(LAST_TICK_KEY)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        return None, f"Redis does not answer ({type(exc).__name__}); beat retries by itself"
    finally:
        client.close()
    if raw is None:
        return f"no beat tick recorded under {LAST_TICK_KEY}: beat is not scheduling", None
    age = time.time() - float(raw)
    if age > max_age:
        return f"last beat tick {age:.0f}s ago (limit {max_age:.0f}s): beat stopped ticking", None
    return None, None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m service.worker.probes")
    parser.add_argument("role", choices=["worker", "beat"])
    parser.add_argument("--max-age", type=float, default=60.0)
    parser.add_argument(
        "--file",
        default=os.environ.get("FLASK_WORKER_HEARTBEAT_FILE", DEFAULT_HEARTBEAT_FILE),
    )
    args = parser.parse_args(argv)
    if args.role == "beat":
        url = beat_redis_url()
        if not url:
            print("no Redis URL: set FLASK_CELERY__BROKER_URL", file=sys.stderr)
            return 1
        problem, note = check_beat(url, args.max_age)
        if note:
            print(note, file=sys.stderr)
    else:
        problem = check_worker(args.file, args.max_age)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
