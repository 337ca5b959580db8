"""A worker started on a queue the app does not define exits at once, naming the known queues."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.processes import free_port
from harness.stack import BIN, stack_environment
from service.routing import QUEUES


def test_worker_on_an_unknown_queue_exits_naming_it_and_the_known_ones(tmp_path: Path) -> None:
    # nothing listens on the broker's port: the worker must refuse before it tries to connect,
    # where it would otherwise retry for ever
    broker = f"redis://127.0.0.1:{free_port()}"
    env = stack_environment(tmp_path, f"{broker}/0", f"{broker}/1")
    cmd = [str(BIN / "celery"), "-A", "service.make_celery", "worker",
           "--queues", "default,bulk", "--hostname", "unknown-queue@localhost",
           "--without-mingle", "--without-gossip", "--loglevel", "INFO"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == os.EX_CONFIG, done.stderr
    assert "'bulk'" in done.stderr and "'default'" not in done.stderr
    assert ", ".join(QUEUES) in done.stderr
    assert "Traceback" not in done.stderr
