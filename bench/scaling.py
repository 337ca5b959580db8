"""Scaling reaction: KEDA's metric for the `general` group through a burst, workers started as
its formula asks.

    .venv/bin/python -m bench.scaling [--jobs 1000] [--task-seconds 0.1] [--poll 2]

Renders the chart's ScaledObject of the `general` worker group with `helm template`
(concurrency 2, so a target of 2 tasks per worker, and 1..4 replicas), starts its own
redis-server and one worker (minReplicaCount), publishes a burst of `--jobs` tasks that each
hold a pool process `--task-seconds`, then samples the group's metric every 0.25 s, computed
as KEDA does from the rendered triggers and formula (`harness.keda`). Every `--poll` seconds
(KEDA's pollingInterval, 15 s in the chart, shortened to fit a laptop's burst) it starts the
workers the desired replica count asks for, each as a local `celery worker` with the group's
queues; as in the chart, nothing scales down within the HPA's 300 s stabilization window.
Writes the samples to `bench/plots/scaling.csv` and the picture to `bench/plots/scaling.png`
(with --quick: into --out).
"""

from __future__ import annotations

import csv
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import redis
import yaml

from bench.common import local_stack, parser, write_result
from harness import keda
from harness.processes import stop
from harness.stack import INCLUDE_TEST_TASKS, ROOT, celery_client, start_worker
from service.routing import WORKER_GROUPS

GROUP = "general"
CONCURRENCY = 2
MAX_WORKERS = 4
PLOTS = Path(__file__).resolve().parent / "plots"
CHART = ROOT / "charts" / "flask-celery"
SAMPLE_SECONDS = 0.25
#: helm's cache, config and data stay in .tools/helm-home, as for the chart tests.
HELM_HOMES = ("CACHE", "CONFIG", "DATA")
COLUMNS = ("seconds", "waiting", "in_flight", "metric", "desired", "started", "ready")


def helm() -> str:
    """helm 4 from `make helm` (.tools/), else helm 3; HELM_BIN chooses one."""
    if os.environ.get("HELM_BIN"):
        return os.environ["HELM_BIN"]
    found = sorted((ROOT / ".tools").glob("helm-*/helm"), reverse=True)
    if not found:
        raise RuntimeError("no helm in .tools/helm-*/: run `make helm`")
    return str(found[0])


def scaled_object(max_workers: int) -> dict[str, Any]:
    """The group's ScaledObject as the chart renders it, with 1..`max_workers` replicas of
    `CONCURRENCY`."""
    home = ROOT / ".tools" / "helm-home"
    env = {**os.environ, **{f"HELM_{k}_HOME": str(home / k.lower()) for k in HELM_HOMES}}
    sets = {"concurrency": CONCURRENCY, "minReplicas": 1, "maxReplicas": max_workers}
    cmd = [
        helm(),
        "template",
        "rel",
        str(CHART),
        "--show-only",
        "templates/worker/scaledobject.yaml",
    ]
    for key, value in sets.items():
        cmd += ["--set", f"workers.defaults.{key}={value}"]
    rendered = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["metadata"]["name"].endswith(f"worker-{GROUP}"):
            return dict(doc)
    raise RuntimeError(f"no ScaledObject for the {GROUP} group in the render")


