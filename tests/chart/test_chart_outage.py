"""The rendered chart's roles ride out their Redis going away.

Every role of the metrics render (web, each worker group, beat, Flower, the broker exporter)
runs as local processes (tests/support/chart_processes.py) against a Redis of this module's own,
with its AOF on, as the chart's Redis runs. Redis is SIGKILLed and started again on the same
port (as its StatefulSet would), and separately SIGSTOPped for ten seconds. Afterwards every
role must be up and ready on its probes (the same process, or one restarted as the kubelet
restarts a container that exited), the exporter must read Redis again, every worker must answer
over Redis, and a job enqueued after recovery must run.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from celery import Celery
from celery.utils.nodenames import host_format

from harness.auth import bearer
from harness.processes import wait_until
from harness.redis_server import RedisServer
from tests.support.api import wait_for_job
from tests.support.chart import NAME, TEST_API_KEYS, process_helm, render
from tests.support.chart_processes import LocalCluster, LocalContainer, stop_all

ROLES = ("web", "worker-general", "worker-reports", "worker-webhooks", "beat", "flower", "exporter")
#: Variables that name the port a process serves its metrics on.
PORT_VARIABLES = ("FLASK_WORKER_METRICS_PORT", "FLASK_EXPORTER_PORT")
HANG = 10.0
RECOVERY = 60.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own, appending every write to its AOF."""
    server = RedisServer(tmp_path_factory.mktemp("outage-redis"), appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pods(
    broker: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, LocalContainer]]:
    """Every role of the metrics render with the test API keys, started against `broker` and
    ready on its probes; stopped (SIGTERM, then SIGKILL) afterwards."""
    docs = render(process_helm(), {"metrics": {"enabled": True}, **TEST_API_KEYS})
    cluster = LocalCluster(docs, broker.port, tmp_path_factory.mktemp("outage-pods"))
    cluster.migrate()
    started = {role: cluster.container(NAME.format(role)) for role in ROLES}
    for c in started.values():
        for name in PORT_VARIABLES:  # each worker and the exporter on a free port of its own
            if name in c.env:
                c.env[name] = str(c.ports[int(c.env[name])])
        c.env["FLASK_METRICS_ADDRESS"] = "127.0.0.1"
    try:
        for c in started.values():
            c.start()
        # answering over HTTP and Redis first: the workers' exec probes are whole processes
        wait_until(lambda: serving(broker, started), timeout=120, what="every role", interval=0.5)
        wait_until(lambda: all(map(ready, started.values())), timeout=60, what="probes")
    except BaseException:
        stop_all(list(started.values()))
        raise
    yield started
    stop_all(list(started.values()))


def restart_exited(pods: dict[str, LocalContainer], restarted: set[str]) -> None:
    """Start again, as the kubelet does (restartPolicy Always), each container that exited."""
    for role, c in pods.items():
        if not c.alive():
            restarted.add(role)
            c.start()


def ready(c: LocalContainer) -> bool:
    """Running, and passing its readiness probe if it has one."""
    return c.alive() and ("readinessProbe" not in c.spec or c.probe("readiness")[0])


def workers_answer(broker: RedisServer, pods: dict[str, LocalContainer]) -> bool:
    nodes = set()
    for role in ROLES:
        if role.startswith("worker-"):
            argv = pods[role].argv
            nodes.add(host_format(argv[argv.index("--hostname") + 1]))
    app = Celery(broker=broker.url(0))
    try:
        replies = app.control.ping(destination=sorted(nodes), timeout=1)
    finally:
        app.close()
    return nodes <= {node for reply in replies for node in reply}


def exporter_reads_redis(exporter: LocalContainer) -> bool:
    port = exporter.env["FLASK_EXPORTER_PORT"]  # moved to its local port above
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return 'flask_celery_exporter_dependency_up{dependency="redis"} 1.0' in text


def serving(broker: RedisServer, pods: dict[str, LocalContainer]) -> bool:
    """Every process runs, web is ready, the exporter reads Redis, Flower answers and every
    worker answers a ping over Redis."""
    web, flower = pods["web"], pods["flower"]
    flower_url = f"http://127.0.0.1:{flower.ports[5555]}/healthcheck"
    return (
        all(c.alive() for c in pods.values())
        and httpx.get(f"http://127.0.0.1:{web.ports[8000]}/readyz", timeout=5).status_code == 200
        and exporter_reads_redis(pods["exporter"])
        and httpx.get(flower_url, timeout=5).status_code == 200
        and workers_answer(broker, pods)
    )


def every_role_recovers(broker: RedisServer, pods: dict[str, LocalContainer]) -> set[str]:
    """Wait until every role serves again and passes its readiness probe, then run a job; the
    roles that had to be restarted."""
    restarted: set[str] = set()

    def recovered() -> bool:
        restart_exited(pods, restarted)
        return serving(broker, pods)

    wait_until(recovered, timeout=RECOVERY, what="every role serving", interval=0.5)
    wait_until(lambda: all(map(ready, pods.values())), timeout=RECOVERY, what="probes")
    web = pods["web"]
    base = f"http://127.0.0.1:{web.ports[8000]}"
    with httpx.Client(base_url=base, headers=bearer(), timeout=10) as api:
        job = api.post("/jobs/add", json={"a": 20, "b": 22})
        assert job.status_code == 202, job.text
        status = wait_for_job(api, job.json()["status_url"])
    assert (status["state"], status["value"]) == ("success", 42), status
    return restarted


@pytest.mark.timeout(240)
def test_every_role_rides_out_redis_killed_and_started_again_on_its_port(broker, pods):
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGKILL)
    broker.proc.wait()
    broker.start()  # the same port and AOF directory, as the StatefulSet's pod comes back
    restarted = every_role_recovers(broker, pods)
    # the kubelet would restart a role that exited; only beat may (it reconnects too, as a rule)
    assert restarted <= {"beat"}, {r: pods[r].log_tail() for r in restarted}


@pytest.mark.timeout(240)
def test_every_role_rides_out_a_hung_redis(broker, pods):
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(HANG)  # the outage itself
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    restarted = every_role_recovers(broker, pods)
    assert restarted <= {"beat"}, {r: pods[r].log_tail() for r in restarted}
