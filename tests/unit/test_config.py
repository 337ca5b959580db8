"""Configuration: defaults, FLASK_* overrides (upper- and lower-case), the time-budget check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service import config, create_app
from service.budget import check as check_time_budget
from service.config import ConfigError, celery_settings
from service.worker.heartbeat import Heartbeat
from tests.support.config_docs import README, readme_with_tables


def test_factory_honours_testing_config() -> None:
    assert create_app({"TESTING": True}).testing


def test_defaults_are_crash_safe() -> None:
    conf = create_app().extensions["celery"].conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_ignore_result is True
    assert conf.result_expires == 24 * 3600


@pytest.mark.parametrize("name", ["FLASK_CELERY__BROKER_URL", "FLASK_CELERY__broker_url"])
def test_broker_url_from_env_takes_effect_in_either_case(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "redis://broker.example:6380/3")
    conf = create_app().extensions["celery"].conf
    assert conf.broker_url == "redis://broker.example:6380/3"
    assert all(key == key.lower() for key in conf.changes)  # no old-style names left behind


def test_nested_env_override_merges_into_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout", "7200")
    options = create_app().extensions["celery"].conf.broker_transport_options
    assert options["visibility_timeout"] == 7200
    assert options["socket_connect_timeout"] == 1


def test_env_values_are_parsed_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_CELERY__TASK_TIME_LIMIT", "120")
    monkeypatch.setenv("FLASK_SQLALCHEMY_DATABASE_URI", "sqlite:////tmp/elsewhere.db")
    app = create_app()
    assert app.extensions["celery"].conf.task_time_limit == 120
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "sqlite:////tmp/elsewhere.db"


def test_upper_case_key_wins_over_its_lower_case_default() -> None:
    settings = celery_settings({"broker_url": "redis://a/0", "BROKER_URL": "redis://b/0"})
    assert settings["broker_url"] == "redis://b/0"
    assert "BROKER_URL" not in settings


def test_visibility_timeout_shorter_than_the_time_limit_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"visibility_timeout \(300s\) must be longer than "
        r"the longest hard time limit \(600s\)",
    ):
        celery_settings(
            {"task_time_limit": 600, "broker_transport_options": {"visibility_timeout": 300}}
        )


def test_a_task_limit_longer_than_the_visibility_timeout_is_refused() -> None:
    settings = {"task_time_limit": 60, "broker_transport_options": {"visibility_timeout": 3600}}
    check_time_budget(settings, [None, 120.0])
    with pytest.raises(ConfigError, match=r"longest hard time limit \(7200s\)"):
        check_time_budget(settings, [None, 7200.0])


def test_visibility_timeout_is_derived_from_the_longest_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASK_CELERY__TASK_TIME_LIMIT", "5000")
    conf = create_app().extensions["celery"].conf
    assert conf.broker_transport_options["visibility_timeout"] == 5000 + 300
    monkeypatch.setenv("FLASK_CELERY__TASK_TIME_LIMIT", "60")
    conf = create_app().extensions["celery"].conf
    assert conf.broker_transport_options["visibility_timeout"] == 3600


def test_the_app_refuses_to_start_with_a_broken_time_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASK_CELERY__TASK_TIME_LIMIT", "5000")
    monkeypatch.setenv("FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout", "3000")
    with pytest.raises(
        ConfigError, match="FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout"
    ):
        create_app()


def test_env_overrides_do_not_leak_into_the_next_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout", "7200")
    create_app()
    monkeypatch.delenv("FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout")
    options = create_app().extensions["celery"].conf.broker_transport_options
    assert options["visibility_timeout"] == 3600


def test_embedded_defaults_live_under_the_instance_folder() -> None:
    app = create_app()
    assert app.config["STORAGE_DIR"].startswith(app.instance_path)
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")


def test_readme_configuration_tables_match_the_settings_table() -> None:
    readme = README.read_text()
    assert readme == readme_with_tables(readme), "run `make docs`"


def test_every_default_has_its_declared_type() -> None:
    config.check(config.DEFAULTS)


def test_a_badly_typed_variable_stops_the_app_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_SMTP_PORT", "abc")
    with pytest.raises(ConfigError, match=r"FLASK_SMTP_PORT='abc': expected an integer"):
        create_app()


def test_a_badly_typed_override_is_refused_naming_its_variable() -> None:
    with pytest.raises(ConfigError, match=r"FLASK_CELERY__TASK_ACKS_LATE='yes': expected true"):
        create_app({"CELERY": {"task_acks_late": "yes"}})


def test_string_settings_keep_their_text_even_when_it_looks_like_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASK_SMTP_USERNAME", "12345")
    monkeypatch.setenv("FLASK_SECRET_KEY", "0123")
    app = create_app()
    assert app.config["SMTP_USERNAME"] == "12345"
    assert app.config["SECRET_KEY"] == "0123"


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("0", False), ("True", True)])
def test_boolean_variables_are_parsed_as_booleans(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv("FLASK_CELERY__TASK_ACKS_LATE", raw)
    assert create_app().extensions["celery"].conf.task_acks_late is expected


def test_the_heartbeat_file_setting_reaches_the_worker_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLASK_WORKER_HEARTBEAT_FILE", str(tmp_path / "beat"))
    steps = create_app().extensions["celery"].steps["consumer"]
    assert [step.path for step in steps if issubclass(step, Heartbeat)] == [tmp_path / "beat"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["nonsense"], "FLASK_WEBHOOK_ALLOWED_NETWORKS: 'nonsense'"),
        (["127.0.0.1/32:99999"], "port 99999 is out of range"),
        ([5], "expected a JSON list of strings"),
    ],
)
def test_a_malformed_webhook_allowance_stops_the_app_at_start(
    entries: list[object], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        create_app({"WEBHOOK_ALLOWED_NETWORKS": entries})
