"""Metrics at scale: a worker's `/metrics` scrape after a long history against a fresh worker.

    .venv/bin/python -m bench.metrics_scale [--tasks 10000] [--names 50] [--per-child 100]

Starts its own redis-server and three workers (prefork, concurrency 2, metrics on, each with its
own multiprocess directory and metrics port):
- empty: started, no task run (one series);
- fresh: each of the `--names` task names run once, no pool process replaced: the same label
  cardinality as the history, which the app's task catalogue bounds, without the history;
- history: `--tasks` no-op tasks spread over the `--names` names with
  `--max-tasks-per-child --per-child`, so about tasks / per-child pool processes come and go.
Then scrapes the three in turn, `--repeat` times: scrape time median [min..max], the answer's
bytes and series, the files in the multiprocess directory, and history / fresh per repetition
(target: within 1.2x); history / empty too, which also counts the label cardinality. The first
scrape of each worker folds the files of its ended pool processes into one per type
(`service.observability.compaction`); a copy of the history's files taken before it is
collected in this process before and after folding, checking that the exposition keeps every
value.
"""

from __future__ import annotations

import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from bench.common import (
    interleave,
    local_stack,
    metrics_env,
    parser,
    ratios,
    spread,
    summary_of,
    write_result,
)
from bench.scale_tasks import NAMES, task_name
from harness.processes import stop, wait_until
from harness.stack import celery_client, start_worker
from service.observability.compaction import compact

TARGET = 1.2
#: Queues the three workers consume, one each, so that each gets only its own tasks.
QUEUES = {"empty": "exports", "fresh": "email", "history": "default"}
_PID = re.compile(r"_(\d+)\.db$")


#: One client for every scrape: building one (its TLS context) costs more than a small scrape.
_client = httpx.Client(timeout=60)


def scrape(url: str) -> tuple[float, bytes]:
    """Seconds one `/metrics` answer takes, and the answer."""
    started = time.perf_counter()
    answer = _client.get(url)
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed, answer.content


