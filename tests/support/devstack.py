"""The `make run` stack (`python -m devstack`) started by a test: on free ports, its state in a
directory the test gives, its output in a log file, and killed with everything it started when
the test is done. Linux only: the stack's processes are found through /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.ports import port_is_free
from harness.processes import free_port, wait_until
from service.routing import WORKER_GROUPS

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_END = "Press Ctrl-C to stop."
#: Every process the stack supervises, by the name its log lines carry.
ROLES = frozenset(
    {"web", "exporter", "beat", "flower", "redis"} | {f"worker-{g}" for g in WORKER_GROUPS}
)


@dataclass
class Devstack:
    proc: subprocess.Popen[bytes]
    state: Path
    log: Path
    ports: dict[str, int]
    sessions: set[int]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}"

    @property
    def api_key(self) -> str:
        """The development key the stack made, kept in its state directory."""
        return (self.state / "api-key").read_text().strip()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def processes() -> Iterator[tuple[int, str, int, int]]:
    """(pid, state, parent pid, session id) of every process, read from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid, _, sid = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except OSError:
            continue  # it exited since the glob
        yield int(stat.parent.name), state, int(ppid), int(sid)


def sessions_led_by_children_of(pid: int) -> set[int]:
    """Session ids of `pid`'s children: devstack starts each child in a session of its own."""
    return {sid for _, _, ppid, sid in processes() if ppid == pid}


def processes_in(sessions: set[int]) -> list[int]:
    """Live processes in any of `sessions`: the children, and their own children."""
    return [pid for pid, state, _, sid in processes() if sid in sessions and state != "Z"]


def child_running(parent: int, program: str) -> int | None:
    """The pid of `parent`'s live child that runs `program` (its name, as /proc says it)."""
    for pid, state, ppid, _ in processes():
        if ppid != parent or state == "Z":
            continue
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == program[:15]:
                return pid
        except OSError:
            continue  # it exited since
    return None


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free loopback ports."""
    for _ in range(50):
        first = free_port()
        if first + size < 65536 and all(port_is_free(first + i) for i in range(size)):
            return first
    raise RuntimeError(f"no {size} consecutive free ports")


def devstack_ports() -> dict[str, int]:
    """Free ports for every port option of the stack (`metrics` is the first of a block)."""
    ports = {name: free_port() for name in ("web", "flower", "smtp", "webhook", "redis")}
    ports["metrics"] = free_port_block(1 + len(WORKER_GROUPS))
    return ports


@contextmanager
def running_devstack(
    state: Path,
    log: Path,
    ports: dict[str, int] | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[Devstack]:
    """The whole `make run` stack on `ports` (free ones by default), its own Redis included,
    ready once it printed its summary; killed with all it started if still running at the end.

    The environment names no broker or database (whatever the test's environment says), so the
    stack starts a Redis of its own (on the port passed as --redis-port) and a SQLite file in
    `state`, as on a fresh clone; `env` adds variables to that, `args` flags to the command.
    """
    ports = ports or devstack_ports()
    cmd = [sys.executable, "-m", "devstack", "--state-dir", str(state), *args]
    cmd += [a for name, port in ports.items() for a in (f"--{name}-port", str(port))]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "DEVSTACK_"))}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**clean, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = Devstack(proc, state, log, ports, set())
    try:
        wait_until(
            lambda: SUMMARY_END in stack.output() or proc.poll() is not None,
            timeout=90,
            what="the devstack summary",
        )
        assert proc.poll() is None, f"devstack exited early:\n{stack.output()[-4000:]}"
        stack.sessions = sessions_led_by_children_of(proc.pid)
        yield stack
    finally:
        kill_devstack(stack)


def kill_devstack(stack: Devstack) -> None:
    """SIGKILL the stack and every session it started, if still running."""
    if stack.proc.poll() is None:
        stack.sessions |= sessions_led_by_children_of(stack.proc.pid)
        os.killpg(stack.proc.pid, signal.SIGKILL)
        stack.proc.wait()
    for session in stack.sessions:
        if processes_in({session}):
            os.killpg(session, signal.SIGKILL)


def stop_devstack(stack: Devstack, timeout: float = 60) -> int:
    """SIGTERM the stack as `make` would on Ctrl-C; its exit status once it stopped."""
    stack.sessions |= sessions_led_by_children_of(stack.proc.pid)
    stack.proc.send_signal(signal.SIGTERM)
    return stack.proc.wait(timeout=timeout)
