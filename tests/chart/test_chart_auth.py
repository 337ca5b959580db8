"""API authentication: the API keys Secret, the web container's FLASK_API_KEYS and identity
provider settings (web only), the checksum that rolls web, and the values the chart refuses."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from harness.auth import KEYS, api_keys_setting
from tests.support.chart import by_kind, container, env_of, one, render_error

NAME = "rel-flask-celery-{}"
KEYS_SECRET = NAME.format("api-keys")
#: The chart's keys, an identity provider, and every application pod (exporter, hook Job).
JWT = {
    "issuer": "https://login.example.com/",
    "audience": "flask-celery",
    "jwksUrl": "https://login.example.com/.well-known/jwks.json",
}
EVERY_POD = {"metrics": {"enabled": True}, "database": {"existingSecret": "db"}}
#: Only what a test reads, for speed: the web Deployment, and the chart's keys Secret.
WEB = ("templates/web/deployment.yaml",)
WEB_AND_SECRET = (*WEB, "templates/web/secret.yaml")
AUTH_VARIABLES = (
    "FLASK_API_KEYS",
    "FLASK_AUTH_JWT_ISSUER",
    "FLASK_AUTH_JWT_AUDIENCE",
    "FLASK_AUTH_JWT_JWKS_URL",
    "FLASK_AUTH_JWT_SCOPES_CLAIM",
)


def with_auth(auth: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"auth": auth, **more}


def web_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return env_of(container(one(docs, "Deployment", NAME.format("web")), "web"))


def web_annotations(docs: list[dict[str, Any]]) -> dict[str, str]:
    pod = one(docs, "Deployment", NAME.format("web"))["spec"]["template"]["metadata"]
    return dict(pod.get("annotations", {}))


def secret_data(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in one(docs, "Secret", name)["data"].items()}


def test_by_default_web_gets_no_key_list_and_no_identity_provider(render):
    docs = render({})
    assert KEYS_SECRET not in {s["metadata"]["name"] for s in by_kind(docs, "Secret")}
    assert not set(AUTH_VARIABLES) & set(web_env(docs))
    assert "checksum/api-keys" not in web_annotations(docs)


def test_api_keys_become_a_secret_of_digests_that_web_reads(render):
    docs = render(with_auth({"apiKeys": api_keys_setting()}), show_only=WEB_AND_SECRET)
    data = secret_data(docs, KEYS_SECRET)
    assert list(data) == ["api-keys.json"]
    assert json.loads(data["api-keys.json"]) == api_keys_setting()
    assert web_env(docs)["FLASK_API_KEYS"] == {
        "name": "FLASK_API_KEYS",
        "valueFrom": {"secretKeyRef": {"name": KEYS_SECRET, "key": "api-keys.json"}},
    }
    labels = one(docs, "Secret", KEYS_SECRET)["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "web"


def test_no_token_is_rendered_anywhere(render):
    rendered = repr(render(with_auth({"apiKeys": api_keys_setting(), "jwt": JWT}, **EVERY_POD)))
    for _, token, _ in KEYS:
        assert token not in rendered


def test_only_the_web_container_gets_the_authentication_settings(render):
    docs = render(with_auth({"apiKeys": api_keys_setting(), "jwt": JWT}, **EVERY_POD))
    seen = {}
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        spec = d["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            seen[f"{d['metadata']['name']}/{c['name']}"] = set(env_of(c)) & set(AUTH_VARIABLES)
    assert seen.pop(f"{NAME.format('web')}/web") == set(AUTH_VARIABLES)
    assert {NAME.format("exporter") + "/exporter", NAME.format("beat") + "/beat"} <= set(seen)
    assert any("/worker" in name for name in seen) and any("migrat" in name for name in seen)
    assert {name: found for name, found in seen.items() if found} == {}


def test_an_existing_secret_replaces_the_charts(render):
    docs = render(with_auth({"existingSecret": "my-keys", "existingSecretKey": "keys"}))
    assert KEYS_SECRET not in {s["metadata"]["name"] for s in by_kind(docs, "Secret")}
    assert web_env(docs)["FLASK_API_KEYS"]["valueFrom"] == {
        "secretKeyRef": {"name": "my-keys", "key": "keys"}
    }
    # the chart cannot know when the user's Secret changes: NOTES say to restart web
    assert "checksum/api-keys" not in web_annotations(docs)
    default_key = render(with_auth({"existingSecret": "my-keys"}), show_only=WEB)
    assert web_env(default_key)["FLASK_API_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == (
        "api-keys.json"
    )


def test_changing_the_key_list_changes_the_web_pods_checksum_only(render):
    keys = api_keys_setting()
    only = (*WEB, "templates/worker/deployment.yaml")
    first = render(with_auth({"apiKeys": keys}), show_only=only)
    second = render(with_auth({"apiKeys": keys[:1]}), show_only=only)
    again = render(with_auth({"apiKeys": keys}), show_only=only)
    checksum = [web_annotations(d)["checksum/api-keys"] for d in (first, second, again)]
    assert checksum[0] != checksum[1] and checksum[0] == checksum[2]
    worker = NAME.format("worker-general")
    assert (
        one(first, "Deployment", worker)["spec"]["template"]
        == one(second, "Deployment", worker)["spec"]["template"]
    )


def test_the_checksum_annotation_keeps_the_users_pod_annotations(render):
    docs = render(
        with_auth({"apiKeys": api_keys_setting()}, podAnnotations={"team": "jobs"}), show_only=WEB
    )
    annotations = web_annotations(docs)
    assert annotations["team"] == "jobs" and "checksum/api-keys" in annotations


def test_identity_provider_settings_are_plain_values_of_web(render):
    docs = render(with_auth({"jwt": {**JWT, "scopesClaim": "permissions"}}), show_only=WEB)
    env = web_env(docs)
    assert {name: env[name].get("value") for name in AUTH_VARIABLES[1:]} == {
        "FLASK_AUTH_JWT_ISSUER": "https://login.example.com/",
        "FLASK_AUTH_JWT_AUDIENCE": "flask-celery",
        "FLASK_AUTH_JWT_JWKS_URL": "https://login.example.com/.well-known/jwks.json",
        "FLASK_AUTH_JWT_SCOPES_CLAIM": "permissions",
    }
    assert "FLASK_API_KEYS" not in env
    default_claim = web_env(render(with_auth({"jwt": JWT}), show_only=WEB))[
        "FLASK_AUTH_JWT_SCOPES_CLAIM"
    ]
    assert default_claim["value"] == "scope"


def test_authentication_cannot_be_turned_off_through_the_chart(helm):
    msg = render_error(helm, with_auth({"disabled": True}))
    assert "additional properties 'disabled' not allowed" in msg


# -- _validate.tpl rules (one aggregated `fail`) -------------------------------------------------


def test_keys_come_from_values_or_an_existing_secret_not_both(helm):
    msg = render_error(helm, with_auth({"apiKeys": api_keys_setting(), "existingSecret": "mine"}))
    assert "VALUES VALIDATION:" in msg
    assert "auth.apiKeys and auth.existingSecret are both set" in msg
    assert 'key "api-keys.json" of Secret "mine" and remove auth.apiKeys' in msg


def test_key_names_are_unique(helm):
    keys = api_keys_setting()
    keys[2]["name"] = keys[0]["name"]
    msg = render_error(helm, with_auth({"apiKeys": keys}))
    assert (
        'auth.apiKeys[2]: the name "tests-all" is already used by auth.apiKeys[0]; '
        "rename auth.apiKeys[2].name." in msg
    )


def test_one_token_is_one_key(helm):
    keys = api_keys_setting()
    keys[1]["sha256"] = keys[0]["sha256"]
    msg = render_error(helm, with_auth({"apiKeys": keys}))
    assert "auth.apiKeys[1] (tests-client): its sha256 is that of auth.apiKeys[0]" in msg
    assert "flask api-keys digest tests-client" in msg


@pytest.mark.parametrize(
    ("jwt", "given", "missing"),
    [
        ({"issuer": JWT["issuer"]}, "auth.jwt.issuer", "auth.jwt.audience, auth.jwt.jwksUrl"),
        (
            {"audience": "a", "jwksUrl": JWT["jwksUrl"]},
            "auth.jwt.audience, auth.jwt.jwksUrl",
            "auth.jwt.issuer",
        ),
    ],
    ids=["issuer-only", "no-issuer"],
)
def test_an_identity_provider_is_given_whole(helm, jwt, given, missing):
    msg = render_error(helm, with_auth({"jwt": jwt}))
    assert f"{given} set without {missing}" in msg
    assert f"set {missing}, or unset {given}." in msg


def test_auth_errors_are_reported_with_the_others(helm):
    msg = render_error(
        helm,
        with_auth({"existingSecret": "x", "apiKeys": api_keys_setting(), "jwt": {"audience": "a"}}),
    )
    assert msg.count("\nauth.") == 2, msg


# -- values.schema.json --------------------------------------------------------------------------


def key(**changes: Any) -> dict[str, Any]:
    return {**api_keys_setting()[0], **changes}


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"apiKeys": [key(sha256="A" * 64)]}, "does not match pattern '^[0-9a-f]{64}$'"),
        ({"apiKeys": [key(sha256="a" * 63)]}, "does not match pattern '^[0-9a-f]{64}$'"),
        ({"apiKeys": [key(scopes=["admin"])]}, "value must be one of 'enqueue', 'read', 'operate'"),
        ({"apiKeys": [key(scopes=[])]}, "minItems"),
        ({"apiKeys": [key(scopes=["read", "read"])]}, "items at 0 and 1 are equal"),
        ({"apiKeys": [key(name="ci key")]}, "does not match pattern"),
        ({"apiKeys": [key(token="fck_x")]}, "additional properties 'token' not allowed"),
        ({"apiKeys": [{"name": "ci", "scopes": ["read"]}]}, "missing property 'sha256'"),
        ({"jwt": {**JWT, "jwksUrl": "http://login.example.com/jwks"}}, "does not match pattern"),
        ({"jwt": {**JWT, "scopesClaim": ""}}, "minLength"),
        ({"jwt": {**JWT, "algorithm": "HS256"}}, "additional properties 'algorithm' not allowed"),
        ({"existingSecretKey": ""}, "minLength"),
    ],
    ids=[
        "digest-upper-case",
        "digest-short",
        "scope-enum",
        "scopes-empty",
        "scopes-repeated",
        "name-pattern",
        "token-in-values",
        "digest-required",
        "jwks-url-https",
        "scopes-claim-empty",
        "jwt-unknown-key",
        "existing-secret-key-empty",
    ],
)
def test_schema_refuses_bad_auth_values(helm, auth, message):
    msg = render_error(helm, with_auth(auth))
    assert "values don't meet the specifications of the schema" in msg
    assert message in msg
