"""Metrics (metrics.*): what serves `/metrics` where, the broker exporter, how Prometheus finds
the targets (pod annotations, ServiceMonitors or PodMonitors), the dashboards' ConfigMaps, the
PrometheusRule and its thresholds, the NetworkPolicies that let Prometheus and the exporter
through, and the rules that refuse contradictory metrics values."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from monitoring import alerts
from tests.support.chart import (
    CHART,
    NAME,
    NAMESPACE,
    by_kind,
    container,
    env_of,
    one,
    render_error,
)

METRICS = {"metrics": {"enabled": True}}
SERVICE_MONITORS = {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}}
POD_MONITORS = {"metrics": {"enabled": True, "podMonitor": {"enabled": True}}}
SCRAPING = {
    "annotations": METRICS,
    "serviceMonitors": SERVICE_MONITORS,
    "podMonitors": POD_MONITORS,
}
#: Every metrics object on, as a production cluster with the Prometheus Operator runs them.
EVERYTHING = {
    "metrics": {
        "enabled": True,
        "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}, "interval": "30s"},
        "dashboards": {"enabled": True, "folder": "Jobs"},
        "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
    },
    "networkPolicy": {"enabled": True},
}
GROUPS = ("general", "reports", "webhooks")
#: The components that serve /metrics, and the container port they serve it on.
TARGETS = {"web": 8000, "worker": 9808, "exporter": 9808}
COMPONENT = "app.kubernetes.io/component"
PLAIN_RULES = CHART / "files" / "prometheus-rules.yaml"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))


def pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod template of every workload, by workload name."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    }


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def port_names(pod: dict[str, Any]) -> dict[str, int]:
    return {
        p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])
    }


def scraped(docs: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """(path, container port) that Prometheus scrapes on each pod template, by workload name,
    resolved through the pod annotations, the ServiceMonitors (Service, then its targetPort) or
    the PodMonitors; fails when a target names a port that does not exist."""
    templates = pods(docs)
    out: dict[str, tuple[str, int]] = {}
    for name, pod in templates.items():
        notes = pod["metadata"].get("annotations", {})
        if notes.get("prometheus.io/scrape") == "true":
            port = int(notes["prometheus.io/port"])
            assert port in port_names(pod).values(), f"{name} declares no port {port}"
            out[name] = (notes["prometheus.io/path"], port)
    for sm in by_kind(docs, "ServiceMonitor"):
        selector = sm["spec"]["selector"]["matchLabels"]
        services = [
            s for s in by_kind(docs, "Service") if selects(selector, s["metadata"]["labels"])
        ]
        assert services, f"ServiceMonitor {sm['metadata']['name']} selects no Service"
        for endpoint in sm["spec"]["endpoints"]:
            for svc in services:
                (port,) = [p for p in svc["spec"]["ports"] if p["name"] == endpoint["port"]]
                backends = {
                    n: pod
                    for n, pod in templates.items()
                    if selects(svc["spec"]["selector"], pod["metadata"]["labels"])
                }
                assert backends, f"Service {svc['metadata']['name']} selects no pod"
                for n, pod in backends.items():
                    named = port_names(pod)
                    assert port["targetPort"] in named, f"{n} has no port {port['targetPort']}"
                    out[n] = (endpoint["path"], named[port["targetPort"]])
    for pm in by_kind(docs, "PodMonitor"):
        selector = pm["spec"]["selector"]["matchLabels"]
        backends = {
            n: pod for n, pod in templates.items() if selects(selector, pod["metadata"]["labels"])
        }
        assert backends, f"PodMonitor {pm['metadata']['name']} selects no pod"
        for endpoint in pm["spec"]["podMetricsEndpoints"]:
            for n, pod in backends.items():
                named = port_names(pod)
                assert endpoint["port"] in named, f"{n} has no port {endpoint['port']}"
                out[n] = (endpoint["path"], named[endpoint["port"]])
    return out


def app_containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(workload, container) of every application container, init containers included."""
    out = []
    for name, pod in pods(docs).items():
        if pod["metadata"]["labels"][COMPONENT] in ("redis", "postgresql"):
            continue
        spec = pod["spec"]
        out += [(name, c) for c in spec.get("initContainers", []) + spec["containers"]]
    return out


# - What serves /metrics --------------------------------------------------------------------


