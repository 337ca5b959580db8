"""Folding the metric files of ended processes keeps every value a scrape reads.

Processes forked by a child Python (as prefork replaces its pool processes) count in
prometheus_client's multiprocess mode and exit; the directory is then read before and after
`compact`, with the file of a process that still runs left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.observability.compaction import compact, lock

#: Forks `n` processes that each count and observe, then exit: their files stay behind.
FORKS = textwrap.dedent(
    """
    import os, sys
    from prometheus_client import Counter, Histogram
    done = Counter("jobs_done", "Jobs done.", ["name"])
    took = Histogram("jobs_seconds", "Seconds a job took.", ["name"], buckets=(0.1, 1))
    for i in range(int(sys.argv[1])):
        pid = os.fork()
        if pid == 0:
            done.labels(f"t{i % 2}").inc(i + 1)
            took.labels(f"t{i % 2}").observe(0.05 * i)
            os._exit(0)
        os.waitpid(pid, 0)
    """
)


def run_forks(directory: Path, n: int) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", FORKS, str(n)], env=env, check=True)


def exposition(directory: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    lines = generate_latest(registry).decode().splitlines()
    return {
        name: float(value)
        for line in lines
        if line and not line.startswith("#")
        for name, value in [line.rsplit(" ", 1)]
    }


def test_compaction_keeps_every_value_and_leaves_one_file_per_type(tmp_path: Path) -> None:
    run_forks(tmp_path, 4)
    # a copy under the pid of a process that runs (this one) must stay as it is
    live = tmp_path / f"counter_{os.getpid()}.db"
    shutil.copy(next(tmp_path.glob("counter_*.db")), live)
    before = exposition(tmp_path)
    with lock(tmp_path):
        removed = compact(tmp_path)
    assert removed == 8
    assert sorted(p.name for p in tmp_path.glob("*.db")) == sorted(
        ["counter_archive.db", "histogram_archive.db", live.name]
    )
    assert exposition(tmp_path) == before
    assert before['jobs_done_total{name="t0"}'] > 0


def test_a_second_compaction_adds_to_the_archive(tmp_path: Path) -> None:
    run_forks(tmp_path, 3)
    compact(tmp_path)
    run_forks(tmp_path, 3)
    before = exposition(tmp_path)
    compact(tmp_path)
    after = exposition(tmp_path)
    assert after == before
    # t0: processes 0 and 2 of each run counted 1 and 3
    assert after['jobs_done_total{name="t0"}'] == 8
    assert after['jobs_seconds_count{name="t1"}'] == 2
    assert compact(tmp_path) == 0
