"""The HTTP API: blueprints for jobs, the rows they work on, probes and the OpenAPI document."""

from __future__ import annotations

from flask import Flask

from . import access, dead_letters, errors, health, jobs, openapi, resources


def init_app(app: Flask) -> None:
    """Register every blueprint, the JSON error handlers and who may call what."""
    errors.init_app(app)
    for module in (jobs, dead_letters, resources, health, openapi):
        app.register_blueprint(module.bp)
    access.init_app(app)
