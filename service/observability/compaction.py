"""Fold the metric files of processes that ended into one file per type.

In prometheus_client's multiprocess mode every process writes its counters and histograms to
files of its own (`counter_<pid>.db`, `histogram_<pid>.db`), and a scrape reads every file of
the directory. A worker whose pool processes are replaced (--max-tasks-per-child,
--max-memory-per-child) leaves two files per process it replaced, so without this a scrape
grows with the worker's history: bench/metrics_scale.py measured 6.1 s instead of 0.27 s after
10,000 tasks and 100 replaced processes, and the files took 60 MB. `compact` sums the files of
processes that are gone into `counter_archive.db` and `histogram_archive.db` and deletes them;
the scrape keeps every value (counters and histograms only grow, and their sum is what the
collector would have read).

Call it in the process that scrapes, before reading, while holding `lock`: several gunicorn
workers share one directory, and a reader between the archive's replacement and the deletion
of the files it absorbed would count them twice.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

#: The file types whose values outlive their process (live gauges are dropped instead).
KINDS = ("counter", "histogram")
_PID_FILE = re.compile(r"^(?P<kind>[a-z]+)_(?P<pid>\d+)\.db$")
LOCK_FILE = ".compaction.lock"


@contextmanager
def lock(directory: Path) -> Iterator[None]:
    """Hold the directory's lock: one compaction or read of it at a time across processes."""
    with open(directory / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compact(directory: Path) -> int:
    """Fold the counter and histogram files of processes that ended into one archive file per
    type; returns how many files it removed."""
    removed = 0
    for kind in KINDS:
        dead = [path for path in directory.glob(f"{kind}_*.db") if _ended(path)]
        if not dead:
            continue
        archive = directory / f"{kind}_archive.db"
        sources = ([archive] if archive.exists() else []) + dead
        folded = directory / f"{kind}_archive.tmp"  # not *.db: the collector never reads it
        folded.unlink(missing_ok=True)
        values = MmapedDict(str(folded))
        try:
            # accumulate=False keeps histogram buckets per bucket, as the files hold them
            for metric in MultiProcessCollector.merge([str(p) for p in sources], False):
                for sample in metric.samples:
                    key = mmap_key(
                        metric.name,
                        sample.name,
                        list(sample.labels),
                        list(sample.labels.values()),
                        metric.documentation,
                    )
                    values.write_value(key, sample.value, 0.0)
        finally:
            values.close()
        os.replace(folded, archive)
        for path in dead:
            path.unlink()
        removed += len(dead)
    return removed


def _ended(path: Path) -> bool:
    """Whether `path` is the file of a process that no longer exists."""
    match = _PID_FILE.match(path.name)
    if match is None:
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: alive
        pass
    return False
