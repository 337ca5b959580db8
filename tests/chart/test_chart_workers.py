"""Worker groups: one Deployment, PDB and ScaledObject each; warm shutdown by construction."""

from __future__ import annotations

from pathlib import Path

import jmespath
import yaml

from devstack.stack import WORKER_RECYCLING
from service.routing import QUEUES
from tests.support.chart import CHART, by_kind, container, env_of, one

DEFAULT_GROUPS = [
    {"name": "general", "queues": ["default", "email"]},
    {"name": "reports", "queues": ["pdf", "exports"]},
    {"name": "webhooks", "queues": ["webhooks"]},
]
WORKER = "rel-flask-celery-worker-{}"
#: One group consuming every queue of the app, as the chart requires of the groups together.
ALL_QUEUES = list(QUEUES)


def groups(*items):
    return {"workers": {"groups": list(items)}}


def argv(c):
    return c["command"] + c.get("args", [])


def flag(c, name):
    args = argv(c)
    return args[args.index(name) + 1]


def test_default_worker_groups_are_exactly_the_routing_groups():
    values = yaml.safe_load(Path(CHART, "values.yaml").read_text())
    routed = [{k: g[k] for k in ("name", "queues")} for g in values["workers"]["groups"]]
    assert routed == DEFAULT_GROUPS


def test_each_group_gets_a_deployment_pdb_and_scaledobject(render):
    docs = render({})
    for group in ("general", "reports", "webhooks"):
        for kind in ("Deployment", "PodDisruptionBudget", "ScaledObject"):
            one(docs, kind, WORKER.format(group))


def test_worker_command_consumes_the_groups_queues(render):
    docs = render({})
    c = container(one(docs, "Deployment", WORKER.format("reports")))
    assert argv(c)[:4] == ["celery", "-A", "service.make_celery", "worker"]
    assert flag(c, "--queues") == "pdf,exports"
    assert flag(c, "--hostname") == "reports@%h"
    assert flag(c, "--concurrency") == "4"
    assert flag(c, "--pool") == "prefork"


def test_each_group_replaces_its_pool_processes_after_its_own_task_count_and_memory_cap(render):
    docs = render({})
    guard = {}
    for group in ("general", "reports", "webhooks"):
        c = container(one(docs, "Deployment", WORKER.format(group)))
        guard[group] = tuple(
            int(flag(c, f"--max-{what}-per-child")) for what in ("tasks", "memory")
        )
    # PDF rendering leaks the most, a webhook call the least; the cap is in KiB
    assert guard["reports"][0] < guard["general"][0] < guard["webhooks"][0]
    assert guard["general"][1] == 200 * 1024
    # what `make run` starts is what the chart deploys
    assert guard == {g: (t, m * 1024) for g, (t, m) in WORKER_RECYCLING.items()}
    # 0 turns either guard off: no flag at all
    docs = render({"workers": {"defaults": {"maxTasksPerChild": 0, "maxMemoryPerChildMiB": 0}}})
    args = argv(container(one(docs, "Deployment", WORKER.format("general"))))
    assert "--max-tasks-per-child" not in args and "--max-memory-per-child" not in args


def test_every_default_group_fits_its_memory_caps_in_its_memory_limit():
    values = yaml.safe_load(Path(CHART, "values.yaml").read_text())
    defaults = values["workers"]["defaults"]
    limit_mib = int(defaults["resources"]["limits"]["memory"].removesuffix("Gi")) * 1024
    for group in values["workers"]["groups"]:
        g = {**defaults, **group}
        assert g["concurrency"] * g["maxMemoryPerChildMiB"] < limit_mib, group["name"]


def test_time_limits_reach_celery_through_the_app_config_of_each_group(render):
    # A worker's --time-limit loses to task_time_limit, which every task copies when bound.
    docs = render(
        groups(
            {"name": "general", "queues": ["default", "email", "pdf", "webhooks"]},
            {
                "name": "slow",
                "queues": ["exports"],
                "timeLimitSeconds": 1800,
                "softTimeLimitSeconds": 1700,
            },
        )
    )
    for group, limits in {"general": ("300", "270"), "slow": ("1800", "1700")}.items():
        c = container(one(docs, "Deployment", WORKER.format(group)))
        env = env_of(c)
        assert (
            env["FLASK_CELERY__TASK_TIME_LIMIT"]["value"],
            env["FLASK_CELERY__TASK_SOFT_TIME_LIMIT"]["value"],
        ) == limits
        assert not [a for a in argv(c) if a.startswith(("--time-limit", "--soft-time-limit"))]


