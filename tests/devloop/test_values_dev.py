"""k8s-dev/values-dev.yaml renders under the real helm and passes the chart's values.schema.json."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.tiltcheck import REPO, HelmMissing, find_helm

CHART = REPO / "charts/flask-celery"
VALUES = REPO / "k8s-dev/values-dev.yaml"
PREFIX = "dev-flask-celery"
#: The development API key that values-dev.yaml accepts, and that the README and the Tiltfile tell
#: the dev loop to send; committed on purpose, for the local cluster only.
DEV_API_KEY = "fck_dev-only-kind-api-key"


def _helm() -> str:
    try:
        return find_helm()
    except HelmMissing as exc:
        pytest.fail(str(exc))


def _template(values: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_helm(), "template", "dev", str(CHART), "-f", str(values),
         "--api-versions", "keda.sh/v1alpha1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@functools.cache
def _render() -> dict[tuple[str, str], dict[str, Any]]:
    out = _template(VALUES)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _main_container(name: str) -> dict[str, Any]:
    return _render()[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]


def test_values_dev_renders_against_the_schema() -> None:
    assert _render()


def test_schema_rejects_an_unknown_key(tmp_path: Path) -> None:
    # The check above only means something if the schema is enforced on this file.
    broken = tmp_path / "values.yaml"
    broken.write_text(VALUES.read_text() + "\nweb:\n  replicaz: 1\n")
    out = _template(broken)
    assert out.returncode == 1
    assert "replicaz" in out.stderr


def test_every_app_container_runs_the_dev_image() -> None:
    for (kind, name), obj in _render().items():
        if kind != "Deployment":
            continue
        spec = obj["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["image"] == "localhost:5001/flask-celery:dev", name
            assert c["imagePullPolicy"] == "Always", name


def test_one_replica_each_and_keda_floors_per_group() -> None:
    assert _render()[("Deployment", f"{PREFIX}-web")]["spec"]["replicas"] == 1
    floors = {
        name.removeprefix(f"{PREFIX}-worker-"): obj["spec"]["minReplicaCount"]
        for (kind, name), obj in _render().items()
        if kind == "ScaledObject"
    }
    assert floors == {"general": 1, "reports": 0, "webhooks": 0}


def test_dev_services_flower_on_network_policies_off() -> None:
    kinds = {kind for kind, _ in _render()}
    assert ("Service", f"{PREFIX}-flower") in _render()
    assert "NetworkPolicy" not in kinds
    assert ("PersistentVolumeClaim", f"{PREFIX}-storage") in _render()


def test_secrets_are_fixed_so_helm_template_renders_the_same_twice() -> None:
    # Tilt re-renders on every Tiltfile load; a generated password would change each time.
    first = {k: v for k, v in _render().items() if k[0] == "Secret"}
    _render.cache_clear()
    second = {k: v for k, v in _render().items() if k[0] == "Secret"}
    assert first == second


def test_web_reloads_and_workers_fit_the_cooldown() -> None:
    web_env = _main_container(f"{PREFIX}-web")["env"]
    assert {"name": "GUNICORN_CMD_ARGS", "value": "--reload"} in web_env
    for (kind, name), obj in _render().items():
        if kind == "ScaledObject":
            worker = _render()[("Deployment", name)]["spec"]["template"]["spec"]
            assert obj["spec"]["cooldownPeriod"] > worker["terminationGracePeriodSeconds"]


def test_web_accepts_the_documented_development_key() -> None:
    secret = _render()[("Secret", f"{PREFIX}-api-keys")]
    keys = json.loads(base64.b64decode(secret["data"]["api-keys.json"]))
    assert keys == [
        {
            "name": "dev",
            "scopes": ["enqueue", "read", "operate"],
            "sha256": hashlib.sha256(DEV_API_KEY.encode()).hexdigest(),
        }
    ]
    web_env = {e["name"]: e for e in _main_container(f"{PREFIX}-web")["env"]}
    assert web_env["FLASK_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == f"{PREFIX}-api-keys"
    # the token itself is never a value, only documented next to its digest
    assert DEV_API_KEY not in repr(_render())
    for doc in ("k8s-dev/values-dev.yaml", "Tiltfile", "README.md"):
        assert DEV_API_KEY in (REPO / doc).read_text(), f"{doc} does not name the development key"
