"""End to end on a real Kubernetes cluster (opt-in): the chart with k8s-dev/values-dev.yaml.

Runs only when FLASK_CELERY_E2E_CONTEXT names a kube context (for example `kind-flask-celery`
from k8s-dev/bootstrap.sh, which also installs KEDA) and FLASK_CELERY_E2E_IMAGE names an
image that cluster can pull (e.g. `localhost:5001/flask-celery:dev` pushed to the kind
registry). The upgrade test also needs FLASK_CELERY_E2E_UPGRADE_IMAGE: another tag of that
image (push the same build as `localhost:5001/flask-celery:dev-next`). Each run installs into a
fresh namespace and removes it at the end.

    FLASK_CELERY_E2E_CONTEXT=kind-flask-celery \
    FLASK_CELERY_E2E_IMAGE=localhost:5001/flask-celery:dev \
    FLASK_CELERY_E2E_UPGRADE_IMAGE=localhost:5001/flask-celery:dev-next make test-e2e

The cluster is read and driven through the kubernetes Python client (pods, Deployments,
logs, exec into the data stores, a port-forward to web); helm installs and upgrades. What the
tests conclude from what they read is decided by tests/support/e2e_observe.py, tested offline.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from harness.auth import API_KEY, api_keys_setting, bearer
from harness.processes import wait_until
from tests.support.e2e_observe import (
    PodState,
    effective_more_than_once,
    image_values,
    ledger_due_times,
    pod_changes,
    pod_state,
    replicas_moved,
    rolled_out,
    rose_and_fell,
    skip_reason,
    tick_runs,
    ticks_run_twice,
)
from tests.support.e2e_relay import Relay
from tests.support.tiltcheck import REPO, HelmMissing, find_helm

try:
    from kubernetes import client as k8s
    from kubernetes import config as kubeconfig
    from kubernetes.client.rest import ApiException
    from kubernetes.stream import portforward, stream
except ImportError:  # skipped below, with the reason
    k8s = None

CONTEXT = os.environ.get("FLASK_CELERY_E2E_CONTEXT", "")
IMAGE = os.environ.get("FLASK_CELERY_E2E_IMAGE", "")
UPGRADE_IMAGE = os.environ.get("FLASK_CELERY_E2E_UPGRADE_IMAGE", "")
RELEASE = "e2e"
PREFIX = f"{RELEASE}-flask-celery"
#: The Secret holding the test API key for `helm test`'s enqueue round trip.
HELM_TEST_SECRET = "e2e-helm-test"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"

#: A beat entry that ticks every INTERVAL seconds for the whole run (set on every app container
#: through app.extraEnv), so the upgrade happens while beat ticks: `periodic.expire_trials`
#: records each run's effect in the task ledger under `beat:<entry>:<due time>`.
ENTRY, INTERVAL = "e2e-expire-trials", 3.0
TICK_ENV = [
    {
        "name": "FLASK_CELERY__BEAT_SCHEDULE",
        "value": json.dumps(
            {
                ENTRY: {
                    "task": "periodic.expire_trials",
                    "schedule": INTERVAL,
                    "kwargs": {"schedule_entry": ENTRY},
                }
            }
        ),
    }
]


def _helm() -> str | None:
    try:
        return find_helm()
    except HelmMissing:
        return None


SKIP = skip_reason(CONTEXT, IMAGE, _helm(), k8s is not None)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(SKIP is not None, reason=SKIP or ""),
    pytest.mark.timeout(900),
]


@dataclass
class Cluster:
    """One kube context and one namespace, through the kubernetes client; helm for releases."""

    context: str
    namespace: str
    helm: str
    api: Any  # kubernetes.client.ApiClient of the context
    # exec and port-forward patch the client they are given: they get their own
    streaming: Any = field(repr=False, default=None)

    @property
    def core(self) -> Any:
        return k8s.CoreV1Api(self.api)

    @property
    def apps(self) -> Any:
        return k8s.AppsV1Api(self.api)

    def plain(self, obj: Any) -> Any:
        """An API object as the API serialises it (camelCase keys)."""
        return self.api.sanitize_for_serialization(obj)

    # -- releases -------------------------------------------------------------------------

    def release(self, image: str) -> subprocess.CompletedProcess[str]:
        """helm upgrade --install of the chart with the dev values, the test API keys
        (harness/auth.py), the ticking beat entry, the `helm test` Pod (which the dev values
        leave out) with its key, and `image`; waits for it."""
        return subprocess.run(
            [self.helm, "upgrade", "--install", RELEASE, str(REPO / "charts/flask-celery"),
             "--kube-context", self.context, "--namespace", self.namespace,
             "-f", str(REPO / "k8s-dev/values-dev.yaml"), *image_values(image),
             "--set-json", f"auth.apiKeys={json.dumps(api_keys_setting())}",
             "--set-json", f"app.extraEnv={json.dumps(TICK_ENV)}",
             "--set", "helmTest.enabled=true",
             "--set", f"helmTest.apiKey.existingSecret={HELM_TEST_SECRET}",
             "--wait", "--timeout", "10m"],
            capture_output=True, text=True, timeout=700,
        )  # fmt: skip

    def workloads(self) -> dict[str, dict[str, Any]]:
        """Every Deployment and StatefulSet of the namespace by `Kind/name`, serialised."""
        found = {}
        for kind, items in (
            ("Deployment", self.apps.list_namespaced_deployment(self.namespace).items),
            ("StatefulSet", self.apps.list_namespaced_stateful_set(self.namespace).items),
        ):
            for item in items:
                found[f"{kind}/{item.metadata.name}"] = {**self.plain(item), "kind": kind}
        return found

    def wait_rolled_out(self, timeout: float = 300) -> None:
        def pending() -> list[str]:
            return [name for name, w in self.workloads().items() if not rolled_out(w)]

        wait_until(lambda: not pending(), timeout=timeout, interval=3, what="every rollout")

    # -- reading ----------------------------------------------------------------------------

    def pods(self, selector: str) -> list[dict[str, Any]]:
        """The pods of `selector` that are not being deleted, serialised."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [self.plain(p) for p in pods if p.metadata.deletion_timestamp is None]

    def replicas(self, deployment: str) -> int:
        return int(self.apps.read_namespaced_deployment(deployment, self.namespace).spec.replicas)

    def worker_replicas(self) -> dict[str, int]:
        """spec.replicas of every worker group's Deployment, by name."""
        items = self.apps.list_namespaced_deployment(
            self.namespace, label_selector=f"{INSTANCE},app.kubernetes.io/component=worker"
        ).items
        return {d.metadata.name: int(d.spec.replicas or 0) for d in items}

    def data_store_pods(self) -> dict[str, PodState]:
        """The bundled Redis and PostgreSQL pods: uid and container restarts, by name."""
        selector = f"{INSTANCE},app.kubernetes.io/component in (redis,postgresql)"
        return {p["metadata"]["name"]: pod_state(p) for p in self.pods(selector)}

    def one_pod(self, component: str) -> str:
        pods = self.pods(f"{INSTANCE},app.kubernetes.io/component={component}")
        assert pods, f"no {component} pod"
        return str(pods[0]["metadata"]["name"])

    def exec(self, pod: str, container: str, script: str) -> str:
        """stdout of `sh -c script` in a container; fails with its stderr on a non-zero exit."""
        resp = stream(
            k8s.CoreV1Api(self.streaming).connect_get_namespaced_pod_exec,
            pod, self.namespace, container=container, command=["sh", "-c", script],
            stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False,
        )  # fmt: skip
        resp.run_forever(timeout=120)
        if resp.is_open():
            resp.close()
            raise RuntimeError(f"{pod}/{container}: `{script}` still running after 120 s")
        out, err, code = resp.read_stdout() or "", resp.read_stderr() or "", resp.returncode
        resp.close()
        if code:
            raise RuntimeError(f"{pod}/{container}: `{script}` exited {code}: {err}")
        return str(out)

    def ledger_keys(self) -> list[str]:
        """The task ledger's keys of the test's beat entry, from the bundled PostgreSQL."""
        sql = f"SELECT key FROM task_ledger WHERE key LIKE 'beat:{ENTRY}:%'"
        script = f'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -At -c "{sql}"'
        return self.exec(self.one_pod("postgresql"), "postgresql", script).split()

    def result_metas(self) -> list[dict[str, Any]]:
        """Every task result in the bundled Redis's result database (extended: name, kwargs)."""
        script = (
            'redis-cli -n 1 --scan --pattern "celery-task-meta-*" '
            '| while read -r k; do redis-cli -n 1 --raw get "$k"; done'
        )
        lines = self.exec(self.one_pod("redis"), "redis", script).splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def logs(self, pod: str, container: str) -> str:
        return str(self.core.read_namespaced_pod_log(pod, self.namespace, container=container))

    def web_socket(self) -> tuple[socket.socket, Any]:
        """A socket to port 8000 of a ready web pod, through the API server's port-forward."""
        for pod in self.pods(f"{INSTANCE},app.kubernetes.io/component=web"):
            conditions = pod.get("status", {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                forward = portforward(
                    k8s.CoreV1Api(self.streaming).connect_get_namespaced_pod_portforward,
                    pod["metadata"]["name"], self.namespace, ports="8000",
                )  # fmt: skip
                return forward.socket(8000), forward
        raise RuntimeError("no ready web pod")

    def diagnostics(self) -> str:
        """The pods' phases and the namespace's latest events, for a failure message."""
        lines = [
            f"{p['metadata']['name']}: {p.get('status', {}).get('phase')}"
            for p in self.pods(INSTANCE)
        ]
        events = self.core.list_namespaced_event(self.namespace).items[-20:]
        lines += [f"{e.involved_object.name}: {e.reason}: {e.message}" for e in events]
        return "\n".join(lines) or "(none)"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """The release installed with the dev values into a fresh namespace; removed afterwards."""
    try:
        contexts = [c["name"] for c in kubeconfig.list_kube_config_contexts()[0]]
    except kubeconfig.ConfigException as exc:
        pytest.fail(f"no kubeconfig with context {CONTEXT!r}: {exc}")
    if CONTEXT not in contexts:
        pytest.fail(f"kube context {CONTEXT!r} not found (known: {contexts})")
    api = kubeconfig.new_client_from_config(context=CONTEXT)
    streaming = kubeconfig.new_client_from_config(context=CONTEXT)
    c = Cluster(CONTEXT, f"fc-e2e-{uuid.uuid4().hex[:8]}", str(_helm()), api, streaming)
    try:
        k8s.ApiextensionsV1Api(api).read_custom_resource_definition("scaledobjects.keda.sh")
    except ApiException as exc:
        pytest.fail(f"KEDA is not installed in {CONTEXT} ({exc.status}): run k8s-dev/bootstrap.sh")
    c.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=c.namespace)))
    try:
        secret = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=HELM_TEST_SECRET), string_data={"api-key": API_KEY}
        )
        c.core.create_namespaced_secret(c.namespace, secret)
        install = c.release(IMAGE)
        if install.returncode:
            pytest.fail(f"helm install failed: {install.stderr}\n{c.diagnostics()}")
        c.wait_rolled_out()
        yield c
    finally:
        subprocess.run(
            [c.helm, "uninstall", RELEASE, "--kube-context", c.context, "--namespace",
             c.namespace, "--wait", "--timeout", "5m"],
            capture_output=True, text=True, timeout=320,
        )  # fmt: skip
        c.core.delete_namespace(c.namespace)
        wait_until(
            lambda: c.namespace not in {n.metadata.name for n in c.core.list_namespace().items},
            timeout=300, interval=3, what=f"namespace {c.namespace} deleted",
        )  # fmt: skip


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[httpx.Client]:
    """An HTTP client on a loopback port forwarded to web, ready on /readyz, sending the test
    API key; each connection goes to a web pod that is ready then."""
    relay = Relay(cluster.web_socket)
    client = httpx.Client(base_url=f"http://127.0.0.1:{relay.port}", headers=bearer(), timeout=10)
    try:
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60, what="web /readyz")
        yield client
    finally:
        client.close()
        relay.close()


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


