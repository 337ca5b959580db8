"""Enqueue through the API: `POST /jobs/add` against an endpoint that only LPUSHes and a hello.

    .venv/bin/python -m bench.enqueue [--quick] [--repeat 3] [--duration 5] [--connections 4]
                                      [--database sqlite --database postgresql]

gunicorn runs as the chart runs web (`service/gunicorn_conf.py`, the chart's worker count, sync
workers, access log, JSON logs at INFO, metrics on) on a free loopback port, with a
redis-server of its own, serving `bench.web_app`: the service's app plus `POST /bench/lpush`
(LPUSHes the bytes of a real `jobs.add` message, captured from the broker first) and
`GET /bench/hello`. A second process loads it over loopback: `wrk` when it is on PATH (Debian's
`wrk` package), else a Python load generator, both with `--connections` concurrent clients.

Variants, interleaved in every repetition against the same gunicorn: `add` (`POST /jobs/add`
with an API key), `add_key` (the same with a fresh `Idempotency-Key` per request), `lpush`,
`apply_async` (bare Celery's publish of the same task), `hello`; on SQLite (WAL) and on a
throwaway PostgreSQL. Each gives req/s, p50 and p99; the ratios are taken per repetition. The
target: `add` >= 0.75 of `lpush`.
"""

from __future__ import annotations

import http.client
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask_migrate
import redis
import yaml

from bench import profile
from bench.common import interleave, parser, ratios, spread, summary_of, write_result
from bench.web_app import MESSAGE_ENV
from harness.auth import API_KEY, bearer
from harness.postgres import Postgres, empty_database_url, postgres_bindir
from harness.processes import free_port, stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import BIN, ROOT, spawn, stack_environment, stack_flask_app

NAME = "enqueue"
TARGET = 0.75
BODY = '{"a": 2, "b": 3}'
CHART_VALUES = ROOT / "charts" / "flask-celery" / "values.yaml"


@dataclass(frozen=True)
class Variant:
    method: str
    path: str
    #: send the API key; send a fresh Idempotency-Key with every request
    key: bool = False
    idempotency: bool = False


VARIANTS = {
    "add": Variant("POST", "/jobs/add", key=True),
    "add_key": Variant("POST", "/jobs/add", key=True, idempotency=True),
    "lpush": Variant("POST", "/bench/lpush"),
    "apply_async": Variant("POST", "/bench/apply-async"),
    "hello": Variant("GET", "/bench/hello"),
}


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int


def chart_web() -> dict[str, str]:
    """The chart's web settings that shape gunicorn: workers, timeouts."""
    web = yaml.safe_load(CHART_VALUES.read_text())["web"]
    return {
        "workers": str(web["workers"]),
        "timeout": str(web["timeoutSeconds"]),
        "graceful": str(web["gracefulTimeoutSeconds"]),
    }


# - Load generators ---------------------------------------------------------------------------

WRK_SCRIPT = """
local idempotency = {idempotency}
local n, prefix = 0, "k"
wrk.method = "{method}"
wrk.headers["Content-Type"] = "application/json"
{auth}
{body}
function init(args)
  prefix = args[1] or prefix
end
function request()
  if not idempotency then
    return wrk.format()
  end
  n = n + 1
  local headers = {{["Idempotency-Key"] = prefix .. "-" .. n}}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  return wrk.format(nil, nil, headers)
end
-- the first answer other than 2xx, printed at the end (one wrk thread)
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end
function response(status, headers, body)
  if status >= 300 and not odd then
    odd = status .. " " .. body
  end
end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local first = thread:get("odd")
    if first then
      print("first answer other than 2xx: " .. first)
    end
  end
end
"""

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_script(variant: Variant, folder: Path) -> Path:
    auth = f'wrk.headers["Authorization"] = "Bearer {API_KEY}"' if variant.key else ""
    body = f"wrk.body = '{BODY}'" if variant.method == "POST" else ""
    path = folder / f"{variant.path.strip('/').replace('/', '_')}-{variant.idempotency}.lua"
    path.write_text(
        WRK_SCRIPT.format(
            idempotency=str(variant.idempotency).lower(),
            method=variant.method,
            auth=auth,
            body=body,
        )
    )
    return path


