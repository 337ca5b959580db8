"""The image, built with podman and run the way the rendered chart runs its pods.

`build_image` builds the Dockerfile on the local Debian base (scripts/build-base-image.sh; no
registry is needed) with podman's layer cache, or skips with the command that would make it
possible. `PodmanPod` turns a rendered pod spec into a `podman run`, taking from the manifest
what the kubelet takes from it:

- the container's exec-form `command` as the entrypoint and `args` after it (no shell: the
  command is PID 1, which is where the kubelet's SIGTERM goes);
- the rendered `env`: plain values as they are; a `secretKeyRef` read from the Secret the chart
  rendered, with the Redis and PostgreSQL URLs in it moved to the local servers (same Redis
  database index);
- the pod and container `securityContext`: uid and gid, fsGroup as a supplementary group, a
  read-only root filesystem (with none of podman's own tmpfs mounts), dropped capabilities,
  no privilege escalation;
- every `emptyDir` volume as an empty tmpfs at its mountPath (no copy of the image's files),
  writable by the container's user and group as the kubelet makes an emptyDir for the pod's
  fsGroup; any other volume kind fails, since it would need a stand-in this module does not
  make;
- `resources.limits` as podman's memory and CPU limits, and terminationGracePeriodSeconds as
  the stop timeout.

What cannot be as rendered is said here: the containers share the host's network (the local
Redis and PostgreSQL listen on loopback), so the ports the containers declare move to free
loopback ports, in `--bind`/`--port` arguments and in env values that name a declared port.
Test-only additions are explicit arguments of `run`: extra command arguments and read-only
mounts, and PYTHONPATH naming them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from harness.processes import free_port, wait_until
from tests.support.chart import ROOT
from tests.support.chart_processes import LocalContainer, local_argv

BASE_IMAGE = "localhost/bookworm-python:latest"
CA_BUNDLE = os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
#: Where a test mounts directories of the repository (read-only) and what PYTHONPATH names.
TEST_MOUNTS = "/opt/flask-celery-tests"
#: The securityContext fields this module maps; a new one in the chart fails the run until it is.
SECURITY_FIELDS = {
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "fsGroup",
    "fsGroupChangePolicy",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "privileged",
    "capabilities",
    "seccompProfile",  # RuntimeDefault: podman applies its default profile
}


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode:
        raise AssertionError(f"podman {' '.join(args)} failed: {out.stderr[-3000:]}")
    return out


def build_context(dest: Path) -> Path:
    """A snapshot of what the build sees (the Dockerfile, .dockerignore and the paths it lets
    through), so that two builds see the same tree and podman does not walk the whole
    repository with its virtualenvs."""
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for name in [
        "Dockerfile",
        ".dockerignore",
        *(x[1:].rstrip("/") for x in ignore if x[:1] == "!"),
    ]:
        src, dst = ROOT / name, dest / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    return dest


def build_image(tag: str, context: Path) -> tuple[float, str]:
    """Build `context` (see build_context) as `tag` on the local base image with podman's layer
    cache; return the seconds taken and podman's output. Skips, naming the command to run,
    where podman or the base image cannot be had."""
    if not shutil.which("podman"):
        pytest.skip(
            "podman is not installed: run `sudo bash scripts/ensure-podman.sh` "
            "(`make test` does it when run as root)"
        )
    if podman("image", "exists", BASE_IMAGE, check=False).returncode:
        if os.geteuid() != 0:
            pytest.skip(
                f"no base image {BASE_IMAGE}: run `sudo bash scripts/build-base-image.sh` "
                "(`make test` does it when run as root)"
            )
        subprocess.run(["bash", str(ROOT / "scripts" / "build-base-image.sh")], check=True)
    build = ["build", "--network", "host", "--build-arg", f"BASE={BASE_IMAGE}", "-t", tag]
    if Path(CA_BUNDLE).exists():  # a TLS-intercepting proxy's CA, when the machine has one
        build += ["--secret", f"id=ca,src={CA_BUNDLE}"]
    started = time.monotonic()
    out = podman(*build, str(context), timeout=1800)
    return time.monotonic() - started, out.stdout + out.stderr


def quantity(value: str) -> float:
    """A Kubernetes quantity (`512Mi`, `500m`, `1`) as a number."""
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for suffix, factor in suffixes.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


@dataclass
class PodmanPod:
    """One rendered pod's container (or init container), ready to run with podman."""

    pod: str
    spec: dict[str, Any]
    container: dict[str, Any]
    secrets: dict[str, dict[str, str]]
    redis_port: int
    database_url: str
    ports: dict[int, int] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        self.ports = {p["containerPort"]: free_port() for p in self.container.get("ports", [])}

    @property
    def grace(self) -> int:
        return int(self.spec.get("terminationGracePeriodSeconds", 30))

    def local_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme in ("redis", "rediss"):
            return urlunsplit(("redis", f"127.0.0.1:{self.redis_port}", parts.path, "", ""))
        if parts.scheme.startswith("postgresql"):
            return self.database_url
        return url

    def env(self) -> dict[str, str]:
        declared = {str(p) for p in self.ports}
        env: dict[str, str] = {}
        for entry in self.container.get("env", []):
            if "value" in entry:
                value = str(entry["value"])
                if entry["name"].endswith("_PORT") and value in declared:
                    value = str(self.ports[int(value)])
            else:
                ref = entry["valueFrom"]["secretKeyRef"]
                value = self.local_url(self.secrets[ref["name"]][ref["key"]])
            env[entry["name"]] = value
        return env

    def security(self) -> list[str]:
        pod, ctr = self.spec.get("securityContext", {}), self.container.get("securityContext", {})
        unknown = (set(pod) | set(ctr)) - SECURITY_FIELDS
        assert not unknown, f"securityContext fields this test does not map: {sorted(unknown)}"
        merged = {**pod, **ctr}
        uid, gid = merged["runAsUser"], merged.get("runAsGroup", 0)
        assert not (merged.get("runAsNonRoot") and uid == 0), "runAsNonRoot with uid 0"
        args = ["--user", f"{uid}:{gid}"]
        if "fsGroup" in pod:
            args += ["--group-add", str(pod["fsGroup"])]
        if merged.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        caps = merged.get("capabilities", {})
        args += [a for c in caps.get("drop", []) for a in ("--cap-drop", c.lower())]
        args += [a for c in caps.get("add", []) for a in ("--cap-add", c.lower())]
        if merged.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        assert not merged.get("privileged"), "a privileged container"
        return args

    def mounts(self) -> list[str]:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        args: list[str] = []
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            assert set(volume) == {"name", "emptyDir"}, f"volume kind not stood in for: {volume}"
            # chown: podman leaves a tmpfs over an image directory root-owned whatever its mode
            options = f"type=tmpfs,destination={mount['mountPath']},tmpfs-mode=0777"
            options += ",chown=true,notmpcopyup"
            if "sizeLimit" in volume["emptyDir"]:
                options += f",tmpfs-size={int(quantity(volume['emptyDir']['sizeLimit']))}"
            args += ["--mount", options]
        return args

    def limits(self) -> list[str]:
        limits = self.container.get("resources", {}).get("limits", {})
        args = []
        if "memory" in limits:
            args += ["--memory", str(int(quantity(str(limits["memory"]))))]
        if "cpu" in limits:
            args += ["--cpus", f"{quantity(str(limits['cpu'])):g}"]
        return args

    @property
    def command(self) -> list[str]:
        """The rendered command and args, ports moved to the local ones."""
        c = self.container
        return local_argv([*c["command"], *c.get("args", [])], self.ports)

    def run_args(
        self, extra: tuple[str, ...] = (), mounts: dict[Path, str] | None = None
    ) -> list[str]:
        """The `podman run` arguments, up to and including the command."""
        c = self.container
        args = ["run", "--detach", "--name", self.name, "--network", "host"]
        args += ["--log-driver", "k8s-file"]
        args += ["--stop-timeout", str(self.grace)]
        args += self.security() + self.mounts() + self.limits()
        env = self.env()
        if mounts:  # test-only code, read-only, importable
            args += [a for src, dst in mounts.items() for a in ("-v", f"{src}:{dst}:ro")]
            env["PYTHONPATH"] = TEST_MOUNTS
        args += [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
        if "workingDir" in c:
            args += ["--workdir", c["workingDir"]]
        command = self.command
        args += ["--entrypoint", command[0], c["image"], *command[1:], *extra]
        return args

    def run(
        self, name: str, extra: tuple[str, ...] = (), mounts: dict[Path, str] | None = None
    ) -> PodmanPod:
        """Start the container detached as `name`."""
        self.name = name
        podman(*self.run_args(extra, mounts))
        return self

    # -- a running container -------------------------------------------------------------------

    def exec(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`kubectl exec`: run argv in the container, as its user, with its environment."""
        return podman("exec", self.name, *argv, timeout=timeout, check=False)

    def state(self) -> dict[str, Any]:
        out = podman("inspect", "--format", "{{json .State}}", self.name)
        return dict(json.loads(out.stdout))

    def alive(self) -> bool:
        return bool(self.state()["Running"])

    def logs(self, lines: int = 40) -> str:
        out = podman("logs", "--tail", str(lines), self.name, check=False)
        return out.stdout + out.stderr

    def probe(self, kind: str) -> tuple[bool, str]:
        """Run the rendered `<kind>Probe` once; (passed, what it answered)."""
        probe = self.container[f"{kind}Probe"]
        if "exec" in probe:
            out = self.exec(*probe["exec"]["command"], timeout=probe.get("timeoutSeconds", 1) + 30)
            return out.returncode == 0, out.stderr.strip()
        # an HTTP probe is the same request to the same loopback port as for a local process
        here = Path(".")
        local = LocalContainer(self.pod, self.container, [], {}, self.ports, here, here)
        return local.probe(kind)

    def wait_ready(self) -> float:
        """Poll the startup probe (else readiness) until it passes, for as long as the kubelet
        would before it restarts the container; fail at once if the container exits. Returns
        the seconds it took."""
        kind = next(k for k in ("startup", "readiness") if f"{k}Probe" in self.container)
        probe = self.container[f"{kind}Probe"]
        budget = probe.get("initialDelaySeconds", 0)
        budget += probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
        started = time.monotonic()

        def ready() -> str | None:
            if not self.alive():
                return "exited"
            return "ready" if self.probe(kind)[0] else None

        what = f"{self.name} {kind} probe"
        interval = min(2.0, probe.get("periodSeconds", 10))  # each exec probe starts a python
        outcome = wait_until(ready, timeout=budget, what=what, interval=interval)
        assert outcome == "ready", f"{self.name} exited: {self.logs()}"
        return time.monotonic() - started

    def wait_exit(self, timeout: float) -> int:
        """The container's exit code, once it has exited (within `timeout` seconds)."""
        out = podman("wait", self.name, timeout=timeout)
        return int(out.stdout.strip())

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)
