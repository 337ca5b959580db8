"""devstack's options: flags, DEVSTACK_* variables and defaults, bad values, port clashes, and
the port our Redis takes with and without --redis-port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devstack.broker import redis_port
from devstack.options import OptionError, parse_options
from devstack.ports import port_clash, port_is_free
from harness.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
PORT_EXPECTED = "expected a port number from 1 to 65535"
#: Every flag, with its variable and its default as --help says it (the README's table).
FLAGS = {
    "--state-dir": ("DEVSTACK_STATE_DIR", "var"),
    "--web-port": ("DEVSTACK_WEB_PORT", "8000"),
    "--flower-port": ("DEVSTACK_FLOWER_PORT", "5555"),
    "--smtp-port": ("DEVSTACK_SMTP_PORT", "8025"),
    "--webhook-port": ("DEVSTACK_WEBHOOK_PORT", "8090"),
    "--metrics-port": ("DEVSTACK_METRICS_PORT", "9808"),
    "--redis-port": (
        "DEVSTACK_REDIS_PORT",
        "6389 or the next free port, remembered in <state-dir>/redis.port",
    ),
    "--webhook-secret": ("DEVSTACK_WEBHOOK_SECRET", "/hooks/demo=devstack-demo-secret"),
    "--no-flower": ("DEVSTACK_NO_FLOWER", "off"),
    "--grace": ("DEVSTACK_GRACE", "30"),
    "--start-timeout": ("DEVSTACK_START_TIMEOUT", "120"),
}


@contextmanager
def listening_on_a_free_port() -> Iterator[int]:
    """A free loopback port, with a real socket listening on it until the block ends."""
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield port


def free_ports_but_redis() -> list[str]:
    """Flags putting every port of the stack but Redis's on a free one, and Flower off."""
    flags = ("--web-port", "--smtp-port", "--webhook-port", "--metrics-port")
    ports = [(flag, str(free_port())) for flag in flags]
    return ["--no-flower", *(word for pair in ports for word in pair)]


def error_from(argv: list[str], environ: dict[str, str]) -> str:
    with pytest.raises(OptionError) as raised:
        parse_options(argv, environ)
    return str(raised.value)


def test_without_flags_or_variables_every_option_has_its_default() -> None:
    options = parse_options([], {})
    assert (options.state_dir, options.web_port, options.flower_port) == (Path("var"), 8000, 5555)
    assert (options.smtp_port, options.webhook_port, options.redis_port) == (8025, 8090, None)
    assert options.webhook_secret == (("/hooks/demo", "devstack-demo-secret"),)
    assert (options.no_flower, options.grace, options.start_timeout) == (False, 30.0, 120.0)


def test_each_variable_sets_its_option() -> None:
    options = parse_options(
        [],
        {
            "DEVSTACK_STATE_DIR": "/tmp/elsewhere",
            "DEVSTACK_WEB_PORT": "8001",
            "DEVSTACK_FLOWER_PORT": "5556",
            "DEVSTACK_SMTP_PORT": "8026",
            "DEVSTACK_WEBHOOK_PORT": "8091",
            "DEVSTACK_REDIS_PORT": "6390",
            "DEVSTACK_WEBHOOK_SECRET": "/hooks/a=s3cret",
            "DEVSTACK_NO_FLOWER": "1",
            "DEVSTACK_GRACE": "5",
            "DEVSTACK_START_TIMEOUT": "60.5",
        },
    )
    assert (options.state_dir, options.web_port, options.flower_port) == (
        Path("/tmp/elsewhere"),
        8001,
        5556,
    )
    assert (options.smtp_port, options.webhook_port, options.redis_port) == (8026, 8091, 6390)
    assert options.webhook_secret == (("/hooks/a", "s3cret"),)
    assert (options.no_flower, options.grace, options.start_timeout) == (True, 5.0, 60.5)


def test_a_flag_wins_over_its_variable_even_a_bad_one() -> None:
    assert parse_options(["--web-port", "8001"], {"DEVSTACK_WEB_PORT": "abc"}).web_port == 8001


def test_an_empty_variable_counts_as_unset() -> None:
    assert parse_options([], {"DEVSTACK_WEB_PORT": "", "DEVSTACK_GRACE": ""}).grace == 30.0