def test_web_and_beat_carry_the_longest_hard_and_soft_limits_of_any_group(render):
    # The API bounds a countdown by the visibility timeout minus its own task_time_limit, so
    # the publishers must know the longest limit a task may run under, whichever group runs it.
    def publisher_limits(docs):
        return {
            component: (
                env["FLASK_CELERY__TASK_TIME_LIMIT"]["value"],
                env["FLASK_CELERY__TASK_SOFT_TIME_LIMIT"]["value"],
            )
            for component in ("web", "beat")
            for env in [env_of(container(one(docs, "Deployment", f"rel-flask-celery-{component}")))]
        }

    assert set(publisher_limits(render({})).values()) == {("300", "270")}
    docs = render(
        {
            "workers": {
                "defaults": {"timeLimitSeconds": 200, "softTimeLimitSeconds": 100},
                "groups": [
                    {"name": "general", "queues": ["default", "email", "webhooks"]},
                    {"name": "slow", "queues": ["exports"], "timeLimitSeconds": 1800},
                    {
                        "name": "soft",
                        "queues": ["pdf"],
                        "timeLimitSeconds": 1200,
                        "softTimeLimitSeconds": 1100,
                    },
                ],
            },
        }
    )
    assert set(publisher_limits(docs).values()) == {("1800", "1100")}


def test_visibility_timeout_is_one_value_above_every_groups_hard_limit(render):
    # All workers share Redis' unacked set, so every Celery process needs the same timeout.
    docs = render(
        {
            "celery": {"visibilityTimeoutSeconds": 2400},
            **groups(
                {"name": "general", "queues": ["default", "email", "pdf", "webhooks"]},
                {
                    "name": "slow",
                    "queues": ["exports"],
                    "timeLimitSeconds": 1800,
                    "softTimeLimitSeconds": 1700,
                },
            ),
        }
    )
    celery_containers = [
        container(d)
        for d in by_kind(docs, "Deployment")
        if argv(container(d))[0] in ("celery", "gunicorn")
    ]
    assert len(celery_containers) == 5  # web, two groups, beat, Flower
    limits = [
        int(env_of(c)["FLASK_CELERY__TASK_TIME_LIMIT"]["value"])
        for c in celery_containers
        if c["name"] == "worker"
    ]
    for c in celery_containers:
        visibility = env_of(c)["FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout"]
        assert visibility["value"] == "2400", c["name"]
        assert int(visibility["value"]) > max(limits) == 1800


def test_delivery_profile_sets_acks_late_and_reject_on_worker_lost_per_group(render):
    docs = render(
        groups(
            {"name": "general", "queues": ["default", "email", "pdf", "exports"]},
            {"name": "webhooks", "queues": ["webhooks"], "profile": "fireAndForget"},
        )
    )
    expected = {"general": "true", "webhooks": "false"}
    for group, value in expected.items():
        env = env_of(container(one(docs, "Deployment", WORKER.format(group))))
        assert env["FLASK_CELERY__TASK_ACKS_LATE"]["value"] == value
        assert env["FLASK_CELERY__TASK_REJECT_ON_WORKER_LOST"]["value"] == value


def test_retry_policy_reaches_every_worker_and_only_workers(render):
    retry = {"maxRetries": 3, "backoffBaseSeconds": 0.5, "backoffMaxSeconds": 120}
    docs = render({"celery": {"retry": retry}})
    for group in ("general", "reports", "webhooks"):
        env = env_of(container(one(docs, "Deployment", WORKER.format(group))))
        assert env["FLASK_RETRY_MAX_RETRIES"]["value"] == "3"
        assert env["FLASK_RETRY_BACKOFF_BASE"]["value"] == "0.5"
        assert env["FLASK_RETRY_BACKOFF_MAX"]["value"] == "120"
    web = env_of(container(one(docs, "Deployment", "rel-flask-celery-web")))
    assert not [name for name in web if name.startswith("FLASK_RETRY_")]


