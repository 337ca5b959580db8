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
(target: within 1.2x); history / empty too, which also counts the label cardinality.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
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


def compact(directory: Path) -> None:
    """Fold the counter and histogram files of every process that has ended into one
    `<type>_archive.db` per type, then delete them: what a scrape reads stops growing with the
    processes a worker has replaced. A prototype of the fix proposed for
    service/observability/metrics.py (the collector would run it under a lock first)."""
    for kind in ("counter", "histogram"):
        archive = directory / f"{kind}_archive.db"
        dead = [
            f for f in directory.glob(f"{kind}_*.db")
            if (m := _PID.search(f.name)) and not _alive(int(m.group(1)))
        ]  # fmt: skip
        if not dead:
            continue
        sources = [str(f) for f in ([archive] if archive.exists() else []) + dead]
        folded = directory / f"{kind}_archive.tmp"
        values = MmapedDict(str(folded))
        for metric in MultiProcessCollector.merge(sources, accumulate=False):
            for sample in metric.samples:
                names, labels = list(sample.labels), list(sample.labels.values())
                key = mmap_key(metric.name, sample.name, names, labels, metric.documentation)
                values.write_value(key, sample.value, 0.0)
        values.close()
        os.replace(folded, archive)
        for f in dead:
            f.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def exposition_values(body: bytes) -> dict[bytes, float]:
    return {
        name: float(value)
        for line in body.splitlines()
        if line and not line.startswith(b"#")
        for name, value in [line.rsplit(b" ", 1)]
    }


def try_compaction(history: Path, copy: Path, repeat: int) -> dict[str, Any]:
    """Collection time of a copy of the history's files before and after `compact`, and
    whether the exposition kept every value."""
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
            for variant, queue in QUEUES.items():
                dirs[variant] = stack.state / f"prometheus-{variant}"
                env = {**stack.env, **metrics_env(dirs[variant])}
                urls[variant] = f"http://127.0.0.1:{env['FLASK_WORKER_METRICS_PORT']}/metrics"
                recycle = ("--max-tasks-per-child", str(args.per_child))
                workers[variant], _ = start_worker(
                    env,
                    (queue,),
                    stack.state / f"{variant}.log",
                    extra=(
                        "--include",
                        "bench.scale_tasks",
                        "--loglevel",
                        "WARNING",
                        *(recycle if variant == "history" else ()),
                    ),
                )
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
                }
            records["compaction"] = try_compaction(
                dirs["history"], stack.state / "compacted", args.repeat
            )
        finally:
            for proc in workers.values():
                stop(proc)
    ratio = ratios(times["history"], times["fresh"])
    records["ratios"] = {
        "history_over_fresh": summary_of(ratio),
        "fresh_over_empty": summary_of(ratios(times["fresh"], times["empty"])),
        "history_over_empty": summary_of(ratios(times["history"], times["empty"])),
    }
    h = records["history"]
    summary = (
        f"metrics_scale: /metrics scrape after {args.tasks:,} tasks over {args.names} names and "
        f"{h['processes']} pool processes {spread(times['history'], '.1f')} ms "
        f"({h['bytes']:,} B, {h['series']:,} series, {h['files']} files) vs a fresh worker "
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