def test_webhook_secret_flags_add_to_the_variables_pair() -> None:
    options = parse_options(
        ["--webhook-secret", "/hooks/b=two", "--webhook-secret", "/hooks/c=three"],
        {"DEVSTACK_WEBHOOK_SECRET": "/hooks/a=one"},
    )
    assert options.webhook_secret == (
        ("/hooks/a", "one"),
        ("/hooks/b", "two"),
        ("/hooks/c", "three"),
    )


@pytest.mark.parametrize("value", ["0", "false", "False", "NO", "off", " Off "])
def test_no_flower_false_keeps_flower_on(value: str) -> None:
    assert parse_options([], {"DEVSTACK_NO_FLOWER": value}).no_flower is False


@pytest.mark.parametrize("value", ["1", "true", "Yes", "ON"])
def test_no_flower_true_turns_flower_off(value: str) -> None:
    assert parse_options([], {"DEVSTACK_NO_FLOWER": value}).no_flower is True


def test_no_flower_flag_turns_flower_off() -> None:
    assert parse_options(["--no-flower"], {"DEVSTACK_NO_FLOWER": "false"}).no_flower is True


def test_bad_boolean_variable_is_an_error_naming_it() -> None:
    assert error_from([], {"DEVSTACK_NO_FLOWER": "maybe"}) == (
        "DEVSTACK_NO_FLOWER='maybe': expected 1/true/yes/on or 0/false/no/off (any case)"
    )


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "80.5"])
def test_bad_port_variable_is_an_error_naming_it(value: str) -> None:
    error = error_from([], {"DEVSTACK_WEB_PORT": value})
    assert error == f"DEVSTACK_WEB_PORT={value!r}: {PORT_EXPECTED}"


def test_bad_port_flag_is_an_error_naming_the_flag() -> None:
    error = error_from(["--flower-port", "abc"], {"DEVSTACK_FLOWER_PORT": "5556"})
    assert error == f"--flower-port 'abc': {PORT_EXPECTED}"


def test_ports_at_both_ends_of_the_range_are_accepted() -> None:
    options = parse_options(["--web-port", "1"], {"DEVSTACK_SMTP_PORT": "65535"})
    assert (options.web_port, options.smtp_port) == (1, 65535)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DEVSTACK_FLOWER_PORT", "5555x", PORT_EXPECTED),
        ("DEVSTACK_SMTP_PORT", "99999", PORT_EXPECTED),
        ("DEVSTACK_WEBHOOK_PORT", "http", PORT_EXPECTED),
        ("DEVSTACK_REDIS_PORT", "6389a", PORT_EXPECTED),
        ("DEVSTACK_WEBHOOK_SECRET", "s3cret", "expected PATH=SECRET"),
        ("DEVSTACK_WEBHOOK_SECRET", "/hooks/a=", "expected PATH=SECRET"),
        ("DEVSTACK_GRACE", "soon", "expected a number of seconds, 0 or more"),
        ("DEVSTACK_START_TIMEOUT", "-1", "expected a number of seconds, 0 or more"),
        ("DEVSTACK_START_TIMEOUT", "inf", "expected a number of seconds, 0 or more"),
    ],
)
def test_every_bad_variable_is_an_error_naming_it_and_what_it_expects(
    variable: str, value: str, expected: str
) -> None:
    assert error_from([], {variable: value}).startswith(f"{variable}={value!r}: {expected}")


def test_unknown_flag_is_an_error_not_an_exit() -> None:
    assert error_from(["--web-prot", "8001"], {}) == "unrecognized arguments: --web-prot 8001"


