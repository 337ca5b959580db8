"""Authentication and scopes: who may call which route, and whose jobs a caller may see.

Requests go to the session stack's gunicorn (tests/integration/conftest.py), whose processes
accept the keys of harness/auth.py; keys made with `flask api-keys` live in its database.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from typing import Any

import httpx
import pytest
from flask import Flask

from harness.auth import API_KEY, CLIENT_KEY, OTHER_CLIENT_KEY, api_keys_setting, bearer
from harness.stack import BIN
from service import create_app
from service.auth.api_keys import digest
from service.budget import ConfigError

#: A route of each access rule, with a request it answers when allowed.
OPERATE_ROUTES = (
    ("GET", "/dead-letters", None),
    ("POST", "/jobs/periodic", {"task": "expire_trials"}),
    ("POST", "/webhook-endpoints", {"url": "https://hooks.example.com/in"}),
    ("GET", "/exports/1/download", None),
)


def served_operations(app: Flask) -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app serves, ids filled with 1."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        out += [(m, path) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return out


def flask_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flask"), "--app", "service.wsgi", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_route_but_the_probes_and_metrics_needs_a_key(web: str) -> None:
    app = create_app({"API_KEYS": api_keys_setting()})
    operations = served_operations(app)
    assert len(operations) >= 20
    open_to_all = set()
    with httpx.Client(base_url=web, timeout=10) as anonymous:
        for method, path in operations:
            answer = anonymous.request(method, path, json={})
            if answer.status_code != 401:
                open_to_all.add(path)
                continue
            assert answer.json()["error"] == "unauthorized", (method, path)
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="flask-celery"'
    assert open_to_all == {"/healthz", "/readyz", "/metrics"}


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {API_KEY}x",
        "Bearer fck_not-a-key-of-this-service",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        f"Basic {API_KEY}",
        "Bearer",
    ],
)
def test_a_wrong_or_malformed_token_is_401_and_names_the_problem(web: str, header: str) -> None:
    answer = httpx.get(f"{web}/dead-letters", headers={"Authorization": header}, timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="flask-celery", error="invalid_')


@pytest.mark.parametrize(("method", "path", "body"), OPERATE_ROUTES)
def test_a_client_key_cannot_operate(web: str, method: str, path: str, body: Any) -> None:
    answer = httpx.request(method, f"{web}{path}", json=body, headers=bearer(CLIENT_KEY))
    assert answer.status_code == 403
    assert answer.json() == {
        "error": "forbidden",
        "message": "this key lacks the operate scope",
        "scope": "operate",
    }
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    allowed = httpx.request(method, f"{web}{path}", json=body, headers=bearer(API_KEY))
    assert allowed.status_code not in (401, 403), allowed.text


def test_the_same_idempotency_key_from_two_callers_makes_two_jobs(api: httpx.Client) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4().hex[:8]}"}
    ids = {}
    for name, token in (("client", CLIENT_KEY), ("other", OTHER_CLIENT_KEY)):
        first = api.post("/jobs/add", json={"a": 1, "b": 2}, headers={**bearer(token), **key})
        again = api.post("/jobs/add", json={"a": 1, "b": 2}, headers={**bearer(token), **key})
        assert first.status_code == again.status_code == 202
        assert first.json()["job_id"] == again.json()["job_id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        ids[name] = first.json()["job_id"]
    assert ids["client"] != ids["other"]


def test_a_caller_reads_its_own_jobs_and_only_an_operator_reads_anothers(
    api: httpx.Client,
) -> None:
    accepted = api.post("/jobs/add", json={"a": 2, "b": 3}, headers=bearer(CLIENT_KEY))
    status_url = accepted.json()["status_url"]
    assert api.get(status_url, headers=bearer(CLIENT_KEY)).status_code == 200
    hidden = api.get(status_url, headers=bearer(OTHER_CLIENT_KEY))
    assert hidden.status_code == 404, "another client's job must look like no job at all"
    assert hidden.json()["error"] == "not_found"
    assert (
        api.get(status_url, headers=bearer(API_KEY)).json()["job_id"] == accepted.json()["job_id"]
    )


def test_keys_made_with_the_cli_work_until_revoked(
    stack_env: dict[str, str], web: str, workers: dict[str, str]
) -> None:
    name = f"ci-{uuid.uuid4().hex[:8]}"
    made = flask_cli(stack_env, "api-keys", "create", name, "--scope", "enqueue")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("fck_") and len(token) > 40

    listed = flask_cli(stack_env, "api-keys", "list")
    assert f"{name}\tenqueue\t" in listed.stdout and "active" in listed.stdout
    assert token not in listed.stdout + listed.stderr

    with httpx.Client(base_url=web, timeout=10, headers=bearer(token)) as client:
        accepted = client.post("/jobs/add", json={"a": 1, "b": 1})
        assert accepted.status_code == 202, accepted.text
        # enqueue only: it may not read, not even its own job
        assert client.get(accepted.json()["status_url"]).status_code == 403

        again = flask_cli(stack_env, "api-keys", "create", name)
        assert again.returncode != 0 and "exists" in again.stderr

        revoked = flask_cli(stack_env, "api-keys", "revoke", name)
        assert revoked.returncode == 0, revoked.stderr
        refused = client.post("/jobs/add", json={"a": 1, "b": 1})
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert "revoked" in flask_cli(stack_env, "api-keys", "list").stdout
    missing = flask_cli(stack_env, "api-keys", "revoke", name)
    assert missing.returncode != 0 and "no active key" in missing.stderr


def test_a_digest_entry_from_the_cli_is_accepted_through_the_setting(
    stack_env: dict[str, str], tmp_path: Any
) -> None:
    made = flask_cli(stack_env, "api-keys", "digest", "reporting", "--scope", "read")
    assert made.returncode == 0, made.stderr
    lines = [ln for ln in made.stdout.splitlines() if not ln.startswith("#")]
    token, entry = lines[0], json.loads(lines[1])
    assert entry == {"name": "reporting", "scopes": ["read"], "sha256": digest(token)}
    app = create_app(
        {"API_KEYS": [entry], "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db'}"}
    )
    client = app.test_client()
    headers = bearer(token)
    assert client.get("/openapi.json", headers=headers).status_code == 200
    assert client.post("/jobs/add", json={"a": 1, "b": 1}, headers=headers).status_code == 403


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"name": "a", "scopes": ["read"]}, "FLASK_API_KEYS[0]: expected exactly the keys"),
        ({"name": "a", "scopes": ["read"], "sha256": "abc"}, "FLASK_API_KEYS[0].sha256"),
        ({"name": "a", "scopes": ["admin"], "sha256": "a" * 64}, "unknown: admin"),
        ({"name": "a", "scopes": [], "sha256": "a" * 64}, "FLASK_API_KEYS[0].scopes"),
    ],
)
def test_a_bad_api_keys_setting_stops_the_app_naming_the_entry(
    setting: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        create_app({"API_KEYS": [setting]})


@pytest.mark.parametrize("name", ["", "-ci", "ci key", "ci\n", "x" * 65, 7])
def test_a_key_name_that_logs_could_not_show_plainly_is_refused(name: object) -> None:
    entry = {"name": name, "scopes": ["read"], "sha256": "b" * 64}
    with pytest.raises(ConfigError, match=re.escape("FLASK_API_KEYS[0].name: expected 1 to 64")):
        create_app({"API_KEYS": [entry]})


def test_two_configured_keys_with_one_name_are_refused() -> None:
    entry = {"name": "dup", "scopes": ["read"], "sha256": "b" * 64}
    with pytest.raises(ConfigError, match=re.escape("FLASK_API_KEYS[1].name")):
        create_app({"API_KEYS": [entry, {**entry, "sha256": "c" * 64}]})


def test_without_auth_the_app_serves_everyone_and_says_so(
    tmp_path: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    app = create_app(
        {"AUTH_DISABLED": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db'}"}
    )
    assert app.test_client().get("/openapi.json").status_code == 200
    assert "AUTH_DISABLED is on" in capfd.readouterr().err


def test_the_openapi_document_states_the_security_each_route_has(web: str) -> None:
    spec = httpx.get(f"{web}/openapi.json", headers=bearer(), timeout=10).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    with httpx.Client(base_url=web, timeout=10) as anonymous:
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                concrete = re.sub(r"\{[^}]+\}", "1", path)
                answer = anonymous.request(method, concrete, json={})
                protected = operation.get("security", spec["security"]) != []
                assert (answer.status_code == 401) == protected, (method, path)
                if protected:
                    assert "401" in operation["responses"], (method, path)
                    if "x-required-scope" in operation:
                        assert "403" in operation["responses"], (method, path)