def test_web_runs_gunicorn_with_the_services_metrics_hooks(render):
    for values in ({}, METRICS):
        argv = container(one(render(values), "Deployment", NAME.format("web")))["command"]
        assert argv[:3] == ["gunicorn", "--config", "python:service.gunicorn_conf"], argv


def test_every_app_container_learns_whether_metrics_are_on_and_the_hostname_label(render):
    for values, enabled in (({}, "false"), (METRICS, "true")):
        docs = render({**values, "database": {"existingSecret": "db"}})
        containers = app_containers(docs)
        assert {n for n, _ in containers} >= {
            NAME.format("web"),
            NAME.format("beat"),
            NAME.format("flower"),
            NAME.format("migrations"),
        }
        for name, c in containers:
            env = env_of(c)
            assert env["FLASK_METRICS_ENABLED"]["value"] == enabled, name
            assert env["FLASK_METRICS_HOSTNAME_LABEL"]["value"] == "pod", name
    for name, c in app_containers(render({"metrics": {"enabled": True, "hostnameLabel": ""}})):
        assert "FLASK_METRICS_HOSTNAME_LABEL" not in env_of(c), name
    for name, c in app_containers(render({"metrics": {"hostnameLabel": "flask-celery"}})):
        assert env_of(c)["FLASK_METRICS_HOSTNAME_LABEL"]["value"] == "flask-celery", name


def test_each_worker_serves_its_pool_on_the_metrics_port(render):
    for group in GROUPS:
        c = container(one(render(METRICS), "Deployment", NAME.format(f"worker-{group}")))
        assert env_of(c)["FLASK_WORKER_METRICS_PORT"]["value"] == "9808"
        assert {"name": "metrics", "containerPort": 9808, "protocol": "TCP"} in c["ports"]


def test_the_exporter_runs_only_with_metrics(render):
    assert not [d for d in render({}) if "exporter" in d["metadata"]["name"]]
    names = {(d["kind"], d["metadata"]["name"]) for d in render(METRICS)}
    assert {("Deployment", NAME.format("exporter")), ("Service", NAME.format("exporter"))} <= names


def test_the_exporter_is_one_recreated_replica_serving_metrics_on_9808(render):
    resources = {
        "requests": {"cpu": "20m", "memory": "64Mi"},
        "limits": {"cpu": "200m", "memory": "96Mi"},
    }
    docs = render({"metrics": {"enabled": True, "exporter": {"resources": resources}}})
    dep = one(docs, "Deployment", NAME.format("exporter"))
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    spec = dep["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    c = container(dep)
    assert c["command"] == ["python", "-m", "service.exporter"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9808, "protocol": "TCP"}]
    for kind in ("liveness", "readiness"):
        assert c[f"{kind}Probe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert c["resources"] == resources
    env, web = env_of(c), env_of(container(one(docs, "Deployment", NAME.format("web"))))
    assert env["FLASK_EXPORTER_PORT"]["value"] == "9808"
    for name in ("FLASK_CELERY__BROKER_URL", "FLASK_SQLALCHEMY_DATABASE_URI"):
        assert env[name]["valueFrom"]["secretKeyRef"] == web[name]["valueFrom"]["secretKeyRef"]


def test_the_exporter_service_selects_the_exporter_pod_and_no_other(render):
    docs = render(METRICS)
    svc = one(docs, "Service", NAME.format("exporter"))
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9808, "targetPort": "metrics", "protocol": "TCP"}
    ]
    selected = [
        n
        for n, pod in pods(docs).items()
        if selects(svc["spec"]["selector"], pod["metadata"]["labels"])
    ]
    assert selected == [NAME.format("exporter")]


# - How Prometheus finds the targets ----------------------------------------------------------


def test_pods_carry_scrape_annotations_unless_a_monitor_scrapes_them(render):
    docs = render(METRICS)
    assert not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "PodMonitor")
    annotated = {
        n: pod["metadata"]["annotations"]["prometheus.io/port"]
        for n, pod in pods(docs).items()
        if "prometheus.io/scrape" in pod["metadata"].get("annotations", {})
    }
    assert annotated == {
        NAME.format("web"): "8000",
        NAME.format("exporter"): "9808",
        **{NAME.format(f"worker-{g}"): "9808" for g in GROUPS},
    }
    for values, kind in ((SERVICE_MONITORS, "ServiceMonitor"), (POD_MONITORS, "PodMonitor")):
        docs = render(values)
        assert {m["metadata"]["name"] for m in by_kind(docs, kind)} == {
            NAME.format(c) for c in TARGETS
        }
        for n, pod in pods(docs).items():
            assert "prometheus.io/scrape" not in pod["metadata"].get("annotations", {}), n


