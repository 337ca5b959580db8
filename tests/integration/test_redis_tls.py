"""External Redis as production runs it: TLS only, verified against a private CA, a Redis 6 ACL
user whose password needs escaping in a URL, and the broker database KEDA counts.

One redis-server per module listens for TLS only (no plain port), its certificate signed by a CA
made for this run (tests/support/tls.py); its `default` user is off, so every connection that
works logged in as the ACL user over verified TLS.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redbeat.schedulers import get_redis

from harness.auth import authorized
from harness.processes import free_port, stop, wait_until
from harness.redis_server import redis_server_bin
from harness.stack import BIN, migrate, spawn, stack_environment, stack_flask_app, start_worker
from service import redis_options
from service.observability.exporter import BrokerCollector
from service.reliability.dead_letter import fallback_client
from service.worker.inflight import broker_client
from service.worker.registry import live_workers
from tests.support.tls import CertificateAuthority

USER = "flask-app"
#: Every character that would end a URL's user part early, and `%` itself.
PASSWORD = "p@ss:/#%w0rd"
#: What Redis answers a wrong password with.
WRONGPASS = "invalid username-password pair"


@dataclass(frozen=True)
class TlsRedis:
    port: int
    ca: Path
    #: A CA that did not sign the server's certificate.
    other_ca: Path

    def url(self, db: int) -> str:
        return f"rediss://127.0.0.1:{self.port}/{db}"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """A redis-server speaking TLS only on a free loopback port, its certificate for 127.0.0.1
    signed by a CA of this run; the default user is off and USER logs in with PASSWORD."""
    directory = tmp_path_factory.mktemp("tls-redis")
    ca = CertificateAuthority(directory / "ca")
    other = CertificateAuthority(directory / "other-ca", name="another CA")
    cert = ca.issue("127.0.0.1")
    port = free_port()
    cmd = [redis_server_bin(), "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port),
           "--tls-cert-file", str(cert.cert), "--tls-key-file", str(cert.key),
           "--tls-ca-cert-file", str(ca.bundle), "--tls-auth-clients", "no",
           "--dir", str(directory), "--save", "", "--appendonly", "no",
           "--logfile", str(directory / "redis.log"),
           "--user", "default", "off",
           "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = TlsRedis(port, ca.bundle, other.bundle)
    probe = redis_options.client(
        server.url(0), redis_options.verifying(str(ca.bundle)), username=USER, password=PASSWORD
    )
    wait_until(probe.ping, timeout=10, what=f"redis-server with TLS on {port}")
    yield server
    stop(proc)


def environment(
    server: TlsRedis, state: Path, ca: Path | None = None, password: str = PASSWORD
) -> dict[str, str]:
    """The stack's environment as the chart renders it for this external Redis."""
    return stack_environment(
        state,
        server.url(0),
        server.url(1),
        extra={
            "FLASK_REDIS_USERNAME": USER,
            "FLASK_REDIS_PASSWORD": password,
            "FLASK_REDIS_CA_FILE": str(ca or server.ca),
            "FLASK_REDIS_REQUIRE_TLS": "true",
            "FLASK_KEDA_DATABASE_INDEX": "0",
        },
    )


def app_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Flask app of a process started with `env` (FLASK_REDIS_* reach it as variables)."""
    for name in ("USERNAME", "PASSWORD", "CA_FILE", "REQUIRE_TLS"):
        monkeypatch.setenv(f"FLASK_REDIS_{name}", env[f"FLASK_REDIS_{name}"])
    return stack_flask_app(env)


def test_a_job_runs_over_verified_tls_as_the_acl_user(
    tls_redis: TlsRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(tls_redis, tmp_path)
    migrate(env)
    app = app_of(env, monkeypatch)
    celery_app = app.extensions["celery"]
    assert celery_app.conf.broker_use_ssl["ssl_ca_certs"] == str(tls_redis.ca)
    worker, node = start_worker(env, ("default",), tmp_path / "worker.log", concurrency=1)
    try:
        client = authorized(app.test_client())
        accepted = client.post("/jobs/add", json={"a": 2, "b": 3})
        assert accepted.status_code == 202, accepted.text
        status_url = accepted.headers["Location"]
        done = wait_until(
            lambda: (body := client.get(status_url).json)["ready"] and body,
            timeout=30,
            what="the job's result",
        )
        assert (done["job_state"], done["value"]) == ("succeeded", 5), done
        # every Redis client the service opens itself, over the same TLS and ACL user
        assert node in {w.node for w in live_workers(broker_client(celery_app))}
        assert fallback_client(celery_app).ping()
        assert get_redis(celery_app).ping()
        with app.app_context():
            families = {f.name: f for f in BrokerCollector(app).collect()}
        up_family = families["flask_celery_exporter_dependency_up"]
        up = {s.labels["dependency"]: s.value for s in up_family.samples}
        assert up["redis"] == 1, up
        # beat's liveness probe reads its tick over TLS too: none recorded (it connected)
        probe = subprocess.run([sys.executable, "-m", "service.worker.probes", "beat"],
                               env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
        assert probe.returncode == 1 and "no beat tick recorded" in probe.stderr, probe.stderr
    finally:
        stop(worker)


def test_a_server_certificate_from_another_ca_is_refused_at_once(
    tls_redis: TlsRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(tls_redis, tmp_path, ca=tls_redis.other_ca)
    app = app_of(env, monkeypatch)
    celery_app = app.extensions["celery"]
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        broker_client(celery_app).ping()
    with pytest.raises(Exception, match="certificate verify failed"):
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
    assert time.monotonic() - started < 30  # an answer, not a hang
    # a worker says why it cannot reach its broker, and keeps saying it
    log = tmp_path / "worker.log"
    worker = spawn([str(BIN / "celery"), "-A", "service.make_celery", "worker", "--queues",
                    "default", "--concurrency", "1", "--without-mingle", "--without-gossip"],
                   env, log)  # fmt: skip
    try:
        wait_until(
            lambda: "certificate verify failed" in log.read_text(errors="replace"),
            timeout=60,
            what=f"the worker's TLS error in {log}",
        )
    finally:
        stop(worker)


def test_a_wrong_acl_password_is_refused(
    tls_redis: TlsRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(tls_redis, tmp_path, password="not-" + PASSWORD)
    app = app_of(env, monkeypatch)
    celery_app = app.extensions["celery"]
    with pytest.raises(redis.exceptions.AuthenticationError, match=WRONGPASS):
        broker_client(celery_app).ping()
    with pytest.raises(Exception, match=WRONGPASS):
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)


def test_a_worker_on_another_database_than_keda_counts_refuses_to_start(tmp_path: Path) -> None:
    # nothing listens on the broker's port: the refusal comes before any connection
    env = stack_environment(
        tmp_path, "redis://127.0.0.1:9/0", "redis://127.0.0.1:9/1",
        extra={"FLASK_KEDA_DATABASE_INDEX": "2"},
    )  # fmt: skip
    cmd = [str(BIN / "celery"), "-A", "service.make_celery", "worker", "--queues", "default"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert (
        "refusing to start: KEDA counts this worker's queues in Redis database 2 "
        "(FLASK_KEDA_DATABASE_INDEX, the chart's redis.brokerDatabase) but the broker URL "
        "(FLASK_CELERY__BROKER_URL) selects database 0"
    ) in done.stderr
