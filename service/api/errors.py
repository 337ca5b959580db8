"""JSON errors for the whole API, and the parsing of request input that produces them.

Every error body is ``{"error": <code>, "message": <text>}``, plus ``"field"`` when one field
is to blame and ``"details"`` listing every problem found. Input is refused where it arrives:
bodies by their models (`schemas`), ids in paths by `IdConverter`, and control characters in
query strings by `ApiRequest`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, TypeVar

import pydantic
from flask import Flask, Request, Response, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import BaseConverter, ValidationError

from .schemas import MAX_ID, NO_CONTROL_CHARACTERS, PATTERN_MESSAGES

B = TypeVar("B", bound=pydantic.BaseModel)


class ApiError(Exception):
    """An error answer: HTTP status, a stable code and a message for a person."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra
        #: Response headers that go with it (`WWW-Authenticate`, ...).
        self.headers: dict[str, str] = {}

    def response(self) -> tuple[Response, int]:
        response = jsonify({"error": self.code, "message": self.message, **self.extra})
        response.headers.update(self.headers)
        return response, self.status


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
    if kind == "string_pattern_mismatch":
        msg = PATTERN_MESSAGES.get(err["ctx"]["pattern"], msg)
    msg = msg.removeprefix("Value error, ")
    if not field:
        return {"message": msg}
    return {"field": field, "message": f"{field}: {msg}"}


class IdConverter(BaseConverter):
    """`<int:...>` in every route: an id of ASCII digits from 1 to `MAX_ID`, else a 404.

    Werkzeug's own converter takes any Unicode digit (`/users/٣` would be user 3) and any
    size (SQLite cannot bind one of 2**63 or more, PostgreSQL's id columns one of 2**31).
    """

    regex = r"[0-9]+"
    weight = 50

    def to_python(self, value: str) -> int:
        if len(value) > len(str(MAX_ID)) or not 1 <= int(value) <= MAX_ID:
            raise ValidationError()
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


class ApiRequest(Request):
    """A request whose query arguments are refused (400) when they hold control characters.

    Checked when a view first reads them, so after authentication; PostgreSQL cannot compare
    a column with a string holding NUL.
    """

    @cached_property
    def args(self) -> MultiDict[str, str]:
        args = super().args
        for name, value in args.items(multi=True):
            if not re.fullmatch(NO_CONTROL_CHARACTERS, name + value):
                raise bad_request(f"{name}: must not contain control characters", field=name)
        return args


def init_app(app: Flask) -> None:
    """Answer every error, ours or werkzeug's, with a JSON body; bound ids and query strings.

    Runs before any blueprint is registered: a route's converters are looked up when it is.
    """
    app.url_map.converters["int"] = IdConverter
    app.request_class = ApiRequest

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
        response = jsonify({"error": code, "message": message})
        if isinstance(exc, MethodNotAllowed):  # RFC 9110: a 405 lists the methods allowed
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods or ()))
        return response, status
