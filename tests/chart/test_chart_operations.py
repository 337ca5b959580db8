"""Operations: beat's liveness on its scheduler loop, web's preStop delay, the `helm test` Pod,
Flower's Ingress, web's egress to an identity provider and egress rules of one's own, SMTP's TLS
mode and a private CA bundle.

The probes, the preStop hook and the test Pod's script run as the rendered commands, as local
processes (tests/support/chart_processes.py): beat against the session's Redis, the test Pod
against the locally run web and a worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.auth import API_KEY
from harness.processes import free_port, wait_until
from tests.support.chart import NAME, by_kind, container, one, process_helm, render_error
from tests.support.chart import render as render_with
from tests.support.chart_processes import LocalCluster, LocalContainer

BEAT, WEB, TEST = NAME.format("beat"), NAME.format("web"), NAME.format("web-test")
JWT = {
    "issuer": "https://login.example.com/",
    "audience": "flask-celery",
    "jwksUrl": "https://login.example.com/.well-known/jwks.json",
}
#: A beat that may take over within 3 s, so its liveness can be shown failing within seconds.
QUICK_BEAT = {
    "beat": {"lockTimeoutSeconds": 2, "maxLoopIntervalSeconds": 1, "tickMaxAgeSeconds": 5}
}


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def app_containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(workload, container) for every container and init container of the app image."""
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            spec = d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            spec = d["spec"]
        else:
            continue
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["image"].startswith("flask-celery"):
                out.append((d["metadata"]["name"], c))
    return out


# -- beat liveness -------------------------------------------------------------------------


def test_beat_has_a_startup_and_liveness_probe_on_its_tick(render):
    beat = container(one(render(), "Deployment", BEAT))
    probe = ["python", "-m", "service.worker.probes", "beat", "--max-age", "60"]
    assert beat["livenessProbe"]["exec"]["command"] == probe
    assert beat["startupProbe"]["exec"]["command"] == probe
    assert "readinessProbe" not in beat


def test_a_tick_max_age_within_a_lock_handover_is_refused(helm):
    message = render_error(helm, {"beat": {"tickMaxAgeSeconds": 30}})
    assert "beat.tickMaxAgeSeconds (30) must be greater than" in message
    assert "beat.lockTimeoutSeconds + beat.maxLoopIntervalSeconds (30)" in message


