"""The application factory: configuration, logging, database, Celery, API, in that order."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from . import api, config
from .auth import cli as auth_cli
from .celery_app import celery_init_app
from .data import db
from .observability import logging as logs
from .observability import metrics
from .outbound import egress


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then `FLASK_*` environment variables, then `overrides`."""
    app = Flask(__name__, instance_relative_config=True)
    # a deep copy: from_prefixed_env writes into nested dicts, which must not be the defaults
    app.config.from_mapping(copy.deepcopy(config.DEFAULTS))
    app.config.from_prefixed_env()
    # merged, so a test may override one Celery setting without restating the rest
    app.config.from_mapping(config.merge(app.config, config.from_env(os.environ)))
    if overrides:
        app.config.from_mapping(config.merge(app.config, overrides))
    config.check(app.config)
    _check_webhook_allowance(app.config["WEBHOOK_ALLOWED_NETWORKS"])
    app.config.from_mapping(config.derive(app.config, app.instance_path))
    Path(app.config["STORAGE_DIR"]).mkdir(parents=True, exist_ok=True)
    logs.init_app(app)
    metrics.init_app(app)
    db.init_app(app)
    celery_init_app(app)
    api.init_app(app)
    auth_cli.init_app(app)
    return app


def _check_webhook_allowance(entries: Any) -> None:
    """Refuse a malformed `WEBHOOK_ALLOWED_NETWORKS` at start, not at the first delivery."""
    if not all(isinstance(entry, str) for entry in entries):
        raise config.ConfigError(
            f"FLASK_WEBHOOK_ALLOWED_NETWORKS={entries!r}: expected a JSON list of strings"
        )
    try:
        egress.parse_allowed(entries)
    except ValueError as exc:
        raise config.ConfigError(f"FLASK_{exc}") from None
