"""BENCHMARKS.md from bench/results/*.json: commands, machine, every summary line, the targets.

    .venv/bin/python -m bench.report [--run] [--list] [--results bench/results]

`--run` first runs every benchmark (`python -m bench.<name>`, each module of bench/ that writes
a result: see `benchmarks`) one after the other and records how long each took; `--list` only
prints their names. The generated blocks of BENCHMARKS.md (between `<!-- NAME:start -->` and
`<!-- NAME:end -->`) are rewritten, everything outside them (the analysis) is kept; so is the
README's `bench-peers` block, the figures of "When is this overkill?".
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, summary_of

BENCH = Path(__file__).resolve().parent
DOCUMENT = ROOT / "BENCHMARKS.md"
README = ROOT / "README.md"
#: The drain variants the README compares: bare Celery, the project, its peers, Redis itself.
PEERS = {
    "bare": "bare Celery",
    "project": "this project, everything on (SQLite)",
    "project, PostgreSQL": "this project, everything on (PostgreSQL)",
    "project floor": "this project, every optional piece off",
    "rq": "RQ",
    "dramatiq": "Dramatiq",
    "huey": "Huey",
    "redis LPUSH+RPOP": "Redis LPUSH + RPOP (redis-benchmark)",
}
#: The order `make bench` runs them in; benchmarks not named here follow, by name.
ORDER = ("drain", "pickup", "enqueue", "metrics_scale", "memory", "io_bound", "scaling")
#: Not a benchmark of its own: the shared pieces and this report.
NOT_BENCHMARKS = {"common", "report"}
#: Where `--run` records each benchmark's duration and exit status.
RUN_RECORD = "run"


def benchmarks() -> list[str]:
    """Every module of bench/ that writes a result (`write_result`), in `ORDER` first."""
    found = {
        path.stem
        for path in BENCH.glob("*.py")
        if path.stem not in NOT_BENCHMARKS and "write_result(" in path.read_text()
    }
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


# - Targets: the ratios, read from each benchmark's records ---------------------------


@dataclass(frozen=True)
class Target:
    bench: str
    what: str
    goal: float
    at_least: bool  # True: the ratio must be >= goal; False: <= goal
    read: Callable[[dict[str, Any]], Any]  # records -> a list of ratios or a {median,min,max}


def _path(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def read(records: dict[str, Any]) -> Any:
        value: Any = records
        for key in keys:
            value = value[key]
        return value

    return read


def _any_ratio(*words: str) -> Callable[[dict[str, Any]], Any]:
    """The first entry of `records["ratios"]` whose name has every word."""

    def read(records: dict[str, Any]) -> Any:
        for name, value in records["ratios"].items():
            if all(w in name for w in words):
                return value
        raise KeyError("+".join(words))

    return read


TARGETS = (
    Target("drain", "drain, everything on at INFO / bare Celery at INFO", 0.95, True,
           _path("project", "ratio_to_bare")),
    Target("enqueue", "POST /jobs/add (no Idempotency-Key) / LPUSH-only endpoint, SQLite", 0.75,
           True, _path("databases", "sqlite", "ratios", "add/lpush")),
    Target("enqueue", "POST /jobs/add (no Idempotency-Key) / LPUSH-only endpoint, PostgreSQL",
           0.75, True, _path("databases", "postgresql", "ratios", "add/lpush")),
    Target("metrics_scale", "/metrics scrape after the history / fresh worker", 1.2, False,
           _path("ratios", "history_over_fresh")),
    Target("pickup", "pickup p50, project / bare", 1.1, False, _any_ratio("p50")),
    Target("io_bound", "IO-bound tasks/s per pod, threads / prefork", 10, True,
           _path("ratios", "threads_over_prefork_tasks_per_s")),
    Target("io_bound", "IO-bound tasks/s per pod, gevent / prefork", 10, True,
           _path("ratios", "gevent_over_prefork_tasks_per_s")),
)  # fmt: skip


def as_summary(value: Any) -> dict[str, float]:
    """{median, min, max} of a list of ratios, or the summary itself."""
    if isinstance(value, dict):
        return {k: float(value[k]) for k in ("median", "min", "max")}
    values = [float(v) for v in value]
    if not values:
        raise ValueError("no ratio measured")
    return summary_of(values)


def target_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target: the measured ratio (median [min..max]) and whether it is met."""
    rows = []
    for t in TARGETS:
        row: dict[str, Any] = {"target": t, "measured": None, "met": None, "note": ""}
        result = results.get(t.bench)
        if result is None:
            row["note"] = f"no bench/results/{t.bench}.json"
        else:
            try:
                row["measured"] = as_summary(t.read(result["records"]))
            except (KeyError, TypeError, ValueError) as exc:
                row["note"] = f"not in {t.bench}.json ({exc!r})"
            else:
                median = row["measured"]["median"]
                row["met"] = median >= t.goal if t.at_least else median <= t.goal
            if result.get("quick"):
                row["note"] = "quick run: not a measurement"
        rows.append(row)
    return rows


