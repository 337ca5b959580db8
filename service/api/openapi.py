"""The OpenAPI 3.1 document served at `/openapi.json`, built from the request models."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from .accept import IDEMPOTENCY_HEADER, MAX_KEY_LENGTH
from .schemas import REQUEST_MODELS

bp = Blueprint("openapi", __name__)

_JOB_ACCEPTED = {
    "description": "Enqueued (or replayed for a known Idempotency-Key); poll status_url.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobAccepted"}}},
}
_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "413": {"$ref": "#/components/responses/Error"},
    "415": {"$ref": "#/components/responses/Error"},
}
_IDEMPOTENCY = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": "Retrying a POST with the same key returns the same job, without enqueuing.",
    "schema": {"type": "string", "maxLength": MAX_KEY_LENGTH},
}

#: (path, summary, request model) of every enqueue endpoint.
JOB_ENDPOINTS = (
    ("/jobs/add", "Add two integers (the official example)", "AddJob"),
    ("/jobs/welcome-email", "Send the welcome mail to a user", "WelcomeEmailJob"),
    ("/jobs/invoice-pdf", "Render an invoice PDF", "InvoicePdfJob"),
    ("/jobs/export", "Export a table to CSV", "ExportJob"),
    ("/jobs/webhook", "Deliver a signed webhook event", "WebhookJob"),
    ("/jobs/periodic", "Run a scheduled task now", "PeriodicJob"),
)
#: (path, summary, request model, response description) of the synchronous creates.
CREATE_ENDPOINTS = (
    ("/users", "Create a trial user", "NewUser", "The user"),
    ("/invoices", "Create an invoice", "NewInvoice", "The invoice"),
    (
        "/webhook-endpoints",
        "Register a webhook receiver",
        "NewWebhookEndpoint",
        "The endpoint and its secret",
    ),
)
#: (path, summary) of the reads.
READ_ENDPOINTS = (
    ("/users/{id}", "A user"),
    ("/invoices/{id}", "An invoice"),
    ("/invoices/{id}/pdf", "Download an invoice PDF"),
    ("/exports/{id}", "An export"),
    ("/exports/{id}/download", "Download an export's CSV"),
    ("/webhook-deliveries/{id}", "A webhook delivery"),
    ("/dead-letters/{id}", "A dead letter, with its traceback"),
)


def _body(model: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }


def build() -> dict[str, Any]:
    """Assemble the document."""
    schemas: dict[str, Any] = {}
    for model in REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["JobAccepted"] = {
        "type": "object",
        "required": ["job_id", "status_url"],
        "properties": {
            "job_id": {"type": "string"},
            "status_url": {"type": "string"},
            "kind": {"type": "string"},
        },
    }
    schemas["JobStatus"] = {
        "type": "object",
        "properties": {
            "job_id": {"type": "string"},
            "state": {"enum": ["pending", "started", "progress", "retry", "success", "failure"]},
            "ready": {"type": "boolean"},
            "successful": {"type": "boolean"},
            "value": {},
            "progress": {"type": ["object", "null"]},
            "error": {"type": ["string", "null"]},
        },
    }
    schemas["Error"] = {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "field": {"type": "string"},
        },
    }
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    paths: dict[str, Any] = {}
    for path, summary, model_name in JOB_ENDPOINTS:
        paths[path] = {
            "post": {
                "summary": summary,
                "parameters": [_IDEMPOTENCY],
                "requestBody": _body(model_name),
                "responses": {
                    "202": _JOB_ACCEPTED,
                    **_ERRORS,
                    "422": {"$ref": "#/components/responses/Error"},
                    "503": {"$ref": "#/components/responses/Error"},
                },
            }
        }
    for path, summary, model_name, described in CREATE_ENDPOINTS:
        paths[path] = {
            "post": {
                "summary": summary,
                "requestBody": _body(model_name),
                "responses": {"201": {"description": described}, **_ERRORS},
            }
        }
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    for path, summary in READ_ENDPOINTS:
        paths[path] = {
            "get": {
                "summary": summary,
                "parameters": [id_param],
                "responses": {
                    "200": {"description": summary},
                    "404": {"$ref": "#/components/responses/Error"},
                },
            }
        }
    paths["/jobs/{job_id}"] = {
        "get": {
            "summary": "A job's state. An id this API never issued is 404 (Celery alone "
            "would report it as pending).",
            "parameters": [
                {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {
                    "description": "The job's state",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/JobStatus"}}
                    },
                },
                "404": {"$ref": "#/components/responses/Error"},
                "503": {"$ref": "#/components/responses/Error"},
            },
        }
    }
    for path, summary in (
        ("/healthz", "The process serves requests"),
        ("/readyz", "Broker and database answer"),
    ):
        paths[path] = {
            "get": {
                "summary": summary,
                "responses": {"200": {"description": "ok"}, "503": {"description": "not ready"}},
            }
        }
    paths["/dead-letters"] = {
        "get": {
            "summary": "Tasks that failed for good, newest first",
            "parameters": [
                {"name": n, "in": "query", "required": False, "schema": {"type": t}}
                for n, t in (("task", "string"), ("limit", "integer"), ("before", "integer"))
            ],
            "responses": {"200": {"description": "items and total"}, **_ERRORS},
        }
    }
    paths["/dead-letters/{id}/redrive"] = {
        "post": {
            "summary": "Publish a dead letter's task again (a second call returns the same job)",
            "parameters": [id_param],
            "responses": {"202": _JOB_ACCEPTED, "404": {"$ref": "#/components/responses/Error"}},
        }
    }
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics of every gunicorn worker (absent when METRICS_ENABLED "
            "is false)",
            "responses": {"200": {"description": "Prometheus text format"}},
        }
    }
    paths["/openapi.json"] = {
        "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "flask-celery", "version": "0.1.0"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "BadRequest": {
                    "description": "Invalid input; nothing was enqueued",
                    "content": error_content,
                },
                "Error": {"description": "Error", "content": error_content},
            },
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build())
