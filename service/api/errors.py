"""JSON errors for the whole API, and request-body parsing that produces them.

Every error body is ``{"error": <code>, "message": <text>}``, plus ``"field"`` when one field
is to blame and ``"details"`` listing every problem found.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

B = TypeVar("B", bound=pydantic.BaseModel)


class ApiError(Exception):
    """An error answer: HTTP status, a stable code and a message for a person."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> tuple[Response, int]:
        return jsonify({"error": self.code, "message": self.message, **self.extra}), self.status


def bad_request(message: str, field: str | None = None) -> ApiError:
    """A 400 naming the field at fault."""
    extra = {"field": field} if field else {}
    return ApiError(400, "invalid_request", message, **extra)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} does not exist")


def parse_body(model: type[B]) -> B:
    """Validate the JSON request body against `model`, or raise a 400 naming the field."""
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    raw = request.get_data(cache=True)
    try:
        return model.model_validate_json(raw or b"")
    except pydantic.ValidationError as exc:
        details = [_describe(err) for err in exc.errors(include_url=False)]
        first = details[0]
        raise bad_request(
            "; ".join(d["message"] for d in details), field=first.get("field")
        ) from None


def _describe(err: Any) -> dict[str, Any]:
    field = ".".join(str(p) for p in err["loc"])
    kind, msg = err["type"], err["msg"]
    if kind == "json_invalid":
        return {"message": f"body is not valid JSON: {err['ctx']['error']}"}
    if kind in ("model_type", "model_attributes_type") and not field:
        return {"message": "body must be a JSON object"}
    if kind == "extra_forbidden":
        return {"field": field, "message": f"{field}: unknown field"}
    if kind == "missing":
        return {"field": field, "message": f"{field}: field required"}
    if not field:
        return {"message": msg.removeprefix("Value error, ")}
    return {"field": field, "message": f"{field}: {msg}"}


def init_app(app: Flask) -> None:
    """Answer every error, ours or werkzeug's, with a JSON body."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return exc.response()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            message = f"request body is larger than the {limit} bytes this API accepts"
        return jsonify({"error": code, "message": message}), status