@pytest.mark.parametrize("values", list(SCRAPING.values()), ids=list(SCRAPING))
def test_every_scrape_target_is_a_metrics_port_of_the_selected_pods(render, values):
    docs = render(values)
    targets = scraped(docs)
    expected = {
        NAME.format("web"): ("/metrics", 8000),
        NAME.format("exporter"): ("/metrics", 9808),
        **{NAME.format(f"worker-{g}"): ("/metrics", 9808) for g in GROUPS},
    }
    assert targets == expected


def test_monitor_jobs_match_the_mixins_job_selector(render):
    # The Operator names a ServiceMonitor target's job after its Service, a PodMonitor
    # target's `<namespace>/<PodMonitor name>`.
    docs = render(SERVICE_MONITORS)
    jobs = []
    for sm in by_kind(docs, "ServiceMonitor"):
        selector = sm["spec"]["selector"]["matchLabels"]
        (svc,) = [s for s in by_kind(docs, "Service") if selects(selector, s["metadata"]["labels"])]
        jobs.append(svc["metadata"]["name"])
    jobs += [
        f"{NAMESPACE}/{m['metadata']['name']}" for m in by_kind(render(POD_MONITORS), "PodMonitor")
    ]
    assert len(jobs) == 2 * len(TARGETS)
    for job in jobs:
        assert re.fullmatch(alerts.COMMON["job"], job), job


def test_monitors_carry_the_given_labels_interval_and_timeout(render):
    settings = {"labels": {"release": "kps"}, "interval": "15s", "scrapeTimeout": "5s"}
    for key, kind, endpoints in (
        ("serviceMonitor", "ServiceMonitor", "endpoints"),
        ("podMonitor", "PodMonitor", "podMetricsEndpoints"),
    ):
        docs = render({"metrics": {"enabled": True, key: {"enabled": True, **settings}}})
        for m in by_kind(docs, kind):
            assert m["metadata"]["labels"]["release"] == "kps"
            (endpoint,) = m["spec"][endpoints]
            assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")


# - Dashboards and alerts -----------------------------------------------------------------------


def test_dashboard_configmaps_hold_the_json_byte_for_byte_with_the_sidecar_label(render):
    def dashboards(docs):
        return [
            c
            for c in by_kind(docs, "ConfigMap")
            if c["metadata"]["labels"][COMPONENT] == "monitoring"
        ]

    assert not dashboards(render(METRICS))
    maps = dashboards(render(EVERYTHING))
    assert len(maps) == len(DASHBOARDS) == 2
    held = {}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Jobs"}
        held.update(cm["data"])
    assert held == {path.name: path.read_text(encoding="utf-8") for path in DASHBOARDS}
    custom = {"label": "dashboards", "labelValue": "flask", "folderAnnotation": "folder"}
    maps = dashboards(
        render({"metrics": {"enabled": True, "dashboards": {"enabled": True, **custom}}})
    )
    assert len(maps) == 2
    for cm in maps:
        assert cm["metadata"]["labels"]["dashboards"] == "flask"
        assert "grafana_dashboard" not in cm["metadata"]["labels"]
        assert "annotations" not in cm["metadata"]


def test_prometheus_rule_at_defaults_has_exactly_the_groups_of_the_plain_rules_file(render):
    rule = one(render(EVERYTHING), "PrometheusRule", NAME.format("alerts"))
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"]["groups"] == yaml.safe_load(PLAIN_RULES.read_text())["groups"]


def test_overriding_a_threshold_changes_that_rules_expression(render):
    overrides = {"CeleryHighQueueLength": {"threshold": 250}}
    values = {
        "metrics": {
            **EVERYTHING["metrics"],
            "prometheusRule": {"enabled": True, "rules": overrides},
        }
    }
    rules = {
        r["alert"]: r
        for g in one(render(values), "PrometheusRule", NAME.format("alerts"))["spec"]["groups"]
        for r in g["rules"]
    }
    plain = {
        r["alert"]: r for g in yaml.safe_load(PLAIN_RULES.read_text())["groups"] for r in g["rules"]
    }
    assert rules["CeleryHighQueueLength"]["expr"].endswith("> 250\n")
    assert plain["CeleryHighQueueLength"]["expr"].endswith("> 100\n")
    assert rules["CeleryHighQueueLength"]["annotations"]["description"].startswith("More than 250")
    assert {a: r for a, r in rules.items() if a != "CeleryHighQueueLength"} == {
        a: r for a, r in plain.items() if a != "CeleryHighQueueLength"
    }


