"""The application's user: values.yaml's image.runAsUser is the Dockerfile's USER, and every
application pod (web, workers, beat, Flower, the migration Job) runs as image.runAsUser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
VALUES = yaml.safe_load((ROOT / "charts" / "flask-celery" / "values.yaml").read_text())
RUN_AS_USER = VALUES["image"]["runAsUser"]
APP_COMPONENTS = {"web", "worker", "beat", "flower", "migrations"}
#: With database.existingSecret the migrations run as a hook Job; with the bundled PostgreSQL
#: (the default) as init containers of web, workers and beat.
DATABASES = {"hook-job": {"database": {"existingSecret": "db"}}, "init-containers": {}}


def ids_after(command: str, flag: str) -> list[int]:
    """The ids given to `flag` by every `command` (useradd, groupadd) of the Dockerfile."""
    return [int(n) for n in re.findall(rf"\b{command}\b[^\n]*?\s{flag}[ =](\d+)", DOCKERFILE)]


def app_pods(docs: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """(component, pod spec) of every application workload, by object name."""
    pods = {}
    for d in docs:
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        if d["kind"] in ("Deployment", "Job") and component in APP_COMPONENTS:
            pods[d["metadata"]["name"]] = (component, d["spec"]["template"]["spec"])
    return pods


def test_image_run_as_user_is_the_dockerfiles_user_and_group():
    assert re.findall(r"^USER\s+(\S+)\s*$", DOCKERFILE, re.MULTILINE) == [
        f"{RUN_AS_USER}:{RUN_AS_USER}"
    ]
    assert ids_after("useradd", "--uid") == [RUN_AS_USER]
    assert ids_after("useradd", "--gid") == [RUN_AS_USER]
    assert ids_after("groupadd", "--gid") == [RUN_AS_USER]


@pytest.mark.parametrize("uid", [RUN_AS_USER, 12345], ids=["default", "overridden"])
@pytest.mark.parametrize("database", list(DATABASES.values()), ids=list(DATABASES))
def test_every_app_pod_and_container_runs_as_image_run_as_user(render, uid, database):
    pods = app_pods(render({**database, "image": {"runAsUser": uid}}))
    expected = APP_COMPONENTS if database else APP_COMPONENTS - {"migrations"}
    assert {component for component, _ in pods.values()} == expected
    for name, (_, pod) in pods.items():
        ctx = pod["securityContext"]
        assert (ctx["runAsUser"], ctx["runAsGroup"], ctx["fsGroup"]) == (uid, uid, uid), name
    containers = [
        (name, c)
        for name, (_, pod) in pods.items()
        for c in pod.get("initContainers", []) + pod["containers"]
    ]
    assert any(c["name"] == "migrate" for _, c in containers) == (not database)
    for name, c in containers:
        sc = c["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"]) == (uid, uid), f"{name}/{c['name']}"
