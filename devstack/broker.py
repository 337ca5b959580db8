"""The broker the stack's processes share: the one FLASK_CELERY__BROKER_URL names, or else a
Redis of our own (found, or installed, by scripts/ensure-redis.sh), its AOF in the state dir, on
the port --redis-port names or else on one remembered there, so that its URL stays the same from
one run to the next.

A task's message stays unacknowledged in Redis while the task runs (acks late); a worker killed
outright (a second Ctrl-C, the stack itself killed) leaves it there, and Redis would hand it out
again only after the visibility timeout, an hour or more. Our own Redis serves no worker but
ours, so before any starts, every message still unacknowledged is a past run's, and goes back
to its queue at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kombu.connection import Connection

from .options import REDIS_FIRST_PORT
from .ports import HOST, port_is_free

ENSURE_REDIS = Path(__file__).resolve().parent.parent / "scripts" / "ensure-redis.sh"


def named_broker(env: Mapping[str, str]) -> str | None:
    """The broker URL the environment names, in either spelling; None when it names none."""
    return env.get("FLASK_CELERY__BROKER_URL") or env.get("FLASK_CELERY__broker_url") or None


def use_named_broker(env: dict[str, str], url: str) -> None:
    """Point `env` at `url`, with results on the same server unless a backend is named."""
    same_server = urlsplit(url)._replace(path="/1").geturl()
    backend = env.get("FLASK_CELERY__result_backend") or same_server
    env.setdefault("FLASK_CELERY__RESULT_BACKEND", backend)
    env["FLASK_CELERY__BROKER_URL"] = url


def redis_server() -> str | None:
    """The redis-server to run: $REDIS_SERVER_BIN, or the one ensure-redis.sh finds or installs.

    None when the script failed; it said why on stderr.
    """
    given = os.environ.get("REDIS_SERVER_BIN")
    if given:
        return given
    if not ENSURE_REDIS.exists():  # installed without the repository's scripts
        return shutil.which("redis-server") or "redis-server"
    out = subprocess.run(["bash", str(ENSURE_REDIS)], stdout=subprocess.PIPE, text=True)
    if out.returncode:
        return None
    return out.stdout.strip().splitlines()[-1]


def redis_port(state: Path, chosen: int | None) -> int:
    """The port the user chose (a clash with it is refused before anything starts), as it is.

    Without one: the port remembered in the state dir (else the first), or the first free one
    above; remembered for the next run.
    """
    if chosen is not None:
        return chosen
    port_file = state / "redis.port"
    port = int(port_file.read_text()) if port_file.exists() else REDIS_FIRST_PORT
    if not port_is_free(port):
        port = next(p for p in range(REDIS_FIRST_PORT, 65536) if port_is_free(p))
    port_file.write_text(str(port))
    return port


def redis_command(binary: str, port: int, directory: Path) -> list[str]:
    """The command line of our Redis: on loopback, appending every write to its AOF."""
    data = ["--dir", str(directory), "--appendonly", "yes", "--appendfsync", "everysec"]
    return [binary, "--bind", HOST, "--port", str(port), *data]


def redis_urls(port: int) -> dict[str, str]:
    """The environment that points every child at our Redis: tasks in db 0, results in db 1."""
    return {
        "FLASK_CELERY__BROKER_URL": f"redis://{HOST}:{port}/0",
        "FLASK_CELERY__RESULT_BACKEND": f"redis://{HOST}:{port}/1",
    }


def requeue_unacknowledged(url: str) -> int:
    """Put every unacknowledged message on the Redis at `url` back in its queue; how many.

    Only for a Redis no running worker uses: a message a live worker holds would run twice.
    """
    # a visibility timeout of 0: every unacknowledged message counts as abandoned
    with Connection(url, transport_options={"visibility_timeout": 0}) as conn:
        channel: Any = conn.default_channel
        count = int(channel.client.zcard(channel.unacked_index_key))
        if count:
            channel.qos.restore_visible(num=count)
    return count
