"""Quick mode of the benchmarks of share 2 (see tests/bench/quick.py)."""

from __future__ import annotations

import pytest

from tests.bench.quick import check_quick_run, shard


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", shard(2))
def test_benchmark_runs_in_quick_mode(name, tmp_path):
    check_quick_run(name, tmp_path)
