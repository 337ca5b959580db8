"""`flask api-keys`: create, list and revoke API keys, or make one for the `API_KEYS` setting.

Locally ``flask --app service.wsgi api-keys ...``; the image sets ``FLASK_APP``, so on Kubernetes
``kubectl exec deploy/<release>-web -- flask api-keys create ci --scope enqueue``.
"""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from ..budget import ConfigError
from . import api_keys
from .callers import ENQUEUE, READ, SCOPES

group = AppGroup("api-keys", help="Create, list and revoke API keys.")

_SCOPE = click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    default=(ENQUEUE, READ),
    show_default=True,
    help="A scope of the key; repeat for several.",
)


@group.command("create")
@click.argument("name")
@_SCOPE
def create(name: str, scopes: tuple[str, ...]) -> None:
    """Store a new key NAME in the database and print its token (shown only this once)."""
    if any(key.name == name for key in api_keys.listing()):
        raise click.ClickException(f"a key called {name!r} exists; pick another name")
    try:
        key, token = api_keys.create(name, scopes)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"# API key {key.name!r} with scopes {', '.join(key.scopes)}; keep the token now,")
    click.echo("# it is not stored and cannot be shown again")
    click.echo(token)


@group.command("list")
def list_keys() -> None:
    """List the database's keys (never their tokens)."""
    for key in api_keys.listing():
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        click.echo(f"{key.name}\t{','.join(key.scopes)}\t{key.created_at:%Y-%m-%d %H:%M}\t{state}")


@group.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the key NAME: its token is refused from the next request on."""
    if not api_keys.revoke(name):
        raise click.ClickException(f"no active key called {name!r} in the database")
    click.echo(f"revoked {name}")


@group.command("digest")
@click.argument("name")
@_SCOPE
def digest(name: str, scopes: tuple[str, ...]) -> None:
    """Make a token for the API_KEYS setting: print the token and its entry (no database)."""
    try:
        checked = api_keys.check_scopes(scopes, "--scope")
        api_keys.check_name(name, "NAME")
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    token = api_keys.new_token()
    entry = {"name": name, "scopes": checked, "sha256": api_keys.digest(token)}
    click.echo("# the token, for the client (keep it secret):")
    click.echo(token)
    click.echo("# its entry for FLASK_API_KEYS (a JSON list) or the chart's auth.apiKeys:")
    click.echo(json.dumps(entry))


def init_app(app: Flask) -> None:
    app.cli.add_command(group)