def run_wrk(url: str, variant: Variant, seconds: float, connections: int, folder: Path) -> Run:
    script = wrk_script(variant, folder)
    duration = f"-d{max(1, round(seconds))}s"  # whole seconds only
    cmd = ["wrk", "-t1", f"-c{connections}", duration, "--latency", "-s", str(script),
           url + variant.path, "--", uuid.uuid4().hex]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{variant.path}: answers other than 2xx:\n{out}")
    latency = {
        m[1]: float(m[2]) * _UNITS[m[3]]
        for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return Run(rps, latency["50"], latency["99"], requests)


def run_python(url: str, variant: Variant, seconds: float, connections: int, folder: Path) -> Run:
    """A load generator of `connections` threads, each with one HTTP/1.1 connection at a time
    (gunicorn's sync workers close it after each answer)."""
    host, port = url.removeprefix("http://").split(":")
    headers = {"Content-Type": "application/json", **(bearer() if variant.key else {})}
    body = BODY if variant.method == "POST" else None
    prefix = uuid.uuid4().hex
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            extra = {"Idempotency-Key": f"{prefix}-{i}-{n}"} if variant.idempotency else {}
            started = time.perf_counter()
            try:
                conn.request(variant.method, variant.path, body, {**headers, **extra})
                response = conn.getresponse()
                response.read()
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                continue
            latencies[i].append((time.perf_counter() - started) * 1000)
            if response.status >= 300:
                errors.append(f"{response.status}")
            if response.will_close:
                conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        raise RuntimeError(f"{variant.path}: {len(errors)} answers other than 2xx: {errors[:5]}")
    flat = sorted(x for chunk in latencies for x in chunk)
    return Run(len(flat) / elapsed, _percentile(flat, 50), _percentile(flat, 99), len(flat))


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]


def load_generator() -> tuple[str, Callable[..., Run]]:
    return ("wrk", run_wrk) if shutil.which("wrk") else ("python", run_python)


# - The stack ---------------------------------------------------------------------------------