def series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def succeeded(body: bytes) -> float:
    """The sum of `celery_task_succeeded_total` in an exposition."""
    return sum(
        float(line.rsplit(b" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(b"celery_task_succeeded_total{")
    )


def directory_state(directory: Path) -> dict[str, int]:
    files = list(directory.glob("*.db"))
    return {
        "files": len(files),
        "bytes_on_disk": sum(f.stat().st_size for f in files),
        "processes": len({m.group(1) for f in files if (m := _PID.search(f.name))}),
    }


def collect_ms(directory: Path) -> tuple[float, bytes]:
    """Milliseconds `directory`'s collection takes in this process (what a scrape costs the
    worker's main process, without HTTP), and the exposition."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    started = time.perf_counter()
    body = generate_latest(registry)
    return (time.perf_counter() - started) * 1000, body


def exposition_values(body: bytes) -> dict[bytes, float]:
    return {
        name: float(value)
        for line in body.splitlines()
        if line and not line.startswith(b"#")
        for name, value in [line.rsplit(b" ", 1)]
    }


def try_compaction(history: Path, copy: Path, repeat: int) -> dict[str, Any]:
    """Collection time of a copy of the history's files before and after `compact` (what
    folding the files of replaced pool processes would give), and whether the exposition kept
    every value."""
    shutil.copytree(history, copy)
    before = [collect_ms(copy) for _ in range(repeat)]
    files_before = len(list(copy.glob("*.db")))
    compact(copy)
    after = [collect_ms(copy) for _ in range(repeat)]
    same = exposition_values(before[0][1]) == exposition_values(after[0][1])
    return {
        "files_before": files_before,
        "files_after": len(list(copy.glob("*.db"))),
        "before_ms": summary_of([ms for ms, _ in before]),
        "after_ms": summary_of([ms for ms, _ in after]),
        "same_values": same,
    }


def main(argv: list[str] | None = None) -> None:
    p = parser("metrics_scale", __doc__.splitlines()[0], repeat=10)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--names", type=int, default=NAMES)
    p.add_argument("--per-child", type=int, default=100, help="--max-tasks-per-child")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.names, args.per_child, args.repeat = 200, 5, 20, 3
    records: dict[str, Any] = {"tasks": args.tasks, "names": args.names, "target": TARGET}
    with local_stack() as stack:
        workers: dict[str, Any] = {}
        urls: dict[str, str] = {}
        dirs: dict[str, Path] = {}
        celery = celery_client(stack.env)
        broker = redis.Redis.from_url(stack.env["FLASK_CELERY__BROKER_URL"])
        try:
            for n in range(args.tasks):
                celery.send_task(task_name(n % args.names), (n,), queue=QUEUES["history"])
            for i in range(args.names):
                celery.send_task(task_name(i), (i,), queue=QUEUES["fresh"])
            envs = {}
            for variant in QUEUES:
                dirs[variant] = stack.state / f"prometheus-{variant}"
                envs[variant] = {**stack.env, **metrics_env(dirs[variant])}
                port = envs[variant]["FLASK_WORKER_METRICS_PORT"]
                urls[variant] = f"http://127.0.0.1:{port}/metrics"

            def start(variant: str) -> None:
                recycle = ("--max-tasks-per-child", str(args.per_child))
                extra = ("--include", "bench.scale_tasks", "--loglevel", "WARNING")
                workers[variant], _ = start_worker(
                    envs[variant],
                    (QUEUES[variant],),
                    stack.state / f"{variant}.log",
                    extra=(*extra, *(recycle if variant == "history" else ())),
                )

            with ThreadPoolExecutor(len(QUEUES)) as pool:  # start-up is slow: side by side
                list(pool.map(start, QUEUES))
            started = time.monotonic()
            # wait on Redis, not on scrapes: a scrape of the history is work for the main
            # process, which would slow the very drain it waits for
            wait_until(
                lambda: (
                    not any(broker.llen(q) for q in QUEUES.values()) and not broker.hlen("unacked")
                ),
                timeout=1800,
                interval=0.5,
                what="the tasks drained",
            )
            records["history_seconds"] = time.monotonic() - started
            # before the first scrape, which folds the files of ended pool processes: how many
            # processes ran, and an unfolded copy of the history's files
            ran = {variant: directory_state(dirs[variant]) for variant in QUEUES}
            unfolded = stack.state / "history-unfolded"
            shutil.copytree(dirs["history"], unfolded)
            expected = {"empty": 0, "fresh": args.names, "history": args.tasks}
            for variant, count in expected.items():
                done = succeeded(scrape(urls[variant])[1])
                assert done == count, f"{variant}: {done} tasks succeeded, not {count}"
            bodies: dict[str, bytes] = {}

            def measure(variant: str) -> float:
                elapsed, bodies[variant] = scrape(urls[variant])
                return elapsed * 1000

            times = interleave({v: lambda v=v: measure(v) for v in QUEUES}, args.repeat)
            for variant in QUEUES:
                records[variant] = {
                    "scrape_ms": summary_of(times[variant]),
                    "scrape_ms_values": times[variant],
                    "bytes": len(bodies[variant]),
                    "series": series(bodies[variant]),
                    **directory_state(dirs[variant]),
                    "processes": ran[variant]["processes"],
                    "files_before_first_scrape": ran[variant]["files"],
                }
            records["compaction"] = try_compaction(unfolded, stack.state / "compacted", args.repeat)
        finally:
            for proc in workers.values():
                stop(proc)
    ratio = ratios(times["history"], times["fresh"])
    records["ratios"] = {
        "history_over_fresh": summary_of(ratio),
        "fresh_over_empty": summary_of(ratios(times["fresh"], times["empty"])),
        "history_over_empty": summary_of(ratios(times["history"], times["empty"])),
    }
    records["table"] = {
        "columns": ["worker", "scrape, ms", "bytes", "series", "files before / after folding",
                    "pool processes"],
        "rows": [
            [v, spread(times[v], ".1f"), f"{records[v]['bytes']:,}", records[v]["series"],
             f"{records[v]['files_before_first_scrape']} / {records[v]['files']}",
             records[v]["processes"]]
            for v in QUEUES
        ],
    }  # fmt: skip
    h = records["history"]
    summary = (
        f"metrics_scale: /metrics scrape after {args.tasks:,} tasks over {args.names} names and "
        f"{h['processes']} pool processes {spread(times['history'], '.1f')} ms "
        f"({h['bytes']:,} B, {h['series']:,} series, {h['files_before_first_scrape']} files "
        f"folded into {h['files']}) vs a fresh worker "
        f"that ran each name once {spread(times['fresh'], '.1f')} ms "
        f"({records['fresh']['bytes']:,} B, {records['fresh']['files']} files) and an empty one "
        f"{spread(times['empty'], '.1f')} ms; history/fresh {spread(ratio, '.2f')} "
        f"(target <= {TARGET}x); dead processes' files folded into one: collection "
        f"{records['compaction']['before_ms']['median']:.1f} -> "
        f"{records['compaction']['after_ms']['median']:.1f} ms in-process"
    )
    write_result("metrics_scale", summary, records, args)


if __name__ == "__main__":
    main()