def test_every_rule_parameter_comes_from_its_own_value(render):
    # A distinct value for every parameter at once: the chart renders what the generator
    # renders with the same overrides, so no value lands in another rule's place.
    chart_rules: dict[str, dict[str, Any]] = {}
    overrides: dict[str, dict[str, str]] = {
        "*": {
            "job": "rel-flask-celery-.*|.*/rel-flask-celery-.*",
            "grafana_url": "https://grafana.example.com",
        }
    }
    for i, rule in enumerate(alerts.RULES):
        chart_rules[rule.alert], overrides[rule.alert] = {}, {}
        for j, param in enumerate(rule.params):
            key = alerts.chart_value(rule.alert, param).rsplit(".", 1)[1]
            if param in ("for", "window"):
                value: Any = f"{i + 1}h{j + 1}m"
            else:
                value = 1000 + 10 * i + j
            chart_rules[rule.alert][key] = value
            overrides[rule.alert][param] = str(value)
    values = {
        "metrics": {
            "enabled": True,
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {
                "enabled": True,
                "jobRegex": overrides["*"]["job"],
                "grafanaUrl": overrides["*"]["grafana_url"],
                "rules": chart_rules,
            },
        }
    }
    rule = one(render(values), "PrometheusRule", NAME.format("alerts"))
    assert rule["spec"]["groups"] == alerts.rule_groups(overrides)


def test_values_hold_exactly_the_parameters_of_the_rules_table():
    values = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["prometheusRule"]
    in_values = {(alert, key) for alert, params in values["rules"].items() for key in params}
    in_table = {
        (rule.alert, alerts.chart_value(rule.alert, param).rsplit(".", 1)[1])
        for rule in alerts.RULES
        for param in rule.params
    }
    assert in_values == in_table
    assert values["jobRegex"] == alerts.COMMON["job"]
    assert values["grafanaUrl"] == alerts.COMMON["grafana_url"]


# - NetworkPolicies ---------------------------------------------------------------------------

#: Prometheus' pod, in networkPolicy.prometheusNamespace.
PROMETHEUS = ("monitoring", {"app.kubernetes.io/name": "prometheus"})


def peer_matches(peer: dict[str, Any], source: tuple[str, dict[str, str]]) -> bool:
    namespace, labels = source
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        wanted = peer["namespaceSelector"].get("matchLabels", {})
        if not wanted.items() <= {"kubernetes.io/metadata.name": namespace}.items():
            return False
    elif namespace != NAMESPACE:
        return False
    return peer.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()


def rule_allows(rule: dict[str, Any], peers_key: str, other, port: int) -> bool:
    ports = rule.get("ports")
    if ports and port not in {p["port"] for p in ports}:
        return False
    peers = rule.get(peers_key)
    return not peers or any(peer_matches(p, other) for p in peers)


def allowed(docs, direction: str, pod: dict[str, str], other, port: int) -> bool:
    """Whether the release's NetworkPolicies let `pod` (of our namespace) take `direction`
    traffic from or to `other` (namespace, labels) on `port`."""
    policy_type, rules_key, peers_key = {
        "ingress": ("Ingress", "ingress", "from"),
        "egress": ("Egress", "egress", "to"),
    }[direction]
    governing = [
        p
        for p in by_kind(docs, "NetworkPolicy")
        if policy_type in p["spec"]["policyTypes"]
        and p["spec"]["podSelector"]["matchLabels"].items() <= pod.items()
    ]
    assert governing, f"no NetworkPolicy governs {direction} of {pod}"
    return any(
        rule_allows(rule, peers_key, other, port)
        for p in governing
        for rule in p["spec"].get(rules_key, [])
    )


