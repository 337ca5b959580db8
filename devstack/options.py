"""The options of `python -m devstack`: one table of flags, each with the DEVSTACK_* variable that
sets it instead, its default and its help, and the parsing that turns them into typed `Options`.

A flag wins over its variable, and an empty variable counts as unset. A value the stack cannot
use (a port outside 1..65535, a boolean that is not 1/true/yes/on or 0/false/no/off) is an
`OptionError` naming the flag or the variable it came from, raised before anything starts.
`Options` remembers where each value came from, so that a later message about one (a port in
use) names what the user actually set.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

PROG = "python -m devstack"
#: Without --redis-port, our Redis tries ports from here upwards: 6379 may be a Redis the
#: machine already runs.
REDIS_FIRST_PORT = 6389
#: The webhook receiver checks signatures on this path with this secret (README's example).
DEMO_WEBHOOK_PATH, DEMO_WEBHOOK_SECRET = "/hooks/demo", "devstack-demo-secret"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")

#: Where a value came from: its flag, its DEVSTACK_* variable, or the table's default.
Source = Literal["flag", "variable", "default"]


class OptionError(ValueError):
    """A flag or a DEVSTACK_* variable the stack cannot use; the message names it."""


def port(raw: str) -> int:
    """A TCP port, 1 to 65535."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise ValueError("a port number from 1 to 65535")
    return value


def seconds(raw: str) -> float:
    """A duration in seconds, 0 or more."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise ValueError("a number of seconds, 0 or more")
    return value


def boolean(raw: str) -> bool:
    """On for 1/true/yes/on, off for 0/false/no/off or nothing, in any case."""
    word = raw.strip().lower()
    if word not in TRUE + FALSE:
        raise ValueError(f"{'/'.join(TRUE)} or {'/'.join(FALSE[:-1])} (any case)")
    return word in TRUE


def webhook_secret(raw: str) -> tuple[str, str]:
    """A path on the webhook receiver and the secret its deliveries are signed with."""
    path, _, secret = raw.partition("=")
    if not (path.startswith("/") and secret):
        raise ValueError("PATH=SECRET, the path starting with / (like /hooks/a=s3cret)")
    return path, secret


@dataclass(frozen=True)
class Option:
    """One row of the table: an option's name, default (as it would be typed) and help."""

    name: str
    default: str | None
    #: Turns the text of a flag or variable into the value; ValueError says what it expects.
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None
    #: The default as --help says it, when the text in `default` would not say it well.
    shown_default: str | None = None
    #: Each flag adds a value to the variable's (or the default) one.
    repeatable: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return "DEVSTACK_" + self.name.upper()


OPTIONS = (
    Option("state_dir", "var", Path,
           "directory of all state: Redis AOF, SQLite, storage, mails, webhooks, the Flower "
           "password", "DIR"),
    Option("web_port", "8000", port, "port of the API, served by gunicorn", "PORT"),
    Option("flower_port", "5555", port, "port of Flower, the task monitor", "PORT"),
    Option("smtp_port", "8025", port, "port of the SMTP sink the app sends its mail to", "PORT"),
    Option("webhook_port", "8090", port, "port of the webhook receiver", "PORT"),
    Option("metrics_port", "9808", port,
           "first of the metrics ports: the broker exporter's, then one per worker group "
           "(web serves its own on the web port)", "PORT"),
    Option("redis_port", None, port,
           "port of our Redis, exactly: an error if it is taken; unused when "
           "FLASK_CELERY__BROKER_URL names a broker", "PORT",
           shown_default=f"{REDIS_FIRST_PORT} or the next free port, remembered in "
           "<state-dir>/redis.port"),
    Option("webhook_secret", f"{DEMO_WEBHOOK_PATH}={DEMO_WEBHOOK_SECRET}", webhook_secret,
           "the webhook receiver checks the signature of POSTs to PATH with SECRET; each flag "
           "adds a pair to the variable's pair or to the default one", "PATH=SECRET",
           repeatable=True),
    Option("no_flower", "off", boolean,
           "start no Flower; the variable takes 1/true/yes/on or 0/false/no/off"),
    Option("grace", "30", seconds,
           "seconds running tasks get to finish on Ctrl-C; a task still running then goes back "
           "to its queue for the next start, and the stack exits 1",
           "SECONDS"),
    Option("start_timeout", "120", seconds,
           "seconds each part of the stack gets to answer while starting", "SECONDS"),
)  # fmt: skip
OPTION = {o.name: o for o in OPTIONS}
EPILOG = (
    "Each option can also be set by the DEVSTACK_* variable named in its help; a flag wins over "
    "its variable, and an empty variable counts as unset. With FLASK_CELERY__BROKER_URL set, "
    "the stack uses that broker and starts no Redis."
)


@dataclass(frozen=True)
class Options:
    """The parsed options, typed; `sources` says where each one's value came from."""

    state_dir: Path
    web_port: int
    flower_port: int
    smtp_port: int
    webhook_port: int
    metrics_port: int
    redis_port: int | None
    webhook_secret: tuple[tuple[str, str], ...]
    no_flower: bool
    grace: float
    start_timeout: float
    sources: Mapping[str, Source]

    def how_to_change(self, name: str) -> str:
        """How to give option `name` another value: the way the user set it, or either way."""
        flag, variable = OPTION[name].flag, OPTION[name].variable
        return {
            "flag": f"pass {flag} <another>",
            "variable": f"set {variable}=<another>",
            "default": f"pass {flag} <another> or set {variable}=<another>",
        }[self.sources[name]]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise OptionError(message)  # one line, as for a bad variable; not usage and exit


def parser(description: str | None = None) -> argparse.ArgumentParser:
    """The command line: every option's flag, its help ending in its default and variable."""
    p = _Parser(PROG, description=description, epilog=EPILOG)
    for o in OPTIONS:
        shown = o.shown_default or o.default
        text = f"{o.help} (default: {shown}; variable {o.variable})"
        if o.parse is boolean:  # a switch: the flag means on
            p.add_argument(o.flag, action="store_const", const=TRUE[0], help=text)
        else:
            action = "append" if o.repeatable else "store"
            p.add_argument(o.flag, action=action, metavar=o.metavar, help=text)
    return p


def parse_options(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    description: str | None = None,
) -> Options:
    """Each option from its flag in `argv`, else its variable in `environ`, else its default.

    `argv` and `environ` default to the process's own. Raises OptionError for a flag or variable
    the stack cannot use, naming it; a variable a flag overrides is not read.
    """
    environ = os.environ if environ is None else environ
    given = vars(parser(description).parse_args(argv))
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for o in OPTIONS:
        # A repeatable option's flags add to the value of its variable (or its default).
        flagged = None if o.repeatable else given[o.name]
        if flagged is not None:
            raw, sources[o.name] = flagged, "flag"
        elif environ.get(o.variable):
            raw, sources[o.name] = environ[o.variable], "variable"
        else:
            raw, sources[o.name] = o.default, "default"
        value = None if raw is None else _convert(o, raw, sources[o.name])
        if o.repeatable:
            value = (value, *(_convert(o, f, "flag") for f in given[o.name] or ()))
        values[o.name] = value
    return Options(**values, sources=sources)


def _convert(option: Option, raw: str, source: Source) -> Any:
    try:
        return option.parse(raw)
    except ValueError as exc:
        where = f"{option.flag} " if source == "flag" else f"{option.variable}="
        raise OptionError(f"{where}{raw!r}: expected {exc}") from None
