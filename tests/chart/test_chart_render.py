"""Every value set renders under each helm, and every object passes strict schema validation.

Cross-cutting properties are checked over all value sets: labels on every object (contract 8),
exec-form commands, secrets only through secretKeyRef, nothing secret in a ConfigMap.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jmespath
import pytest

from harness.auth import api_keys_setting
from tests.support.chart import EXTERNAL_REDIS, by_kind
from tests.support.chart_processes import local_path

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "keda-off-fixed": {"keda": {"enabled": False}},
    "keda-off-cpu-hpa": {
        "keda": {"enabled": False},
        "workers": {"defaults": {"autoscaling": {"enabled": True}}},
        "web": {"autoscaling": {"enabled": True}},
    },
    "external-redis-tls": EXTERNAL_REDIS,
    "scale-to-zero": {"workers": {"defaults": {"minReplicas": 0}}},
    "network-policies": {
        "networkPolicy": {
            "enabled": True,
            "webFrom": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                    }
                }
            ],
            "flowerFrom": [{"podSelector": {"matchLabels": {"role": "ops"}}}],
            "database": {"cidrs": ["10.20.0.0/16"]},
        },
        "webhooks": {"allowedNetworks": ["10.30.0.0/16"]},
        "database": {"existingSecret": "db"},
        "smtp": {"host": "smtp.example.com"},
    },
    "metrics": {"metrics": {"enabled": True}},
    "bundled-postgresql-options": {
        "networkPolicy": {"enabled": True},
        "postgresql": {
            "image": {"digest": "sha256:" + "b" * 64, "pullPolicy": "Always"},
            "auth": {"existingSecret": "pg", "username": "jobs", "database": "jobs"},
            "persistence": {"enabled": False},
            "runAsUser": 10999,
        },
    },
    "external-database-wins": {
        "database": {"existingSecret": "db"},
        "postgresql": {"enabled": True},
        "networkPolicy": {"enabled": True},
    },
    "two-extra-groups": {
        "workers": {
            "groups": [
                # the app's queues over five groups: mail and exports get groups of their own
                {"name": "general", "queues": ["default"]},
                {"name": "reports", "queues": ["pdf"]},
                {"name": "webhooks", "queues": ["webhooks"]},
                {
                    "name": "bulk",
                    "queues": ["email"],
                    "concurrency": 8,
                    "profile": "fireAndForget",
                    # 8 x maxMemoryPerChildMiB (200) + the main process (160) needs 1760 MiB
                    "resources": {"limits": {"memory": "2Gi"}},
                },
                {
                    "name": "slow",
                    "queues": ["exports"],
                    "timeLimitSeconds": 1800,
                    "softTimeLimitSeconds": 1700,
                },
            ]
        }
    },
    "production": {
        "image": {"digest": "sha256:" + "a" * 64},
        "database": {"existingSecret": "db"},
        "storage": {"persistence": {"enabled": True}},
        "smtp": {"host": "smtp.example.com", "username": "mailer", "existingSecret": "smtp"},
        "web": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "tls": [{"secretName": "web-tls", "hosts": ["flask-celery.local"]}],
            }
        },
        "networkPolicy": {"enabled": True},
        "metrics": {"enabled": True},
        "flower": {"urlPrefix": "flower"},
        "auth": {
            "apiKeys": api_keys_setting(),
            "jwt": {
                "issuer": "https://login.example.com/",
                "audience": "flask-celery",
                "jwksUrl": "https://login.example.com/.well-known/jwks.json",
            },
        },
    },
}

STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
]
WORKLOADS = ("Deployment", "StatefulSet", "Job")


@pytest.fixture(params=sorted(VALUE_SETS), ids=str)
def docs(request: pytest.FixtureRequest, render) -> list[dict[str, Any]]:
    """The rendered, validated objects of one value set."""
    return render(VALUE_SETS[request.param])


def containers_of(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d["kind"] in WORKLOADS:
            spec = d["spec"]["template"]["spec"]
            out += [
                (d["metadata"]["name"], c)
                for c in spec.get("initContainers", []) + spec["containers"]
            ]
    return out


def test_value_set_renders_valid_objects(docs):
    assert docs, "nothing rendered"
    assert all(
        d["metadata"].get("namespace") == "flask-celery" for d in docs if d["kind"] != "Namespace"
    )


def test_every_object_carries_the_standard_labels(docs):
    for d in docs:
        labels = d["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{d['kind']}/{d['metadata']['name']} lacks {missing}"
        if labels["app.kubernetes.io/component"] == "worker" and d["kind"] in {
            "Deployment",
            "ScaledObject",
            "PodDisruptionBudget",
        }:
            assert "flask-celery.io/worker-group" in labels


def test_selectors_use_only_name_instance_component_and_group(docs):
    allowed = {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        "flask-celery.io/worker-group",
    }
    for d in docs:
        selector = (
            jmespath.search("spec.selector.matchLabels", d)
            if d["kind"] != "Service"
            else d["spec"].get("selector")
        )
        if selector:
            assert set(selector) <= allowed, f"{d['kind']}/{d['metadata']['name']}: {selector}"


def test_commands_are_exec_form_without_a_shell(docs):
    for name, c in containers_of(docs):
        argv = c.get("command", []) + c.get("args", [])
        assert argv, f"{name}/{c['name']} relies on the image entrypoint"
        assert argv[0] not in {"sh", "bash", "/bin/sh", "/bin/bash"}, (
            f"{name}/{c['name']} wraps its command in a shell"
        )
        assert "-c" not in argv[:2]


def test_paths_in_the_environment_lie_on_mounted_volumes(docs):
    # The root filesystem is read-only: a path the app writes to must be on a volume.
    for name, c in containers_of(docs):
        mounts = {m["mountPath"]: Path(m["mountPath"]) for m in c.get("volumeMounts", [])}
        for e in c.get("env", []):
            path = str(e.get("value", ""))
            if path.startswith("/"):
                try:
                    local_path(path, mounts)
                except AssertionError as err:
                    raise AssertionError(f"{name}/{c['name']} {e['name']}: {err}") from None


def secret_mounts(docs: list[dict[str, Any]], workload: str, c: dict[str, Any]) -> set[str]:
    """Mount paths of the container's volumes that are Secrets."""
    (pod,) = [
        d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in WORKLOADS and d["metadata"]["name"] == workload
    ]
    secrets = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
    return {m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in secrets}