# - The document ------------------------------------------------------------------------------


def load_results(folder: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        document = json.loads(path.read_text())
        out[document.get("name", path.stem)] = document
    return out


def header_block(results: dict[str, dict[str, Any]], run: dict[str, Any] | None) -> str:
    if not results:
        return "No results yet: run `make bench`."
    machines = {json.dumps(r["machine"], sort_keys=True) for r in results.values()}
    first = next(iter(results.values()))["machine"]
    taken = sorted(r["taken"] for r in results.values())
    lines = [
        f"Taken {taken[0]} .. {taken[-1]} on {first['cpus']} CPUs, {first['platform']}, "
        f"Python {first['python']}.",
        "",
        "| Package | Version |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(first["versions"].items())),
    ]
    if len(machines) > 1:
        lines += ["", "Some results were taken with other versions or on another machine: "
                  "see each result's JSON."]  # fmt: skip
    lines += ["", "Each benchmark on its own, from the repository's root:", "", "```"]
    lines += [f".venv/bin/{r['command']}" for r in ordered(results)]
    lines += ["```"]
    if run:
        total = sum(b["seconds"] for b in run["benchmarks"].values())
        failed = [n for n, b in run["benchmarks"].items() if b["exit"] != 0]
        lines += [
            "",
            f"`make bench` ran them all in {total / 60:.1f} min"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + ": "
            + ", ".join(f"{n} {b['seconds']:.0f} s" for n, b in run["benchmarks"].items())
            + ".",
        ]
    return "\n".join(lines)


def ordered(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rank = {name: i for i, name in enumerate(ORDER)}
    return [results[n] for n in sorted(results, key=lambda n: (rank.get(n, len(ORDER)), n))]


def targets_block(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "Ratios are taken per repetition between variants measured in turn in the same run: "
        "median [min..max].",
        "",
        "| Target | Goal | Measured | Met |",
        "|---|---|---|---|",
    ]
    for row in target_rows(results):
        t, m = row["target"], row["measured"]
        goal = f"{'>=' if t.at_least else '<='} {t.goal:g}x"
        measured = (
            f"{m['median']:.2f}x [{m['min']:.2f}..{m['max']:.2f}]" if m is not None else "n/a"
        )
        met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        note = f" ({row['note']})" if row["note"] else ""
        lines.append(f"| {t.what} | {goal} | {measured} | {met}{note} |")
    return "\n".join(lines)


def results_block(results: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for r in ordered(results):
        quick = " (quick run: a smoke test, not a measurement)" if r.get("quick") else ""
        lines += [f"### {r['name']}", "", f"`{r['command']}`, {r['taken']}{quick}", ""]
        lines += [f"> {r['summary']}", ""]
        table = r["records"].get("table") if isinstance(r.get("records"), dict) else None
        if table:
            lines += [
                "| " + " | ".join(table["columns"]) + " |",
                "|" + "---|" * len(table["columns"]),
                *("| " + " | ".join(str(c) for c in row) + " |" for row in table["rows"]),
                "",
            ]
        for plot in plots_of(r):
            lines += [f"![{r['name']}]({plot})", ""]
    return "\n".join(lines).rstrip()


def plots_of(result: dict[str, Any]) -> list[str]:
    """The pictures a result names (`plot` in its records), relative to the repository."""
    found = []
    records = result.get("records")
    if isinstance(records, dict) and isinstance(records.get("plot"), str):
        path = Path(records["plot"])
        if path.is_absolute() and path.is_relative_to(ROOT) and path.exists():
            found.append(str(path.relative_to(ROOT)))
    return found


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with the generated block `name` holding `body` (appended when missing)."""
    begin, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + f"\n\n{block}\n"


SKELETON = """# Benchmarks

What the project's safety and visibility cost against bare Celery, its peers and Redis itself,
measured by `make bench` (bench/). Everything between `:start` and `:end` markers is rewritten
by `python -m bench.report` from bench/results/*.json; the analysis below is written by hand.

## Machine, versions and commands

<!-- header:start -->
<!-- header:end -->

## Targets

<!-- targets:start -->
<!-- targets:end -->

## Results

<!-- results:start -->
<!-- results:end -->

## Analysis

(Written by hand: where the time goes, what was cut, what the figures mean for an operator.)
"""


def build(results_dir: Path, document: Path) -> str:
    results = load_results(results_dir)
    run = results.pop(RUN_RECORD, None)
    text = document.read_text() if document.exists() else SKELETON
    text = replace_block(text, "header", header_block(results, run))
    text = replace_block(text, "targets", targets_block(results))
    text = replace_block(text, "results", results_block(results))
    return text


def peers_block(results: dict[str, dict[str, Any]]) -> str:
    """The README's table: drain rates of bare Celery, the project, its peers and Redis."""
    drain = results.get("drain")
    if drain is None or drain.get("quick"):
        return "(No drain results yet: `make bench` fills this table.)"
    records = drain["records"]
    lines = ["| Drain, no-op tasks, 2 processes | tasks/s | of bare Celery |", "|---|---|---|"]
    for name, label in PEERS.items():
        if name in records:
            rate, ratio = records[name]["summary"], records[name].get("ratio_summary")
            share = f"{ratio['median']:.2f}x" if ratio else ""
            lines.append(f"| {label} | {rate['median']:,.0f} | {share} |")
    memory = results.get("memory")
    if memory is not None and not memory.get("quick"):
        loaded = memory["records"]["loaded"]
        mib = {role: f["rss_kib"] / 1024 for role, f in loaded.items() if role != "total"}
        each = ", ".join(f"{role} {v:.0f}" for role, v in mib.items())
        lines += ["", f"Resident memory after load, MiB per process: {each}."]
    lines += [
        "",
        f"From `make bench` on {drain['machine']['cpus']} CPUs, {drain['taken']}; "
        "BENCHMARKS.md has the commands, the spreads and the rest.",
    ]
    return "\n".join(lines)


# - Running them all --------------------------------------------------------------------------


def run_all(names: Sequence[str], results_dir: Path) -> dict[str, Any]:
    """Run each benchmark in turn; record its duration and exit status in run.json."""
    record: dict[str, Any] = {"benchmarks": {}}
    for name in names:
        print(f"==> python -m bench.{name}", flush=True)
        started = time.monotonic()
        cmd = [sys.executable, "-m", f"bench.{name}", "--out", str(results_dir)]
        code = subprocess.run(cmd, cwd=ROOT, check=False).returncode
        record["benchmarks"][name] = {"seconds": time.monotonic() - started, "exit": code}
    record["name"] = RUN_RECORD
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{RUN_RECORD}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser("python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("--run", action="store_true", help="run every benchmark first")
    p.add_argument("--list", action="store_true", help="print the benchmarks' names and stop")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--document", type=Path, default=DOCUMENT)
    p.add_argument("--readme", type=Path, default=README, help="its bench-peers block")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(benchmarks()))
        return 0
    failed = []
    if args.run:
        record = run_all(benchmarks(), args.results)
        failed = [n for n, b in record["benchmarks"].items() if b["exit"] != 0]
    args.document.write_text(build(args.results, args.document))
    print(f"wrote {args.document}")
    readme = args.readme.read_text() if args.readme.exists() else ""
    if "<!-- bench-peers:start -->" in readme:
        results = load_results(args.results)
        results.pop(RUN_RECORD, None)
        args.readme.write_text(replace_block(readme, "bench-peers", peers_block(results)))
        print(f"wrote the bench-peers block of {args.readme}")
    rows = target_rows(load_results(args.results))
    missed = [r["target"].what for r in rows if r["met"] is False]
    if missed:
        print("targets missed: " + "; ".join(missed))
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
