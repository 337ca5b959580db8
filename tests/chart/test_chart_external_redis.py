"""External Redis done properly: an ACL user and a password from a Secret, TLS verified against
a private CA for the app and for KEDA, and one database index for KEDA and the workers; and
what the chart refuses, with its messages."""

from __future__ import annotations

import base64
from typing import Any

import jmespath
import pytest

from service import create_app
from service.redis_options import database_index
from service.worker.scaling import database_mismatch
from tests.support.chart import NAME, by_kind, container, env_of, one, render_error

#: An external Redis over TLS with a private CA, an ACL user, and URLs the chart builds.
EXTERNAL = {
    "redis": {"enabled": False, "brokerDatabase": 3, "resultDatabase": 4},
    "externalRedis": {
        "host": "redis.example.internal",
        "port": 6380,
        "tls": True,
        "username": "flask-app",
        "existingSecret": "ext-redis",
        "brokerUrlKey": "",
        "resultBackendKey": "",
    },
    "caBundle": {"secret": "corp-ca", "verifies": ["redis"]},
}
CA_FILE = "/etc/flask-celery/ca/ca.crt"
#: What the app containers of every component read Redis through.
REDIS_ENV = {
    "FLASK_CELERY__BROKER_URL": {"value": "rediss://redis.example.internal:6380/3"},
    "FLASK_CELERY__RESULT_BACKEND": {"value": "rediss://redis.example.internal:6380/4"},
    "FLASK_REDIS_USERNAME": {"value": "flask-app"},
    "FLASK_REDIS_PASSWORD": {
        "valueFrom": {"secretKeyRef": {"name": "ext-redis", "key": "redis-password"}}
    },
    "FLASK_REDIS_REQUIRE_TLS": {"value": "true"},
    "FLASK_REDIS_CA_FILE": {"value": CA_FILE},
}


def values(**changes: Any) -> dict[str, Any]:
    out = {key: dict(value) for key, value in EXTERNAL.items()}
    for key, value in changes.items():
        out[key] = {**out.get(key, {}), **value}
    return out


def app_deployments(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in by_kind(docs, "Deployment") if not d["metadata"]["name"].endswith("redis")]


def test_every_app_container_reaches_redis_as_the_acl_user_over_verified_tls(render):
    docs = render(EXTERNAL)
    deployments = app_deployments(docs)
    assert {d["metadata"]["name"] for d in deployments} >= {NAME.format("web"), NAME.format("beat")}
    for deployment in deployments:
        env = env_of(container(deployment))
        got = {name: {k: v for k, v in env[name].items() if k != "name"} for name in REDIS_ENV}
        assert got == REDIS_ENV, deployment["metadata"]["name"]
    assert not [s for s in by_kind(docs, "StatefulSet") if "redis" in s["metadata"]["name"]]


def test_the_database_keda_counts_is_the_one_the_workers_consume(render):
    docs = render(EXTERNAL)
    for so in by_kind(docs, "ScaledObject"):
        group = so["metadata"]["name"]
        env = env_of(container(one(docs, "Deployment", group)))
        indexes = set(jmespath.search("spec.triggers[*].metadata.databaseIndex", so))
        assert indexes == {env["FLASK_KEDA_DATABASE_INDEX"]["value"]} == {"3"}, group
        assert database_index(env["FLASK_CELERY__BROKER_URL"]["value"]) == 3


