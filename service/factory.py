"""The application factory: configuration, logging, database, Celery, API, in that order."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from . import api, db
from .celery_app import celery_init_app
from .config import DEFAULTS, merge
from .observability import logging as logs


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then `FLASK_*` environment variables, then `config`."""
    app = Flask(__name__, instance_relative_config=True)
    # a deep copy: from_prefixed_env writes into nested dicts, which must not be the defaults
    app.config.from_mapping(copy.deepcopy(DEFAULTS))
    app.config.from_prefixed_env()
    if config:
        # merged, so a test may override one Celery setting without restating the rest
        app.config.from_mapping(merge(app.config, config))
    _resolve_paths(app)
    logs.init_app(app)
    db.init_app(app)
    celery_init_app(app)
    api.init_app(app)
    return app


def _resolve_paths(app: Flask) -> None:
    """Place the embedded defaults (storage, SQLite file) under the instance folder."""
    storage = Path(app.config["STORAGE_DIR"] or Path(app.instance_path) / "storage")
    storage.mkdir(parents=True, exist_ok=True)
    app.config["STORAGE_DIR"] = str(storage)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{storage.parent / 'flask_celery.db'}"