def test_bad_variable_exits_2_with_one_line_and_starts_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSTACK_", "FLASK_"))}
    # Should it get past its options, a Redis that exits at once stops the stack there.
    env |= {"DEVSTACK_WEB_PORT": "abc", "REDIS_SERVER_BIN": shutil.which("false") or "false"}
    state = tmp_path / "var"
    out = subprocess.run(
        [sys.executable, "-m", "devstack", "--state-dir", str(state)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"python -m devstack: error: DEVSTACK_WEB_PORT='abc': {PORT_EXPECTED}"
    ]
    assert out.stdout == ""
    assert not state.exists()


def test_help_shows_defaults_and_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside a word like devstack-demo-secret
    with pytest.raises(SystemExit) as exited:
        parse_options(["--help"], {})
    assert exited.value.code == 0
    section = capsys.readouterr().out.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    helps: dict[str, str] = {}  # flag -> its help on one line
    for line in section.splitlines():
        text = line.strip()
        if line.startswith("  -"):  # the flag and its metavar, two spaces, the help
            invocation, _, text = text.partition("  ")
            flag = invocation.split()[0]
        helps[flag] = " ".join([*helps.get(flag, "").split(), *text.split()])
    assert set(helps) - {"-h,"} == set(FLAGS)
    for flag, (variable, default) in FLAGS.items():
        what, found, rest = helps[flag].partition(f"(default: {default}; variable {variable})")
        assert (found, rest) != ("", ""), f"{flag} names no default or variable: {helps[flag]}"
        assert rest == "" and len(what.split()) >= 2, f"{flag} says no more: {helps[flag]}"


def test_port_clash_names_the_variable_the_user_set() -> None:
    with listening_on_a_free_port() as port:
        options = parse_options([], {"DEVSTACK_WEB_PORT": str(port)})
        clash = port_clash(options, starting_redis=True)
        assert clash == f"port {port} is in use: set DEVSTACK_WEB_PORT=<another>"


def test_port_clash_names_the_flag_the_user_passed() -> None:
    with listening_on_a_free_port() as port:
        options = parse_options(["--web-port", str(port)], {"DEVSTACK_WEB_PORT": "8001"})
        clash = port_clash(options, starting_redis=True)
        assert clash == f"port {port} is in use: pass --web-port <another>"


def test_port_clash_on_a_default_port_names_the_flag_and_the_variable() -> None:
    assert parse_options([], {}).how_to_change("smtp_port") == (
        "pass --smtp-port <another> or set DEVSTACK_SMTP_PORT=<another>"
    )


def test_redis_port_taken_is_an_error_naming_the_variable() -> None:
    with listening_on_a_free_port() as port:
        options = parse_options(free_ports_but_redis(), {"DEVSTACK_REDIS_PORT": str(port)})
        clash = port_clash(options, starting_redis=True)
        assert clash == f"port {port} is in use: set DEVSTACK_REDIS_PORT=<another>"


def test_redis_port_taken_is_an_error_naming_the_flag() -> None:
    with listening_on_a_free_port() as port:
        options = parse_options([*free_ports_but_redis(), "--redis-port", str(port)], {})
        clash = port_clash(options, starting_redis=True)
        assert clash == f"port {port} is in use: pass --redis-port <another>"


def test_redis_port_is_not_checked_when_a_named_broker_starts_no_redis() -> None:
    with listening_on_a_free_port() as port:
        options = parse_options([*free_ports_but_redis(), "--redis-port", str(port)], {})
        assert port_clash(options, starting_redis=False) is None


def test_redis_port_is_used_exactly_and_not_remembered(tmp_path: Path) -> None:
    port = free_port()
    assert redis_port(tmp_path, parse_options(["--redis-port", str(port)], {}).redis_port) == port
    assert not (tmp_path / "redis.port").exists()


def test_without_redis_port_redis_takes_the_remembered_port(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "redis.port").write_text(str(port))
    assert redis_port(tmp_path, parse_options([], {}).redis_port) == port


def test_without_redis_port_a_taken_port_moves_to_a_free_one_from_6389(tmp_path: Path) -> None:
    with listening_on_a_free_port() as taken:
        (tmp_path / "redis.port").write_text(str(taken))
        port = redis_port(tmp_path, None)
        assert port != taken and port >= 6389 and port_is_free(port)
    assert (tmp_path / "redis.port").read_text() == str(port)


def test_port_clash_on_a_workers_metrics_port_names_the_metrics_option() -> None:
    with listening_on_a_free_port() as port:
        options = parse_options([*free_ports_but_redis(), "--metrics-port", str(port - 2)], {})
        clash = port_clash(options, starting_redis=False)
    assert clash == f"port {port} is in use: pass --metrics-port <another>"