@contextmanager
def database(kind: str, state: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or one on a throwaway PostgreSQL."""
    if kind == "sqlite":
        yield empty_database_url(None, state)
        return
    server = Postgres(postgres_bindir()).start()
    try:
        yield empty_database_url(server, state)
    finally:
        server.stop()


def production_env(state: Path, broker: RedisServer, database_url: str) -> dict[str, str]:
    """The environment the chart gives web (JSON logs, metrics in a multiprocess directory)."""
    return stack_environment(
        state,
        broker.url(0),
        broker.url(1),
        {
            "PYTHONPATH": str(ROOT),
            "FLASK_SQLALCHEMY_DATABASE_URI": database_url,
            "FLASK_LOG_FORMAT": "json",
            "FLASK_METRICS_ENABLED": "true",
            "FLASK_METRICS_HOSTNAME_LABEL": "bench",
            "PROMETHEUS_MULTIPROC_DIR": str(state / "prometheus"),
            MESSAGE_ENV: str(state / "message.bin"),
        },
    )


def prepare(env: dict[str, str], queue_client: redis.Redis) -> None:
    """Migrate the database, then enqueue one job the real way and keep its message's bytes
    for the LPUSH endpoint."""
    flask_app = stack_flask_app(env)
    with flask_app.app_context():
        flask_migrate.upgrade()
    answer = flask_app.test_client().post("/jobs/add", data=BODY, headers={
        **bearer(), "Content-Type": "application/json"})  # fmt: skip
    if answer.status_code != 202:
        raise RuntimeError(f"POST /jobs/add answered {answer.status_code}: {answer.text}")
    message = queue_client.rpop("default")
    if not isinstance(message, bytes):
        raise RuntimeError("the job's message is not in the `default` list")
    Path(env[MESSAGE_ENV]).write_bytes(message)


@contextmanager
def gunicorn(env: dict[str, str], log: Path) -> Iterator[str]:
    """gunicorn as the chart starts web, serving `bench.web_app`; yields its base URL."""
    web, port = chart_web(), free_port()
    cmd = [str(BIN / "gunicorn"), "--config", "python:service.gunicorn_conf",
           "--bind", f"127.0.0.1:{port}", "--workers", web["workers"],
           "--graceful-timeout", web["graceful"], "--timeout", web["timeout"],
           "--access-logfile", "-", "bench.web_app:app"]  # fmt: skip
    proc = spawn(cmd, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: proc.poll() is None and _get(url, "/readyz") == 200,
            timeout=60,
            what=f"gunicorn /readyz (log: {log})",
        )
        yield url
    finally:
        stop(proc)


def _get(url: str, path: str) -> int:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@contextmanager
def served(kind: str, folder: Path) -> Iterator[tuple[str, redis.Redis]]:
    """A redis-server, a migrated database of `kind` and gunicorn serving `bench.web_app`:
    yields gunicorn's URL and a client of the broker."""
    folder.mkdir()
    with ExitStack() as stack:
        broker = RedisServer(folder / "redis").start()
        stack.callback(broker.stop)
        database_url = stack.enter_context(database(kind, folder))
        env = production_env(folder, broker, database_url)
        queue_client = redis.Redis.from_url(broker.url(0))
        prepare(env, queue_client)
        yield stack.enter_context(gunicorn(env, folder / "gunicorn.log")), queue_client


# - Where the time goes -----------------------------------------------------------------------


def profile_database(kind: str, args: Any, state: Path, generator: Callable[..., Run]) -> str:
    """Sample both gunicorn workers with py-spy while `args.profile_variant` is loaded; the
    share of samples each function is on the stack in (inclusive) and at its top (self)."""
    profile.py_spy()  # exits naming the fix when py-spy is missing
    folder = state / kind
    with served(kind, folder) as (url, _):
        variant = VARIANTS[args.profile_variant]
        run_python(url, variant, args.warmup, args.connections, folder)
        spies = [
            profile.record(pid, args.profile, folder / f"profile-{pid}.txt")
            for pid in gunicorn_workers(folder / "gunicorn.log")
        ]
        time.sleep(0.5)  # py-spy attaches
        run = generator(url, variant, args.profile, args.connections, folder)
        for spy in spies:
            spy.wait()
    head = (
        f"{kind}: {variant.method} {variant.path}"
        f"{' with Idempotency-Key' if variant.idempotency else ''}, {run.rps:,.0f} req/s "
        f"while sampled"
    )
    return head + "\n" + profile.top_frames(sorted(folder.glob("profile-*.txt")), args.profile_top)


def gunicorn_workers(log: Path) -> list[int]:
    """The pids of the master's children (the workers), the master's pid read from its log."""
    master = re.search(r"Listening at: \S+ \((\d+)\)", log.read_text())
    if master is None:
        raise RuntimeError(f"no master pid in {log}")
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[1] == master[1]:
            children.append(int(stat.parent.name))
    return children


def measure_database(
    kind: str, args: Any, state: Path, generator: Callable[..., Run]
) -> dict[str, Any]:
    """Every variant on one database: runs per variant, and the ratios per repetition."""
    folder = state / kind
    runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
    with served(kind, folder) as (url, queue_client):

        def measure(name: str, seconds: float) -> Run:
            run = generator(url, VARIANTS[name], seconds, args.connections, folder)
            queue_client.delete("default")  # the queue's length stays the same for every run
            return run

        for name in VARIANTS:  # every worker connects to Redis and the database first
            run_python(url, VARIANTS[name], args.warmup, args.connections, folder)

        def variant(name: str) -> Callable[[], float]:
            def once() -> float:
                run = measure(name, args.duration)
                runs[name].append(run)
                return run.rps

            return once

        rps = interleave({name: variant(name) for name in VARIANTS}, args.repeat)
    return {
        "variants": {
            name: {
                "rps": rps[name],
                "p50_ms": [r.p50_ms for r in runs[name]],
                "p99_ms": [r.p99_ms for r in runs[name]],
                "requests": [r.requests for r in runs[name]],
                "summary": summary_of(rps[name]),
                "p50_summary": summary_of([r.p50_ms for r in runs[name]]),
                "p99_summary": summary_of([r.p99_ms for r in runs[name]]),
            }
            for name in VARIANTS
        },
        "ratios": {
            "add/lpush": ratios(rps["add"], rps["lpush"]),
            "add_key/lpush": ratios(rps["add_key"], rps["lpush"]),
            "add/hello": ratios(rps["add"], rps["hello"]),
            "apply_async/lpush": ratios(rps["apply_async"], rps["lpush"]),
            "lpush/hello": ratios(rps["lpush"], rps["hello"]),
        },
    }


def summary(records: dict[str, Any], args: Any, generator: str) -> str:
    parts = []
    for kind, record in records["databases"].items():
        v, r = record["variants"], record["ratios"]
        add_lpush = r["add/lpush"]
        verdict = "ok" if add_lpush and statistics.median(add_lpush) >= TARGET else "MISSED"
        parts.append(
            f"{kind}: /jobs/add {spread(v['add']['rps'])}/s "
            f"(p50 {statistics.median(v['add']['p50_ms']):.1f} ms, "
            f"p99 {statistics.median(v['add']['p99_ms']):.1f} ms), "
            f"with Idempotency-Key {spread(v['add_key']['rps'])}/s, "
            f"LPUSH {spread(v['lpush']['rps'])}/s, "
            f"apply_async {spread(v['apply_async']['rps'])}/s, "
            f"hello {spread(v['hello']['rps'])}/s; "
            f"add/lpush {spread(add_lpush, '.2f')} (target >= {TARGET}: {verdict}), "
            f"add_key/lpush {spread(r['add_key/lpush'], '.2f')}, "
            f"add/hello {spread(r['add/hello'], '.2f')}, "
            f"apply_async/lpush {spread(r['apply_async/lpush'], '.2f')}"
        )
    head = (
        f"enqueue via gunicorn -w {chart_web()['workers']} (sync), {generator} "
        f"-c{args.connections}, {args.duration:g} s x {args.repeat}: "
    )
    return head + " | ".join(parts)


def main() -> None:
    p = parser(NAME, __doc__.splitlines()[0], repeat=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of load per run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds per variant, unmeasured")
    p.add_argument("--connections", type=int, default=4, help="concurrent clients")
    p.add_argument("--database", action="append", choices=("sqlite", "postgresql"),
                   help="databases to run on (default: both)")  # fmt: skip
    p.add_argument(
        "--profile",
        type=float,
        metavar="SECONDS",
        help="instead of measuring: sample the gunicorn workers with py-spy for "
        "SECONDS under load and print where the time goes",
    )
    p.add_argument("--profile-variant", choices=VARIANTS, default="add")
    p.add_argument("--profile-top", type=int, default=60, help="rows of the profile")
    args = p.parse_args()
    if args.profile:
        args.database = args.database or ["postgresql"]
        with tempfile.TemporaryDirectory(prefix="bench-enqueue-") as tmp:
            for kind in args.database:
                print(profile_database(kind, args, Path(tmp), load_generator()[1]), flush=True)
        return
    if args.quick:  # a smoke run: each variant once, briefly, on each database
        args.repeat, args.duration, args.warmup = 1, 1.0, 0.2
    args.database = args.database or ["sqlite", "postgresql"]
    generator, run = load_generator()
    records: dict[str, Any] = {
        "generator": generator,
        "connections": args.connections,
        "duration_s": args.duration,
        "gunicorn": chart_web(),
        "target": {"add/lpush": TARGET},
        "databases": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-enqueue-") as tmp:
        for kind in args.database:
            records["databases"][kind] = measure_database(kind, args, Path(tmp), run)
    write_result(NAME, summary(records, args, generator), records, args)


if __name__ == "__main__":
    main()
