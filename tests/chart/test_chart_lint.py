"""`helm lint --strict` is clean under each helm, with defaults, with every option on, and with
each kind of Prometheus Operator object."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.support.chart import CHART, helm_env

EVERYTHING_ON = {
    "networkPolicy": {"enabled": True},
    "metrics": {"enabled": True},
    "storage": {"persistence": {"enabled": True}},
    "web": {"ingress": {"enabled": True}, "autoscaling": {"enabled": True}},
    "database": {"existingSecret": "db"},
}


#: The Prometheus Operator objects that EVERYTHING_ON leaves out (one kind of monitor at a time).
METRICS_OPERATOR = {
    "metrics": {
        "enabled": True,
        "serviceMonitor": {"enabled": True},
        "dashboards": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
}
POD_MONITORS = {"metrics": {"enabled": True, "podMonitor": {"enabled": True}}}


@pytest.mark.parametrize(
    "values",
    [{}, EVERYTHING_ON, METRICS_OPERATOR, POD_MONITORS],
    ids=["defaults", "everything-on", "metrics-operator", "pod-monitors"],
)
def test_helm_lint_strict_is_clean(helm, values, tmp_path):
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = subprocess.run(
        [helm, "lint", "--strict", str(CHART), "-f", str(values_file)],
        capture_output=True,
        text=True,
        env=helm_env(),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout
