"""Who may call which route: every view declares a scope, `public`, or `authenticated`.

A request's bearer token is resolved to a `Caller` before the view runs (`g.caller`); no token
or an unknown one is a 401, a known caller without the route's scope a 403, both JSON with a
`WWW-Authenticate` header (RFC 6750). A view that declares nothing makes the app refuse to
start, so a new route cannot be served unprotected by accident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from ..auth import ANONYMOUS, Authenticator, Caller, CallerUnknown, IdentityProviderUnavailable
from .errors import ApiError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
#: The attribute a view's access rule is kept in: a scope, PUBLIC or AUTHENTICATED.
_RULE = "_access_rule"
PUBLIC = "public"
AUTHENTICATED = "authenticated"
REALM = "flask-celery"
#: Endpoints the app serves outside the API's blueprints, open to anyone: Prometheus' scrape.
_PUBLIC_ENDPOINTS = frozenset({"metrics", "static"})


def requires(scope: str) -> Callable[[F], F]:
    """The view needs a caller holding `scope`."""

    def mark(view: F) -> F:
        setattr(view, _RULE, scope)
        return view

    return mark


def public(view: F) -> F:
    """The view answers anyone (the probes and `/metrics`)."""
    setattr(view, _RULE, PUBLIC)
    return view


def authenticated(view: F) -> F:
    """The view answers any known caller, whatever its scopes."""
    setattr(view, _RULE, AUTHENTICATED)
    return view


def rule_of(endpoint: str, view: Callable[..., Any]) -> str | None:
    """The access rule of a view; None when it declares none."""
    return PUBLIC if endpoint in _PUBLIC_ENDPOINTS else getattr(view, _RULE, None)


def caller() -> Caller:
    """The current request's caller."""
    return g.caller  # type: ignore[no-any-return]


def _challenge(error: str | None = None, **params: str) -> str:
    fields = {"realm": REALM, **({"error": error} if error else {}), **params}
    return "Bearer " + ", ".join(f'{k}="{v}"' for k, v in fields.items())


def _unauthorized(message: str, error: str | None = None) -> ApiError:
    exc = ApiError(401, "unauthorized", message)
    exc.headers = {"WWW-Authenticate": _challenge(error)}
    return exc


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Authorization must be `Bearer <token>`", "invalid_request")
    return token.strip()


def _authorize() -> None:
    endpoint = request.endpoint or ""
    view = current_app.view_functions.get(endpoint)
    # a path or method no route serves answers 404 or 405, but only to a known caller: a
    # stranger learns nothing about which paths exist
    rule = rule_of(endpoint, view) if view is not None else AUTHENTICATED
    if rule == PUBLIC:
        return
    if rule is None:  # a view added after start without a rule: closed, never open
        raise ApiError(403, "forbidden", "this route declares no access rule")
    authenticator: Authenticator | None = current_app.extensions["auth"]
    if authenticator is None:
        g.caller = ANONYMOUS
    else:
        token = _bearer_token()
        if token is None:
            raise _unauthorized("this route needs an API key: send `Authorization: Bearer <key>`")
        try:
            g.caller = authenticator.authenticate(token)
        except CallerUnknown:
            raise _unauthorized("the API key or token is not valid", "invalid_token") from None
        except IdentityProviderUnavailable:
            log.warning("identity provider unreachable; tokens cannot be verified")
            raise ApiError(
                503, "identity_provider_unavailable", "tokens cannot be verified now; retry later"
            ) from None
    if rule != AUTHENTICATED and not caller().may(rule):
        exc = ApiError(403, "forbidden", f"this key lacks the {rule} scope", scope=rule)
        exc.headers = {"WWW-Authenticate": _challenge("insufficient_scope", scope=rule)}
        raise exc


def init_app(app: Flask) -> None:
    """Resolve every request's caller; refuse to start when a view declares no access rule."""
    undeclared = sorted(
        endpoint for endpoint, view in app.view_functions.items() if rule_of(endpoint, view) is None
    )
    if undeclared:
        raise RuntimeError(f"routes without an access rule (service.api.access): {undeclared}")
    if app.config["AUTH_DISABLED"]:
        log.warning(
            "AUTH_DISABLED is on: every request is served without a key, with every scope. "
            "For development only; never expose this app."
        )
        app.extensions["auth"] = None
    else:
        app.extensions["auth"] = Authenticator(app.config)
    app.before_request(_authorize)
