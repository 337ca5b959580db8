"""checkov scans the rendered manifests: no failed check, and every skip carries its reason.

The kubernetes framework runs on `helm template` output, so KEDA objects and value-gated
templates are scanned too (checkov's helm framework renders defaults only). checkov
reports success on zero resources when it finds nothing to scan, so the count is asserted.
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
PRODUCTION = {
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
    "CKV_K8S_35",  # configuration through environment variables from Secrets (contract 4)
    "CKV_K8S_43",  # image pinned by tag unless image.digest is set
    "CKV_K8S_15",  # IfNotPresent for immutable tags
    "CKV_K8S_40",  # the official Redis and PostgreSQL images' uid 999
    "CKV_K8S_8",  # the helm test Pod runs one check and exits (beat has a liveness probe)
    "CKV_K8S_9",  # beat and the helm test Pod receive no traffic
    "CKV2_K8S_6",  # NetworkPolicies off (defaults only)
}


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
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered)
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
        (f["check_id"], f["resource"].split(".")[:3]) for f in report["results"]["failed_checks"]
    ]
    assert not failed, failed
    skipped = report["results"]["skipped_checks"]
    assert {s["check_id"] for s in skipped} <= EXPECTED_SKIPS
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
