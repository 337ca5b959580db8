"""The OpenAPI 3.1 document served at `/openapi.json`, built from the request models."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from .. import budget
from ..jobs.lifecycle import STATES as JOB_STATES
from ..jobs.state import API_STATES
from .accept import IDEMPOTENCY_HEADER, MAX_KEY_LENGTH
from .access import AUTHENTICATED, PUBLIC, authenticated, rule_of
from .dead_letters import MAX_PAGE
from .jobs import MAX_PAGE as MAX_JOB_PAGE
from .jobs import celery_conf
from .schemas import EARLIEST_ETA, MAX_ID, NO_CONTROL_CHARACTERS, REQUEST_MODELS, Schedule

bp = Blueprint("openapi", __name__)

_JOB_ACCEPTED = {
    "description": "Accepted: the job will run, published now or, when the publish was "
    "ambiguous, by the outbox relay (or replayed for a known Idempotency-Key); poll status_url. "
    "A 503 means nothing was sent and nothing kept.",
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
    # printable ASCII (accept.idempotency_key); HTTP drops spaces at either end
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": "^[!-~]([ -~]*[!-~])?$",
    },
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


def _object(**properties: Any) -> dict[str, Any]:
    """A JSON object with every one of `properties` (and maybe more)."""
    return {"type": "object", "required": list(properties), "properties": properties}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _file(description: str, media: str) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


_INT, _STR, _BOOL = {"type": "integer"}, {"type": "string"}, {"type": "boolean"}
_INT_OR_NULL, _STR_OR_NULL = {"type": ["integer", "null"]}, {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
#: The bodies the API answers with (`to_dict` of the rows).
RESPONSE_SCHEMAS = {
    "User": _object(
        id=_INT, email=_STR, name=_STR, plan=_STR, trial_ends_at=_TIME, trial_expired_at=_TIME
    ),
    "Invoice": _object(
        id=_INT,
        number=_STR,
        user_id=_INT,
        currency=_STR,
        lines={"type": "array", "items": {"type": "object"}},
        total_cents=_INT,
        pdf_ready=_BOOL,
        rendered_at=_TIME,
    ),
    "WebhookEndpoint": _object(id=_INT, url=_STR, secret=_STR),
    "WebhookDelivery": _object(
        id=_INT,
        event_id=_STR,
        endpoint_id=_INT,
        event_type=_STR,
        status=_STR,
        attempts=_INT,
        response_status=_INT_OR_NULL,
        delivered_at=_TIME,
    ),
    "Export": _object(
        id=_INT,
        table=_STR,
        status=_STR,
        row_count=_INT_OR_NULL,
        job_id=_STR_OR_NULL,
        download_url=_STR_OR_NULL,
        finished_at=_TIME,
    ),
    "DeadLetter": _object(
        id=_INT,
        task_id=_STR,
        task_name=_STR,
        queue=_STR_OR_NULL,
        args={"type": "array"},
        kwargs={"type": "object"},
        exception=_STR,
        attempts=_INT,
        first_attempt_at=_TIME,
        failed_at=_TIME,
        redriven_at=_TIME,
        redrive_job_id=_STR_OR_NULL,
    ),
    "DeadLetterWithTraceback": {"allOf": [_ref("DeadLetter"), _object(traceback=_STR_OR_NULL)]},
    "DeadLetters": _object(items={"type": "array", "items": _ref("DeadLetter")}, total=_INT),
}
UUID = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
#: gunicorn's own answer, in HTML, to a request line over its limit (4094 bytes by default).
_REQUEST_LINE_TOO_LONG = {
    "description": "The URL is longer than the server takes (gunicorn's answer, in HTML)",
    "content": {"text/html": {"schema": {"type": "string"}}},
}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
#: What a job's answers say of its row (`service.jobs.state`).
_JOB_ROW = {
    "job_id": {"type": "string"},
    "kind": {"type": "string"},
    "queue": {"type": "string"},
    "state": {"enum": list(dict.fromkeys(API_STATES.values())) + ["progress"]},
    "job_state": {"enum": list(JOB_STATES)},
    "created_at": {"type": "string", "format": "date-time"},
    "queued_at": _TIME_OR_NULL,
    "started_at": _TIME_OR_NULL,
    "finished_at": _TIME_OR_NULL,
    "attempts": {"type": "integer", "minimum": 0},
    "error": {"type": ["string", "null"], "description": "the last failure, redacted"},
}
#: What single operations answer, besides what every operation of their kind does.
RESPONSES: dict[tuple[str, str], dict[str, Any]] = {
    ("/users", "post"): {
        "201": _answer("The user", "User"),
        "409": _answer(
            "A user with this email exists (emails are compared in lower case)", "Error"
        ),
    },
    ("/invoices", "post"): {"201": _answer("The invoice", "Invoice")},
    ("/webhook-endpoints", "post"): {
        "201": _answer("The endpoint and its secret", "WebhookEndpoint")
    },
    ("/users/{id}", "get"): {"200": _answer("A user", "User")},
    ("/invoices/{id}", "get"): {"200": _answer("An invoice", "Invoice")},
    ("/exports/{id}", "get"): {"200": _answer("An export", "Export")},
    ("/webhook-deliveries/{id}", "get"): {"200": _answer("A delivery", "WebhookDelivery")},
    ("/dead-letters/{id}", "get"): {"200": _answer("A dead letter", "DeadLetterWithTraceback")},
    ("/dead-letters", "get"): {
        "200": _answer("A page of dead letters, and their total", "DeadLetters"),
        "414": _REQUEST_LINE_TOO_LONG,
    },
    ("/invoices/{id}/pdf", "get"): {
        "200": _file("The PDF", "application/pdf"),
        "409": _answer("The PDF is not rendered yet", "Error"),
        "410": _answer("The PDF is no longer in storage", "Error"),
    },
    ("/exports/{id}/download", "get"): {
        "200": _file("The CSV file", "text/csv"),
        "409": _answer("The export is not done yet", "Error"),
        "410": _answer("The file is no longer in storage", "Error"),
    },
    ("/jobs/{job_id}", "get"): {"414": _REQUEST_LINE_TOO_LONG},
    ("/dead-letters/{id}/redrive", "post"): {
        "409": _answer("The task is no longer registered", "Error"),
        "503": _answer("The broker is unreachable", "Error"),
    },
}


def _body(model: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }


def _bound_schedule(properties: dict[str, Any]) -> None:
    """The schedule's bound is the broker's (`jobs._accept`), tighter than the model's."""
    longest = int(budget.max_delay(celery_conf()))
    countdown = properties["countdown"]["anyOf"][0]
    countdown["maximum"] = min(countdown["maximum"], longest)
    properties["eta"]["description"] = (
        f"From {EARLIEST_ETA:%Y-%m-%dT%H:%M:%SZ} to at most {longest} seconds from now"
    )