SECRET_WORDS = (
    "PASSWORD",
    "SECRET",
    "AUTH",
    "API_KEYS",
    "BROKER_URL",
    "RESULT_BACKEND",
    "DATABASE_URI",
)
#: Names with a secret word that hold no secret (the identity provider's settings are public).
NOT_SECRET = {
    "FLOWER_AUTH",
    "FLOWER_AUTH_PROVIDER",
    "FLASK_AUTH_JWT_ISSUER",
    "FLASK_AUTH_JWT_AUDIENCE",
    "FLASK_AUTH_JWT_JWKS_URL",
    "FLASK_AUTH_JWT_SCOPES_CLAIM",
}


def test_secrets_reach_containers_only_through_secret_key_refs(docs):
    for name, c in containers_of(docs):
        assert "envFrom" not in c, f"{name}/{c['name']} uses envFrom"
        for e in c.get("env", []):
            ref = e.get("valueFrom", {})
            assert "configMapKeyRef" not in ref, f"{name}: {e['name']} comes from a ConfigMap"
            if e["name"] in NOT_SECRET or not any(w in e["name"] for w in SECRET_WORDS):
                continue
            if e["name"].endswith("_FILE"):
                # a plain path naming the secret's file on a Secret volume
                directory = str(Path(e["value"]).parent)
                assert directory in secret_mounts(docs, name, c), f"{name}: {e['name']}"
            else:
                assert "secretKeyRef" in ref, f"{name}: {e['name']} is not read from a Secret"


def test_no_secret_value_appears_outside_its_secret(docs):
    secrets = []
    for s in by_kind(docs, "Secret"):
        secrets += [base64.b64decode(v).decode() for v in s.get("data", {}).values()]
        secrets += list(s.get("stringData", {}).values())
    secrets = [s for s in secrets if len(s) >= 8]
    for d in docs:
        if d["kind"] == "Secret":
            continue
        text = repr(d)
        for value in secrets:
            assert value not in text, (
                f"a Secret value leaks into {d['kind']}/{d['metadata']['name']}"
            )
    for cm in by_kind(docs, "ConfigMap"):
        text = repr(cm["data"]).lower()
        assert "requirepass" not in text and "password" not in text


def test_pods_are_hardened(docs):
    for d in docs:
        if d["kind"] not in WORKLOADS:
            continue
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]
        if d["kind"] != "Job":
            assert pod["topologySpreadConstraints"]


def test_keda_objects_do_not_depend_on_capabilities(render):
    plain = render({})
    with_api = render({}, extra_args=("--api-versions", "keda.sh/v1alpha1"))
    assert len(by_kind(plain, "ScaledObject")) == len(by_kind(with_api, "ScaledObject")) == 3