class Workers:
    """The group's local workers: started in the background, counted when they answer."""

    def __init__(self, env: dict[str, str], state: Path) -> None:
        self.env, self.state = env, state
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = self.ready = 0
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def scale_to(self, desired: int) -> None:
        while self.started < desired:
            self.started += 1
            thread = threading.Thread(target=self._start, args=(self.started,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _start(self, n: int) -> None:
        extra = (*INCLUDE_TEST_TASKS, "--loglevel", "WARNING")
        proc, _ = start_worker(
            self.env,
            WORKER_GROUPS[GROUP],
            self.state / f"worker-{n}.log",
            concurrency=CONCURRENCY,
            extra=extra,
        )
        with self.lock:
            self.procs.append(proc)
            self.ready += 1

    def stop(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)
        for proc in self.procs:
            stop(proc)


def plot(rows: list[dict[str, float]], path: Path, title: str, max_workers: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["seconds"] for r in rows]
    fig, jobs = plt.subplots(figsize=(9, 5.4), dpi=110)
    jobs.plot(t, [r["metric"] for r in rows], label="KEDA metric (waiting + in flight)", lw=2)
    jobs.plot(t, [r["waiting"] for r in rows], label="waiting (queue lists)", ls="--")
    jobs.plot(t, [r["in_flight"] for r in rows], label="in flight (in-flight sets)", ls=":")
    jobs.set_xlabel("seconds since the burst was published")
    jobs.set_ylabel("jobs")
    workers = jobs.twinx()
    workers.step(
        t,
        [r["desired"] for r in rows],
        where="post",
        color="tab:red",
        label="desired workers (ceil(metric / target))",
    )
    workers.step(
        t, [r["ready"] for r in rows], where="post", color="tab:green", label="workers consuming"
    )
    workers.set_ylabel("workers")
    workers.set_ylim(0, max_workers + 1)
    lines = jobs.get_legend_handles_labels()
    more = workers.get_legend_handles_labels()
    jobs.legend(
        lines[0] + more[0],
        lines[1] + more[1],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=3,
        fontsize=8,
    )
    jobs.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def drain_rate(rows: list[dict[str, float]], ready: int) -> float | None:
    """Jobs per second the metric fell by while `ready` workers consumed (None: too short)."""
    phase = [r for r in rows if r["ready"] == ready and r["metric"] > 0]
    if len(phase) < 2 or phase[-1]["seconds"] <= phase[0]["seconds"]:
        return None
    fell = phase[0]["metric"] - phase[-1]["metric"]
    return fell / (phase[-1]["seconds"] - phase[0]["seconds"])


def main(argv: list[str] | None = None) -> None:
    p = parser("scaling", __doc__.splitlines()[0], repeat=1)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--task-seconds", type=float, default=0.1)
    p.add_argument("--poll", type=float, default=2.0, help="seconds between scaling decisions")
    p.add_argument("--max-workers", type=int, default=MAX_WORKERS, help="maxReplicaCount")
    args = p.parse_args(argv)
    plots = args.out if args.quick else PLOTS
    if args.quick:
        args.jobs, args.task_seconds, args.poll, args.max_workers = 20, 0.1, 0.5, 2
    so = scaled_object(args.max_workers)
    modifiers = so["spec"]["advanced"]["scalingModifiers"]
    target = float(modifiers["target"])
    assert target == CONCURRENCY, f"the chart's target {target} is not the concurrency"
    rows: list[dict[str, float]] = []
    with local_stack() as stack:
        server = stack.redis

        def connect(db: int) -> redis.Redis:
            return redis.Redis(port=server.port, db=db, socket_timeout=5)

        workers = Workers(stack.env, stack.state)
        try:
            workers.scale_to(so["spec"]["minReplicaCount"])
            workers.threads[0].join()
            celery = celery_client(stack.env)
            for _ in range(args.jobs):
                celery.send_task("tests.sleep", (args.task_seconds,), queue="default")
            start = last_decision = time.monotonic()
            deadline = start + max(120.0, 3 * args.jobs * args.task_seconds / CONCURRENCY)
            while time.monotonic() < deadline:
                values = keda.trigger_values(so, connect)
                value = keda.evaluate(modifiers["formula"], values)
                desired = keda.desired_replicas(so, value)
                now = time.monotonic()
                if now - last_decision >= args.poll:
                    workers.scale_to(desired)
                    last_decision = now
                rows.append(
                    {
                        "seconds": round(now - start, 3),
                        "waiting": sum(v for k, v in values.items() if k.startswith("waiting_")),
                        "in_flight": sum(v for k, v in values.items() if k.startswith("running_")),
                        "metric": value,
                        "desired": desired,
                        "started": workers.started,
                        "ready": workers.ready,
                    }
                )
                if value == 0 and rows[-1]["seconds"] > args.poll:
                    break
                time.sleep(SAMPLE_SECONDS)
            else:
                raise TimeoutError(f"the burst did not drain: last sample {rows[-1]}")
        finally:
            workers.stop()
    drained = rows[-1]["seconds"]
    peak = max(r["metric"] for r in rows)
    first_desired = {
        n: next((r["seconds"] for r in rows if r["desired"] >= n), None)
        for n in range(1, args.max_workers + 1)
    }
    first_ready = {
        n: next((r["seconds"] for r in rows if r["ready"] >= n), None)
        for n in range(1, args.max_workers + 1)
    }
    most = max(r["ready"] for r in rows)
    rates = {str(n): drain_rate(rows, n) for n in sorted({1, most})}
    by_workers = ", ".join(f"{n} {'n/a' if r is None else f'{r:.1f}'}" for n, r in rates.items())
    plots.mkdir(parents=True, exist_ok=True)
    with (plots / "scaling.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    title = (
        f"{args.jobs:,} jobs of {args.task_seconds:g} s on the {GROUP} group: target {target:g} "
        f"per worker, 1..{args.max_workers} workers, decisions every {args.poll:g} s"
    )
    plot(rows, plots / "scaling.png", title, args.max_workers)
    summary = (
        f"scaling: {args.jobs:,} jobs of {args.task_seconds:g} s on the {GROUP} group (target "
        f"{target:g} per worker): metric peaked at {peak:,.0f}, asked for {args.max_workers} "
        f"workers at {seconds(first_desired[args.max_workers])}, {most} consuming from "
        f"{seconds(first_ready[most])}, drained in {drained:.1f} s; jobs/s by workers consuming: "
        f"{by_workers}"
    )
    records = {
        "jobs": args.jobs,
        "task_seconds": args.task_seconds,
        "poll_seconds": args.poll,
        "target": target,
        "formula": modifiers["formula"],
        "max_workers": args.max_workers,
        "peak_metric": peak,
        "drained_seconds": drained,
        "jobs_per_second_by_workers": rates,
        "first_desired_seconds": {str(k): v for k, v in first_desired.items()},
        "first_ready_seconds": {str(k): v for k, v in first_ready.items()},
        "samples": len(rows),
        "csv": str(plots / "scaling.csv"),
        "plot": str(plots / "scaling.png"),
    }
    write_result("scaling", summary, records, args)


if __name__ == "__main__":
    main()
