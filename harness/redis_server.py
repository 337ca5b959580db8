"""A throwaway redis-server process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import redis

from harness.processes import free_port, stop, wait_until


def redis_server_bin() -> str:
    """redis-server from REDIS_SERVER_BIN or PATH (`make test` installs it when missing)."""
    exe = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    if not exe:
        raise RuntimeError("redis-server not found: run `make test`, which installs it")
    return exe


class RedisServer:
    """A redis-server process on a free loopback port, data in `directory`; with a `password`,
    clients must AUTH with it (`requirepass`), and `url` carries it."""

    def __init__(
        self, directory: Path, appendonly: bool = False, password: str | None = None
    ) -> None:
        self.directory, self.appendonly, self.password = directory, appendonly, password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = [
            redis_server_bin(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--logfile",
            str(self.directory / "redis.log"),
            *(["--requirepass", self.password] if self.password else []),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
        wait_until(client.ping, timeout=10, what=f"redis-server on {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
