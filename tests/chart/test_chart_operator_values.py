"""What an operator sets per component and per worker group, over release-wide defaults:
scheduling, priority, pod annotations and labels, extra environment sources, volumes, init
containers and sidecars, lifecycle hooks and probe timings; and the schema that checks the
Kubernetes objects among them against the Kubernetes definitions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.chart import CHART, NAME, by_kind, container, one, render_error
from tests.support.k8s_definitions import definitions

WEB, BEAT, FLOWER, EXPORTER = (NAME.format(c) for c in ("web", "beat", "flower", "exporter"))
GROUPS = ("general", "reports", "webhooks")
WORKERS = tuple(NAME.format(f"worker-{g}") for g in GROUPS)
LONG_RUNNING = (WEB, BEAT, FLOWER, EXPORTER, *WORKERS)
HOOK, TEST = NAME.format("migrations"), NAME.format("web-test")

TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "jobs", "effect": "NoSchedule"}
AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["jobs"]}]}
            ]
        }
    }
}
SPREAD = {
    "maxSkew": 2,
    "topologyKey": "topology.kubernetes.io/zone",
    "whenUnsatisfiable": "DoNotSchedule",
    "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "rel"}},
}
SIDECAR = {"name": "log-shipper", "image": "fluent/fluent-bit:3.1", "args": ["-c", "/etc/fb.conf"]}
INIT = {"name": "wait-for-vault", "image": "busybox:1.36", "command": ["true"]}
VOLUME = {"name": "vault", "secret": {"secretName": "vault-token"}}
MOUNT = {"name": "vault", "mountPath": "/var/run/vault", "readOnly": True}
ENV_FROM = {"secretRef": {"name": "app-extra"}}
GLOBAL = {
    "nodeSelector": {"pool": "jobs"},
    "tolerations": [TOLERATION],
    "affinity": AFFINITY,
    "priorityClassName": "jobs-normal",
    "topologySpreadConstraints": [SPREAD],
    "podAnnotations": {"team": "payments"},
    "podLabels": {"cost-center": "42"},
    "extraVolumes": [VOLUME],
    "extraVolumeMounts": [MOUNT],
    "extraInitContainers": [INIT],
    "extraContainers": [SIDECAR],
    "app": {"extraEnvFrom": [ENV_FROM]},
    "metrics": {"enabled": True},
    "image": {"pullSecrets": ["registry-creds"]},
}


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pod template (metadata and spec) of every Deployment, Job and Pod, by object name."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            out[d["metadata"]["name"]] = d["spec"]["template"]
        elif d["kind"] == "Pod":
            out[d["metadata"]["name"]] = {"metadata": d["metadata"], "spec": d["spec"]}
    return out


def main_container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["image"].startswith("flask-celery"))


def test_release_wide_values_reach_every_application_pod(render):
    pods = pod_specs(render({**GLOBAL, "database": {"existingSecret": "db"}}))
    assert set(LONG_RUNNING) | {HOOK, TEST} <= set(pods)
    for name in LONG_RUNNING:
        pod, spec = pods[name], pods[name]["spec"]
        assert spec["nodeSelector"] == {"pool": "jobs"}, name
        assert spec["tolerations"] == [TOLERATION], name
        assert spec["affinity"] == AFFINITY, name
        assert spec["priorityClassName"] == "jobs-normal", name
        assert spec["topologySpreadConstraints"] == [SPREAD], name
        assert spec["imagePullSecrets"] == [{"name": "registry-creds"}], name
        assert pod["metadata"]["annotations"]["team"] == "payments", name
        assert pod["metadata"]["labels"]["cost-center"] == "42", name
        assert VOLUME in spec["volumes"], name
        assert spec["initContainers"][-1] == INIT, name
        assert spec["containers"][1:] == [SIDECAR], name
        app = main_container(pod, name)
        assert app["envFrom"] == [ENV_FROM], name
        assert app["volumeMounts"][-1] == MOUNT, name
    # the hook Job and the test Pod run to completion: scheduling, volumes and environment
    # sources, but no sidecar that would never end, and no spread over a single pod
    for name in (HOOK, TEST):
        spec = pods[name]["spec"]
        assert spec["nodeSelector"] == {"pool": "jobs"} and spec["tolerations"] == [TOLERATION]
        assert VOLUME in spec["volumes"] and spec["containers"][0]["volumeMounts"][-1] == MOUNT
        assert len(spec["containers"]) == 1 and "initContainers" not in spec, name
    assert "topologySpreadConstraints" not in pods[HOOK]["spec"] or pods[HOOK]["spec"][
        "topologySpreadConstraints"
    ] == [SPREAD]


def test_the_migrate_init_container_gets_the_extra_mounts_and_sources(render):
    pods = pod_specs(render(GLOBAL))
    migrate = pods[WEB]["spec"]["initContainers"][0]
    assert migrate["name"] == "migrate"
    assert migrate["envFrom"] == [ENV_FROM] and migrate["volumeMounts"][-1] == MOUNT


def test_a_component_adds_to_and_replaces_the_release_wide_values(render):
    own_toleration = {"key": "web", "operator": "Exists", "effect": "NoSchedule"}
    values = {
        **GLOBAL,
        "web": {
            "nodeSelector": {"tier": "edge"},
            "tolerations": [own_toleration],
            "priorityClassName": "web-critical",
            "podAnnotations": {"team": "edge", "sidecar.istio.io/inject": "false"},
            "podLabels": {"tier": "edge"},
            "extraVolumes": [{"name": "geoip", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "geoip", "mountPath": "/geoip"}],
            "extraContainers": [{"name": "proxy", "image": "envoyproxy/envoy:v1.31.0"}],
            "extraEnvFrom": [{"configMapRef": {"name": "web-extra"}}],
        },
    }
    pods = pod_specs(render(values))
    web = pods[WEB]
    spec = web["spec"]
    assert spec["nodeSelector"] == {"pool": "jobs", "tier": "edge"}
    assert spec["tolerations"] == [own_toleration]
    assert spec["priorityClassName"] == "web-critical"
    assert spec["affinity"] == AFFINITY  # not set for web: the release's
    assert web["metadata"]["annotations"]["team"] == "edge"
    assert web["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert web["metadata"]["labels"]["tier"] == "edge"
    assert web["metadata"]["labels"]["app.kubernetes.io/component"] == "web"
    assert [v["name"] for v in spec["volumes"]][-2:] == ["vault", "geoip"]
    assert [c["name"] for c in spec["containers"]] == ["web", "log-shipper", "proxy"]
    app = main_container(web, WEB)
    assert app["envFrom"] == [ENV_FROM, {"configMapRef": {"name": "web-extra"}}]
    assert [m["name"] for m in app["volumeMounts"]][-2:] == ["vault", "geoip"]
    # nothing of web's leaks into the other pods
    beat = pods[BEAT]
    assert beat["spec"]["tolerations"] == [TOLERATION]
    assert beat["spec"]["priorityClassName"] == "jobs-normal"
    assert "tier" not in beat["metadata"]["labels"]
    assert [c["name"] for c in beat["spec"]["containers"]] == ["beat", "log-shipper"]


def test_one_worker_group_gets_its_own_values_over_the_worker_defaults(render):
    values = {
        "workers": {
            "defaults": {"priorityClassName": "jobs-normal", "podLabels": {"workload": "jobs"}},
            "groups": [
                {"name": "general", "queues": ["default", "email"]},
                {
                    "name": "reports",
                    "queues": ["pdf", "exports"],
                    "podAnnotations": {"karpenter.sh/do-not-disrupt": "true"},
                    "priorityClassName": "jobs-long",
                    "nodeSelector": {"pool": "long"},
                },
                {"name": "webhooks", "queues": ["webhooks"]},
            ],
        }
    }
    pods = pod_specs(render(values))
    reports = pods[NAME.format("worker-reports")]
    assert reports["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert reports["spec"]["priorityClassName"] == "jobs-long"
    assert reports["spec"]["nodeSelector"] == {"pool": "long"}
    assert reports["metadata"]["labels"]["workload"] == "jobs"
    for other in ("general", "webhooks"):
        pod = pods[NAME.format(f"worker-{other}")]
        assert "karpenter.sh/do-not-disrupt" not in pod["metadata"].get("annotations", {})
        assert pod["spec"]["priorityClassName"] == "jobs-normal"
        assert "nodeSelector" not in pod["spec"]
    for name in (WEB, BEAT):
        assert "priorityClassName" not in pods[name]["spec"]


def test_without_explicit_constraints_the_chart_spreads_each_component(render):
    spec = pod_specs(render())[NAME.format("worker-reports")]["spec"]
    keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    selector = spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]
    assert selector["flask-celery.io/worker-group"] == "reports"
    own = pod_specs(render({"web": {"topologySpreadConstraints": [SPREAD]}}))
    assert own[WEB]["spec"]["topologySpreadConstraints"] == [SPREAD]
    assert own[BEAT]["spec"]["topologySpreadConstraints"] != [SPREAD]


def test_probe_timings_are_values_and_the_checks_stay_the_charts(render):
    values = {
        "web": {"livenessProbe": {"periodSeconds": 7, "timeoutSeconds": 3, "failureThreshold": 5}},
        "beat": {
            "livenessProbe": {"periodSeconds": 60, "timeoutSeconds": 20, "failureThreshold": 2}
        },
        "workers": {
            "groups": [
                {"name": "general", "queues": ["default", "email"]},
                {
                    "name": "reports",
                    "queues": ["pdf", "exports"],
                    "livenessProbe": {
                        "periodSeconds": 90,
                        "timeoutSeconds": 10,
                        "failureThreshold": 4,
                    },
                },
                {"name": "webhooks", "queues": ["webhooks"]},
            ]
        },
    }
    docs = render(values)
    web = container(one(docs, "Deployment", WEB))["livenessProbe"]
    assert web == {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 7,
        "timeoutSeconds": 3,
        "failureThreshold": 5,
    }
    beat = container(one(docs, "Deployment", BEAT))["livenessProbe"]
    assert beat["periodSeconds"] == 60 and beat["exec"]["command"][3] == "beat"
    reports = container(one(docs, "Deployment", NAME.format("worker-reports")))
    general = container(one(docs, "Deployment", NAME.format("worker-general")))
    assert reports["livenessProbe"]["periodSeconds"] == 90
    assert reports["livenessProbe"]["exec"] == general["livenessProbe"]["exec"]
    assert general["livenessProbe"]["periodSeconds"] == 30
    assert reports["readinessProbe"]["periodSeconds"] == 30  # only liveness was overridden


def test_a_lifecycle_value_replaces_the_web_prestop_sleep(render):
    hook = {"preStop": {"httpGet": {"path": "/drain", "port": 8000}}}
    docs = render({"web": {"lifecycle": hook}, "beat": {"lifecycle": hook}})
    assert container(one(docs, "Deployment", WEB))["lifecycle"] == hook
    assert container(one(docs, "Deployment", BEAT))["lifecycle"] == hook
    default = render()
    assert (
        "sleep"
        in container(one(default, "Deployment", WEB))["lifecycle"]["preStop"]["exec"]["command"][2]
    )
    assert "lifecycle" not in container(one(default, "Deployment", BEAT))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"tolerations": [{"key": "a", "effekt": "NoSchedule"}]}, "effekt"),
        ({"web": {"extraContainers": [{"image": "nginx:1.27"}]}}, "name"),
        ({"extraVolumes": [{"name": "v", "secret": {"secretNam": "x"}}]}, "secretNam"),
        ({"web": {"livenessProbe": {"exec": {"command": ["true"]}}}}, "exec"),
        ({"beat": {"livenessProbe": {"successThreshold": 2}}}, "successThreshold"),
        ({"affinity": {"nodeAffinty": {}}}, "nodeAffinty"),
        ({"web": {"priorityClassName": 5}}, "priorityClassName"),
    ],
    ids=[
        "toleration",
        "container",
        "volume",
        "probe-handler",
        "liveness-success",
        "affinity",
        "priority",
    ],
)
def test_kubernetes_objects_in_values_are_checked_by_the_schema(helm, values, named):
    assert named in render_error(helm, values)


def test_the_schemas_kubernetes_definitions_are_current():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["definitions"] == definitions(schema), (
        "run `python -m tests.support.k8s_definitions --write`"
    )


def test_image_pull_secrets_reach_every_application_pod(render):
    pods = pod_specs(render({"image": {"pullSecrets": ["a", "b"]}, "metrics": {"enabled": True}}))
    for name in (*LONG_RUNNING, TEST):
        assert pods[name]["spec"]["imagePullSecrets"] == [{"name": "a"}, {"name": "b"}], name
    assert by_kind(render(), "Pod")