def test_grace_period_is_hard_limit_plus_margin(render):
    docs = render(
        {
            "workers": {
                "shutdownMarginSeconds": 45,
                "groups": [
                    {
                        "name": "general",
                        "queues": ["default", "email", "webhooks"],
                        "timeLimitSeconds": 600,
                        "softTimeLimitSeconds": 500,
                    },
                    {"name": "reports", "queues": ["pdf", "exports"]},
                ],
            }
        }
    )
    general = one(docs, "Deployment", WORKER.format("general"))
    reports = one(docs, "Deployment", WORKER.format("reports"))
    assert general["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 645
    assert reports["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 345


def test_group_grace_period_override_wins(render):
    docs = render(
        {
            "workers": {
                "groups": [
                    {"name": "general", "queues": ALL_QUEUES, "terminationGracePeriodSeconds": 900}
                ]
            }
        }
    )
    dep = one(docs, "Deployment", WORKER.format("general"))
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 900
    so = one(docs, "ScaledObject", WORKER.format("general"))
    assert so["spec"]["cooldownPeriod"] == 960


def test_group_keys_override_defaults_key_by_key(render):
    docs = render(
        {
            "workers": {
                "defaults": {"resources": {"requests": {"cpu": "200m", "memory": "300Mi"}}},
                "groups": [
                    {
                        "name": "general",
                        "queues": ALL_QUEUES,
                        "concurrency": 16,
                        "maxMemoryPerChildMiB": 100,  # 16 x 100 + 160 fits in 2Gi
                        "resources": {"limits": {"memory": "2Gi"}},
                    }
                ],
            }
        }
    )
    c = container(one(docs, "Deployment", WORKER.format("general")))
    assert flag(c, "--concurrency") == "16" and flag(c, "--pool") == "prefork"
    assert c["resources"]["requests"] == {"cpu": "200m", "memory": "300Mi"}
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}


def test_soft_shutdown_and_heartbeat_are_configured(render):
    c = container(one(render({}), "Deployment", WORKER.format("general")))
    env = env_of(c)
    assert env["FLASK_CELERY__WORKER_SOFT_SHUTDOWN_TIMEOUT"]["value"] == "60.0"
    assert env["FLASK_WORKER_HEARTBEAT_FILE"]["value"] == "/tmp/celery-worker-heartbeat"
    assert env["PROMETHEUS_MULTIPROC_DIR"]["value"] == "/var/run/prometheus"


def test_worker_probes_read_the_heartbeat_never_inspect_ping(render):
    c = container(one(render({}), "Deployment", WORKER.format("general")))
    probe = ["python", "-m", "service.worker.probes", "worker", "--max-age", "60"]
    assert c["livenessProbe"]["exec"]["command"] == probe
    assert c["startupProbe"]["exec"]["command"] == probe
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 300
    assert "inspect" not in repr(c)


def test_worker_metrics_port_is_named_metrics(render):
    c = container(one(render({}), "Deployment", WORKER.format("general")))
    assert {"name": "metrics", "containerPort": 9808, "protocol": "TCP"} in c["ports"]


def test_scaledobject_counts_waiting_and_running_tasks_of_every_queue(render):
    so = one(render({}), "ScaledObject", WORKER.format("general"))
    triggers = so["spec"]["triggers"]
    assert jmespath.search("[*].metadata.listName", triggers) == [
        "default",
        "flask_celery:inflight:default",
        "email",
        "flask_celery:inflight:email",
    ]
    assert {t["type"] for t in triggers} == {"redis"}
    assert set(jmespath.search("[*].metadata.databaseIndex", triggers)) == {"0"}
    names = [t["name"] for t in triggers]
    modifiers = so["spec"]["advanced"]["scalingModifiers"]
    assert sorted(modifiers["formula"].split(" + ")) == sorted(names)
    assert modifiers["target"] == "4" and modifiers["metricType"] == "AverageValue"


def test_scaledobject_uses_the_broker_database_and_trigger_authentication(render):
    docs = render({"redis": {"brokerDatabase": 3, "resultDatabase": 4}})
    so = one(docs, "ScaledObject", WORKER.format("webhooks"))
    assert set(jmespath.search("spec.triggers[*].metadata.databaseIndex", so)) == {"3"}
    assert set(jmespath.search("spec.triggers[*].authenticationRef.name", so)) == {
        "rel-flask-celery-redis-keda"
    }
    assert (
        jmespath.search("spec.triggers[0].metadata.address", so)
        == "rel-flask-celery-redis.flask-celery.svc.cluster.local:6379"
    )
    auth = one(docs, "TriggerAuthentication", "rel-flask-celery-redis-keda")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "rel-flask-celery-redis", "key": "redis-password"}
    ]
    redis_secret = one(docs, "Secret", "rel-flask-celery-redis")
    assert set(redis_secret["data"]) == {"redis-password", "broker-url", "result-backend-url"}


