"""Metric bookkeeping that needs no worker: queue wait with an eta, enqueue outcomes, the
multiprocess directory and the gauges of processes that died."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from service.observability import metrics


def test_queue_wait_starts_at_the_publish_time() -> None:
    req = SimpleNamespace(published_at=1000.0, eta=None)
    assert metrics._published_at(req) == 1000.0


def test_queue_wait_of_a_delayed_task_starts_at_its_eta() -> None:
    eta = datetime.fromtimestamp(1600.0, UTC)
    assert metrics._published_at(SimpleNamespace(published_at=1000.0, eta=eta)) == 1600.0
    assert metrics._published_at(SimpleNamespace(published_at=1000.0, eta=eta.isoformat())) == 1600


def test_a_message_without_the_header_has_no_queue_wait() -> None:
    assert metrics._published_at(SimpleNamespace(eta=None, headers={})) is None


@pytest.mark.parametrize(
    ("status", "replayed", "outcome"),
    [(202, False, "accepted"), (202, True, "replayed"), (503, False, "broker_unavailable"),
     (400, False, "refused"), (422, False, "refused")],
)  # fmt: skip
def test_enqueue_outcomes(status: int, replayed: bool, outcome: str) -> None:
    assert metrics._enqueue_outcome(status, replayed) == outcome


def test_a_fresh_start_empties_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "sub").mkdir()
    monkeypatch.setenv(metrics.MULTIPROC_DIR_ENV, str(tmp_path))
    metrics.reset_directory()
    assert list(tmp_path.iterdir()) == []


def test_live_gauges_of_dead_processes_are_dropped_and_counters_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid, live_pid = int(dead.stdout), os.getpid()
    files = [f"gauge_livesum_{dead_pid}.db", f"gauge_livemax_{dead_pid}.db",
             f"counter_{dead_pid}.db", f"gauge_livesum_{live_pid}.db"]  # fmt: skip
    for name in files:
        (tmp_path / name).write_bytes(b"")
    metrics._forget_dead_processes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead_pid}.db", f"gauge_livesum_{live_pid}.db"]
    )
