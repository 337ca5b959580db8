"""checkov scans the rendered manifests: no failed check, every skip carries its reason, and
every skip is of a check that fails without it.

The kubernetes framework runs on `helm template` output, so KEDA objects and value-gated
templates are scanned too (checkov's helm framework renders defaults only). checkov
reports success on zero resources when it finds nothing to scan, so the count is asserted.
One scan reads the render twice: as rendered, and with its skip annotations removed in another
namespace, where each skipped check must fail (a skip of a passing check states a reason that
does not hold there).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.auth import api_keys_setting
from tests.support.chart import CHART, NAMESPACE, ROOT, helm_env

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
#: A digest for every image: production pins what it runs.
DIGEST = "sha256:" + "ab" * 32
PRODUCTION = {
    "image": {"digest": DIGEST},
    "redis": {"image": {"digest": DIGEST}},
    "postgresql": {"image": {"digest": DIGEST}},
    "helmTest": {"apiKey": {"existingSecret": "helm-test"}},
    "database": {"existingSecret": "db"},
    "storage": {"persistence": {"enabled": True}},
    "smtp": {"host": "smtp.example.com", "existingSecret": "smtp"},
    "networkPolicy": {"enabled": True},
    "metrics": {"enabled": True},
    "web": {"ingress": {"enabled": True}, "autoscaling": {"enabled": True}},
    "auth": {"apiKeys": api_keys_setting()},
}
#: The development default, locked down: the bundled PostgreSQL behind NetworkPolicies.
BUNDLED_WITH_POLICIES = {"networkPolicy": {"enabled": True}}
#: Every metrics object: the exporter, ServiceMonitors, dashboard ConfigMaps, the PrometheusRule.
METRICS_OPERATOR = {
    "metrics": {
        "enabled": True,
        "serviceMonitor": {"enabled": True},
        "dashboards": {"enabled": True, "folder": "Jobs"},
        "prometheusRule": {"enabled": True},
    },
    "networkPolicy": {"enabled": True},
}
#: Checks the design skips on purpose; each skip annotation in the templates says why.
EXPECTED_SKIPS = {
    "CKV_K8S_35",  # configuration (and the helm test's token) in the environment, from Secrets
    "CKV_K8S_43",  # an image referenced by a tag, which can move: only while its digest is unset
    "CKV_K8S_15",  # IfNotPresent with a tag: only while neither a digest nor Always is set
    "CKV_K8S_40",  # the official Redis and PostgreSQL images' uid 999
    "CKV_K8S_8",  # the helm test Pod runs one check and exits (beat has a liveness probe)
    "CKV_K8S_9",  # beat and the helm test Pod receive no traffic
    "CKV2_K8S_6",  # NetworkPolicies off (defaults only)
}
#: The namespace of the render's copy without skip annotations.
UNSKIPPED = f"{NAMESPACE}-unskipped"


@pytest.fixture(scope="module")
def checkov() -> Path:
    """The checkov executable of .venv-checkov (its pins clash with the project's)."""
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make checkov`")
    return CHECKOV


def scan(checkov: Path, helm: str, values: dict, tmp_path: Path) -> dict:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    rendered = subprocess.run(
        [helm, "template", "rel", str(CHART), "--namespace", NAMESPACE, "-f", str(values_file)],
        capture_output=True,
        text=True,
        check=True,
        env=helm_env(),
    ).stdout
    unskipped = [doc for doc in yaml.safe_load_all(rendered) if doc]
    for doc in unskipped:
        metadata = doc["metadata"]
        metadata["namespace"] = UNSKIPPED
        for key in [k for k in metadata.get("annotations") or {} if k.startswith("checkov.io/")]:
            del metadata["annotations"][key]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered + "\n---\n" + yaml.safe_dump_all(unskipped))
    out = subprocess.run(
        [
            str(checkov),
            "-f",
            str(manifest),
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.stdout, out.stderr
    return json.loads(out.stdout)


def namespace(result: dict) -> str:
    """The namespace of a checkov result's object (resource ids are `Kind.namespace.name...`)."""
    return str(result["resource"].split(".")[1])


def object_id(result: dict) -> tuple[str, str]:
    """Kind and name of a checkov result's object, in either copy of the render."""
    kind, _, name = result["resource"].split(".")[:3]
    return kind, name


@pytest.mark.parametrize(
    "values",
    [{}, BUNDLED_WITH_POLICIES, PRODUCTION, METRICS_OPERATOR],
    ids=["defaults", "bundled-postgresql-with-policies", "production", "metrics-operator"],
)
def test_checkov_finds_no_failed_check(checkov, helm, values, tmp_path):
    report = scan(checkov, helm, values, tmp_path)
    summary = report["summary"]
    assert summary["resource_count"] > 0, "checkov scanned nothing"
    assert summary["parsing_errors"] == 0
    failed = [
        (f["check_id"], f["resource"].split(".")[:3])
        for f in report["results"]["failed_checks"]
        if namespace(f) == NAMESPACE
    ]
    assert not failed, failed
    skipped = report["results"]["skipped_checks"]
    assert {namespace(s) for s in skipped} == {NAMESPACE}
    assert {s["check_id"] for s in skipped} <= EXPECTED_SKIPS
    # every skip is of a check that fails on the same object without its annotation
    failing = {(f["check_id"], object_id(f)) for f in report["results"]["failed_checks"]}
    needless = {(s["check_id"], object_id(s)) for s in skipped} - failing
    assert not needless, sorted(needless)
    assert all(len(s["check_result"].get("suppress_comment", "")) > 20 for s in skipped), (
        "a skip without a reason"
    )
    if values:
        assert "CKV2_K8S_6" not in {s["check_id"] for s in skipped}
    # beat is probed for liveness now: only the test Pod skips the liveness check
    liveness = {s["resource"] for s in skipped if s["check_id"] == "CKV_K8S_8"}
    assert liveness == {"Pod.flask-celery.rel-flask-celery-web-test"}, liveness
    if values.get("metrics"):
        exporter = "Deployment.flask-celery.rel-flask-celery-exporter"
        assert exporter in {c["resource"] for c in report["results"]["passed_checks"]}
    if "database" not in values:
        # PostgreSQL reads its password from a mounted file, so it needs no CKV_K8S_35 skip
        postgresql = "StatefulSet.flask-celery.rel-flask-celery-postgresql"
        assert report["results"]["passed_checks"], "nothing passed"
        scanned = {c["resource"] for c in report["results"]["passed_checks"]}
        assert postgresql in scanned, sorted(scanned)
        assert "CKV_K8S_35" not in {s["check_id"] for s in skipped if s["resource"] == postgresql}
