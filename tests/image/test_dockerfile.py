"""The Dockerfile: lint-clean, non-root with the uid the chart expects, the contract's ports.

The image built and run as the chart deploys it: test_image_run.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_dockerfile_passes_hadolint() -> None:
    out = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_image_runs_as_the_uid_the_chart_sets() -> None:
    user = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)
    helm = ROOT / ".tools" / "helm-4.3.1" / "helm"
    if not helm.exists():
        pytest.fail("helm is missing: run `make helm`")
    web = subprocess.run(
        [
            str(helm),
            "template",
            "rel",
            str(ROOT / "charts" / "flask-celery"),
            "--show-only",
            "templates/web/deployment.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    security = yaml.safe_load(web.stdout)["spec"]["template"]["spec"]["securityContext"]
    assert user == [(str(security["runAsUser"]), str(security["runAsGroup"]))]
    assert int(user[0][0]) != 0


def test_image_exposes_the_contract_ports() -> None:
    exposed = re.search(r"^EXPOSE (.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert exposed is not None and set(exposed.group(1).split()) == {"8000", "9808", "5555"}


def image_env() -> dict[str, str]:
    """The variables the image's ENV sets: the final image is the `runtime` stage with the
    service added, so every ENV from that stage on."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    runtime = text[text.index(" AS runtime\n") :]
    pairs = [p for line in re.findall(r"^ENV (.+)$", runtime, re.M) for p in line.split()]
    return dict(pair.split("=", 1) for pair in pairs)


def test_flask_commands_in_the_image_find_the_app_without_flags(tmp_path: Path) -> None:
    """`kubectl exec deploy/<web> -- flask api-keys ...` (NOTES, README) works as written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env["FLASK_APP"] = image_env()["FLASK_APP"]
    env["FLASK_SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'db.sqlite'}"
    flask = Path(sys.executable).parent / "flask"
    listed = subprocess.run(
        [str(flask), "api-keys", "--help"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "create" in listed.stdout and "revoke" in listed.stdout
