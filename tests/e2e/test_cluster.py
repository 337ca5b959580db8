"""End to end on a real Kubernetes cluster (opt-in): the chart with k8s-dev/values-dev.yaml.

Runs only when FLASK_CELERY_E2E_CONTEXT names a kube context (for example `kind-flask-celery`
from k8s-dev/bootstrap.sh, which also installs KEDA) and FLASK_CELERY_E2E_IMAGE names an
image that cluster can pull (e.g. `localhost:5001/flask-celery:dev` pushed to the kind
registry). Each run installs into a fresh namespace and removes it at the end.

    FLASK_CELERY_E2E_CONTEXT=kind-flask-celery \
    FLASK_CELERY_E2E_IMAGE=localhost:5001/flask-celery:dev \
        .venv/bin/python -m pytest tests/e2e -m e2e
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness.auth import api_keys_setting, bearer
from harness.processes import free_port, stop, wait_until
from tests.support.tiltcheck import REPO, HelmMissing, find_helm

CONTEXT = os.environ.get("FLASK_CELERY_E2E_CONTEXT", "")
IMAGE = os.environ.get("FLASK_CELERY_E2E_IMAGE", "")
RELEASE = "e2e"
PREFIX = f"{RELEASE}-flask-celery"


def _helm() -> str | None:
    try:
        return find_helm()
    except HelmMissing:
        return None


def _skip_reason() -> str | None:
    if not CONTEXT:
        return (
            "opt-in: set FLASK_CELERY_E2E_CONTEXT to a kube context (k8s-dev/bootstrap.sh makes "
            "kind-flask-celery) and FLASK_CELERY_E2E_IMAGE to an image it can pull"
        )
    if shutil.which("kubectl") is None:
        return "FLASK_CELERY_E2E_CONTEXT is set but kubectl is not on PATH"
    if _helm() is None:
        return "FLASK_CELERY_E2E_CONTEXT is set but helm is missing: run `make helm`"
    return None


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
    pytest.mark.timeout(900),
]


@dataclass
class Cluster:
    """kubectl and helm pinned to one context and one namespace."""

    context: str
    namespace: str
    helm: str

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        cmd = ["kubectl", "--context", self.context, "--namespace", self.namespace, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and out.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
        return out.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def replicas(self, deployment: str) -> int:
        return int(self.json(f"deployment/{deployment}")["spec"].get("replicas", 0))

    def worker_pods(self, group: str) -> list[str]:
        selector = (
            f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=worker,"
            f"flask-celery.io/worker-group={group}"
        )
        pods = self.json("pods", "-l", selector)["items"]
        return [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]

    def diagnostics(self) -> str:
        return self.kubectl("get", "all,scaledobjects,events", check=False) or "(none)"


def _image_values(image: str) -> list[str]:
    """--set flags for image.repository and image.tag or image.digest."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return ["--set", f"image.repository={repository}", "--set", f"image.digest={digest}"]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]
    return ["--set", f"image.repository={image}"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """The release installed with the dev values and the test API keys (harness/auth.py)
    into a fresh namespace; removed afterwards."""
    if not IMAGE:
        pytest.fail("FLASK_CELERY_E2E_IMAGE is not set: the image the cluster pulls for every role")
    contexts = subprocess.run(
        ["kubectl", "config", "get-contexts", "-o", "name"], capture_output=True, text=True
    ).stdout.split()
    if CONTEXT not in contexts:
        pytest.fail(f"kube context {CONTEXT!r} not found (known: {contexts})")
    c = Cluster(CONTEXT, f"fc-e2e-{uuid.uuid4().hex[:8]}", str(_helm()))
    if not c.kubectl("get", "crd", "scaledobjects.keda.sh", "--ignore-not-found", "-o", "name"):
        pytest.fail(f"KEDA is not installed in {CONTEXT}: run k8s-dev/bootstrap.sh")
    c.kubectl("create", "namespace", c.namespace)
    try:
        install = subprocess.run(
            [c.helm, "upgrade", "--install", RELEASE, str(REPO / "charts/flask-celery"),
             "--kube-context", c.context, "--namespace", c.namespace,
             "-f", str(REPO / "k8s-dev/values-dev.yaml"), *_image_values(IMAGE),
             "--set-json", f"auth.apiKeys={json.dumps(api_keys_setting())}",
             "--wait", "--timeout", "10m"],
            capture_output=True, text=True, timeout=700,
        )  # fmt: skip
        if install.returncode:
            pytest.fail(f"helm install failed: {install.stderr}\n{c.diagnostics()}")
        for workload in c.kubectl("get", "deployments,statefulsets", "-o", "name").split():
            c.kubectl("rollout", "status", workload, "--timeout=5m", timeout=320)
        yield c
    finally:
        subprocess.run(
            [c.helm, "uninstall", RELEASE, "--kube-context", c.context, "--namespace",
             c.namespace, "--wait", "--timeout", "5m"],
            capture_output=True, text=True, timeout=320,
        )  # fmt: skip
        subprocess.run(
            ["kubectl", "--context", c.context, "delete", "namespace", c.namespace,
             "--wait=true", "--timeout=5m"],
            capture_output=True, text=True, timeout=320,
        )  # fmt: skip


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[httpx.Client]:
    """An HTTP client on a `kubectl port-forward` to the web Service, ready on /readyz, sending
    the test API key."""
    port = free_port()
    proc = subprocess.Popen(
        ["kubectl", "--context", cluster.context, "--namespace", cluster.namespace,
         "port-forward", f"svc/{PREFIX}-web", f"{port}:8000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(), timeout=10)
    try:
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60, what="web /readyz")
        yield client
    finally:
        client.close()
        stop(proc)


def _enqueue(api: httpx.Client, path: str, body: dict[str, Any]) -> str:
    response = api.post(path, json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _wait_for_jobs(api: httpx.Client, job_ids: list[str], timeout: float) -> dict[str, Any]:
    """Poll every job until all are ready; return the last status of each."""
    status: dict[str, Any] = {}

    def all_ready() -> bool:
        for job_id in job_ids:
            if not status.get(job_id, {}).get("ready"):
                status[job_id] = api.get(f"/jobs/{job_id}").json()
        return all(s.get("ready") for s in status.values()) and len(status) == len(job_ids)

    wait_until(all_ready, timeout=timeout, interval=1, what=f"{len(job_ids)} jobs ready")
    return status


def test_add_job_runs_to_success(api: httpx.Client) -> None:
    job_id = _enqueue(api, "/jobs/add", {"a": 2, "b": 3})
    status = _wait_for_jobs(api, [job_id], timeout=120)[job_id]
    assert status["state"] == "success", status
    assert status["value"] == 5


def test_reports_group_scales_from_zero_for_a_burst_and_back(
    cluster: Cluster, api: httpx.Client
) -> None:
    reports = f"{PREFIX}-worker-reports"
    wait_until(lambda: cluster.replicas(reports) == 0, timeout=300, interval=2, what="reports at 0")

    user = api.post("/users", json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "name": "E2E"})
    assert user.status_code == 201, user.text
    line = {"description": "Widget", "quantity": 3, "unit_price_cents": 1250}
    invoice_ids = []
    for _ in range(20):
        invoice = api.post("/invoices", json={"user_id": user.json()["id"], "lines": [line]})
        assert invoice.status_code == 201, invoice.text
        invoice_ids.append(invoice.json()["id"])
    job_ids = [_enqueue(api, "/jobs/invoice-pdf", {"invoice_id": i}) for i in invoice_ids]

    wait_until(lambda: cluster.replicas(reports) >= 1, timeout=120, interval=2, what="scale-up")
    hpa = cluster.json(f"hpa/keda-hpa-{reports}")
    assert hpa["spec"]["scaleTargetRef"]["name"] == reports
    statuses = _wait_for_jobs(api, job_ids, timeout=300)
    assert {s["state"] for s in statuses.values()} == {"success"}, statuses

    # Back to zero once the queues and the in-flight sets are empty for the cooldown (90 s).
    wait_until(lambda: cluster.replicas(reports) == 0, timeout=360, interval=5, what="scale-in")


def test_deleting_the_worker_pod_holding_a_job_loses_no_job(
    cluster: Cluster, api: httpx.Client
) -> None:
    # No task runs long enough to be caught mid-run, so the job is held instead: with a
    # countdown the worker takes the message and keeps it unacknowledged until it is due.
    # Deleting the pod (SIGTERM, warm shutdown) must hand the message back to the queue.
    job_id = _enqueue(api, "/jobs/add", {"a": 20, "b": 22, "countdown": 30})

    def holder() -> str | None:
        for pod in cluster.worker_pods("general"):
            if job_id in cluster.kubectl("logs", pod, "-c", "worker", check=False):
                return pod
        return None

    pod = wait_until(holder, timeout=60, interval=1, what="a general worker receiving the job")
    cluster.kubectl("delete", "pod", pod, "--wait=false")

    status = _wait_for_jobs(api, [job_id], timeout=300)[job_id]
    assert status["state"] == "success", status
    assert status["value"] == 42
    assert pod not in cluster.worker_pods("general")
