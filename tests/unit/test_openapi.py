"""The OpenAPI document is valid, covers every route the app serves, and states its answers
and bounds as the code has them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from harness.auth import api_keys_setting, bearer
from service import budget, create_app
from service.api.dead_letters import MAX_PAGE
from service.api.schemas import MAX_ID, REQUEST_MODELS

KEYS = {"API_KEYS": api_keys_setting()}


def document() -> dict[str, Any]:
    spec: dict[str, Any] = (
        create_app(KEYS).test_client().get("/openapi.json", headers=bearer()).json
    )
    return spec


def test_openapi_document_is_valid_openapi_31() -> None:
    spec = create_app(KEYS).test_client().get("/openapi.json", headers=bearer()).json
    validate(spec)


def test_openapi_documents_every_route() -> None:
    app = create_app(KEYS)
    spec = app.test_client().get("/openapi.json", headers=bearer()).json
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        path = path.replace("{user_id}", "{id}").replace("{invoice_id}", "{id}")
        path = path.replace("{export_id}", "{id}").replace("{delivery_id}", "{id}")
        path = path.replace("{letter_id}", "{id}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
    assert served == documented


def test_every_id_in_a_path_or_a_body_is_bounded_as_the_api_bounds_it() -> None:
    spec = document()
    path_ids = [
        param["schema"]
        for operations in spec["paths"].values()
        for operation in operations.values()
        for param in operation.get("parameters", [])
        if param["in"] == "path" and param["name"] == "id"
    ]
    assert len(path_ids) >= 8
    assert all(s == {"type": "integer", "minimum": 1, "maximum": MAX_ID} for s in path_ids)
    body_ids = [
        prop
        for model in REQUEST_MODELS
        for name, prop in spec["components"]["schemas"][model.__name__]["properties"].items()
        if name.endswith("_id")
    ]
    assert len(body_ids) >= 4
    assert all(p["minimum"] == 1 and p["maximum"] == MAX_ID for p in body_ids)


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/users", "post", {"201", "400", "409", "413", "415"}),
        ("/invoices", "post", {"201", "400", "413", "415"}),
        ("/users/{id}", "get", {"200", "404"}),
        ("/invoices/{id}/pdf", "get", {"200", "404", "409", "410"}),
        ("/exports/{id}/download", "get", {"200", "404", "409", "410"}),
        ("/dead-letters", "get", {"200", "400"}),
        ("/dead-letters/{id}/redrive", "post", {"202", "404", "409", "503"}),
        ("/jobs/add", "post", {"202", "400", "413", "415", "422", "503"}),
    ],
)
def test_operations_document_every_answer_their_code_gives(
    path: str, method: str, statuses: set[str]
) -> None:
    responses = document()["paths"][path][method]["responses"]
    assert statuses <= set(responses)


def test_downloads_and_rows_are_documented_with_their_media_types() -> None:
    paths = document()["paths"]
    assert set(paths["/invoices/{id}/pdf"]["get"]["responses"]["200"]["content"]) == {
        "application/pdf"
    }
    assert set(paths["/exports/{id}/download"]["get"]["responses"]["200"]["content"]) == {
        "text/csv"
    }
    user = paths["/users"]["post"]["responses"]["201"]["content"]["application/json"]
    assert user["schema"] == {"$ref": "#/components/schemas/User"}


def test_query_and_schedule_bounds_are_the_ones_the_api_enforces() -> None:
    app = create_app(KEYS)
    spec = app.test_client().get("/openapi.json", headers=bearer()).json
    query = {p["name"]: p["schema"] for p in spec["paths"]["/dead-letters"]["get"]["parameters"]}
    assert (query["limit"]["minimum"], query["limit"]["maximum"]) == (1, MAX_PAGE)
    longest = int(budget.max_delay(app.extensions["celery"].conf))
    countdown = spec["components"]["schemas"]["AddJob"]["properties"]["countdown"]["anyOf"][0]
    assert countdown["maximum"] == longest
    client = app.test_client()
    too_late = client.post(
        "/jobs/add", json={"a": 1, "b": 2, "countdown": longest + 1}, headers=bearer()
    )
    assert too_late.status_code == 400 and too_late.json["field"] == "countdown"
