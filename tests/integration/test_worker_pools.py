"""Only pools that enforce the time limits may run: a worker started with another exits at once,
naming its pool and the ones to use."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.stack import BIN, stack_environment
from service.budget import TIME_LIMITED_POOLS, ConfigError, check, pool_name, pool_refusal


def test_pool_names_are_the_ones_pool_takes():
    from celery.concurrency import get_implementation

    names = {p: pool_name(get_implementation(p)) for p in ("prefork", "threads", "solo")}
    assert names == {"prefork": "prefork", "threads": "threads", "solo": "solo"}
    assert pool_refusal("prefork") is None and pool_refusal("gevent") is None


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_the_app_config_refuses_a_configured_pool_without_time_limits(pool: str):
    with pytest.raises(ConfigError, match=f"worker_pool: worker pool '{pool}' does not enforce"):
        check({"worker_pool": pool, "task_time_limit": 300})
    check({"worker_pool": "prefork", "task_time_limit": 300})


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_a_worker_on_a_pool_without_time_limits_refuses_to_start(pool: str, tmp_path: Path):
    # nothing listens on the broker's port: the refusal comes before any connection
    env = stack_environment(tmp_path, "redis://127.0.0.1:9/0", "redis://127.0.0.1:9/1")
    cmd = [BIN / "celery", "-A", "service.make_celery", "worker", "--pool", pool,
           "--concurrency", "8", "--queues", "default"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"refusing to start: worker pool {pool!r} does not enforce task time limits" in (
        done.stderr
    )
    assert all(p in done.stderr for p in TIME_LIMITED_POOLS)
