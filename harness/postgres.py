"""A throwaway PostgreSQL server on a free loopback port, for tests that need the real database.

`initdb` and `pg_ctl` come from scripts/ensure-postgres.sh, which finds or installs them. A test
may take the server away and bring it back on the same port and data (`halt`, `start`) to see
what the service does while its database is down.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import sqlalchemy as sa

from harness.processes import free_port
from harness.stack import ROOT


class Postgres:
    """A PostgreSQL server on a free loopback port, its data in a fresh temporary directory.

    As root, the server runs as the `postgres` user (it refuses to run as root), so the
    directory lives under /tmp, which that user can reach, rather than under pytest's tmp.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir, self.port = bindir, free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="flask-celery-pg-"))
        self.data = self.directory / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root needs a `postgres` user to run the server as"
                ) from None
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str) -> None:
        cmd = [*self.as_user, str(self.bindir / args[0]), *args[1:]]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if result.returncode:
            log = self.directory / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}{result.stderr}{tail}")

    def start(self) -> Postgres:
        """Create the cluster (the first time) and start the server; returns once it accepts
        connections."""
        if not self.data.exists():
            self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.directory} -c fsync=off"
        )
        log = str(self.directory / "server.log")
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        return self

    def halt(self) -> None:
        """Stop the server at once (open connections die with it), keeping its data for
        `start`."""
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Stop the server if it runs and remove its data."""
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def postgres_bindir() -> Path:
    """initdb's directory from scripts/ensure-postgres.sh; a test failure if it has none."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-postgres.sh")], capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(f"no PostgreSQL server binaries:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def empty_database_url(server: Postgres | None, tmp_path: Path) -> str:
    """The URL of an empty database of its own: a SQLite file under `tmp_path` when `server` is
    None, else a new database on that PostgreSQL server."""
    if server is None:
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    name = f"t{uuid4().hex[:12]}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@dataclass(frozen=True)
class Database:
    """Which database a stack runs on: `sqlite`, or `postgresql` on the server that `server`
    gives (a callable, so that the server starts only when a database is first made on it)."""

    name: str
    server: Callable[[], Postgres] | None = None

    def fresh_url(self, directory: Path) -> str:
        """The URL of a new, empty database of this kind (a SQLite file under `directory`)."""
        return empty_database_url(self.server() if self.server else None, directory)
