"""The leak guard: a worker's pool processes are replaced after N tasks (--max-tasks-per-child)
and after their resident memory crosses a cap (--max-memory-per-child), as the chart and
`make run` start every worker group; nothing is lost and no task is cut short on the way.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from pathlib import Path

import pytest

from harness.faults import Stack, unacked
from harness.processes import wait_until
from harness.stack import INCLUDE_TEST_TASKS, start_worker
from harness.tasks import CHILDREN


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack.start(tmp_path)
    yield s
    s.close()


def run_children(
    stack: Stack, name: str, flags: tuple[str, ...], grow_to_kib: list[int]
) -> list[tuple[int, int, int]]:
    """Start one single-process worker with `flags`, send `tests.child(n, grow_to_kib[n], 0.2)`
    for every n, wait until each has finished; return (n, pid, peak RSS KiB) in the order run
    (a single process runs them in the order sent)."""
    proc, _ = start_worker(
        stack.env, ("default",), stack.directory / f"{name}.log", concurrency=1,
        extra=(*INCLUDE_TEST_TASKS, *flags),
    )  # fmt: skip
    stack.procs.append(proc)
    counters = stack.counters()
    counters.delete(CHILDREN)
    for n, grow in enumerate(grow_to_kib):
        stack.celery.send_task("tests.child", args=(n, grow, 0.2), queue="default")
    wait_until(
        lambda: counters.llen(CHILDREN) >= len(grow_to_kib) and stack.pending() == 0,
        timeout=60,
        interval=0.2,
        what=f"{len(grow_to_kib)} tests.child tasks (log: {stack.directory / name}.log)",
    )
    rows = [tuple(map(int, raw.split())) for raw in counters.lrange(CHILDREN, 0, -1)]
    assert sorted(n for n, _, _ in rows) == list(range(len(grow_to_kib))), (
        "a task lost or run twice"
    )
    assert unacked(stack.broker()) == 0 and stack.broker().llen("default") == 0
    assert proc.poll() is None, "the worker itself must keep running"
    return rows  # type: ignore[return-value]


def pid_runs(rows: list[tuple[int, int, int]]) -> list[list[int]]:
    """The task numbers each successive pool process ran, in order."""
    return [[n for n, _, _ in run] for _, run in groupby(rows, key=lambda row: row[1])]


def test_a_pool_process_is_replaced_after_max_tasks_per_child(stack: Stack) -> None:
    rows = run_children(stack, "by-count", ("--max-tasks-per-child", "2"), [0] * 5)
    assert pid_runs(rows) == [[0, 1], [2, 3], [4]]
    assert len({pid for _, pid, _ in rows}) == 3, "a replaced process' pid came back"


def test_a_pool_process_is_replaced_once_its_memory_crosses_the_cap(stack: Stack) -> None:
    cap_kib = 256 * 1024
    flags = ("--max-memory-per-child", str(cap_kib), "--max-tasks-per-child", "1000")
    # task 1 leaks past the cap; the others allocate nothing
    rows = run_children(stack, "by-memory", flags, [0, cap_kib + 16 * 1024, 0, 0])
    peaks = {n: peak for n, _, peak in rows}
    assert max(peaks[n] for n in (0, 2, 3)) < cap_kib, (
        f"a pool process starts above the cap: {rows}"
    )
    assert peaks[1] > cap_kib
    # the task that crosses the cap finishes (its row is written after the allocation), and
    # only then is its process replaced: the next task runs in a fresh one
    assert pid_runs(rows) == [[0, 1], [2, 3]]
