"""Every benchmark of bench/ in its quick mode, checked from the result it writes.

`python -m bench.<name> --quick --out <tmp>` must print its one-line summary and write a result
in which every variant was measured: every figure finite, every rate, latency, duration or
memory figure positive, every series of repetitions non-empty, and the ratios the report reads
against the issue's targets present. The benchmarks are found as `make bench` finds them
(`bench.report.benchmarks`), so a new one is covered without a change here; they are shared
out over a few test files, which `make test` runs on different pytest workers.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.report import ROOT, benchmarks, build, target_rows

#: Test files sharing the benchmarks out (test_bench_quick*.py): benchmark i goes to file i % N.
SHARDS = 3
#: Figures that cannot be zero when something was measured.
POSITIVE = re.compile(r"(rate|per_s|rps|_ms\b|_ms_|latency|p50|p99|seconds|rss|pss|bytes|series)")


def shard(index: int) -> list[str]:
    return benchmarks()[index::SHARDS]


def numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a JSON value, with the path of keys that leads to it."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield path, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numbers(item, f"{path}[{i}]")


def empty_lists(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from empty_lists(item, f"{path}/{key}")
    elif isinstance(value, list):
        if not value:
            yield path
        for i, item in enumerate(value):
            yield from empty_lists(item, f"{path}[{i}]")


def check_quick_run(name: str, out: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, f"bench.{name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    result = json.loads((out / f"{name}.json").read_text())
    assert result["name"] == name and result["quick"] is True
    assert result["summary"] and "\n" not in result["summary"]
    assert result["summary"] in run.stdout, "the summary line was not printed"
    assert result["machine"]["versions"], result["machine"]
    records = result["records"]
    figures = list(numbers(records))
    assert figures, f"bench.{name} recorded no figure"
    broken = [(p, v) for p, v in figures if not math.isfinite(v)]
    assert not broken, f"not finite: {broken[:10]}"
    zero = [(p, v) for p, v in figures if POSITIVE.search(p.rsplit("/", 1)[-1]) and v <= 0]
    assert not zero, f"rates, latencies, durations or sizes not positive: {zero[:10]}"
    missing = list(empty_lists(records))
    assert not missing, f"variants with no measurement: {missing[:10]}"
    # the report reads this benchmark's ratios against its targets, and shows its line
    for row in target_rows({name: result}):
        if row["target"].bench == name:
            assert row["measured"] is not None, f"{row['target'].what}: {row['note']}"
    document = build(out, out / "BENCHMARKS.md")
    assert f"### {name}" in document and result["summary"] in document