def local_release(
    values: dict[str, Any], local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> LocalCluster:
    """The pods of a render with `values`, run against the session's Redis and the database
    that the session's locally run chart migrated (one release upgraded with new values)."""
    local_cluster.migrate()
    docs = render_with(process_helm(), values)
    cluster = LocalCluster(docs, local_cluster.redis_port, tmp_path_factory.mktemp("release"))
    cluster.database, cluster.migrated = local_cluster.database, True
    return cluster


@pytest.fixture(scope="module")
def quick_beat(
    local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalContainer]:
    """The rendered beat of QUICK_BEAT, running against the session's Redis, past its startup
    probe (it has recorded a tick)."""
    cluster = local_release(QUICK_BEAT, local_cluster, tmp_path_factory)
    beat = cluster.start_pods([BEAT])[BEAT]
    yield beat
    if beat.proc is not None and beat.alive():
        os.kill(beat.proc.pid, signal.SIGCONT)
    beat.stop()


def test_beat_liveness_fails_while_its_loop_is_stopped_and_recovers(quick_beat):
    assert quick_beat.probe("liveness") == (True, "")
    assert quick_beat.proc is not None
    os.kill(quick_beat.proc.pid, signal.SIGSTOP)  # the scheduler loop stops; the process lives
    try:
        failed = wait_until(
            lambda: (r := quick_beat.probe("liveness"))[0] is False and r,
            timeout=60,
            what="beat's liveness probe to fail",
            interval=1,
        )
    finally:
        os.kill(quick_beat.proc.pid, signal.SIGCONT)
    assert "beat stopped ticking" in failed[1]
    wait_until(lambda: quick_beat.probe("liveness")[0], timeout=30, what="beat ticking again")


def test_beat_liveness_passes_while_redis_does_not_answer(quick_beat):
    # beat rides out a Redis outage by itself; restarting it would not help
    probe = quick_beat.spec["livenessProbe"]["exec"]["command"]
    env = {**quick_beat.env, "FLASK_CELERY__BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    out = run_with(probe, env, quick_beat)
    assert out.returncode == 0, out.stderr
    assert "Redis does not answer" in out.stderr


def run_with(
    argv: list[str], env: dict[str, str], c: LocalContainer
) -> subprocess.CompletedProcess[str]:
    """Run `argv` beside container `c`, with `env` instead of its environment."""
    return subprocess.run(argv, env=env, cwd=c.workdir, capture_output=True, text=True, timeout=60)


def test_beat_liveness_fails_without_any_recorded_tick(quick_beat, redis_server):
    # another Redis database: no beat ever ticked there
    probe = quick_beat.spec["livenessProbe"]["exec"]["command"]
    env = {**quick_beat.env, "FLASK_CELERY__BROKER_URL": redis_server.url(9)}
    out = run_with(probe, env, quick_beat)
    assert out.returncode == 1
    assert "no beat tick recorded" in out.stderr


# -- web preStop -----------------------------------------------------------------------------


def test_web_sleeps_in_prestop_and_its_grace_period_covers_it(render):
    web = one(render(), "Deployment", WEB)
    command = container(web)["lifecycle"]["preStop"]["exec"]["command"]
    assert command == ["python", "-c", "import time; time.sleep(10)"]
    assert web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
    without = container(one(render({"web": {"preStopSleepSeconds": 0}}), "Deployment", WEB))
    assert "lifecycle" not in without


def test_the_prestop_command_runs_in_the_image_and_sleeps(render):
    command = container(one(render({"web": {"preStopSleepSeconds": 1}}), "Deployment", WEB))[
        "lifecycle"
    ]["preStop"]["exec"]["command"]
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started >= 1


def test_a_grace_period_without_room_for_the_prestop_sleep_is_refused(helm):
    message = render_error(helm, {"web": {"preStopSleepSeconds": 20}})
    assert (
        "web.preStopSleepSeconds (20) + web.gracefulTimeoutSeconds (25) must be less than "
        "web.terminationGracePeriodSeconds (45)"
    ) in message


# -- helm test -------------------------------------------------------------------------------


def test_the_helm_test_pod_is_a_test_hook_in_the_app_pod_scaffold(render):
    pod = one(render(), "Pod", TEST)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    (c,) = spec["containers"]
    assert c["command"][:2] == ["python", "-c"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    env = env_of(c)
    assert env["HELM_TEST_WEB_URL"] == "http://rel-flask-celery-web:8000"
    assert "HELM_TEST_API_KEY" not in env
    keyed = one(render({"helmTest": {"apiKey": {"existingSecret": "probe-key"}}}), "Pod", TEST)
    assert env_of(keyed["spec"]["containers"][0])["HELM_TEST_API_KEY"] == {
        "secretKeyRef": {"name": "probe-key", "key": "api-key"}
    }
    assert not by_kind(render({"helmTest": {"enabled": False}}), "Pod")


def test_with_network_policies_the_test_pod_may_reach_web_and_web_admits_it(render):
    docs = render(
        {"networkPolicy": {"enabled": True, "webFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}}
    )
    own = one(docs, "NetworkPolicy", TEST)["spec"]
    assert own["egress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert (
        own["egress"][0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "web"
    )
    peers = one(docs, "NetworkPolicy", WEB)["spec"]["ingress"][0]["from"]
    selectors = [p.get("podSelector", {}).get("matchLabels", {}) for p in peers]
    assert {"app.kubernetes.io/component": "web-test"}.items() <= selectors[-1].items()


KEYED_TEST = {"helmTest": {"apiKey": {"existingSecret": "helm-test-key"}, "timeoutSeconds": 60}}


@pytest.fixture(scope="module")
def general_worker(local_cluster: LocalCluster) -> Iterator[LocalContainer]:
    """The rendered worker of the group that runs `add` jobs (queue `default`)."""
    name = NAME.format("worker-general")
    worker = local_cluster.start_pods([name])[name]
    yield worker
    worker.stop()


def run_test_pod(cluster: LocalCluster, web_url: str) -> tuple[int, str]:
    """Run the rendered test Pod's container to its end, with the web Service's address
    (which only exists in a cluster) moved to `web_url`; (exit code, output)."""
    test = cluster.container(TEST)
    test.env["HELM_TEST_WEB_URL"] = web_url
    code = test.start().wait(120)
    return code, test.log.read_text()


def web_url(web: LocalContainer) -> str:
    return f"http://127.0.0.1:{web.ports[8000]}"


def test_helm_test_enqueues_through_web_and_gets_a_workers_result(
    local_cluster, local_web, general_worker, tmp_path_factory
):
    cluster = local_release(KEYED_TEST, local_cluster, tmp_path_factory)
    cluster.secrets["helm-test-key"] = {"api-key": API_KEY}  # the operator's Secret
    code, out = run_test_pod(cluster, web_url(local_web))
    assert code == 0, out
    assert "web ready at" in out and "20 + 22 = 42" in out


def test_helm_test_without_a_key_checks_readiness_only(local_cluster, local_web):
    code, out = run_test_pod(local_cluster, web_url(local_web))
    assert code == 0, out
    assert "enqueue round trip not checked" in out


def test_helm_test_fails_with_a_key_web_refuses(local_cluster, local_web, tmp_path_factory):
    cluster = local_release(KEYED_TEST, local_cluster, tmp_path_factory)
    cluster.secrets["helm-test-key"] = {"api-key": "fck_not-a-key-0123456789abcdefghijklmnopqrstuv"}
    code, out = run_test_pod(cluster, web_url(local_web))
    assert code == 1
    assert "FAIL: POST /jobs/add answered 401" in out


def test_helm_test_fails_when_web_never_answers(local_cluster, tmp_path_factory):
    cluster = local_release({"helmTest": {"timeoutSeconds": 2}}, local_cluster, tmp_path_factory)
    code, out = run_test_pod(cluster, f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "FAIL: web answers /readyz with 200 within the timeout" in out


# -- Flower Ingress --------------------------------------------------------------------------


def test_flower_ingress_routes_to_the_flower_service(render):
    assert not [i for i in by_kind(render(), "Ingress")]
    docs = render(
        {
            "flower": {
                "ingress": {
                    "enabled": True,
                    "className": "nginx",
                    "hosts": [
                        {
                            "host": "ops.example.com",
                            "paths": [{"path": "/flower", "pathType": "Prefix"}],
                        }
                    ],
                    "tls": [{"secretName": "ops-tls", "hosts": ["ops.example.com"]}],
                },
                "urlPrefix": "flower",
            }
        }
    )
    ingress = one(docs, "Ingress", NAME.format("flower"))["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"secretName": "ops-tls", "hosts": ["ops.example.com"]}]
    (path,) = ingress["rules"][0]["http"]["paths"]
    assert path["path"] == "/flower"
    assert path["backend"]["service"] == {"name": NAME.format("flower"), "port": {"name": "http"}}
    ports = one(docs, "Service", NAME.format("flower"))["spec"]["ports"]
    assert "http" in [p["name"] for p in ports]
    assert not by_kind(
        render({"flower": {"enabled": False, "ingress": {"enabled": True}}}), "Ingress"
    )


def test_flower_ingress_behind_network_policies_needs_flower_from(helm):
    message = render_error(
        helm, {"flower": {"ingress": {"enabled": True}}, "networkPolicy": {"enabled": True}}
    )
    assert "networkPolicy.flowerFrom is empty" in message


# -- egress: identity provider and rules of one's own -----------------------------------------


def internet_rules(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r
        for r in policy["spec"]["egress"]
        if any(p.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0") for p in r["to"])
    ]


def test_web_reaches_the_identity_provider_on_the_internet_only_with_auth_jwt(render):
    np = {"enabled": True}
    assert not internet_rules(one(render({"networkPolicy": np}), "NetworkPolicy", WEB))
    web = one(render({"networkPolicy": np, "auth": {"jwt": JWT}}), "NetworkPolicy", WEB)
    rules = internet_rules(web)
    assert [r["ports"] for r in rules] == [[{"port": 443, "protocol": "TCP"}]] * 2
    v4 = rules[0]["to"][0]["ipBlock"]
    assert "10.0.0.0/8" in v4["except"] and "169.254.0.0/16" in v4["except"]
    assert "fc00::/7" in str(rules[1]) or "8000::/1" in rules[1]["to"][0]["ipBlock"]["except"]
    # the same rules as the webhooks group's, from one helper: the same except lists
    webhooks = one(
        render({"networkPolicy": np}), "NetworkPolicy", NAME.format("worker-webhooks-internet")
    )
    assert [r["to"][0] for r in rules] == [r["to"][0] for r in webhooks["spec"]["egress"]]
    port = {**JWT, "jwksUrl": "https://login.example.com:8443/keys"}
    web = one(render({"networkPolicy": np, "auth": {"jwt": port}}), "NetworkPolicy", WEB)
    assert internet_rules(web)[0]["ports"] == [{"port": 8443, "protocol": "TCP"}]


def test_extra_egress_rules_select_their_component(render):
    rule = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "idp"}}}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }
    docs = render(
        {"networkPolicy": {"enabled": True, "extraEgress": {"web": [rule], "worker": [rule]}}}
    )
    for component in ("web", "worker"):
        policy = one(docs, "NetworkPolicy", NAME.format(f"{component}-egress"))["spec"]
        assert policy["egress"] == [rule]
        assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert policy["policyTypes"] == ["Egress"]
    assert not [d for d in docs if d["metadata"]["name"] == NAME.format("beat-egress")]
    assert not [
        d
        for d in render({"networkPolicy": {"extraEgress": {"web": [rule]}}})
        if d["metadata"]["name"] == NAME.format("web-egress")
    ]


def test_extra_egress_rules_are_checked_as_kubernetes_egress_rules(helm):
    message = render_error(helm, {"networkPolicy": {"extraEgress": {"web": [{"too": []}]}}})
    assert "too" in message


# -- SMTP TLS and the CA bundle ----------------------------------------------------------------


def test_smtp_tls_reaches_every_app_container(render):
    docs = render({"smtp": {"host": "smtp.example.com"}})
    worker = container(one(docs, "Deployment", NAME.format("worker-general")))
    assert env_of(worker)["FLASK_SMTP_TLS"] == "starttls"
    docs = render({"smtp": {"host": "smtp.example.com", "port": 465, "tls": "ssl"}})
    assert (
        env_of(container(one(docs, "Deployment", NAME.format("worker-general"))))["FLASK_SMTP_TLS"]
        == "ssl"
    )
    assert "FLASK_SMTP_TLS" not in env_of(container(one(render(), "Deployment", WEB)))


@pytest.mark.parametrize(
    ("smtp", "expected"),
    [
        ({"tls": "ssl"}, "smtp.tls is ssl (TLS from the first byte) but smtp.port is 587"),
        ({"tls": "starttls", "port": 465}, "smtp.tls is starttls but smtp.port is 465"),
    ],
)
def test_an_smtp_tls_mode_against_its_port_is_refused(helm, smtp, expected):
    assert expected in render_error(helm, {"smtp": {"host": "smtp.example.com", **smtp}})


def test_smtp_tls_outside_its_modes_is_refused_by_the_schema(helm):
    assert "smtp" in render_error(helm, {"smtp": {"tls": "tls"}})


def test_the_ca_bundle_is_mounted_read_only_in_every_app_container(render):
    docs = render(
        {"caBundle": {"secret": "corp-ca", "key": "bundle.pem", "verifies": ["smtp", "jwt"]}}
    )
    containers = app_containers(docs)
    assert {w for w, _ in containers} >= {WEB, BEAT, TEST, NAME.format("worker-general")}
    for workload, c in containers:
        mount = next(m for m in c["volumeMounts"] if m["name"] == "ca-bundle")
        assert mount == {
            "name": "ca-bundle",
            "mountPath": "/etc/flask-celery/ca",
            "readOnly": True,
        }, workload
        if c["name"] not in ("migrate", "web-test"):
            env = env_of(c)
            assert env["FLASK_SMTP_CA_FILE"] == "/etc/flask-celery/ca/ca.crt", workload
            assert env["FLASK_AUTH_JWT_CA_FILE"] == "/etc/flask-celery/ca/ca.crt", workload
            assert "FLASK_WEBHOOK_CA_FILE" not in env, workload
    volumes = one(docs, "Deployment", WEB)["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "ca-bundle",
        "secret": {"secretName": "corp-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]},
    } in volumes
    web = one(
        render({"caBundle": {"configMap": "corp-ca", "verifies": ["webhooks"]}}), "Deployment", WEB
    )
    assert {
        "name": "ca-bundle",
        "configMap": {"name": "corp-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    } in web["spec"]["template"]["spec"]["volumes"]
    assert env_of(container(web))["FLASK_WEBHOOK_CA_FILE"] == "/etc/flask-celery/ca/ca.crt"
    assert not any(
        m["name"] == "ca-bundle" for _, c in app_containers(render()) for m in c["volumeMounts"]
    )


@pytest.mark.parametrize(
    ("ca", "expected"),
    [
        (
            {"configMap": "a", "secret": "b", "verifies": ["smtp"]},
            "caBundle.configMap and caBundle.secret are both set",
        ),
        ({"configMap": "a"}, "caBundle.verifies is empty"),
        ({"verifies": ["smtp", "jwt"]}, "caBundle.verifies lists smtp, jwt but no bundle is set"),
    ],
)
def test_an_incomplete_ca_bundle_is_refused(helm, ca, expected):
    assert expected in render_error(helm, {"caBundle": ca})
