"""The chart's rendered containers, run as local processes the way a kubelet would start them.

A rendered pod becomes local processes: its container starts from its exec-form command (no
shell) with its rendered environment, and its probes run as rendered. Only what cannot exist
outside a cluster is rewritten:

- a `secretKeyRef` reads the Secret the chart rendered; a Redis URL in it points to the local
  redis-server instead of the in-cluster Service (same database index, no password), and a
  PostgreSQL URL to one local SQLite file that every pod shares, as they share the bundled
  PostgreSQL;
- the pods' migrate init container runs once, before the first pod starts: in the cluster every
  pod runs it and the service's PostgreSQL advisory lock makes them take turns, a lock that
  SQLite does not have;
- every volume mount is a directory of its own under the run's root, one per pod and volume as
  with an emptyDir, and env values that point into a mount are moved there; a path outside every
  mount fails the run, since the root filesystem is read-only in the pod;
- container ports become free loopback ports, in `--bind`/`--port` arguments and in probes;
- command[0] is looked up with the venv's bin directory first on PATH, as the image puts its
  venv first on PATH.

The test-only additions are explicit: PYTHONPATH names the repository, so that a worker can load
`--include harness.tasks`, and FLOWER_ADDRESS keeps Flower on loopback.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from harness.processes import free_port, stop, wait_until
from tests.support.chart import ROOT, by_kind

VENV_BIN = Path(sys.executable).parent


def local_path(path: str, mounts: dict[str, Path]) -> str:
    """Where `path` of the container lives locally; fails for a path outside every mount."""
    for mount in sorted(mounts, key=len, reverse=True):
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return str(mounts[mount]) + path[len(mount) :]
    raise AssertionError(f"{path} is outside every volume mount {sorted(mounts)}: unwritable")


def local_argv(argv: list[str], ports: dict[int, int]) -> list[str]:
    """`argv` with its `--bind HOST:PORT` and `--port[=]PORT` moved to loopback ports."""

    def port(value: str) -> str:
        assert int(value) in ports, f"{argv} binds {value}, which the container does not declare"
        return str(ports[int(value)])

    out: list[str] = []
    for arg in argv:
        previous = out[-1] if out else ""
        if previous == "--bind":
            arg = f"127.0.0.1:{port(arg.rsplit(':', 1)[1])}"
        elif previous == "--port":
            arg = port(arg)
        elif arg.startswith("--port="):
            arg = f"--port={port(arg.split('=', 1)[1])}"
        out.append(arg)
    return out


def exec_argv(pid: int, path: str) -> list[str]:
    """The argv process `pid` runs, with a script's interpreter folded back into the script name.

    A console script such as `celery` is exec'd by the kernel as `python /venv/bin/celery ...`;
    that is still the exec form: no shell, and the PID is the command's.
    """
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    if len(cmdline) > 1 and Path(cmdline[0]).name.startswith("python"):
        script = Path(cmdline[1])
        if script.parent == Path(shutil.which(script.name, path=path) or "/").parent:
            return [script.name, *cmdline[2:]]
    return cmdline


@dataclass
class LocalContainer:
    """One rendered container, resolved for a local run."""

    pod: str
    spec: dict[str, Any]
    argv: list[str]
    env: dict[str, str]
    ports: dict[int, int]
    workdir: Path
    log: Path
    #: Test-only arguments appended to the rendered command.
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.pod}/{self.spec['name']}"

    @property
    def command(self) -> list[str]:
        """What runs: the rendered command (ports moved) plus the test-only arguments."""
        return self.argv + list(self.extra)

    def start(self) -> subprocess.Popen[bytes]:
        """Start the command in its own session, output appended to `log`."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc

    def exec(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `argv` beside the container's process, as `kubectl exec` does: same environment
        and working directory, output captured."""
        return subprocess.run(
            argv, env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=timeout
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def running(self) -> LocalContainer:
        """This container, started again (and ready) if it is not running."""
        if not self.alive():
            self.start()
            self.wait_ready()
        return self

    def probe(self, kind: str) -> tuple[bool, str]:
        """Run the rendered `<kind>Probe` once; (passed, what it answered)."""
        probe = self.spec[f"{kind}Probe"]
        timeout = probe.get("timeoutSeconds", 1)
        if "exec" in probe:
            out = subprocess.run(
                probe["exec"]["command"],
                env=self.env,
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            return out.returncode == 0, out.stderr.strip()
        get = probe["httpGet"]
        named = {p["name"]: p["containerPort"] for p in self.spec.get("ports", [])}
        local = self.ports[named.get(get["port"], get["port"])]
        try:
            answer = httpx.get(f"http://127.0.0.1:{local}{get['path']}", timeout=timeout)
        except httpx.HTTPError as exc:
            return False, repr(exc)
        return 200 <= answer.status_code < 400, f"{answer.status_code} {answer.text[:200]}"

    def wait_ready(self, timeout: float = 60) -> None:
        """Poll the startup probe (else readiness) until it passes; fail if the process exits."""
        kind = next(k for k in ("startup", "readiness") if f"{k}Probe" in self.spec)

        def ready() -> bool:
            assert self.alive(), f"{self.name} exited: {self.log_tail()}"
            return self.probe(kind)[0]

        wait_until(ready, timeout=timeout, what=f"{self.name} {kind} probe (log: {self.log})")

    def stop(self) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL."""
        return stop(self.proc) if self.proc is not None else None

    def terminate(self) -> None:
        """SIGTERM to the PID only, as the kubelet sends it to the container's PID 1."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def stop_all(containers: list[LocalContainer]) -> None:
    """SIGTERM every process group at once, then wait for each (SIGKILL after its timeout)."""
    for c in containers:
        if c.alive():
            assert c.proc is not None
            os.killpg(c.proc.pid, signal.SIGTERM)
    for c in containers:
        c.stop()


class LocalCluster:
    """The pods of one rendered chart, run as local processes against a local Redis."""

    def __init__(self, docs: list[dict[str, Any]], redis_port: int, root: Path) -> None:
        self.docs, self.redis_port, self.root = docs, redis_port, root
        #: The local stand-in for the bundled PostgreSQL, shared by every pod.
        self.database = root / "database.sqlite"
        self.migrated = False
        self.secrets = {
            s["metadata"]["name"]: {
                k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()
            }
            for s in by_kind(docs, "Secret")
        }

    def pod_spec(self, deployment: str) -> dict[str, Any]:
        """The pod spec of a Deployment, or of a bare Pod (the helm test hook) of that name."""
        found = [d for d in by_kind(self.docs, "Deployment") if d["metadata"]["name"] == deployment]
        if found:
            return found[0]["spec"]["template"]["spec"]
        pods = [d for d in by_kind(self.docs, "Pod") if d["metadata"]["name"] == deployment]
        assert pods, f"no Deployment or Pod {deployment} rendered"
        return pods[0]["spec"]

    def local_url(self, url: str) -> str:
        """A rendered URL moved to its local stand-in: a Redis URL to the local server (same
        database index), a PostgreSQL URL to the shared SQLite file."""
        parts = urlsplit(url)
        if parts.scheme in ("redis", "rediss"):
            return urlunsplit(("redis", f"127.0.0.1:{self.redis_port}", parts.path, "", ""))
        if parts.scheme.startswith("postgresql"):
            return f"sqlite:///{self.database}"
        return url

    def _value(self, entry: dict[str, Any], mounts: dict[str, Path]) -> str:
        if "value" in entry:
            value = str(entry["value"])
            return local_path(value, mounts) if value.startswith("/") else value
        ref = entry["valueFrom"]["secretKeyRef"]
        data = self.secrets.get(ref["name"], {})
        assert ref["key"] in data, f"{entry['name']}: Secret {ref['name']} has no {ref['key']}"
        return self.local_url(data[ref["key"]])

    def container(self, deployment: str, init: bool = False) -> LocalContainer:
        """The deployment's container (or its init container), resolved for a local run."""
        spec = self.pod_spec(deployment)
        (c,) = spec["initContainers" if init else "containers"]
        pod_dir = self.root / deployment
        mounts = {m["mountPath"]: pod_dir / m["name"] for m in c.get("volumeMounts", [])}
        for path in [*mounts.values(), pod_dir / "home"]:
            path.mkdir(parents=True, exist_ok=True)
        ports = {p["containerPort"]: free_port() for p in c.get("ports", [])}
        env = {
            "PATH": f"{VENV_BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            "HOME": str(pod_dir / "home"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(ROOT),
            "FLOWER_ADDRESS": "127.0.0.1",
        }
        env.update({e["name"]: self._value(e, mounts) for e in c.get("env", [])})
        return LocalContainer(
            pod=deployment,
            spec=c,
            argv=local_argv(c["command"] + c.get("args", []), ports),
            env=env,
            ports=ports,
            workdir=pod_dir,
            log=pod_dir / f"{c['name']}.log",
        )

    def migrate(self) -> None:
        """Run the pods' migrate init container once, the first time a pod starts.

        Every web, worker and beat pod renders the same init container; running one of them
        stands for all, since the others would find the schema at head.
        """
        if self.migrated:
            return
        pods = [
            d["metadata"]["name"]
            for d in by_kind(self.docs, "Deployment")
            if d["spec"]["template"]["spec"].get("initContainers")
        ]
        assert pods, "no pod renders a migrate init container"
        commands = {tuple(self.pod_spec(p)["initContainers"][0]["command"]) for p in pods}
        assert len(commands) == 1, f"the pods migrate differently: {commands}"
        init = self.container(pods[0], init=True)
        assert init.start().wait(120) == 0, f"{init.name} failed: {init.log_tail()}"
        self.migrated = True

    def start_pods(
        self, deployments: list[str], extra: dict[str, tuple[str, ...]] | None = None
    ) -> dict[str, LocalContainer]:
        """Migrate the database (once), then start the pods' containers.

        `extra` appends test-only arguments to a pod's command. Returns once every container
        with a startup or readiness probe passes it.
        """
        self.migrate()
        started = {d: self.container(d) for d in deployments}
        try:
            for d, c in started.items():
                c.extra = (extra or {}).get(d, ())
                c.start()
            for c in started.values():
                if {"startupProbe", "readinessProbe"} & set(c.spec):
                    c.wait_ready()
        except BaseException:
            stop_all(list(started.values()))
            raise
        return started
