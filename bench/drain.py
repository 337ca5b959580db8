"""Drain throughput: N pre-enqueued no-op tasks, one worker, two pool processes, at INFO.

    python -m bench.drain [--tasks 2000] [--repeat 3] [--only NAME,...] [--quick] [--out DIR]
    python -m bench.drain --profile SECONDS [--only NAME]

Starts its own redis-server, SQLite database and, for the PostgreSQL variants, PostgreSQL.
Every variant drains the same N messages: they are enqueued first and set aside, the worker is
started and ready, the messages are put back in its queue at once (RENAME), and the rate is N
over the time from the first message taken to the last acknowledged. Variants, interleaved over
the repetitions:

- `bare`: a plain `Celery()` app (`bench.bare_celery`), the project's delivery settings, INFO;
- `project`: the project's worker as it ships (`bench.project_worker`), JSON logs at INFO,
  metrics served, a `job_task` with an idempotency key (one ledger row per task), on SQLite;
- `project, PostgreSQL` and `project -ledger, PostgreSQL`: the same on a PostgreSQL server of
  the benchmark's own (fsync on, as the chart's), the database production runs on;
- `project -X`: the same with one piece switched off (`-ledger`: a `job_task` without a key;
  `-app context`: a plain Celery task on the project's worker; `-INFO logs`: WARNING;
  `-metrics`, `-inflight`, `-heartbeat`, `-job rows`) or, for task events, switched the other way
  from the shipped default (`+events` or `-events`); `project floor`: all of them off;
- `rq`, `dramatiq`, `huey` (`bench.bare_rq`, `bench.bare_peers`): the same workload, their
  defaults;
- `redis LPUSH+RPOP`: what `redis-benchmark` gets from the same server (one LPUSH and one RPOP
  per task, 2 clients): the ceiling of any Redis list queue.

The summary line gives every rate and its ratio to `bare` (per repetition, median [min..max]);
the target is project >= 0.95 of bare.

`--profile SECONDS` measures nothing: it drains a long workload through one variant (`project`
unless `--only` names another) while py-spy samples the worker's main process and its pool
processes, and prints where each spends its time.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import flask_migrate
import redis
import sqlalchemy as sa
from celery import Celery

from bench import profile
from bench.common import interleave, parser, ratios, spread, summary_of, write_result
from harness.postgres import Postgres, empty_database_url, postgres_bindir
from harness.processes import free_port, stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import BIN, ROOT, spawn, stack_environment, stack_flask_app
from service.data.db import db
from service.data.models import LedgerEntry

NAME = "drain"
TARGET = 0.95
CONCURRENCY = 2
#: The name of redis-benchmark's figure.
CEILING = "redis LPUSH+RPOP"
#: Where the enqueued messages wait while a worker starts (database 15 of the same server).
TEMPLATE_DB = 15


@dataclass
class Variant:
    """One way to drain the workload: how to enqueue it, start the worker, and see it done."""

    name: str
    #: "celery" (bare or the project), or a peer: "rq", "dramatiq", "huey".
    kind: str
    task: str = "bench.ledgered"
    env: dict[str, str] = field(default_factory=dict)
    off: tuple[str, ...] = ()
    loglevel: str = "INFO"
    bare: bool = False
    #: "sqlite" or "postgresql": the database the project's worker writes its rows to.
    database: str = "sqlite"


def variants(events_default: bool) -> list[Variant]:
    """Every variant of the full run, `bare` first."""
    events = "-events" if events_default else "+events"
    flip = {"FLASK_CELERY__WORKER_SEND_TASK_EVENTS": str(not events_default).lower()}
    return [
        Variant("bare", "celery", task="bench.noop", bare=True),
        Variant("project", "celery"),
        Variant("project, PostgreSQL", "celery", database="postgresql"),
        Variant("project -ledger", "celery", task="bench.noop"),
        Variant("project -ledger, PostgreSQL", "celery", task="bench.noop", database="postgresql"),
        Variant("project -app context", "celery", task="bench.plain"),
        Variant("project -INFO logs", "celery", loglevel="WARNING"),
        Variant("project -metrics", "celery", env={"FLASK_METRICS_ENABLED": "false"}),
        Variant(f"project {events}", "celery", env=flip),
        Variant("project -inflight", "celery", off=("inflight",)),
        Variant("project -heartbeat", "celery", off=("heartbeat",)),
        Variant("project -job rows", "celery", off=("job_rows",)),
        Variant(
            "project floor",
            "celery",
            task="bench.plain",
            loglevel="WARNING",
            env={
                "FLASK_METRICS_ENABLED": "false",
                "FLASK_CELERY__WORKER_SEND_TASK_EVENTS": "false",
            },
            off=("inflight", "heartbeat", "job_rows"),
        ),
        Variant("rq", "rq"),
        Variant("dramatiq", "dramatiq"),
        Variant("huey", "huey"),
    ]


#: The queue's key and how to tell the workload is done, per kind.
QUEUE_KEYS = {
    "celery": "default",
    "rq": "rq:queue:default",
    "dramatiq": "dramatiq:default",
    "huey": "huey.redis.bench",
}


class Bench:
    """One redis-server, one SQLite database (and a PostgreSQL one, started when a variant first
    asks), and the enqueued workloads, for every variant."""

    def __init__(self, state: Path, tasks: int) -> None:
        self.state, self.tasks = state, tasks
        self.postgres: Postgres | None = None
        self.server = RedisServer(state / "redis").start()
        self.url = self.server.url(0)
        self.client = redis.Redis.from_url(self.url)
        self.env = stack_environment(
            state,
            self.url,
            self.server.url(1),
            {
                "PYTHONPATH": str(ROOT),
                "BENCH_BROKER_URL": self.url,
                "FLASK_LOG_FORMAT": "json",
                "FLASK_METRICS_ADDRESS": "127.0.0.1",
            },
        )
        self.app = stack_flask_app(self.env)
        logging.getLogger().setLevel(logging.WARNING)  # this process' own lines (migrations)
        with self.app.app_context():
            flask_migrate.upgrade()
        #: The environment (and app) per database; PostgreSQL's is added on first use.
        self.envs, self.apps = {"sqlite": self.env}, {"sqlite": self.app}
        self.runs = 0
        #: Per variant and run: CPU milliseconds per task of the worker's main process and of
        #: its children, a figure that other load on the machine disturbs less than the rate.
        self.cpu: dict[str, list[tuple[float, float]]] = {}

    def close(self) -> None:
        self.server.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def environment(self, database: str) -> dict[str, str]:
        """The workers' environment on `database`, its server started and migrated first."""
        if database not in self.envs:
            self.postgres = Postgres(postgres_bindir()).start()
            url = empty_database_url(self.postgres, self.state)
            self.envs[database] = {**self.env, "FLASK_SQLALCHEMY_DATABASE_URI": url}
            self.apps[database] = stack_flask_app(self.envs[database])
            with self.apps[database].app_context():
                flask_migrate.upgrade()
        return self.envs[database]

    # - the workload, enqueued once per kind of message ---------------------------------------

    def template(self, variant: Variant) -> str:
        """The key in TEMPLATE_DB holding the variant's N messages, made on first use."""
        key = f"template:{variant.kind}:{'bare' if variant.bare else 'project'}:{variant.task}"
        templates = redis.Redis.from_url(self.server.url(TEMPLATE_DB))
        if not templates.exists(key):
            self.client.flushdb()
            self.enqueue(variant)
            self.client.copy(QUEUE_KEYS[variant.kind], key, destination_db=TEMPLATE_DB)
        return key

    def enqueue(self, variant: Variant) -> None:
        n = self.tasks
        if variant.kind == "celery":
            app = Celery(broker=self.url) if variant.bare else self.app.extensions["celery"]
            with app.producer_or_acquire() as producer:
                for i in range(n):
                    app.send_task(variant.task, args=(i,), queue="default", producer=producer)
        elif variant.kind == "rq":
            from rq import Queue

            queue = Queue("default", connection=self.client)
            jobs = [Queue.prepare_data("bench.bare_rq.noop", (i,)) for i in range(n)]
            for start in range(0, n, 500):
                queue.enqueue_many(jobs[start : start + 500])
        else:
            # the peers' own enqueue; the module reads the URL when it is imported
            os.environ["BENCH_BROKER_URL"] = self.url
            from bench import bare_peers

            task: Any = (
                bare_peers.dramatiq_noop if variant.kind == "dramatiq" else bare_peers.huey_noop
            )
            for i in range(n):
                task.send(i) if variant.kind == "dramatiq" else task(i)

    # - one run -------------------------------------------------------------------------------

    def run(self, variant: Variant) -> float:
        """Tasks per second for one drain of `variant`."""
        self.runs += 1
        queue, staged = QUEUE_KEYS[variant.kind], f"staged:{QUEUE_KEYS[variant.kind]}"
        if variant.kind == "celery":
            template = self.template(variant)
            self.reset()
            templates = redis.Redis.from_url(self.server.url(TEMPLATE_DB))
            templates.copy(template, staged, destination_db=0)
        else:
            # the peers keep each message's body under a key of its own: enqueue afresh
            self.reset()
            self.enqueue(variant)
            self.client.rename(queue, staged)
        log = self.state / f"run-{self.runs}-{re.sub(r'[^a-z]+', '-', variant.name)}.log"
        proc = self.start(variant, log)
        try:
            cpu_before = tree_cpu(proc.pid)
            self.client.rename(staged, queue)
            started = self.first_taken(queue, proc, log)
            wait_until(
                lambda: self.done(variant.kind, queue),
                timeout=600,
                interval=0.005,
                what=f"{variant.name} drained (log: {log})",
            )
            elapsed = time.monotonic() - started
            cpu_after = tree_cpu(proc.pid)
        finally:
            stop(proc)
        main, children = (
            1000 * (a - b) / self.tasks for a, b in zip(cpu_after, cpu_before, strict=True)
        )
        self.cpu.setdefault(variant.name, []).append((main, children))
        if proc.returncode not in (0, -15, 143) and variant.kind == "celery":
            raise RuntimeError(f"{variant.name}: worker exited {proc.returncode} (log: {log})")
        return self.tasks / elapsed

    def profile(self, variant: Variant, seconds: float, top: int) -> str:
        """Where `variant`'s worker spends its time while draining: py-spy tables for its main
        process and for its pool processes."""
        queue, staged = QUEUE_KEYS[variant.kind], f"staged:{QUEUE_KEYS[variant.kind]}"
        template = self.template(variant)
        self.reset()
        redis.Redis.from_url(self.server.url(TEMPLATE_DB)).copy(template, staged, destination_db=0)
        proc = self.start(variant, self.state / "profile.log")
        roles = {"main process": [proc.pid], "pool processes": _descendants(proc.pid)}
        try:
            spies = {
                pid: profile.record(pid, seconds, self.state / f"profile-{pid}.txt")
                for pids in roles.values()
                for pid in pids
            }
            time.sleep(0.5)  # py-spy attaches
            self.client.rename(staged, queue)
            for spy in spies.values():
                spy.wait()
            left = self.client.llen(queue)
        finally:
            stop(proc)
        if not left:
            print(f"the workload ran out before {seconds:g} s: raise --tasks", flush=True)
        tables = [
            f"{variant.name}, {role}:\n"
            + profile.top_frames([self.state / f"profile-{pid}.txt" for pid in pids], top)
            for role, pids in roles.items()
        ]
        return "\n\n".join(tables)

    def reset(self) -> None:
        self.client.flushdb()
        for app in self.apps.values():
            with app.app_context():
                db.session.execute(sa.delete(LedgerEntry))
                db.session.commit()
                db.session.remove()

    def first_taken(self, queue: str, proc: subprocess.Popen[bytes], log: Path) -> float:
        """The moment the worker took its first message from the queue."""
        deadline = time.monotonic() + 60
        while self.client.llen(queue) >= self.tasks:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker took nothing (log: {log})")
            time.sleep(0.001)
        return time.monotonic()

    def done(self, kind: str, queue: str) -> bool:
        if self.client.llen(queue):
            return False
        if kind == "celery":
            return not self.client.hlen("unacked")
        if kind == "rq":
            return not self.client.zcard("rq:wip:default")
        if kind == "dramatiq":
            return not self.client.hlen("dramatiq:default.msgs")
        return True  # huey takes a task off its list as it starts it: the last two are running

    def start(self, variant: Variant, log: Path) -> subprocess.Popen[bytes]:
        if variant.kind == "celery":
            return self.start_celery(variant, log)
        commands = {
            "rq": [str(BIN / "rq"), "worker-pool", "-u", self.url, "-n", str(CONCURRENCY),
                   "default"],
            "dramatiq": [str(BIN / "dramatiq"), "bench.bare_peers", "--processes",
                         str(CONCURRENCY), "--threads", "1", "--queues", "default"],
            "huey": [str(BIN / "huey_consumer"), "bench.bare_peers.huey", "--workers",
                     str(CONCURRENCY), "--worker-type", "process"],
        }  # fmt: skip
        ready = {
            "rq": "Listening on",
            "dramatiq": "Worker process is ready",
            "huey": "consumer started",
        }
        proc = spawn(commands[variant.kind], self.env, log)
        wait_until(
            lambda: alive(proc, log) and ready[variant.kind] in log.read_text(errors="replace"),
            timeout=60,
            interval=0.02,
            what=f"{variant.name} ready (log: {log})",
        )
        return proc

    def start_celery(self, variant: Variant, log: Path) -> subprocess.Popen[bytes]:
        node = f"bench-{uuid4().hex[:8]}@localhost"
        env = {**self.environment(variant.database), **variant.env}
        if variant.bare:
            module = "bench.bare_celery"
        else:
            module = "bench.project_worker"
            env["BENCH_OFF"] = ",".join(variant.off)
            if env.get("FLASK_METRICS_ENABLED", "true") == "true":
                metrics_dir = self.state / f"prometheus-{self.runs}"
                metrics_dir.mkdir()
                env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
                env["FLASK_WORKER_METRICS_PORT"] = str(free_port())
        cmd = [str(BIN / "celery"), "-A", module, "worker", "--queues", "default",
               "--hostname", node, "--pool", "prefork", "--concurrency", str(CONCURRENCY),
               "--loglevel", variant.loglevel, "--without-mingle", "--without-gossip"]  # fmt: skip
        proc = spawn(cmd, env, log)
        control = Celery(broker=self.url)
        wait_until(
            lambda: alive(proc, log) and control.control.ping(destination=[node], timeout=0.5),
            timeout=60,
            what=f"{variant.name} worker (log: {log})",
        )
        return proc

    # - the ceiling ---------------------------------------------------------------------------

    def redis_ceiling(self) -> float:
        """Tasks per second if a task cost one LPUSH and one RPOP (redis-benchmark, 2 clients)."""
        exe = shutil.which("redis-benchmark")
        if exe is None:
            return 0.0
        requests = max(2_000, self.tasks * 10)
        out = subprocess.run(
            [exe, "-p", str(self.server.port), "-c", str(CONCURRENCY), "-n", str(requests),
             "-t", "lpush,rpop", "--csv"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        rates = {
            row[0].strip('"').split()[0]: float(row[1].strip('"'))
            for row in (line.split(",") for line in out.splitlines()[1:])
            if len(row) > 1
        }
        lpush, rpop = rates.get("LPUSH", 0.0), rates.get("RPOP", 0.0)
        return 1 / (1 / lpush + 1 / rpop) if lpush and rpop else 0.0


def alive(proc: subprocess.Popen[bytes], log: Path) -> bool:
    """True while `proc` runs; raises, with its log's tail, once it has exited."""
    if proc.poll() is None:
        return True
    tail = log.read_text(errors="replace")[-2000:]
    raise SystemExit(f"worker exited {proc.returncode} at start:\n{tail}")


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds used so far by process `pid` itself, and by its descendants (live ones, and
    those it has reaped)."""
    own, reaped = _stat_cpu(pid)
    descendants = sum(sum(_stat_cpu(child)) for child in _descendants(pid))
    return own, reaped + descendants


def _stat_cpu(pid: int) -> tuple[float, float]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime) / _TICK, (cutime + cstime) / _TICK


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = [int(c) for c in path.read_text().split()]
        except FileNotFoundError:
            continue
        for child in children:
            out += [child, *_descendants(child)]
    return out


QUICK = ("bare", "project", "project, PostgreSQL")


def main() -> None:
    p = parser(NAME, __doc__ or "", repeat=3)
    p.add_argument("--tasks", type=int, default=2000, help="messages per drain")
    p.add_argument("--only", default="", help="comma-separated variant names (bare always runs)")
    p.add_argument(
        "--profile",
        type=float,
        metavar="SECONDS",
        help="instead of measuring: sample one variant's worker with py-spy",
    )
    p.add_argument("--profile-top", type=int, default=40, help="rows of each profile table")
    args = p.parse_args()
    if args.profile:
        profile_variant(args)
        return
    if args.quick:
        args.tasks, args.repeat = min(args.tasks, 200), 1
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        bench = Bench(Path(tmp), args.tasks)
        try:
            events_default = bool(bench.app.extensions["celery"].conf.worker_send_task_events)
            chosen = variants(events_default)
            names = set(QUICK) if args.quick else set(filter(None, args.only.split(",")))
            if names:
                chosen = [v for v in chosen if v.bare or v.name in names]
            measures: dict[str, Callable[[], float]] = {
                v.name: (lambda v=v: bench.run(v)) for v in chosen
            }
            measures[CEILING] = bench.redis_ceiling
            values = interleave(measures, args.repeat)
        finally:
            bench.close()
    write_result(NAME, summary(values, bench.cpu, args), records(values, bench.cpu), args)


def _rank(order: list[str], name: str) -> int:
    if name in order:
        return order.index(name)
    # a flipped events variant: `+events` or `-events`, whichever the default makes it
    return order.index("project +events") if name.endswith("events") else len(order)


def profile_variant(args: Any) -> None:
    """`--profile`: print where one variant's worker spends its time."""
    profile.py_spy()  # exits naming the fix when py-spy is missing
    name = args.only or "project"
    chosen = [v for v in variants(events_default=False) if v.name == name]
    if not chosen:
        raise SystemExit(f"--profile: no variant named {name!r}")
    # enough messages for the whole sampling at ~1,000 tasks/s
    tasks = max(args.tasks, int(1_000 * args.profile))
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        bench = Bench(Path(tmp), tasks)
        try:
            print(bench.profile(chosen[0], args.profile, args.profile_top), flush=True)
        finally:
            bench.close()


def records(
    values: dict[str, list[float]], cpu: dict[str, list[tuple[float, float]]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rates in values.items():
        ratio = ratios(rates, values["bare"])
        out[name] = {
            "tasks_per_second": rates,
            "summary": summary_of(rates),
            "ratio_to_bare": ratio,
            "ratio_summary": summary_of(ratio) if ratio else None,
        }
        if name in cpu:
            main = [m for m, _ in cpu[name]]
            children = [c for _, c in cpu[name]]
            out[name]["cpu_ms_per_task"] = {
                "main": main,
                "children": children,
                "main_summary": summary_of(main),
                "children_summary": summary_of(children),
            }
            if "bare" in cpu:
                out[name]["cpu_ratio_bare_to_this"] = cpu_ratios(cpu[name], cpu["bare"])
    out["target"] = {"project_to_bare": TARGET}
    out["table"] = table_of(out)
    return out


def table_of(records: dict[str, Any]) -> dict[str, Any]:
    """Every variant's rate, ratio to bare and CPU per task, for BENCHMARKS.md."""

    def fmt(summary: dict[str, float] | None, spec: str) -> str:
        if not summary:
            return ""
        return f"{summary['median']:{spec}} [{summary['min']:{spec}}..{summary['max']:{spec}}]"

    order = [v.name for v in variants(events_default=False)] + [CEILING]
    rows = []
    for name, record in sorted(records.items(), key=lambda item: _rank(order, item[0])):
        if not isinstance(record, dict) or "tasks_per_second" not in record:
            continue
        cpu = record.get("cpu_ms_per_task") or {}
        rows.append([
            "bare Celery" if name == "bare" else name,
            fmt(record["summary"], ",.0f"),
            fmt(record["ratio_summary"], ".2f") if name != "bare" else "1",
            fmt(cpu.get("main_summary"), ".2f"),
            fmt(cpu.get("children_summary"), ".2f"),
        ])  # fmt: skip
    columns = ["variant", "tasks/s", "of bare", "CPU ms/task, main process", "pool processes"]
    return {"columns": columns, "rows": rows}


def cpu_ratios(cpu: list[tuple[float, float]], bare: list[tuple[float, float]]) -> list[float]:
    """Per repetition, bare's CPU per task over this variant's (main process and children):
    the throughput ratio on a machine with a core per process."""
    return ratios([sum(b) for b in bare], [sum(c) for c in cpu])


def summary(
    values: dict[str, list[float]], cpu: dict[str, list[tuple[float, float]]], args: Any
) -> str:
    parts = []
    for name, rates in values.items():
        ratio = "" if name == "bare" else f" ({spread(ratios(rates, values['bare']), '.2f')}x)"
        used = ""
        if name in cpu:
            main = statistics.median(m for m, _ in cpu[name])
            children = statistics.median(c for _, c in cpu[name])
            used = f" [CPU/task: main {main:.2f} ms, children {children:.2f} ms"
            if name != "bare" and "bare" in cpu:
                used += f", bare/this {spread(cpu_ratios(cpu[name], cpu['bare']), '.2f')}"
            used += "]"
        label = "bare Celery" if name == "bare" else name
        parts.append(f"{label} {spread(rates)}/s{ratio}{used}")
    project = ratios(values["project"], values["bare"]) if "project" in values else []
    met = "n/a" if not project else "met" if statistics.median(project) >= TARGET else "not met"
    return (
        f"drain, {args.tasks} no-op tasks, prefork -c {CONCURRENCY}, INFO, {args.repeat} "
        f"interleaved repetitions: " + "; ".join(parts) + f"; target project >= {TARGET:.2f}x "
        f"bare: {met}"
    )


if __name__ == "__main__":
    main()
