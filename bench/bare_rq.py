"""RQ's job for `bench.drain`: a module of its own with nothing else to import, because RQ
imports a job's module in the work horse it forks for each job.

    rq worker-pool -u $BENCH_BROKER_URL -n 2 default          (jobs: bench.bare_rq.noop)
"""

from __future__ import annotations


def noop(n: int) -> int:
    """The workload: nothing."""
    return n
