"""What every benchmark shares: repeated interleaved variants, `median [min..max]`, the result file.

Each benchmark is `python -m bench.<name> [--quick] [--repeat N]`: it prints one summary line
and writes `bench/results/<name>.json` (`write_result`), which `BENCHMARKS.md` is built from.
`--quick` runs each variant once on a tiny N, to prove the benchmark still works (`make test`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.postgres import Postgres, empty_database_url, postgres_bindir
from harness.processes import free_port
from harness.redis_server import RedisServer
from harness.stack import ROOT, migrate, stack_environment

RESULTS = Path(__file__).resolve().parent / "results"
VERSIONS = ("celery", "kombu", "redis", "flask", "gunicorn", "sqlalchemy")


def parser(name: str, description: str, repeat: int = 5) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: --quick, --repeat, --out."""
    p = argparse.ArgumentParser(f"python -m bench.{name}", description=description)
    p.add_argument("--quick", action="store_true", help="each variant once, tiny N (a smoke run)")
    p.add_argument("--repeat", type=int, default=repeat, help="interleaved repetitions")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for <name>.json")
    return p


def interleave(variants: Mapping[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Run every variant once per repetition, in turn, so drift hits them all alike."""
    values: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, measure in variants.items():
            values[name].append(measure())
    return values


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-repetition ratios (the repetitions were interleaved, so each pair shares conditions)."""
    return [a / b for a, b in zip(numerator, denominator, strict=True) if b]


def spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    """`median [min..max]` of `values`."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}..{max(values):{fmt}}]"


def summary_of(values: Sequence[float]) -> dict[str, float]:
    """median, min and max, for the JSON record."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def machine() -> dict[str, Any]:
    """Where the figures were taken: CPU count, Python, the packages that matter."""
    versions = {}
    for package in VERSIONS:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def write_result(
    name: str, summary: str, records: Any, args: argparse.Namespace, command: str = ""
) -> Path:
    """Print the one-line summary and write `<out>/<name>.json`."""
    print(summary, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.json"
    document = {
        "name": name,
        "command": command or f"python -m bench.{name}",
        "quick": bool(args.quick),
        "repeat": args.repeat,
        "summary": summary,
        "taken": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(),
        "records": records,
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


@dataclass
class LocalStack:
    """A benchmark's own redis-server and migrated SQLite database under `state`."""

    state: Path
    redis: RedisServer
    env: dict[str, str]


@contextmanager
def local_stack(
    extra: dict[str, str] | None = None, postgres: bool = False
) -> Iterator[LocalStack]:
    """A fresh redis-server on a free port and a migrated database, SQLite in a temporary
    folder or (`postgres`) a throwaway PostgreSQL server as the chart runs; `env` is what
    every process of the stack gets (`bench` importable)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as servers:
        # the app's logging setup turns on httpx's per-request INFO lines: not a benchmark's
        logging.getLogger("httpx").setLevel(logging.WARNING)
        state = Path(tmp)
        server = RedisServer(state / "redis").start()
        servers.callback(server.stop)
        settings = {"PYTHONPATH": str(ROOT), **(extra or {})}
        if postgres:
            database = Postgres(postgres_bindir()).start()
            servers.callback(database.stop)
            settings["FLASK_SQLALCHEMY_DATABASE_URI"] = empty_database_url(database, state)
        env = stack_environment(state, server.url(0), server.url(1), settings)
        migrate(env)
        yield LocalStack(state, server, env)


def metrics_env(directory: Path) -> dict[str, str]:
    """Environment of a worker that counts into `directory` and serves `/metrics` on a free
    loopback port (FLASK_WORKER_METRICS_PORT)."""
    return {
        "FLASK_METRICS_ENABLED": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "FLASK_WORKER_METRICS_PORT": str(free_port()),
        "FLASK_METRICS_ADDRESS": "127.0.0.1",
    }