class ReplicaSampler:
    """The worker groups' replica counts, sampled every `interval` seconds in a thread."""

    def __init__(self, cluster: Cluster, interval: float = 2.0) -> None:
        self._cluster = cluster
        self.history: list[dict[str, int]] = [cluster.worker_replicas()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cluster, interval), daemon=True)
        self._thread.start()

    def _run(self, cluster: Cluster, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.history.append(cluster.worker_replicas())
            except Exception:  # noqa: BLE001,S112 - a missed sample is not a finding
                continue

    def stop(self) -> list[dict[str, int]]:
        """Stop sampling; the history ends with a sample taken now."""
        self._stop.set()
        self._thread.join(timeout=30)
        self.history.append(self._cluster.worker_replicas())
        return self.history


def test_add_job_runs_to_success(api: httpx.Client) -> None:
    job_id = _enqueue(api, "/jobs/add", {"a": 2, "b": 3})
    status = _wait_for_jobs(api, [job_id], timeout=120)[job_id]
    assert status["state"] == "success", status
    assert status["value"] == 5


def test_helm_test_checks_readiness_and_an_enqueue_round_trip(cluster: Cluster) -> None:
    out = subprocess.run(
        [cluster.helm, "test", RELEASE, "--kube-context", cluster.context,
         "--namespace", cluster.namespace, "--timeout", "5m"],
        capture_output=True, text=True, timeout=320,
    )  # fmt: skip
    assert out.returncode == 0, f"{out.stdout}{out.stderr}\n{cluster.diagnostics()}"
    assert "Succeeded" in out.stdout, out.stdout  # the test Pod's phase, as helm reports it


def test_keda_scales_the_reports_group_up_and_back_while_the_other_groups_stay_put(
    cluster: Cluster, api: httpx.Client
) -> None:
    reports = f"{PREFIX}-worker-reports"
    wait_until(lambda: cluster.replicas(reports) == 0, timeout=300, interval=2, what="reports at 0")
    sampler = ReplicaSampler(cluster)
    others = sorted(set(sampler.history[0]) - {reports})
    assert others, sampler.history[0]
    try:
        user = api.post(
            "/users", json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "name": "E2E"}
        )
        assert user.status_code == 201, user.text
        line = {"description": "Widget", "quantity": 3, "unit_price_cents": 1250}
        invoice_ids = []
        for _ in range(20):
            invoice = api.post("/invoices", json={"user_id": user.json()["id"], "lines": [line]})
            assert invoice.status_code == 201, invoice.text
            invoice_ids.append(invoice.json()["id"])
        job_ids = [_enqueue(api, "/jobs/invoice-pdf", {"invoice_id": i}) for i in invoice_ids]

        wait_until(lambda: cluster.replicas(reports) >= 1, timeout=120, interval=2, what="scale-up")
        hpa = k8s.AutoscalingV2Api(cluster.api).read_namespaced_horizontal_pod_autoscaler(
            f"keda-hpa-{reports}", cluster.namespace
        )
        assert hpa.spec.scale_target_ref.name == reports
        statuses = _wait_for_jobs(api, job_ids, timeout=300)
        assert {s["state"] for s in statuses.values()} == {"success"}, statuses

        # back to zero once the queues and in-flight sets are empty for the cooldown (90 s)
        wait_until(lambda: cluster.replicas(reports) == 0, timeout=360, interval=5, what="scale-in")
    finally:
        history = sampler.stop()
    assert rose_and_fell(history, reports), [h.get(reports) for h in history]
    assert replicas_moved(history, others) == {}


