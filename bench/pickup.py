"""Pickup latency: from `send_task` to the task body's first line, on an idle worker.

    python -m bench.pickup [--samples 1000] [--repeat 5] [--quick] [--out DIR]

Starts its own redis-server, then two workers side by side (prefork, 2 processes, INFO):
plain Celery with the project's delivery settings (`bench.bare_celery`, its own database of
the server) and the project's worker as it ships (`bench.project_worker`, JSON logs, metrics
served). Samples alternate between them, one task at a time, each once the previous one has
started and the worker has had `--gap` to go idle again: the probe task notes `time.time()`
in Redis as its body begins. Per repetition: p50 and p99 of each, and their ratios; the target
is project p50 <= 1.1x bare.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import flask_migrate
import redis
from celery import Celery

from bench.common import parser, ratios, spread, summary_of, write_result
from bench.drain import CONCURRENCY, alive
from harness.processes import free_port, stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import BIN, ROOT, spawn, stack_environment, stack_flask_app

NAME = "pickup"
TARGET = 1.1
#: The bare worker's broker database (the project's is 0, its results 1).
BARE_DB = 2


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class Side:
    """One worker and the app that sends it probes."""

    def __init__(self, name: str, app: Any, url: str, task: str) -> None:
        self.name, self.app, self.task = name, app, task
        self.client = redis.Redis.from_url(url)
        self.producer = app.producer_pool.acquire(block=True)

    def sample(self, timeout: float = 30) -> float:
        """Seconds from the publish to the task body's start."""
        key = f"bench:started:{uuid4().hex}"
        sent = time.time()
        self.app.send_task(self.task, args=(key,), queue="default", producer=self.producer)
        popped = self.client.blpop([key], timeout=timeout)
        if popped is None:
            raise RuntimeError(f"{self.name}: the probe did not start within {timeout}s")
        return float(popped[1]) - sent


def start(cmd: list[str], env: dict[str, str], log: Path, url: str) -> Any:
    node = f"bench-{uuid4().hex[:8]}@localhost"
    proc = spawn([*cmd, "--hostname", node], env, log)
    control = Celery(broker=url)
    wait_until(
        lambda: alive(proc, log) and control.control.ping(destination=[node], timeout=0.5),
        timeout=60,
        what=f"worker {node} (log: {log})",
    )
    return proc


def main() -> None:
    p = parser(NAME, __doc__ or "")
    p.add_argument("--samples", type=int, default=1000, help="samples per worker and repetition")
    p.add_argument("--gap", type=float, default=0.01, help="seconds between samples")
    args = p.parse_args()
    if args.quick:
        args.samples, args.repeat = min(args.samples, 50), 1
    common = ["worker", "--queues", "default", "--pool", "prefork", "--loglevel", "INFO",
              "-c", str(CONCURRENCY), "--without-mingle", "--without-gossip"]  # fmt: skip
    latencies: dict[str, list[list[float]]] = {"bare": [], "project": []}
    with tempfile.TemporaryDirectory(prefix="bench-pickup-") as tmp:
        state = Path(tmp)
        server = RedisServer(state / "redis").start()
        procs = []
        try:
            url, bare_url = server.url(0), server.url(BARE_DB)
            env = stack_environment(
                state,
                url,
                server.url(1),
                {
                    "PYTHONPATH": str(ROOT),
                    "BENCH_BROKER_URL": url,
                    "FLASK_LOG_FORMAT": "json",
                    "FLASK_METRICS_ADDRESS": "127.0.0.1",
                    "FLASK_WORKER_METRICS_PORT": str(free_port()),
                    "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus"),
                },
            )
            (state / "prometheus").mkdir()
            flask_app = stack_flask_app(env)
            logging.getLogger().setLevel(logging.WARNING)
            with flask_app.app_context():
                flask_migrate.upgrade()
            celery = str(BIN / "celery")
            procs.append(start([celery, "-A", "bench.project_worker", *common], env,
                               state / "project.log", url))  # fmt: skip
            bare_env = {**env, "BENCH_BROKER_URL": bare_url}
            procs.append(start([celery, "-A", "bench.bare_celery", *common], bare_env,
                               state / "bare.log", bare_url))  # fmt: skip
            sides = [
                Side("bare", Celery(broker=bare_url), bare_url, "bench.started"),
                Side("project", flask_app.extensions["celery"], url, "bench.started"),
            ]
            for side in sides:  # warm: the first task of a process imports and connects
                for _ in range(2 * CONCURRENCY):
                    side.sample()
            for _ in range(args.repeat):
                run: dict[str, list[float]] = {side.name: [] for side in sides}
                for _ in range(args.samples):
                    for side in sides:
                        time.sleep(args.gap)
                        run[side.name].append(side.sample())
                for name, values in run.items():
                    latencies[name].append(values)
        finally:
            for proc in procs:
                stop(proc)
            server.stop()
    write_result(NAME, summary(latencies, args), records(latencies), args)


def _per_run(latencies: dict[str, list[list[float]]], q: float) -> dict[str, list[float]]:
    """Per repetition, the `q` quantile of each side, in milliseconds."""
    return {name: [1000 * percentile(run, q) for run in runs] for name, runs in latencies.items()}


def records(latencies: dict[str, list[list[float]]]) -> dict[str, Any]:
    p50, p99 = _per_run(latencies, 0.5), _per_run(latencies, 0.99)
    out: dict[str, Any] = {
        name: {
            "p50_ms": p50[name],
            "p99_ms": p99[name],
            "p50_summary": summary_of(p50[name]),
            "p99_summary": summary_of(p99[name]),
            "samples": sum(len(run) for run in runs),
        }
        for name, runs in latencies.items()
    }
    out["ratios"] = {
        "p50 project/bare": ratios(p50["project"], p50["bare"]),
        "p99 project/bare": ratios(p99["project"], p99["bare"]),
    }
    out["target"] = {"p50_project_to_bare_at_most": TARGET}
    return out


def summary(latencies: dict[str, list[list[float]]], args: Any) -> str:
    p50, p99 = _per_run(latencies, 0.5), _per_run(latencies, 0.99)
    r50, r99 = ratios(p50["project"], p50["bare"]), ratios(p99["project"], p99["bare"])
    met = "met" if statistics.median(r50) <= TARGET else "not met"
    return (
        f"pickup, idle worker, prefork -c {CONCURRENCY}, INFO, {args.samples} samples x "
        f"{args.repeat} interleaved repetitions: p50 bare {spread(p50['bare'], '.2f')} ms, "
        f"project {spread(p50['project'], '.2f')} ms ({spread(r50, '.2f')}x); p99 bare "
        f"{spread(p99['bare'], '.2f')} ms, project {spread(p99['project'], '.2f')} ms "
        f"({spread(r99, '.2f')}x); target project p50 <= {TARGET:.1f}x bare: {met}"
    )


if __name__ == "__main__":
    main()
