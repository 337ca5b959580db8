"""Throughput of the job path against bare Celery, measured in one run.

    .venv/bin/python -m bench.throughput [--jobs 2000] [--concurrency 2]

Starts its own redis-server and SQLite database, then measures:
- enqueue: `apply_async` of `jobs.add` vs `service.jobs.enqueue.enqueue` of it (job row + publish),
  the path every API request takes;
- execution: a worker draining N bare tasks vs N `job_task` tasks with an idempotency key (one
  ledger row each), with crash-safe settings (acks_late, prefetch 1) in both runs.
Prints one summary line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import flask_migrate
import redis

from harness.processes import stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import ROOT, stack_environment, stack_flask_app, start_worker
from service.jobs.enqueue import JobRequest, enqueue


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def drain(env: dict[str, str], task: str, jobs: int, concurrency: int, log: Path) -> float:
    """Tasks per second a worker runs, once started, from a queue of `jobs` `task`s."""
    app = stack_flask_app(env)
    celery_app = app.extensions["celery"]
    for n in range(jobs):
        celery_app.send_task(task, args=(n,), queue="default", ignore_result=True)
    client = redis.Redis.from_url(env["FLASK_CELERY__BROKER_URL"])
    proc, _ = start_worker(
        env,
        ("default",),
        log,
        concurrency=concurrency,
        extra=("--include", "bench.bench_tasks", "--loglevel", "WARNING"),
    )
    try:
        # worker start-up is not throughput: count from the moment it answers
        started, left = time.monotonic(), int(client.llen("default"))
        wait_until(
            lambda: client.llen("default") == 0 and not _unacked(client),
            timeout=600,
            interval=0.01,
            what=f"{task} drained",
        )
        return left / (time.monotonic() - started)
    finally:
        stop(proc)


def _unacked(client: redis.Redis) -> int:
    return int(client.hlen("unacked"))


def main() -> None:
    parser = argparse.ArgumentParser("python -m bench.throughput")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        server = RedisServer(state / "redis").start()
        env = stack_environment(state, server.url(0), server.url(1), {"PYTHONPATH": str(ROOT)})
        try:
            app = stack_flask_app(env)
            with app.app_context():
                flask_migrate.upgrade()
            add = app.extensions["celery"].tasks["jobs.add"]
            started = time.monotonic()
            for n in range(args.jobs):
                add.apply_async((n, n), ignore_result=False)
            bare_enqueue = time.monotonic() - started
            with app.app_context():
                started = time.monotonic()
                for n in range(args.jobs):
                    enqueue(JobRequest("add", add, (n, n)), {"a": n, "b": n})
                job_enqueue = time.monotonic() - started
            redis.Redis.from_url(server.url(0)).flushdb()

            bare_rate = drain(env, "bench.bare", args.jobs, args.concurrency, state / "w1.log")
            ledger_rate = drain(
                env, "bench.ledgered", args.jobs, args.concurrency, state / "w2.log"
            )
        finally:
            server.stop()
    print(
        f"{args.jobs} jobs, concurrency {args.concurrency}: "
        f"enqueue bare apply_async {rate(args.jobs, bare_enqueue)} vs job row + publish "
        f"{rate(args.jobs, job_enqueue)} ({job_enqueue / bare_enqueue:.1f}x time); "
        f"execute bare task {bare_rate:,.0f}/s vs job_task + ledger {ledger_rate:,.0f}/s "
        f"({bare_rate / ledger_rate:.1f}x time)"
    )


if __name__ == "__main__":
    main()
    sys.exit(0)
