"""The metrics render, run: web, the reports worker and the broker exporter as local processes
(see tests/support/chart_processes.py for what is rewritten to run outside a cluster), scraped
where their rendered scrape annotations point, so these tests check what only running pods show:
each target answers `/metrics` with the families the dashboards and alerts read, under the
rendered `hostname` label.

The worker and the exporter take their metrics port from the environment, not from a `--bind`
or `--port` argument, so that variable is moved to the container's local port here, as the local
runner moves the arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.auth import bearer
from harness.processes import wait_until
from harness.redis_server import RedisServer
from tests.support.api import wait_for_job
from tests.support.chart import NAME, TEST_API_KEYS, process_helm, render
from tests.support.chart_processes import LocalCluster, LocalContainer, stop_all

PODS = {name: NAME.format(name) for name in ("web", "worker-reports", "exporter")}
#: Variables that name the port a process serves its metrics on.
PORT_VARIABLES = ("FLASK_WORKER_METRICS_PORT", "FLASK_EXPORTER_PORT")


@pytest.fixture(scope="module")
def metrics_cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> LocalCluster:
    """The pods of a render with metrics.enabled and the test API keys, resolved for local runs
    (starts none)."""
    docs = render(process_helm(), {"metrics": {"enabled": True}, **TEST_API_KEYS})
    return LocalCluster(docs, redis_server.port, tmp_path_factory.mktemp("metrics-pods"))


def scrape_address(cluster: LocalCluster, c: LocalContainer) -> str:
    """Where Prometheus would scrape the container: its pod's scrape annotations, locally."""
    (pod,) = [
        d["spec"]["template"]
        for d in cluster.docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == c.pod
    ]
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true", c.pod
    return (
        f"http://127.0.0.1:{c.ports[int(notes['prometheus.io/port'])]}{notes['prometheus.io/path']}"
    )


@pytest.fixture(scope="module")
def pods(metrics_cluster: LocalCluster) -> Iterator[dict[str, LocalContainer]]:
    """Starts web, the reports worker and the exporter of the metrics render, each ready on its
    probes; stops them (SIGTERM, then SIGKILL) afterwards."""
    metrics_cluster.migrate()
    started = {}
    for short, deployment in PODS.items():
        c = metrics_cluster.container(deployment)
        for name in PORT_VARIABLES:
            if name in c.env:
                c.env[name] = str(c.ports[int(c.env[name])])
        c.env["FLASK_METRICS_ADDRESS"] = "127.0.0.1"
        started[short] = c
    try:
        for c in started.values():
            c.start()
        for c in started.values():
            c.wait_ready()
    except BaseException:
        stop_all(list(started.values()))
        raise
    yield started
    stop_all(list(started.values()))


def scrape(cluster: LocalCluster, c: LocalContainer) -> dict[str, Any]:
    """The families of one scrape, by name (counters without `_total`)."""
    answer = httpx.get(scrape_address(cluster, c), timeout=10)
    assert answer.status_code == 200, f"{c.name}: {answer.status_code} {answer.text[:200]}"
    return {f.name: f for f in text_string_to_metric_families(answer.text)}


def samples(family: Any, suffix: str = "") -> list[Any]:
    return [s for s in family.samples if s.name == family.name + suffix]


@pytest.fixture(scope="module")
def export_job(pods: dict[str, LocalContainer]) -> dict[str, Any]:
    """One export job, sent through web and run by the reports worker to success."""
    web = pods["web"]
    base_url = f"http://127.0.0.1:{web.ports[8000]}"
    with httpx.Client(base_url=base_url, headers=bearer(), timeout=10) as api:
        job = api.post("/jobs/export", json={"table": "users"})
        assert job.status_code == 202, job.text
        status = wait_for_job(api, job.json()["status_url"])
    assert status["state"] == "success", f"{status}\n{pods['worker-reports'].log_tail()}"
    return status


def test_web_answers_metrics_on_its_scraped_port_with_requests_and_sent_tasks(
    metrics_cluster, pods, export_job
):
    families = scrape(metrics_cluster, pods["web"])
    sent = samples(families["celery_task_sent"], "_total")
    assert {(s.labels["queue_name"], s.labels["hostname"]) for s in sent} >= {("exports", "pod")}
    requests = samples(families["flask_celery_http_requests"], "_total")
    # the startup probe, and the job sent above
    assert {s.labels["endpoint"] for s in requests} >= {"/healthz", "/jobs/export"}
    assert samples(families["flask_celery_enqueue"], "_total")


def test_a_worker_serves_its_pools_task_metrics_on_9808(metrics_cluster, pods, export_job):
    def succeeded() -> dict[str, Any] | None:
        families = scrape(metrics_cluster, pods["worker-reports"])
        done = families.get("celery_task_succeeded")
        return families if done and samples(done, "_total") else None

    families = wait_until(succeeded, timeout=30, what="the worker's celery_task_succeeded_total")
    for name in ("celery_task_received", "celery_task_started", "celery_task_succeeded"):
        labels = {
            (s.labels["queue_name"], s.labels["hostname"])
            for s in samples(families[name], "_total")
        }
        assert ("exports", "pod") in labels, (name, labels)
    assert samples(families["celery_task_runtime"], "_count")
    assert samples(families["celery_task_queue_wait_time"], "_count")
    (up,) = samples(families["celery_worker_up"])
    assert (up.labels["hostname"], up.value) == ("pod", 1.0)


def test_the_exporter_serves_the_broker_gauges_with_both_dependencies_up(metrics_cluster, pods):
    families = scrape(metrics_cluster, pods["exporter"])
    up = {
        s.labels["dependency"]: s.value
        for s in samples(families["flask_celery_exporter_dependency_up"])
    }
    assert up and set(up.values()) == {1.0}, up
    for name in (
        "celery_queue_length",
        "flask_celery_queue_inflight",
        "flask_celery_queue_oldest_message_age_seconds",
        "flask_celery_exporter_scrape_duration_seconds",
    ):
        assert name in families, f"{name} missing: {sorted(families)}"
    assert "exports" in {s.labels["queue_name"] for s in samples(families["celery_queue_length"])}