def test_scaledobject_target_follows_group_concurrency(render):
    docs = render(
        {
            "workers": {
                "groups": [
                    # 12 x maxMemoryPerChildMiB (200) + the main process (160) fits in 3Gi
                    {
                        "name": "general",
                        "queues": ALL_QUEUES,
                        "concurrency": 12,
                        "resources": {"limits": {"memory": "3Gi"}},
                    }
                ]
            }
        }
    )
    so = one(docs, "ScaledObject", WORKER.format("general"))
    assert so["spec"]["advanced"]["scalingModifiers"]["target"] == "12"
    formula = so["spec"]["advanced"]["scalingModifiers"]["formula"]
    assert sorted(formula.split(" + ")) == sorted(
        f"{state}_{q}" for q in QUEUES for state in ("waiting", "running")
    )


def test_scale_to_zero_keeps_cooldown_above_grace_period(render):
    docs = render({"workers": {"defaults": {"minReplicas": 0}}})
    for so in by_kind(docs, "ScaledObject"):
        assert so["spec"]["minReplicaCount"] == 0
        dep = one(docs, "Deployment", so["spec"]["scaleTargetRef"]["name"])
        assert (
            so["spec"]["cooldownPeriod"]
            > dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        )


def test_keda_owns_replicas_when_enabled(render):
    for dep in by_kind(render({}), "Deployment"):
        if dep["metadata"]["labels"]["app.kubernetes.io/component"] == "worker":
            assert "replicas" not in dep["spec"]


def test_keda_disabled_falls_back_to_fixed_replicas(render):
    docs = render(
        {
            "keda": {"enabled": False},
            "workers": {"groups": [{"name": "general", "queues": ALL_QUEUES, "replicas": 3}]},
        }
    )
    assert not by_kind(docs, "ScaledObject") and not by_kind(docs, "TriggerAuthentication")
    assert not [h for h in by_kind(docs, "HorizontalPodAutoscaler")]
    assert one(docs, "Deployment", WORKER.format("general"))["spec"]["replicas"] == 3


def test_keda_disabled_with_autoscaling_renders_a_cpu_hpa(render):
    docs = render(
        {"keda": {"enabled": False}, "workers": {"defaults": {"autoscaling": {"enabled": True}}}}
    )
    hpa = one(docs, "HorizontalPodAutoscaler", WORKER.format("reports"))
    assert hpa["spec"]["scaleTargetRef"]["name"] == WORKER.format("reports")
    assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] == 10
    assert jmespath.search("spec.metrics[0].resource.name", hpa) == "cpu"
    assert "replicas" not in one(docs, "Deployment", WORKER.format("reports"))["spec"]


def test_two_extra_groups_render_their_own_objects(render):
    # the app's queues split over five groups instead of three
    groups = [
        {"name": "general", "queues": ["default"]},
        {"name": "email", "queues": ["email"]},
        {"name": "reports", "queues": ["pdf"]},
        {"name": "exports", "queues": ["exports"]},
        {"name": "webhooks", "queues": ["webhooks"]},
    ]
    docs = render({"workers": {"groups": groups}})
    assert len(by_kind(docs, "ScaledObject")) == 5
    dep = one(docs, "Deployment", WORKER.format("exports"))
    assert dep["spec"]["selector"]["matchLabels"]["flask-celery.io/worker-group"] == "exports"
    assert flag(container(dep), "--queues") == "exports"


def test_worker_metrics_service_selects_every_worker_when_metrics_on(render):
    assert not [s for s in by_kind(render({}), "Service") if "metrics" in s["metadata"]["name"]]
    docs = render({"metrics": {"enabled": True}})
    svc = one(docs, "Service", "rel-flask-celery-worker-metrics")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "worker"
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9808, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod = one(docs, "Deployment", WORKER.format("general"))["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9808"
