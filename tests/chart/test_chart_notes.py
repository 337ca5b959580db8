"""NOTES.txt: how to reach web and Flower, how to watch scaling, which database is in use, and
dev-default warnings."""

from __future__ import annotations

import pytest

from tests.support.chart import notes, validate_object


def test_notes_show_access_and_scaling_commands(helm):
    text = notes(helm)
    assert "port-forward svc/rel-flask-celery-web 8000:8000" in text
    assert "port-forward svc/rel-flask-celery-flower 5555:5555" in text
    assert "app.kubernetes.io/component=worker -w" in text
    assert "get scaledobjects,hpa" in text
    assert "general: default, email" in text


def test_notes_call_the_bundled_postgresql_development_only_and_show_the_way_out(helm):
    text = notes(helm)
    for expected in (
        "the bundled PostgreSQL rel-flask-celery-postgresql:5432",
        "WARNING: the bundled PostgreSQL is for development only",
        "create secret generic rel-db",
        "--set database.existingSecret=rel-db --set postgresql.enabled=false",
    ):
        assert expected in text


def test_notes_name_the_external_database_and_that_it_wins(helm):
    text = notes(helm, "database.existingSecret=db")
    assert "external, URL from Secret db (key database-url)" in text
    assert "database.existingSecret wins over postgresql.enabled" in text
    assert "for development only" not in text
    assert "wins over" not in notes(helm, "database.existingSecret=db", "postgresql.enabled=false")


def test_notes_print_no_secret(helm):
    text = notes(
        helm,
        "flower.auth.password=s3cr3t-flower-pass",
        "redis.auth.password=s3cr3t-redis-pass",
        "postgresql.auth.password=s3cr3t-postgres-pass",
    )
    assert "s3cr3t" not in text


def test_validator_rejects_unknown_fields():
    """The strict validators really are strict (the plain ones ignore unknown fields)."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "replica": 2,
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    with pytest.raises(AssertionError, match="replica"):
        validate_object(deployment)
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {
            "scaleTargetRef": {"name": "x"},
            "triggers": [
                {"type": "redis", "metadata": {"listName": "q"}, "authRef": {"name": "a"}}
            ],
        },
    }
    with pytest.raises(AssertionError, match="authRef: unknown field"):
        validate_object(scaled)
    scaled["spec"]["triggers"][0] = {"type": "redis", "metadata": {"listLength": 5}}
    with pytest.raises(AssertionError, match="listLength"):
        validate_object(scaled)


def test_notes_send_the_bearer_header_and_show_how_to_get_a_key(helm):
    text = notes(helm)
    assert "needs `Authorization: Bearer <token>`" in text
    assert 'curl -X POST http://127.0.0.1:8000/jobs/add -H "Authorization: Bearer $TOKEN"' in text
    exec_web = "kubectl -n fc exec deploy/rel-flask-celery-web -c web -- flask --app service.wsgi"
    assert f"{exec_web} api-keys create NAME --scope enqueue --scope read" in text
    assert f"{exec_web} api-keys digest NAME --scope enqueue --scope read" in text
    assert "identity provider" not in text


def test_notes_ingress_example_sends_the_header(helm):
    text = notes(helm, "web.ingress.enabled=true", "web.ingress.tls[0].secretName=tls")
    assert (
        'curl -X POST https://flask-celery.local/jobs/add -H "Authorization: Bearer $TOKEN"' in text
    )
    assert "port-forward svc/rel-flask-celery-web" not in text


def test_notes_name_where_the_release_keys_and_tokens_come_from(helm):
    key = "auth.apiKeys[0].{}"
    chart_keys = notes(
        helm,
        key.format("name=ci"),
        key.format("scopes[0]=enqueue"),
        key.format("sha256=" + "a" * 64),
        "auth.jwt.issuer=https://login.example.com/",
        "auth.jwt.audience=jobs",
        "auth.jwt.jwksUrl=https://login.example.com/jwks",
    )
    assert "The 1 key(s) of auth.apiKeys are accepted too" in chart_keys
    assert "Secret rel-flask-celery-api-keys" in chart_keys
    assert "api-keys digest" not in chart_keys
    assert "identity provider https://login.example.com/ for audience jobs" in chart_keys
    assert '"scope" claim' in chart_keys
    existing = notes(helm, "auth.existingSecret=keys")
    assert "The keys listed in Secret keys (key api-keys.json) are accepted too" in existing
    assert "kubectl -n fc rollout restart deploy/rel-flask-celery-web" in existing
