"""Render the chart with the real `helm template` and validate every object it produces.

Every render runs under each installed helm (`.tools/helm-*/helm`, from `make helm`;
HELM_BIN selects one binary instead). Core objects are validated
against the Kubernetes schemas of the chart's minimum kubeVersion, strictly (unknown fields
rejected); KEDA and Prometheus Operator objects against their CRD models, strictly too, since
the plain models ignore unknown fields. Renders are cached per (helm, values, flags), so each
value set is rendered once per run however many tests query it.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import NamedTemporaryFile
from typing import Any

import kubernetes_validate as kv
import pydantic
import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring

from harness.auth import api_keys_setting

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flask-celery"
NAMESPACE = "flask-celery"
#: Object names of a render with the default release name, e.g. NAME.format("web").
NAME = "rel-flask-celery-{}"
#: The chart's minimum kubeVersion (Chart.yaml), the strictest API surface it promises.
KUBE_VERSION = "1.27"

CRD_MODELS = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PodMonitor"): monitoring.PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
}


class HelmRenderError(Exception):
    """`helm template` refused the values; the message is helm's stderr."""


def helm_binaries() -> list[str]:
    """The helm binaries to test with: HELM_BIN, or every `.tools/helm-*/helm`."""
    if os.environ.get("HELM_BIN"):
        return [os.environ["HELM_BIN"]]
    return [str(p) for p in sorted((ROOT / ".tools").glob("helm-*/helm"), reverse=True)]


def helm_id(path: str) -> str:
    return Path(path).parent.name


def process_helm() -> str:
    """The helm that renders the chart for local runs: helm 4 when installed."""
    binaries = helm_binaries()
    if not binaries:
        pytest.fail("no helm binary in .tools/helm-*/: run `make helm`")
    return next((b for b in binaries if helm_id(b).startswith("helm-4")), binaries[0])


def helm_env() -> dict[str, str]:
    """Keep helm's cache, config and data out of the user's home."""
    base = ROOT / ".tools" / "helm-home"
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(base / "cache"),
        "HELM_CONFIG_HOME": str(base / "config"),
        "HELM_DATA_HOME": str(base / "data"),
    }


def _unknown_fields(inp: Any, out: Any, path: str = "") -> list[str]:
    errors: list[str] = []
    if isinstance(inp, dict) and isinstance(out, dict):
        for key, value in inp.items():
            p = f"{path}.{key}" if path else key
            errors += (
                [f"{p}: unknown field"] if key not in out else _unknown_fields(value, out[key], p)
            )
    elif isinstance(inp, list) and isinstance(out, list):
        for i, (a, b) in enumerate(zip(inp, out, strict=False)):
            errors += _unknown_fields(a, b, f"{path}[{i}]")
    return errors


def validate_crd(model: type[pydantic.BaseModel], doc: dict[str, Any]) -> list[str]:
    """Strict CRD check: types, enums and patterns, no coercion, and no unknown field."""
    try:
        obj = model.model_validate(doc, strict=True)
    except pydantic.ValidationError as e:
        return [".".join(map(str, x["loc"])) + ": " + x["msg"] for x in e.errors()]
    dumped = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return _unknown_fields(doc, dumped)