@pytest.mark.parametrize(
    "web_from",
    [[], [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}]],
    ids=["web-open", "web-restricted"],
)
def test_prometheus_can_reach_every_metrics_port(render, web_from):
    docs = render({**EVERYTHING, "networkPolicy": {"enabled": True, "webFrom": web_from}})
    for name, (_, port) in scraped(docs).items():
        labels = pods(docs)[name]["metadata"]["labels"]
        assert allowed(docs, "ingress", labels, PROMETHEUS, port), f"Prometheus -> {name}:{port}"
    flower = pods(docs)[NAME.format("flower")]["metadata"]["labels"]
    assert not allowed(docs, "ingress", flower, PROMETHEUS, 5555)


def test_with_network_policies_the_exporter_reaches_redis_and_the_bundled_database(render):
    docs = render(EVERYTHING)
    templates = pods(docs)
    exporter = templates[NAME.format("exporter")]["metadata"]["labels"]
    for server, port in (("redis", 6379), ("postgresql", 5432)):
        target = templates[NAME.format(server)]["metadata"]["labels"]
        assert allowed(docs, "egress", exporter, (NAMESPACE, target), port), server
        assert allowed(docs, "ingress", target, (NAMESPACE, exporter), port), server
    assert not allowed(docs, "egress", exporter, (NAMESPACE, exporter), 9808)


def test_with_network_policies_the_exporter_reaches_an_external_database(render):
    docs = render(
        {
            **EVERYTHING,
            "database": {"existingSecret": "db"},
            "networkPolicy": {"enabled": True, "database": {"cidrs": ["10.20.0.0/16"]}},
        }
    )
    policy = one(docs, "NetworkPolicy", NAME.format("exporter"))
    assert {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    } in policy["spec"]["egress"]


# - Refused values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (
            {**EVERYTHING["metrics"], "enabled": False},
            "metrics.serviceMonitor.enabled, metrics.dashboards.enabled, "
            "metrics.prometheusRule.enabled need metrics.enabled=true",
        ),
        (
            {**SERVICE_MONITORS["metrics"], "podMonitor": {"enabled": True}},
            "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled are both true: "
            "Prometheus would scrape every target twice",
        ),
    ],
    ids=["monitors-dashboards-alerts-need-metrics", "one-kind-of-monitor"],
)
def test_contradictory_metrics_values_are_refused(helm, metrics, message):
    assert message in render_error(helm, {"metrics": metrics})


def test_the_alerts_job_regex_must_match_every_monitor_job(helm):
    values = {**SERVICE_MONITORS["metrics"], "prometheusRule": {"enabled": True}}
    msg = render_error(helm, {"metrics": values, "nameOverride": "jobs"})
    assert (
        'metrics.prometheusRule.jobRegex (".*celery.*") does not match the scrape jobs '
        '"rel-jobs-web" (web ServiceMonitor), "rel-jobs-worker-metrics" (worker ServiceMonitor), '
        '"rel-jobs-exporter" (exporter ServiceMonitor)' in msg
    )
    values = {**POD_MONITORS["metrics"], "prometheusRule": {"enabled": True, "jobRegex": "rel-.*"}}
    msg = render_error(helm, {"metrics": values})
    assert f'"{NAMESPACE}/rel-flask-celery-web" (web PodMonitor)' in msg


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (
            {"prometheusRule": {"rules": {"CeleryWorkerDown": {"for": "15 minutes"}}}},
            "does not match pattern",
        ),
        (
            {"prometheusRule": {"rules": {"CeleryHighQueueLength": {"threshold": -1}}}},
            "minimum: got -1, want 0",
        ),
        (
            {"prometheusRule": {"rules": {"CeleryWorkerDown": {"threshold": 1}}}},
            "additional properties 'threshold' not allowed",
        ),
        ({"prometheusRule": {"jobRegex": 'a"b'}}, "does not match pattern"),
        (
            {"prometheusRule": {"grafanaUrl": "https://grafana.example.com/"}},
            "does not match pattern",
        ),
        ({"serviceMonitor": {"interval": "30"}}, "does not match pattern"),
    ],
    ids=[
        "duration",
        "negative-threshold",
        "unknown-parameter",
        "job-quote",
        "url-slash",
        "interval",
    ],
)
def test_schema_rejects_bad_metrics_values(helm, metrics, message):
    msg = render_error(helm, {"metrics": {"enabled": True, **metrics}})
    assert "values don't meet the specifications of the schema" in msg
    assert message in msg
