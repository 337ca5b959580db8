"""`service.redact`: which secrets are replaced, what stays for an operator to read, and the log
filter and `make run` summary that apply it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.console import Console
from devstack.options import parse_options
from devstack.stack import Stack
from devstack.state import API_KEY_FILE
from service.observability.logging import (
    TEXT_FORMAT,
    JsonFormatter,
    RedactSecrets,
    _Context,
    configure,
)
from service.redact import redact, redact_json

#: (text, its redacted form).
CASES = [
    # a URL's password, any scheme; scheme, user, host, port and path stay
    ("redis://:S3cretPW@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    (
        "rediss://default:S3cretPW@redis.example.com:6380/1",
        "rediss://default:***@redis.example.com:6380/1",
    ),
    ("postgresql+psycopg://app:S3cretPW@db:5432/app", "postgresql+psycopg://app:***@db:5432/app"),
    ("amqp://guest:S3cretPW@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
    ("https://hook:S3cretPW@example.com/in", "https://hook:***@example.com/in"),
    (
        "sentinel://:pw1@h1:26379,sentinel://:pw2@h2:26379",
        "sentinel://:***@h1:26379,sentinel://:***@h2:26379",
    ),
    # an unencoded @ or / in the password (SQLAlchemy accepts the /)
    ("redis://:p@ss@host:6379/0", "redis://:***@host:6379/0"),
    ("postgresql://app:a/b+c=@db/app", "postgresql://app:***@db/app"),
    # a URL in a repr, a sentence, an exception message
    (
        "Cannot connect to 'redis://u:pw@h:1/0': refused",
        "Cannot connect to 'redis://u:***@h:1/0': refused",
    ),
    (
        "OperationalError: Error 111 connecting to redis://:pw@10.0.0.5:6379/0.",
        "OperationalError: Error 111 connecting to redis://:***@10.0.0.5:6379/0.",
    ),
    # query parameters that carry secrets, any case, any prefix
    ("https://h/p?token=abc&page=2", "https://h/p?token=***&page=2"),
    ("https://h/p?a=1&ACCESS_TOKEN=abc#top", "https://h/p?a=1&ACCESS_TOKEN=***#top"),
    ("/cb?code=xyz&state=s", "/cb?code=***&state=s"),
    (
        "?api_key=k1&apikey=k2&key=k3&secret=k4&password=k5",
        "?api_key=***&apikey=***&key=***&secret=***&password=***",
    ),
    (
        "?sig=a&signature=b&X-Amz-Signature=c&auth=d",
        "?sig=***&signature=***&X-Amz-Signature=***&auth=***",
    ),
    (
        "POST https://u:pw@h:8443/hook?token=t0k3n HTTP/1.1",
        "POST https://u:***@h:8443/hook?token=*** HTTP/1.1",
    ),
    # Authorization headers and Bearer tokens
    ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
    (
        "{'Authorization': 'Basic dXNlcjpwdw==', 'Accept': '*/*'}",
        "{'Authorization': 'Basic ***', 'Accept': '*/*'}",
    ),
    ("proxy-authorization=xyz", "proxy-authorization=***"),
    ("sent with bearer 0123456789abcdef", "sent with bearer ***"),
    # name=value and "name": "value" pairs
    ("host=db user=app password=hunter2 dbname=x", "host=db user=app password=*** dbname=x"),
    ('{"client_secret": "a b c", "name": "n"}', '{"client_secret": "***", "name": "n"}'),
    ("FLASK_SMTP_PASSWORD=hunter2", "FLASK_SMTP_PASSWORD=***"),
    ("X-Api-Key: k-123", "X-Api-Key: ***"),
    # our API keys, and JSON Web Tokens
    ("key fck_test-all-scopes-0123456789 refused", "key fck_*** refused"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "***"),
    # non-ASCII around and inside a secret
    ("redis://:pässwörd@höst.example/0 — échec", "redis://:***@höst.example/0 — échec"),
    ("mot de passe: ?token=Ünï&x=é", "mot de passe: ?token=***&x=é"),
]

#: Text that carries no secret and comes back as it is.
UNCHANGED = [
    "",
    "Task jobs.add[0f8b1d2e-1111-2222-3333-444455556666] succeeded in 0.003s: 5",
    "Error 111 connecting to 127.0.0.1:6379. Connection refused.",
    "redis://127.0.0.1:6379/0 and redis://user@host/1",
    "GET http://host:8080/users/a@b.com?page=2&sort=name",
    "http://[::1]:8080/x",
    "the basic idea; the key: a thing; token expired; exit code=1, status_code=500",
    "skipping webhooks.deliver: webhook:12 already ran",
    "fck_ keys look like fck_...",
    "naïve café — 東京 ✓",
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redact_replaces_the_secret_and_keeps_the_rest(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_redacting_twice_changes_nothing_more() -> None:
    for text, _ in CASES:
        assert redact(redact(text)) == redact(text)


def test_redact_json_redacts_strings_and_values_of_secret_keys() -> None:
    value = {"args": [1, "redis://:pw@h/0", None], "kwargs": {"db_password": "x", "n": 2.5}}
    assert redact_json(value) == {
        "args": [1, "redis://:***@h/0", None],
        "kwargs": {"db_password": "***", "n": 2.5},
    }


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger whose one handler has the redaction filter, writing to a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(_Context())
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("tests.redact")
    logger.handlers, logger.propagate = [handler], False
    yield logger, out, handler
    logger.handlers, logger.propagate = [], True


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_filter_redacts_message_arguments_and_traceback(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler], fmt: str
) -> None:
    logger, out, handler = captured
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    try:
        raise ConnectionError("cannot reach redis://:S3cretPW@10.1.2.3:6379/0")
    except ConnectionError:
        logger.exception("publishing to %s failed", "https://h/in?token=T0k3n")
    logger.warning("broker %(url)s", {"url": "amqp://u:S3cretPW@mq:5672//"})
    logger.warning("100%% done with fck_%s", "0123456789abcdef")
    text = out.getvalue()
    for secret in ("S3cretPW", "T0k3n", "0123456789abcdef"):
        assert secret not in text
    for kept in ("10.1.2.3:6379", "https://h/in?token=***", "amqp://u:***@mq:5672//", "100% done"):
        assert kept in text
    assert "Traceback" in text and "ConnectionError" in text
    if fmt == "json":
        records = [json.loads(line) for line in text.splitlines()]
        assert "redis://:***@10.1.2.3:6379/0" in records[0]["exception"]


def test_log_filter_survives_a_bad_format_string(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, out, _ = captured
    logger.warning("%s and %s", "redis://:S3cretPW@h/0")  # one argument short
    assert "S3cretPW" not in out.getvalue() and "redis://:***@h/0" in out.getvalue()


def test_make_run_prints_no_password_from_a_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = Stack(parse_options(["--state-dir", str(tmp_path)], description=""))
    stack.webhook_url = "http://127.0.0.1:8090"
    (stack.state / API_KEY_FILE).write_text("fck_development-key")
    stack.env = {
        "FLASK_API_KEYS": "[]",
        "FLASK_CELERY__BROKER_URL": "redis://:BrokerPW@10.0.0.5:6379/0",
        "FLASK_CELERY__RESULT_BACKEND": "redis://:BackendPW@10.0.0.5:6379/1",
        "FLASK_SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://app:DbPW@db:5432/app",
        "FLOWER_BASIC_AUTH": "admin:FlowerLogin",
    }
    summary = stack.summary(1.0)
    Console(["worker"], colour=False).say("worker", "Connected to redis://:BrokerPW@10.0.0.5/0")
    printed = summary + capsys.readouterr().out
    for secret in ("BrokerPW", "BackendPW", "DbPW"):
        assert secret not in printed
    assert "redis://:***@10.0.0.5:6379/0" in summary
    assert "postgresql+psycopg://app:***@db:5432/app" in summary
    # Flower's generated password is a login the developer needs, printed as such
    assert "user admin, password FlowerLogin" in summary
    assert "FlowerLogin@" not in printed


def test_configure_also_redacts_gunicorns_access_log() -> None:
    """gunicorn's loggers do not propagate to the root, and its access log has query strings."""
    out = io.StringIO()
    access = logging.getLogger("gunicorn.access")
    access.handlers, access.propagate = [logging.StreamHandler(out)], False
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure("text", "INFO")
        configure("text", "INFO")  # a second call adds no second filter
        access.info('"%(r)s" %(s)s', {"r": "GET /cb?code=C0de&page=2 HTTP/1.1", "s": "200"})
        assert out.getvalue() == '"GET /cb?code=***&page=2 HTTP/1.1" 200\n'
        assert len(access.handlers[0].filters) == 1
    finally:
        access.handlers, access.propagate = [], True
        root.handlers[:] = handlers
        root.setLevel(level)
