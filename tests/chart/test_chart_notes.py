"""NOTES.txt: how to reach web and Flower, how to watch scaling, which database is in use, and
dev-default warnings."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.chart import CHART, HelmRenderError, helm_env, validate_object


def notes(helm: str, *sets: str) -> str:
    """NOTES of a client-side dry-run install (helm template does not render NOTES.txt)."""
    cmd = [helm, "install", "rel", str(CHART), "--dry-run=client", "--namespace", "fc"]
    cmd += [a for s in sets for a in ("--set", s)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=helm_env())
    if "cluster unreachable" in out.stderr:
        pytest.skip("this helm's install --dry-run=client still needs a reachable cluster (helm 3)")
    if out.returncode:
        raise HelmRenderError(out.stderr)
    return out.stdout.split("NOTES:", 1)[1]


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
