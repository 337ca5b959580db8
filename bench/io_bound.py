"""IO-bound work per pod: a webhook-like task under prefork, gevent and threads.

    .venv/bin/python -m bench.io_bound [--quick] [--repeat 3] [--out DIR]

Each task POSTs to a receiver on loopback that answers after 100 ms, as webhooks and SMTP wait
on remote servers, through the webhooks' own transport (`service.outbound.http.post`) and inside
the project's task machinery (`job_task`: app context, session, signals, logs at INFO).
One worker (one pod) drains a burst of N such tasks under each pool, the variants interleaved
and repeated:

- prefork with the chart's concurrency for the webhook and notification groups
  (`workers.defaults.concurrency`, 4);
- gevent with `GEVENT_CONCURRENCY` greenlets;
- threads with as many threads, for the record only: the service refuses it (no time limits),
  so the benchmark starts that worker without the refusal.

Per variant: tasks/s from the moment the worker starts consuming the burst until every message
is acknowledged; CPU time per task of the main process and its pool processes together; and the
pod's memory during the drain: peak RSS summed over the processes (what a memory limit sees,
shared pages counted in each process) and peak PSS (shared pages split between them). The
summary compares gevent with prefork against the target: >= 10x the tasks/s at comparable
memory. On a shared machine the CPU each variant gets depends on how many processes it has
(the kernel shares the cores out per process, a pod's CPU limit per pod): read the tasks/s
ratio with the CPU per task beside it.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import flask_migrate
import redis

from harness.outbound import post_to_loopback
from harness.processes import stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import BIN, ROOT, celery_client, spawn, stack_environment, stack_flask_app
from service.reliability.task import job_task

from .common import interleave, parser, ratios, spread, summary_of, write_result

NAME = "io_bound"
#: What the receiver waits before it answers, as a remote webhook receiver or SMTP server does.
WAIT = 0.1
#: The chart's concurrency for the webhook and notification groups (workers.defaults).
PREFORK_CONCURRENCY = 4
#: Greenlets (and threads) of the green variants: a webhook pod's worth of waiting calls.
GEVENT_CONCURRENCY = 100
#: The target of issue 12: IO-bound tasks per pod >= 10x prefork at comparable memory.
TARGET = 10.0
QUEUE = "default"


@job_task("bench.io_wait", store_result=False)
def io_wait(port: int) -> int:
    """POST to the receiver on loopback through the webhooks' own transport
    (`service.outbound.http.post`: a pinned connection per delivery), and wait for its answer;
    its status."""
    return post_to_loopback(port, "/hook")


class Receiver:
    """A threaded HTTP server on a free loopback port answering every POST after `WAIT`."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(WAIT)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pod_pids(pid: int) -> list[str]:
    """`pid` and its children (Linux /proc)."""
    try:
        return [str(pid), *Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pod_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live children."""
    ticks = 0
    for p in pod_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def pod_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB summed over `pid` and its children (Linux /proc)."""
    rss = pss = 0
    for p in pod_pids(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


@dataclass
class Sampler:
    """Peak pod memory of a process while it runs, sampled every 50 ms."""

    pid: int
    rss: int = 0
    pss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            rss, pss = pod_memory(self.pid)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


#: Starts a worker without the service's pool refusal, for the threads variant (bench only).
UNGUARDED = (
    "import sys; from service.make_celery import celery_app; "
    "from service.worker.pools import PoolGuard; celery_app.steps['worker'].discard(PoolGuard); "
    "celery_app.worker_main(sys.argv[1:])"
)


@dataclass
class Variant:
    name: str
    pool: str
    concurrency: int
    jobs: int
    records: list[dict[str, float]] = field(default_factory=list)


def run_once(env: dict[str, str], variant: Variant, port: int, log: Path) -> dict[str, float]:
    """Drain `variant.jobs` tasks with one worker; tasks/s and peak pod memory."""
    node = f"io-{variant.pool}-{os.getpid()}@localhost"
    args = ["worker", "--pool", variant.pool, "--concurrency", str(variant.concurrency),
            "--queues", QUEUE, "--hostname", node, "--loglevel", "INFO", "--include",
            "bench.io_bound", "--without-mingle", "--without-gossip"]  # fmt: skip
    if variant.pool == "threads":
        cmd = [str(BIN / "python"), "-c", UNGUARDED, *args]
    else:
        cmd = [str(BIN / "celery"), "-A", "service.make_celery", *args]
    proc = spawn(cmd, env, log)
    celery_app = celery_client(env)
    broker = redis.Redis.from_url(env["FLASK_CELERY__BROKER_URL"])
    try:
        wait_until(
            lambda: proc.poll() is None and celery_app.control.ping([node], timeout=0.5),
            timeout=60,
            what=f"worker {node} (log: {log})",
        )
        # the burst waits while the worker holds no consumer, then is released at once
        celery_app.control.cancel_consumer(QUEUE, destination=[node], reply=True)
        for _ in range(variant.jobs):
            celery_app.send_task("bench.io_wait", args=(port,), queue=QUEUE)
        idle_rss, idle_pss = pod_memory(proc.pid)
        cpu = pod_cpu(proc.pid)
        with Sampler(proc.pid) as peak:
            started = time.monotonic()
            celery_app.control.add_consumer(QUEUE, destination=[node], reply=True)
            wait_until(
                lambda: broker.llen(QUEUE) == 0 and broker.hlen("unacked") == 0,
                timeout=600,
                interval=0.02,
                what=f"{variant.name} drained (log: {log})",
            )
            seconds = time.monotonic() - started
            cpu = pod_cpu(proc.pid) - cpu
    finally:
        stop(proc)
    return {
        "tasks_per_s": variant.jobs / seconds,
        "seconds": seconds,
        "cpu_ms_per_task": cpu * 1000 / variant.jobs,
        "idle_rss_mib": idle_rss / 1024,
        "idle_pss_mib": idle_pss / 1024,
        "peak_rss_mib": peak.rss / 1024,
        "peak_pss_mib": peak.pss / 1024,
    }


def main() -> None:
    args = parser(NAME, __doc__ or "", repeat=3).parse_args()
    # N per variant: a burst that keeps every slot busy for a while (one pass when --quick)
    prefork_jobs, green_jobs = (8, 20) if args.quick else (120, 600)
    if args.quick:
        args.repeat = 1
    variants = [
        Variant(f"prefork -c {PREFORK_CONCURRENCY}", "prefork", PREFORK_CONCURRENCY, prefork_jobs),
        Variant(f"gevent -c {GEVENT_CONCURRENCY}", "gevent", GEVENT_CONCURRENCY, green_jobs),
        Variant(f"threads -c {GEVENT_CONCURRENCY}", "threads", GEVENT_CONCURRENCY, green_jobs),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        server = RedisServer(state / "redis").start()
        receiver = Receiver()
        (state / "prometheus").mkdir()
        env = stack_environment(
            state,
            server.url(0),
            server.url(1),
            {"PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus")},
        )
        try:
            with stack_flask_app(env).app_context():
                flask_migrate.upgrade()

            def measure(v: Variant) -> Callable[[], float]:
                def once() -> float:
                    record = run_once(env, v, receiver.port, state / f"{v.pool}.log")
                    v.records.append(record)
                    return record["tasks_per_s"]

                return once

            rates = interleave({v.name: measure(v) for v in variants}, args.repeat)
        finally:
            receiver.close()
            server.stop()

    prefork, gevent, threads = variants
    by_rate = ratios(rates[gevent.name], rates[prefork.name])
    by_threads = ratios(rates[threads.name], rates[prefork.name])

    def mem(v: Variant, key: str) -> list[float]:
        return [r[key] for r in v.records]

    memory_ratio = ratios(mem(gevent, "peak_rss_mib"), mem(prefork, "peak_rss_mib"))
    verdict = "meets" if statistics.median(by_rate) >= TARGET else "misses"
    summary = (
        f"io_bound ({WAIT * 1000:.0f} ms HTTP wait per task, one worker, medians [min..max] of "
        f"{args.repeat}): prefork -c {prefork.concurrency} {spread(rates[prefork.name])}/s, "
        f"peak RSS {spread(mem(prefork, 'peak_rss_mib'))} MiB; gevent -c {gevent.concurrency} "
        f"{spread(rates[gevent.name])}/s, {spread(mem(gevent, 'peak_rss_mib'))} MiB; threads -c "
        f"{threads.concurrency} {spread(rates[threads.name])}/s, "
        f"{spread(mem(threads, 'peak_rss_mib'))} MiB. gevent/prefork tasks/s "
        f"{spread(by_rate, '.1f')}x at {spread(memory_ratio, '.2f')}x the memory "
        f"(threads {spread(by_threads, '.1f')}x): {verdict} the target >= {TARGET:g}x. CPU per "
        f"task: prefork {spread(mem(prefork, 'cpu_ms_per_task'), '.1f')} ms, gevent "
        f"{spread(mem(gevent, 'cpu_ms_per_task'), '.1f')} ms, so one gevent process on one core "
        f"runs at most {1000 / statistics.median(mem(gevent, 'cpu_ms_per_task')):,.0f} tasks/s"
    )
    records = {
        v.name: {
            "pool": v.pool,
            "concurrency": v.concurrency,
            "jobs": v.jobs,
            "runs": v.records,
            **{key: summary_of(mem(v, key)) for key in v.records[0] if key != "seconds"},
        }
        for v in variants
    }
    records["ratios"] = {
        "gevent_over_prefork_tasks_per_s": summary_of(by_rate),
        "threads_over_prefork_tasks_per_s": summary_of(by_threads),
        "gevent_over_prefork_peak_rss": summary_of(memory_ratio),
        "target": TARGET,
    }
    write_result(NAME, summary, records, args)


if __name__ == "__main__":
    main()
    sys.exit(0)