def test_keda_authenticates_with_the_user_the_password_and_the_private_ca(render):
    docs = render(EXTERNAL)
    keda = NAME.format("redis-keda")
    auth = one(docs, "TriggerAuthentication", keda)
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "password": ("ext-redis", "redis-password"),
        "username": (keda, "username"),
        "tls": (keda, "tls"),
        "ca": ("corp-ca", "ca.crt"),
    }
    secret = one(docs, "Secret", keda)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"username": "flask-app", "tls": "enable"}
    for so in by_kind(docs, "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            # KEDA refuses `tls` in the TriggerAuthentication together with enableTLS
            assert "enableTLS" not in trigger["metadata"] and "unsafeSsl" not in trigger["metadata"]
            assert trigger["metadata"]["address"] == "redis.example.internal:6380"
            assert trigger["authenticationRef"] == {"name": keda}


def test_tls_without_a_private_ca_verifies_against_the_system_roots(render):
    docs = render(values(caBundle={"secret": "", "verifies": []}, externalRedis={"username": ""}))
    triggers = jmespath.search("[?kind=='ScaledObject'].spec.triggers[].metadata", docs)
    assert {t.get("enableTLS") for t in triggers} == {"true"}
    assert not [t for t in triggers if "unsafeSsl" in t]
    auth = one(docs, "TriggerAuthentication", NAME.format("redis-keda"))
    assert [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["password"]
    assert not [s for s in by_kind(docs, "Secret") if "keda" in s["metadata"]["name"]]
    env = env_of(container(one(docs, "Deployment", NAME.format("web"))))
    assert "FLASK_REDIS_CA_FILE" not in env and env["FLASK_REDIS_REQUIRE_TLS"]["value"] == "true"


def test_the_app_builds_its_connections_from_the_rendered_environment(
    render, monkeypatch: pytest.MonkeyPatch, tmp_path
):
    docs = render(EXTERNAL)
    env = env_of(container(one(docs, "Deployment", NAME.format("worker-general"))))
    password = "p@ss:/#%w0rd"
    for name in (*REDIS_ENV, "FLASK_KEDA_DATABASE_INDEX"):
        monkeypatch.setenv(name, env[name].get("value", password))
    monkeypatch.setenv("FLASK_STORAGE_DIR", str(tmp_path))
    conf = create_app().extensions["celery"].conf
    assert (
        conf.broker_url == "rediss://flask-app:p%40ss%3A%2F%23%25w0rd@redis.example.internal:6380/3"
    )
    for setting in ("broker_use_ssl", "redis_backend_use_ssl", "redbeat_redis_use_ssl"):
        assert conf[setting]["ssl_ca_certs"] == CA_FILE
        assert conf[setting]["ssl_cert_reqs"] == 2 and conf[setting]["ssl_check_hostname"] is True
    assert (
        database_mismatch(conf.broker_url, int(env["FLASK_KEDA_DATABASE_INDEX"]["value"])) is None
    )


def test_urls_from_the_secret_stay_there_and_workers_check_their_database(render):
    docs = render(values(externalRedis={"brokerUrlKey": "broker-url"}))
    env = env_of(container(one(docs, "Deployment", NAME.format("worker-general"))))
    assert env["FLASK_CELERY__BROKER_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "ext-redis",
        "key": "broker-url",
    }
    assert env["FLASK_KEDA_DATABASE_INDEX"]["value"] == "3"


def test_without_keda_workers_are_not_held_to_a_database(render):
    docs = render({"keda": {"enabled": False}})
    env = env_of(container(one(docs, "Deployment", NAME.format("worker-general"))))
    assert "FLASK_KEDA_DATABASE_INDEX" not in env


# -- refused, with the values to change ----------------------------------------------------------


def test_a_ca_for_the_bundled_redis_is_refused(helm):
    msg = render_error(helm, {"caBundle": {"secret": "corp-ca", "verifies": ["redis"]}})
    assert (
        "caBundle.verifies lists redis, but the bundled Redis (redis.enabled=true) speaks no TLS "
        "and the app refuses a CA for a plain redis:// URL; remove redis from caBundle.verifies."
    ) in msg


def test_a_ca_for_an_external_redis_without_tls_is_refused(helm):
    msg = render_error(helm, values(externalRedis={"tls": False}))
    assert (
        "caBundle.verifies lists redis, but externalRedis.tls is false, so the app would refuse "
        "to start (a CA for a plain redis:// URL); set externalRedis.tls=true"
    ) in msg


def test_keda_needs_the_redis_ca_in_a_secret(helm):
    msg = render_error(helm, values(caBundle={"secret": "", "configMap": "corp-ca"}))
    assert (
        "caBundle.verifies lists redis with keda.enabled=true, but KEDA reads the CA of its "
        'TriggerAuthentication from a Secret only and the bundle is in ConfigMap "corp-ca"; put '
        "it in a Secret and set caBundle.secret instead of caBundle.configMap"
    ) in msg


#: A broker URL on database 5, set in an extraEnv where the chart can see it.
URL_ON_5 = [{"name": "FLASK_CELERY__BROKER_URL", "value": "rediss://redis.example.internal:6380/5"}]


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"app": {"extraEnv": URL_ON_5}}, "app.extraEnv"),
        (
            {"workers": {"defaults": {"extraEnv": URL_ON_5}}},
            "workers.groups[0].extraEnv (or workers.defaults.extraEnv)",
        ),
    ],
)
def test_a_broker_url_on_another_database_than_keda_counts_is_refused(helm, extra, where):
    msg = render_error(helm, {**values(), **extra})
    assert (
        f"workers.groups[0] (general): FLASK_CELERY__BROKER_URL in {where} selects Redis database "
        "5, but KEDA counts the group's queues in redis.brokerDatabase (3), so it would scale on "
        "queues the workers never consume (and they refuse to start); end that URL with /3, or "
        "set redis.brokerDatabase=5."
    ) in msg


def test_a_built_url_needs_the_host(helm):
    msg = render_error(helm, values(keda={"enabled": False}, externalRedis={"host": ""}))
    assert (
        "externalRedis.host is empty but the chart builds a Redis URL from it "
        "(externalRedis.brokerUrlKey or externalRedis.resultBackendKey is empty)"
    ) in msg