def validate_object(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate one rendered object; raise AssertionError naming it when it is invalid."""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    model = CRD_MODELS.get((doc.get("apiVersion"), doc.get("kind")))
    if model is not None:
        errors = validate_crd(model, doc)
        assert not errors, f"{name} does not match its CRD: {errors}"
        return doc
    try:
        kv.validate(doc, KUBE_VERSION, strict=True)
    except kv.ValidationError as e:
        raise AssertionError(
            f"{name} is invalid for Kubernetes {KUBE_VERSION}: {e.message} at {list(e.path)}"
        ) from e
    except kv.SchemaNotFoundError as e:
        raise AssertionError(
            f"{name}: no schema for {doc.get('apiVersion')} {doc.get('kind')}"
        ) from e
    return doc


_CACHE: dict[
    tuple[str, str, tuple[str, ...], tuple[str, ...], str, str],
    list[dict[str, Any]] | HelmRenderError,
] = {}


def render(
    helm: str,
    values: dict[str, Any] | None = None,
    show_only: tuple[str, ...] | list[str] = (),
    release: str = "rel",
    extra_args: tuple[str, ...] = (),
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """Render the chart (or a copy of it) with the real `helm template`; return schema-checked
    documents."""
    dumped = yaml.safe_dump(values or {}, sort_keys=True)
    key = (helm, dumped, tuple(show_only), tuple(extra_args), release, str(chart))
    if key not in _CACHE:
        with NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(dumped)
            f.flush()
            cmd = [helm, "template", release, str(chart), "--namespace", NAMESPACE, "-f", f.name]
            cmd += [a for p in show_only for a in ("--show-only", p)]
            cmd += list(extra_args)
            out = subprocess.run(cmd, capture_output=True, text=True, env=helm_env(), timeout=120)
        if out.returncode:
            _CACHE[key] = HelmRenderError(out.stderr)
        else:
            _CACHE[key] = [validate_object(d) for d in yaml.safe_load_all(out.stdout) if d]
    result = _CACHE[key]
    if isinstance(result, HelmRenderError):
        raise result
    return copy.deepcopy(result)


def render_releases(
    helm: str, values: dict[str, Any], releases: list[str], extra_args: tuple[str, ...] = ()
) -> dict[str, list[dict[str, Any]] | HelmRenderError]:
    """Render one value set under many release names, a few helm processes at a time: each
    release's documents, or the HelmRenderError that refused it. The documents are parsed but
    not schema-checked (render does that), which keeps large batches cheap."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    with NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(yaml.safe_dump(values, sort_keys=True))
        f.flush()

        def one_release(release: str) -> list[dict[str, Any]] | HelmRenderError:
            cmd = [helm, "template", release, str(CHART), "--namespace", NAMESPACE, "-f", f.name]
            out = subprocess.run(
                [*cmd, *extra_args], capture_output=True, text=True, env=helm_env(), timeout=300
            )
            if out.returncode:
                return HelmRenderError(out.stderr)
            return [d for d in yaml.load_all(out.stdout, Loader=loader) if d]

        with ThreadPoolExecutor(max_workers=4) as pool:
            return dict(zip(releases, pool.map(one_release, releases), strict=True))


def chart_copy(dest: Path, version: str, app_version: str | None = None) -> Path:
    """A copy of the chart at dest whose Chart.yaml says this version (and appVersion)."""
    shutil.copytree(CHART, dest)
    meta = yaml.safe_load((dest / "Chart.yaml").read_text())
    meta["version"] = version
    if app_version is not None:
        meta["appVersion"] = app_version
    (dest / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return dest


def render_error(helm: str, values: dict[str, Any]) -> str:
    """helm's error message for values that must not render."""
    with pytest.raises(HelmRenderError) as info:
        render(helm, values)
    return str(info.value)


def notes(helm: str, *sets: str, namespace: str = "fc") -> str:
    """NOTES of a client-side dry-run install (helm template does not render NOTES.txt)."""
    cmd = [helm, "install", "rel", str(CHART), "--dry-run=client", "--namespace", namespace]
    cmd += [a for s in sets for a in ("--set", s)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=helm_env(), timeout=120)
    if "cluster unreachable" in out.stderr:
        pytest.skip("this helm's install --dry-run=client still needs a reachable cluster (helm 3)")
    if out.returncode:
        raise HelmRenderError(out.stderr)
    return out.stdout.split("NOTES:", 1)[1]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of this kind and name; fails listing what was rendered otherwise."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    have = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(found) == 1, f"{kind}/{name} not rendered once; have {have}"
    return found[0]


def container(doc: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """A container of a workload (the first one when no name is given)."""
    spec = doc["spec"]["template"]["spec"]
    containers = spec["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {e["name"]: e for e in c.get("env", [])}


#: Values that make web accept the test keys of harness/auth.py (their digests only).
TEST_API_KEYS = {"auth": {"apiKeys": api_keys_setting()}}

#: Values for an external Redis over TLS whose URLs live in an existing Secret.
EXTERNAL_REDIS = {
    "redis": {"enabled": False},
    "externalRedis": {
        "host": "redis.example.internal",
        "port": 6380,
        "tls": True,
        "existingSecret": "ext-redis",
    },
}