def test_deleting_the_worker_pod_holding_a_job_loses_no_job(
    cluster: Cluster, api: httpx.Client
) -> None:
    # No task runs long enough to be caught mid-run, so the job is held instead: with a
    # countdown the worker takes the message and keeps it unacknowledged until it is due.
    # Deleting the pod (SIGTERM, warm shutdown) must hand the message back to the queue.
    job_id = _enqueue(api, "/jobs/add", {"a": 20, "b": 22, "countdown": 30})
    general = f"{INSTANCE},app.kubernetes.io/component=worker,flask-celery.io/worker-group=general"

    def holder() -> str | None:
        for pod in cluster.pods(general):
            name = pod["metadata"]["name"]
            if job_id in cluster.logs(name, "worker"):
                return str(name)
        return None

    pod = wait_until(holder, timeout=60, interval=1, what="a general worker receiving the job")
    cluster.core.delete_namespaced_pod(pod, cluster.namespace)

    status = _wait_for_jobs(api, [job_id], timeout=300)[job_id]
    assert status["state"] == "success", status
    assert status["value"] == 42
    assert pod not in {p["metadata"]["name"] for p in cluster.pods(general)}


# Last: the release runs the upgrade's image from here on.
def test_helm_upgrade_to_a_new_image_tag_while_beat_ticks(cluster: Cluster) -> None:
    if not UPGRADE_IMAGE or UPGRADE_IMAGE == IMAGE:
        pytest.skip(
            "set FLASK_CELERY_E2E_UPGRADE_IMAGE to another tag of FLASK_CELERY_E2E_IMAGE's "
            "image (the same build pushed as e.g. localhost:5001/flask-celery:dev-next)"
        )
    wait_until(lambda: len(cluster.ledger_keys()) >= 2, timeout=120, interval=2, what="ticks")
    stores = cluster.data_store_pods()
    assert len(stores) == 2, stores

    upgrade = cluster.release(UPGRADE_IMAGE)
    assert upgrade.returncode == 0, f"{upgrade.stderr}\n{cluster.diagnostics()}"
    upgraded_at = datetime.now(UTC)
    cluster.wait_rolled_out()
    web = cluster.apps.read_namespaced_deployment(f"{PREFIX}-web", cluster.namespace)
    assert {c.image for c in web.spec.template.spec.containers} == {UPGRADE_IMAGE}

    # the new beat ticks: an effect due after the upgrade finished
    wait_until(
        lambda: ledger_due_times(cluster.ledger_keys(), ENTRY)[-1] > upgraded_at,
        timeout=180, interval=3, what="a tick after the upgrade",
    )  # fmt: skip
    time.sleep(2 * INTERVAL)  # the last sends finish running

    assert pod_changes(stores, cluster.data_store_pods()) == []
    due_times = ledger_due_times(cluster.ledger_keys(), ENTRY)
    assert ticks_run_twice(due_times, INTERVAL) == [], due_times
    runs = tick_runs(cluster.result_metas(), ENTRY)
    assert runs, "no finished tick in the result backend"
    assert effective_more_than_once(runs) == {}, runs
