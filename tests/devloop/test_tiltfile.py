"""The Tiltfile, checked offline with starlark-pyo3 (tests/support/tiltcheck.py) against the real
chart render."""

from __future__ import annotations

import functools
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.tiltcheck import REPO, HelmMissing, Result, check, find_helm

TILTFILE = REPO / "Tiltfile"
IMAGE = "localhost:5001/flask-celery"
CELERY_IMAGE = "localhost:5001/flask-celery-celery"
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"
PREFIX = "dev-flask-celery"
GROUPS = ("general", "reports", "webhooks")


@pytest.fixture(scope="module")
def tilt() -> Result:
    """The Tiltfile evaluated once, as `tilt up` would load it on the bootstrapped cluster."""
    try:
        find_helm()
    except HelmMissing as exc:
        pytest.fail(str(exc))
    return check(TILTFILE)


def _workload(tilt: Result, name: str) -> dict[str, Any]:
    deployments = [o for o in tilt.objects if o["kind"] == "Deployment"]
    return next(o for o in deployments if o["metadata"]["name"] == name)


def _container(tilt: Result, name: str) -> dict[str, Any]:
    """The workload's main container as Tilt deploys it (image entrypoint applied)."""
    main = _workload(tilt, name)["spec"]["template"]["spec"]["containers"][0]["name"]
    return next(c for c in tilt.deployed(_workload(tilt, name)) if c["name"] == main)


def test_tiltfile_loads_without_problems(tilt: Result) -> None:
    assert tilt.problems == []
    assert tilt.warnings == []


def test_tiltfile_declares_the_images_and_the_resources(tilt: Result) -> None:
    expected = [
        ("version_settings", ">=0.36.0"),
        ("allow_k8s_contexts", "kind-flask-celery"),
        ("docker_build", IMAGE),
        ("docker_build_with_restart", CELERY_IMAGE),
        ("helm", "charts/flask-celery"),
    ] + [
        ("k8s_resource", f"{PREFIX}-{c}")
        for c in ("config", "web", "flower", "beat", "redis", *(f"worker-{g}" for g in GROUPS))
    ]
    missing = [c for c in expected if c not in tilt.calls]
    assert missing == []
    extra = set(tilt.resources) - {name for _, name in expected[5:]}
    assert extra <= {f"{PREFIX}-postgresql"}  # the chart's bundled dev database, when rendered


def test_every_resource_has_labels_and_waits_for_what_it_needs(tilt: Result) -> None:
    res, config, web = tilt.resources, f"{PREFIX}-config", f"{PREFIX}-web"
    infra = {
        name
        for name, r in res.items()
        if r.objects and r.objects[0]["kind"] == "StatefulSet"  # Redis, PostgreSQL
    }
    assert f"{PREFIX}-redis" in infra
    for name in infra:
        assert res[name].resource_deps == [config], name
    assert set(res[web].resource_deps) == {config, *infra}
    for name in ("beat", "flower", *(f"worker-{g}" for g in GROUPS)):
        # after web, whose init container has migrated the database by then
        assert set(res[f"{PREFIX}-{name}"].resource_deps) == {config, *infra, web}, name
    assert all(r.labels for r in res.values())


def test_web_and_flower_are_port_forwarded(tilt: Result) -> None:
    forwards = {
        name: [(p["local_port"], p["container_port"]) for p in r.port_forwards]
        for name, r in tilt.resources.items()
        if r.port_forwards
    }
    assert forwards == {f"{PREFIX}-web": [(8000, 8000)], f"{PREFIX}-flower": [(5555, 5555)]}


def test_each_worker_group_carries_its_scaledobject(tilt: Result) -> None:
    for group in GROUPS:
        res = tilt.resources[f"{PREFIX}-worker-{group}"]
        assert [o["kind"] for o in res.objects] == ["Deployment", "ScaledObject"]
        scaled = res.objects[1]["spec"]["minReplicaCount"]
        # Tilt would wait forever for the pod of a group KEDA keeps at zero
        assert res.pod_readiness == ("ignore" if scaled == 0 else "")


def test_celery_containers_restart_with_the_charts_own_command(tilt: Result) -> None:
    for name in ("beat", "flower", *(f"worker-{g}" for g in GROUPS)):
        c = _container(tilt, f"{PREFIX}-{name}")
        assert c["image"] == CELERY_IMAGE
        wrapper, watch, *command = c["command"]
        assert wrapper == "/tilt-restart-wrapper"
        assert watch.startswith("--watch_file=")
        assert command + c["args"] == _chart_command(f"{PREFIX}-{name}")


