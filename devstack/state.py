"""The state directory (`var/` by default) and the environment every child process gets, which
points them into it: file storage, the SQLite database, the Prometheus multiprocess files, the
SMTP sink, and the Flower password and the development API key, generated once and kept.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

from service.auth.api_keys import digest, new_token
from service.auth.callers import SCOPES

from .ports import HOST

#: The development API key's file in the state directory: `curl -H "Authorization: Bearer
#: $(cat var/api-key)"`.
API_KEY_FILE = "api-key"


def _secret_file(path: Path, make: str) -> str:
    """The secret kept in `path`, written (owner-only) with `make` the first time."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make)
    return path.read_text().strip()


def prepare_state(state: Path, smtp_port: int, webhook_port: int) -> dict[str, str]:
    """Create the state dir and return the environment every child gets."""
    for sub in ("redis", "storage", "mail", "webhooks"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    password = _secret_file(state / "flower-password", secrets.token_urlsafe(18))
    api_key = _secret_file(state / API_KEY_FILE, new_token())
    metrics = state / "prometheus"
    shutil.rmtree(metrics, ignore_errors=True)  # a past run's multiprocess files would lie
    metrics.mkdir()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        # every process group sums its own files (metrics_env); this one holds beat's and the
        # migration's, which nothing serves
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "FLASK_METRICS_ADDRESS": HOST,
        "FLASK_STORAGE_DIR": str(state / "storage"),
        "FLASK_SMTP_HOST": HOST,
        "FLASK_SMTP_PORT": str(smtp_port),
        "FLOWER_BASIC_AUTH": f"admin:{password}",
    }
    # the development key, with every scope; a key list of your own replaces it
    development = {"name": "development", "scopes": list(SCOPES), "sha256": digest(api_key)}
    env.setdefault("FLASK_API_KEYS", json.dumps([development]))
    sqlite = f"sqlite:///{state / 'flask_celery.db'}"
    env.setdefault("FLASK_SQLALCHEMY_DATABASE_URI", sqlite)
    # Webhooks refuse loopback addresses unless allowed: allow the local receiver's port, and
    # nothing else there (Redis, web, Flower and the metrics ports share the address).
    env.setdefault("FLASK_WEBHOOK_ALLOWED_NETWORKS", f'["{HOST}:{webhook_port}"]')
    return env


def metrics_env(state: Path, group: str, port: int | None = None) -> dict[str, str]:
    """What one process group needs to count and serve its metrics: a folder of its own (a
    worker or gunicorn sums every file in it), and the port a worker or the exporter serves."""
    folder = state / "prometheus" / group
    folder.mkdir(parents=True, exist_ok=True)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    if port is not None:
        env |= {"FLASK_WORKER_METRICS_PORT": str(port), "FLASK_EXPORTER_PORT": str(port)}
    return env
