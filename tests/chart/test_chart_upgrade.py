"""`helm upgrade` from release N to N+1 (a new image tag, a new chart version and unrelated
values) changes no field Kubernetes refuses to change, and leaves the bundled Redis and
PostgreSQL running: their pod templates change only with their own configuration or image.

Kubernetes refuses an update that changes a StatefulSet's spec outside replicas, template,
updateStrategy, persistentVolumeClaimRetentionPolicy, minReadySeconds and ordinals; any
workload's selector; a Service's clusterIP, type or IP families; a Job's spec (pod template
included) unless helm deletes the Job first, as a hook with a delete policy; and a claim's spec
but for a larger storage request.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, chart_copy, render

STATEFULSET_MUTABLE = {
    "replicas",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
    "ordinals",
    "revisionHistoryLimit",
}
SERVICE_IMMUTABLE = ("clusterIP", "clusterIPs", "type", "ipFamilies")
DATA_STORES = ("redis", "postgresql")

#: Release N's values per scenario; release N+1 adds APP_CHANGES.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-database-hook-migrations": {
        "database": {"existingSecret": "db"},
        "storage": {"persistence": {"enabled": True}},
        "metrics": {"enabled": True},
        "networkPolicy": {"enabled": True},
    },
}
#: What an application deploy changes: the image, and values that concern the app only.
APP_CHANGES: dict[str, Any] = {
    "image": {"tag": "9.9.9"},
    "web": {"replicas": 3, "workers": 3},
    "smtp": {"host": "smtp.example.com"},
    "celery": {"visibilityTimeoutSeconds": 7200},
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def immutable_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Every change between two renders that Kubernetes would refuse on `helm upgrade`."""
    before = {(d["kind"], d["metadata"]["name"]): d for d in old}
    out: list[str] = []
    for d in new:
        key = (d["kind"], d["metadata"]["name"])
        prev = before.get(key)
        if prev is None:
            continue
        where = "/".join(key)
        spec, prev_spec = d.get("spec", {}), prev.get("spec", {})
        if d["kind"] == "StatefulSet":
            for field in sorted(set(spec) | set(prev_spec)):
                if field not in STATEFULSET_MUTABLE and spec.get(field) != prev_spec.get(field):
                    out.append(f"{where}: spec.{field} changed")
        elif d["kind"] in ("Deployment", "DaemonSet", "ReplicaSet"):
            if spec.get("selector") != prev_spec.get("selector"):
                out.append(f"{where}: spec.selector changed")
        elif d["kind"] == "Service":
            for field in SERVICE_IMMUTABLE:
                if spec.get(field) != prev_spec.get(field):
                    out.append(f"{where}: spec.{field} changed")
        elif d["kind"] == "Job":
            annotations = d["metadata"].get("annotations", {})
            recreated = "before-hook-creation" in annotations.get("helm.sh/hook-delete-policy", "")
            if not (annotations.get("helm.sh/hook") and recreated) and spec != prev_spec:
                out.append(f"{where}: spec changed on a Job helm does not recreate")
        elif d["kind"] == "PersistentVolumeClaim":
            strip = [copy.deepcopy(s) for s in (spec, prev_spec)]
            for s in strip:
                s.get("resources", {}).get("requests", {}).pop("storage", None)
            if strip[0] != strip[1]:
                out.append(f"{where}: spec changed beyond its storage request")
    return out


def data_store_templates(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod templates of the bundled servers' StatefulSets, by component."""
    return {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"][
            "template"
        ]
        for d in docs
        if d["kind"] == "StatefulSet"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] in DATA_STORES
    }


@pytest.fixture(scope="module")
def next_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart as its next release: Chart.yaml's version and appVersion bumped."""
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    major, minor, _ = str(meta["version"]).split(".")
    return chart_copy(
        tmp_path_factory.mktemp("next") / "flask-celery", f"{major}.{int(minor) + 1}.0", "9.9.9"
    )


@pytest.fixture(params=sorted(SCENARIOS), ids=str)
def releases(
    request: pytest.FixtureRequest, helm: str, next_chart: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(release N, release N+1) of one scenario."""
    base = SCENARIOS[request.param]
    return render(helm, base), render(helm, merged(base, APP_CHANGES), chart=next_chart)


def test_next_release_really_differs(releases) -> None:
    """The comparison is meaningful: N+1 carries another chart and app version."""
    old, new = releases
    labels = [
        {d["metadata"]["labels"].get(k) for d in docs if d["kind"] == "Deployment"}
        for docs in (old, new)
        for k in ("helm.sh/chart", "app.kubernetes.io/version")
    ]
    assert labels[0] != labels[2] and labels[1] != labels[3], labels


def test_upgrade_changes_no_immutable_field(releases) -> None:
    old, new = releases
    assert immutable_changes(old, new) == []


def test_app_deploy_leaves_data_stores_running(releases) -> None:
    """Neither the app's version nor the chart's restarts Redis or PostgreSQL."""
    old, new = releases
    before, after = data_store_templates(old), data_store_templates(new)
    assert before, "no bundled data store rendered"
    assert after == before


def test_data_stores_carry_their_own_version(render) -> None:
    docs = render({"image": {"tag": "9.9.9"}, "redis": {"image": {"tag": "7.4.1"}}})
    templates = data_store_templates(docs)
    versions = {
        c: t["metadata"]["labels"]["app.kubernetes.io/version"] for c, t in templates.items()
    }
    postgresql = yaml.safe_load((CHART / "values.yaml").read_text())["postgresql"]["image"]["tag"]
    assert versions == {"redis": "7.4.1", "postgresql": postgresql}
    claims = [
        c["metadata"]["labels"]
        for d in docs
        if d["kind"] == "StatefulSet"
        for c in d["spec"]["volumeClaimTemplates"]
    ]
    assert claims and all(
        set(c)
        <= {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
        for c in claims
    ), claims


@pytest.mark.parametrize(
    "change",
    [
        {"redis": {"appendfsync": "always"}},
        {"redis": {"image": {"tag": "7.4.1"}}},
        {"postgresql": {"image": {"tag": "17"}}},
    ],
    ids=["redis-config", "redis-image", "postgresql-image"],
)
def test_data_store_restarts_on_its_own_change(render, change) -> None:
    """Its own configuration or image does restart a data store, and only that one."""
    before, after = data_store_templates(render({})), data_store_templates(render(change))
    changed = {c for c in before if before[c] != after[c]}
    assert changed == set(change)


def test_comparison_catches_immutable_changes(render) -> None:
    """immutable_changes reports each kind of refused change (so the tests above can fail)."""
    old = render(SCENARIOS["external-database-hook-migrations"])
    new = copy.deepcopy(old)
    for d in new:
        spec = d.get("spec", {})
        if d["kind"] == "StatefulSet":
            spec["volumeClaimTemplates"][0]["metadata"]["labels"]["helm.sh/chart"] = "x"
        elif d["kind"] == "Deployment":
            spec["selector"]["matchLabels"]["app.kubernetes.io/version"] = "x"
        elif d["kind"] == "Service":
            spec["type"] = "NodePort"
        elif d["kind"] == "Job":
            d["metadata"]["annotations"].pop("helm.sh/hook")
            spec["backoffLimit"] = 9
        elif d["kind"] == "PersistentVolumeClaim":
            spec["accessModes"] = ["ReadOnlyMany"]
    kinds = {c.split("/")[0] for c in immutable_changes(old, new)}
    assert kinds == {
        "StatefulSet",
        "Deployment",
        "Service",
        "Job",
        "PersistentVolumeClaim",
    }