def test_web_keeps_the_charts_command_and_reloads(tilt: Result) -> None:
    c = _container(tilt, f"{PREFIX}-web")
    assert c["image"].startswith(IMAGE + ":")
    assert c["command"] == _chart_command(f"{PREFIX}-web")
    assert {"name": "GUNICORN_CMD_ARGS", "value": "--reload"} in c["env"]


def test_only_synced_containers_get_a_writable_root(tilt: Result) -> None:
    for obj in tilt.objects:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = obj["spec"]["template"]["spec"]
        for c in spec["containers"]:
            synced = c["image"].startswith((IMAGE + ":", CELERY_IMAGE))
            assert c["securityContext"]["readOnlyRootFilesystem"] is not synced, c["name"]
        for c in spec.get("initContainers", []):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_live_update_syncs_into_the_installed_package(tilt: Result) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    # SITE_PACKAGES must follow the Dockerfile: the venv path and the Python minor version
    assert "python -m venv /opt/venv" in dockerfile
    assert re.search(r"^ARG BASE=python:3\.11", dockerfile, re.M)
    for ref in (IMAGE, CELERY_IMAGE):
        syncs = [s for s in tilt.images[ref].live_update if s["step"] == "sync"]
        assert syncs == [
            {"step": "sync", "local_path": "service", "remote_path": f"{SITE_PACKAGES}/service"}
        ]
    restart = tilt.images[CELERY_IMAGE].live_update[-1]
    assert restart["step"] == "run" and restart["cmd"].startswith("date > /opt/tilt/")


def test_dev_layer_lets_the_container_user_write_what_tilt_writes(tilt: Result) -> None:
    contents = tilt.images[IMAGE].dockerfile_contents
    assert contents.startswith((REPO / "Dockerfile").read_text())
    assert f"chown -R 10001:10001 {SITE_PACKAGES}/service" in contents
    assert "install -d -o 10001 -g 10001 /opt/tilt" in contents
    assert contents.rstrip().endswith("USER 10001:10001")


def test_missing_keda_stops_with_the_bootstrap_hint() -> None:
    result = check(TILTFILE, local=lambda cmd: "")
    hint = "KEDA is not installed in kind-flask-celery: run k8s-dev/bootstrap.sh"
    assert any(hint in p for p in result.problems), result.problems


def test_another_context_is_a_warning() -> None:
    assert any("kind-other" in w for w in check(TILTFILE, context="kind-other").warnings)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("k8s_resource(\n        workload", "k8s_resourse(\n        workload", "k8s_resourse"),
        ("port_forwards=[port_forward", "port_forward=[port_forward", "unexpected keyword"),
        ("'k8s-dev/values-dev.yaml'", "'k8s-dev/values-dve.yaml'", "values-dve.yaml"),
        ("sync('service',", "sync('servcie',", "servcie"),
        ("WEB = PREFIX + '-web'", "WEB = PREFIX + '-webb'", "unknown resource_deps"),
        ("RELEASE = 'dev'", "RELEASE = 'dev'\nX = f'{RELEASE}'", "f-strings"),
        ("CONFIG = PREFIX + '-config'", "CONFIG = PREFIX + '-config'\nCONFIG = 1 +", "Parse error"),
        ("c['image'] = CELERY_IMAGE", "c['image'] = CELERY_IMAGE + 'x'", "no deployed container"),
    ],
    ids=[
        "builtin",
        "kwarg",
        "values-path",
        "sync-path",
        "resource-dep",
        "f-string",
        "syntax",
        "unused-image",
    ],
)
def test_injected_mistake_is_reported(old: str, new: str, message: str) -> None:
    source = TILTFILE.read_text()
    assert old in source, "the test's anchor is gone from the Tiltfile"
    result = check(TILTFILE, source=source.replace(old, new, 1))
    assert any(message in p for p in result.problems), result.problems


@functools.cache
def _chart_render() -> tuple[dict[str, Any], ...]:
    """The chart rendered with the dev values by plain helm, without Tilt's changes."""
    out = subprocess.run(
        [find_helm(), "template", "dev", str(REPO / "charts/flask-celery"),
         "-f", str(REPO / "k8s-dev/values-dev.yaml")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def _chart_command(workload: str) -> list[str]:
    """The main container's command as the chart renders it."""
    obj = next(
        d
        for d in _chart_render()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == workload
    )
    return list(obj["spec"]["template"]["spec"]["containers"][0]["command"])
