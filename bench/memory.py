"""Memory: resident set size of every process of the stack, idle and after load.

    .venv/bin/python -m bench.memory [--jobs 2000] [--repeat 5]

Starts its own redis-server and PostgreSQL server, then the service's processes as the chart
runs them, metrics on: gunicorn (production config, 2 workers), one worker (prefork,
concurrency 2, the `general` group's queues), beat and the broker exporter. Measures each
process's RSS and PSS (shared pages split between the processes that share them, the fairer
sum for forked children) once all are ready and idle, then after `--jobs` `POST /jobs/add`
requests (4 client threads) drained by the worker and a scrape of every metrics endpoint.
Each figure is the median of `--repeat` readings 0.2 s apart.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import local_stack, metrics_env, parser, spread, write_result
from harness.auth import bearer
from harness.processes import free_port, stop, wait_until
from harness.stack import BIN, spawn, start_web, start_worker
from service.routing import WORKER_GROUPS

PHASES = ("idle", "loaded")


def children(pid: int) -> list[int]:
    """The direct children of `pid`."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """RSS and PSS of `pid` in KiB (/proc/<pid>/smaps_rollup)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            fields[key.lower()] = int(rest.split()[0])
    return fields


def roles(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, list[int]]:
    """Each role's processes: gunicorn's master and workers, the worker's main process and
    pool children, beat, the exporter."""
    return {
        "web master": [procs["web"].pid],
        "web worker": children(procs["web"].pid),
        "worker parent": [procs["worker"].pid],
        "worker child": children(procs["worker"].pid),
        "beat": [procs["beat"].pid],
        "exporter": [procs["exporter"].pid],
    }


def reading(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, dict[str, Any]]:
    """Each role: the processes' count, their mean RSS and PSS (KiB) and their sums."""
    out = {}
    for role, pids in roles(procs).items():
        each = [memory_kib(pid) for pid in pids]
        out[role] = {
            "processes": len(each),
            "rss_kib": statistics.mean(m["rss"] for m in each),
            "pss_kib": statistics.mean(m["pss"] for m in each),
            "rss_kib_total": sum(m["rss"] for m in each),
            "pss_kib_total": sum(m["pss"] for m in each),
        }
    return out


def measure(procs: dict[str, subprocess.Popen[bytes]], repeat: int) -> dict[str, Any]:
    """Median of `repeat` readings of every role."""
    readings = []
    for _ in range(repeat):
        readings.append(reading(procs))
        time.sleep(0.2)
    out: dict[str, Any] = {}
    for role in readings[0]:
        values = {k: [r[role][k] for r in readings] for k in readings[0][role]}
        out[role] = {k: statistics.median(v) for k, v in values.items()}
        out[role]["rss_kib_values"] = values["rss_kib"]
    out["total"] = {
        k: sum(out[role][k] for role in readings[0]) for k in ("rss_kib_total", "pss_kib_total")
    }
    return out


def load(url: str, jobs: int) -> None:
    """`jobs` POST /jobs/add from 4 client threads."""
    with httpx.Client(base_url=url, headers=bearer(), timeout=30) as client:

        def post(n: int) -> None:
            answer = client.post("/jobs/add", json={"a": n, "b": n})
            assert answer.status_code == 202, answer.text

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, range(jobs)))


def main(argv: list[str] | None = None) -> None:
    p = parser("memory", __doc__.splitlines()[0], repeat=5)
    p.add_argument("--jobs", type=int, default=2000)
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.repeat = 20, 1
    records: dict[str, Any] = {"jobs": args.jobs}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with local_stack(postgres=True) as stack:
        state, env = stack.state, stack.env
        ports: dict[str, str] = {}
        try:
            # beat and the exporter are only spawned; web and the worker start side by side
            beat_env = {**env, **metrics_env(state / "prometheus-beat")}
            celery = [str(BIN / "celery"), "-A", "service.make_celery"]
            procs["beat"] = spawn(
                [*celery, "beat", "--loglevel", "INFO"], beat_env, state / "beat.log"
            )
            ports["exporter"] = str(free_port())
            exporter_env = {
                **env,
                "FLASK_EXPORTER_PORT": ports["exporter"],
                "FLASK_METRICS_ADDRESS": "127.0.0.1",
            }
            procs["exporter"] = spawn(
                [str(BIN / "python"), "-m", "service.exporter"],
                exporter_env,
                state / "exporter.log",
            )
            web_env = {**env, **metrics_env(state / "prometheus-web")}
            worker_env = {**env, **metrics_env(state / "prometheus-worker")}
            ports["worker"] = worker_env["FLASK_WORKER_METRICS_PORT"]
            with ThreadPoolExecutor(1) as pool:
                web = pool.submit(start_web, web_env, state / "web.log")
                try:
                    procs["worker"], _ = start_worker(
                        worker_env, WORKER_GROUPS["general"], state / "worker.log"
                    )
                finally:  # stopped with the others, even when the worker did not start
                    procs["web"], web_url = web.result()
            scrapes = [f"{web_url}/metrics"]
            scrapes += [f"http://127.0.0.1:{port}/metrics" for port in ports.values()]
            for target in scrapes:
                wait_until(
                    lambda t=target: httpx.get(t, timeout=2).status_code == 200,
                    timeout=60,
                    what=target,
                )
            time.sleep(2)  # let start-up settle: imports done, pools forked
            records["idle"] = measure(procs, args.repeat)
            load(web_url, args.jobs)
            broker = redis.Redis.from_url(env["FLASK_CELERY__BROKER_URL"])
            wait_until(
                lambda: not broker.llen("default") and not broker.hlen("unacked"),
                timeout=900,
                interval=0.2,
                what="the jobs drained",
            )
            for target in scrapes:
                httpx.get(target, timeout=10).raise_for_status()
            records["loaded"] = measure(procs, args.repeat)
            for name, proc in procs.items():
                assert proc.poll() is None, f"{name} exited: see {state / name}.log"
        finally:
            for proc in procs.values():
                stop(proc)

    records["table"] = {
        "columns": [
            "process",
            "count",
            "RSS idle, MiB",
            "RSS after load, MiB",
            "PSS after load, MiB",
        ],
        "rows": [
            [
                role,
                records["loaded"][role]["processes"],
                f"{records['idle'][role]['rss_kib'] / 1024:.0f}",
                f"{records['loaded'][role]['rss_kib'] / 1024:.0f}",
                f"{records['loaded'][role]['pss_kib'] / 1024:.0f}",
            ]
            for role in records["idle"]
            if role != "total"
        ],
    }

    def mib(phase: str, role: str) -> str:
        figure = records[phase][role]
        return spread([v / 1024 for v in figure["rss_kib_values"]], ".0f")

    parts = [
        f"{role} {mib('idle', role)} -> {mib('loaded', role)}"
        for role in records["idle"]
        if role != "total"
    ]
    total = {ph: records[ph]["total"]["pss_kib_total"] / 1024 for ph in PHASES}
    summary = (
        f"memory: RSS MiB per process, idle -> after {args.jobs:,} jobs: "
        + "; ".join(parts)
        + f"; whole stack PSS {total['idle']:.0f} -> {total['loaded']:.0f} MiB"
    )
    write_result("memory", summary, records, args)


if __name__ == "__main__":
    main()