def build() -> dict[str, Any]:
    """Assemble the document."""
    schemas: dict[str, Any] = {}
    for model in REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        if issubclass(model, Schedule):
            _bound_schedule(schema["properties"])
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
        "description": "`state` in the API's terms; `job_state` is the job row's own: recorded "
        "and queued read pending, started reads started (progress while an export reports "
        "it), retrying reads retry, succeeded success, failed and dead_lettered failure.",
        "required": ["job_id", "state", "job_state", "attempts"],
        "properties": {
            **_JOB_ROW,
            "ready": {"type": "boolean"},
            "successful": {"type": "boolean"},
            "value": {"description": "the return value (also after the result expired)"},
            "progress": {"type": ["object", "null"]},
            "result_summary": {
                "type": ["object", "null"],
                "description": '`{"value": ...}` for a small JSON value, else `{"type", "bytes"}`',
            },
        },
    }
    schemas["JobSummary"] = {
        "type": "object",
        "required": ["job_id", "state", "job_state", "attempts"],
        "properties": _JOB_ROW,
    }
    schemas["Jobs"] = _object(
        items={"type": "array", "items": _ref("JobSummary")}, next_cursor=_STR_OR_NULL
    )
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
        responses = {"201": {"description": described}, **_ERRORS}
        if path == "/webhook-endpoints":  # a URL that reaches inside is refused
            responses["422"] = {"$ref": "#/components/responses/Error"}
        paths[path] = {
            "post": {
                "summary": summary,
                "requestBody": _body(model_name),
                "responses": responses,
            }
        }
    id_param = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "ASCII digits; any other id is a 404",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }
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
                {
                    "name": "job_id",
                    "in": "path",
                    "required": True,
                    "description": "A UUID; anything else is a 404",
                    "schema": {"type": "string", "format": "uuid", "pattern": UUID},
                }
            ],
            "responses": {
                "200": {
                    "description": "The job's state",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/JobStatus"}}
                    },
                },
                "404": {"$ref": "#/components/responses/Error"},
            },
        }
    }
    paths["/jobs"] = {
        "get": {
            "summary": "The caller's jobs (an operator's: every caller's), newest first",
            "parameters": [
                {"name": n, "in": "query", "required": False, "schema": schema}
                for n, schema in (
                    ("state", {"enum": list(dict.fromkeys([*JOB_STATES, *API_STATES.values()]))}),
                    ("kind", {"type": "string", "pattern": NO_CONTROL_CHARACTERS}),
                    ("since", {"type": "string", "format": "date-time"}),
                    ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_JOB_PAGE}),
                    ("cursor", {"type": "string", "pattern": NO_CONTROL_CHARACTERS}),
                )
            ],
            "responses": {
                "200": _answer("A page of jobs, and the cursor of the next", "Jobs"),
                "400": {"$ref": "#/components/responses/BadRequest"},
                "414": _REQUEST_LINE_TOO_LONG,
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
                {"name": n, "in": "query", "required": False, "schema": schema}
                for n, schema in (
                    ("task", {"type": "string", "pattern": NO_CONTROL_CHARACTERS}),
                    ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                    ("before", {"type": "integer", "minimum": 0, "maximum": MAX_ID}),
                )
            ],
            "responses": {"400": {"$ref": "#/components/responses/BadRequest"}},
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
    for (path, method), responses in RESPONSES.items():
        paths[path][method]["responses"].update(responses)
    schemas.update(RESPONSE_SCHEMAS)
    _document_access(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "flask-celery", "version": "0.1.0"},
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`fck_...`, from `flask api-keys create`) or a "
                    "JWT of the configured identity provider",
                }
            },
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


