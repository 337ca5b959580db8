"""Soak: SIGKILL workers at random moments while many tasks with effects flow; count what survived.

    .venv/bin/python -m bench.soak_kill [--tasks 3000] [--kills 100] [--broker redis|amqp]

The long form of tests/integration/test_crash_safety.py (and test_rabbitmq.py with
`--broker amqp`, which needs a RabbitMQ on 127.0.0.1:5672): its own redis-server and SQLite
database, two workers with two processes each, a random worker killed with its whole process
group every 0.2-1 s and replaced at once. Prints one summary line; exits 1 if any effect was
lost or duplicated. FAULT_SEED=<n> replays a run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness.faults import FAST_RECOVERY, Stack, kill_workers_while_tasks_flow
from harness.rabbitmq import AMQP_URL, rabbitmq_unavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--broker", choices=("redis", "amqp"), default="redis")
    args = parser.parse_args(argv)
    if args.broker == "amqp" and (reason := rabbitmq_unavailable()):
        print(f"soak_kill: {reason}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="soak-kill-") as tmp:
        broker_url = AMQP_URL if args.broker == "amqp" else None
        stack = Stack.start(Path(tmp), env=FAST_RECOVERY, broker_url=broker_url)
        try:
            if broker_url:
                stack.celery.control.purge()
            run = kill_workers_while_tasks_flow(stack, total=args.tasks, kills=args.kills)
        except AssertionError as exc:
            print(f"soak_kill ({args.broker}): FAILED: {exc}")
            return 1
        finally:
            stack.close()
            if broker_url:
                stack.celery.control.purge()
    print(f"soak_kill ({args.broker}): {run.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
