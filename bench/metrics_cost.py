"""What the task metrics cost a worker: drain throughput with metrics on against off, one run.

    .venv/bin/python -m bench.metrics_cost [--jobs 2000] [--concurrency 2] [--repeat 3]

Starts its own redis-server and SQLite database. Each repetition drains `--jobs` no-op tasks
(`bench.bare`) twice, with FLASK_METRICS_ENABLED true (multiprocess files, the worker serving
its pool's metrics) and false, the two variants interleaved; the ratio is taken per repetition.
Prints one summary line: each rate's median [min..max] and the ratio's median [min..max].
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import flask_migrate
import redis

from bench.throughput import drain
from harness.processes import free_port
from harness.redis_server import RedisServer
from harness.stack import ROOT, stack_environment, stack_flask_app


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """`median [min..max]` of `values`."""
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}..{max(values):{fmt}}]"


def main() -> None:
    parser = argparse.ArgumentParser("python -m bench.metrics_cost")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    on: list[float] = []
    off: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        server = RedisServer(state / "redis").start()
        env = stack_environment(state, server.url(0), server.url(1), {"PYTHONPATH": str(ROOT)})
        try:
            with stack_flask_app(env).app_context():
                flask_migrate.upgrade()
            variants = {
                "on": {
                    "FLASK_METRICS_ENABLED": "true",
                    "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus"),
                    "FLASK_METRICS_ADDRESS": "127.0.0.1",
                },
                "off": {"FLASK_METRICS_ENABLED": "false", "FLASK_WORKER_METRICS_PORT": "0"},
            }
            for n in range(args.repeat):
                for name, extra in variants.items():
                    variant = {**env, **extra}
                    if name == "on":
                        variant["FLASK_WORKER_METRICS_PORT"] = str(free_port())
                    rate = drain(variant, "bench.bare", args.jobs, args.concurrency,
                                 state / f"{name}-{n}.log")  # fmt: skip
                    (on if name == "on" else off).append(rate)
                    redis.Redis.from_url(server.url(0)).flushdb()
        finally:
            server.stop()
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    print(
        f"{args.jobs} no-op tasks, concurrency {args.concurrency}, {args.repeat} repetitions: "
        f"drain with metrics {spread(on)}/s vs without {spread(off)}/s; "
        f"ratio {spread(ratios, '.2f')}"
    )


if __name__ == "__main__":
    main()