def _sample(parameter: re.Match[str]) -> str:
    """A value the route's converter takes for a path parameter (`{id}`, `{job_id}`)."""
    return "00000000-0000-4000-8000-000000000000" if parameter[0] == "{job_id}" else "1"


def _document_access(paths: dict[str, Any]) -> None:
    """Give each operation the security, scope and 401/403 answers of the route serving it,
    read from the app's own access rules so the document cannot drift from them."""
    adapter = current_app.url_map.bind("localhost")
    provider = getattr(current_app.extensions.get("auth"), "provider", None)
    error = {"$ref": "#/components/responses/Error"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            try:
                endpoint, _ = adapter.match(re.sub(r"\{[^}]+\}", _sample, path), method.upper())
            except HTTPException:  # not served by this app (`/metrics` when metrics are off)
                continue
            rule = rule_of(str(endpoint), current_app.view_functions[endpoint])
            if rule == PUBLIC:
                operation["security"] = []
                continue
            responses = operation["responses"]
            responses["401"] = error
            if provider is not None:
                responses.setdefault("503", error)
            if rule != AUTHENTICATED:
                responses["403"] = error
                operation["x-required-scope"] = rule
                needs = f"Needs the `{rule}` scope."
                operation["description"] = f"{operation.get('description', '')} {needs}".strip()


@bp.get("/openapi.json")
@authenticated
def openapi() -> Response:
    return jsonify(build())
