"""Our dashboards and alerts, and celery-mixin's, evaluated by a real Prometheus that scrapes a
real stack after a known workload.

One stack serves the module: a redis-server of its own, a migrated SQLite database, an SMTP
sink, gunicorn with the metrics hooks, the `general` and `reports` worker groups (nobody
consumes `webhooks`, so it holds a backlog), the broker exporter and beat. Prometheus scrapes
them every second under `flask-celery-*` job names (the mixin selects `job=~".*celery.*"`) with
the labels the mixin's dashboards select on, and evaluates our rules file itself. The workload
runs in two waves, the first sending one of everything, so that every counter is scraped at a
value and then grows; a last burst of `jobs.add` then marks the evaluation time: the scrape that
saw the last of them finish. Every panel query, variable query and alert expression is evaluated
at that time with Grafana's variables at "All". Each must parse, and each must answer a series
with a finite value, except the queries of NO_DATA, which must answer none.
"""

from __future__ import annotations

import functools
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flask_migrate
import httpx
import pytest
import yaml
from celery import Celery

from devstack.sinks import SmtpSink
from harness.auth import bearer
from harness.processes import free_port, stop, wait_until
from harness.redis_server import RedisServer
from harness.stack import (
    BIN,
    INCLUDE_TEST_TASKS,
    spawn,
    stack_environment,
    stack_flask_app,
    start_web,
    start_worker,
)
from monitoring import alerts
from service.routing import QUEUES, WORKER_GROUPS, queue_for
from tests.support.prometheus import PrometheusServer, PromQLError

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/flask-celery/files/prometheus-rules.yaml"
OUR_DASHBOARDS = sorted((ROOT / "charts/flask-celery/dashboards").glob("*.json"))
#: celery-mixin's files, in the shared folder beside the clone (as in CI).
MIXIN = ROOT.parent / "shared/compat/celery-mixin"
MIXIN_DASHBOARDS = [MIXIN / "celery-tasks-overview.json", MIXIN / "celery-tasks-by-task.json"]

#: Job name of each scraped role; the mixin's dashboards and alerts select `job=~".*celery.*"`.
WEB, WORKERS, EXPORTER = "flask-celery-web", "flask-celery-worker", "flask-celery-exporter"
#: Static labels of every target: the mixin's dashboards select `cluster` and `namespace`.
TARGET_LABELS = {"namespace": "test", "cluster": "local"}
#: The worker groups started here; `webhooks` has no worker, so its queue only grows.
GROUPS = ("general", "reports")

#: What Grafana puts in place of each variable: "All" for the selectors, windows of at least
#: four scrape intervals for rates, and one covering the whole module for `$__range`.
GRAFANA = {
    "__rate_interval": "1m",
    "__range": "10m",
    "job": ".*celery.*",
    "namespace": TARGET_LABELS["namespace"],
    "cluster": TARGET_LABELS["cluster"],
    "queue_name": ".*",
    "task": ".*",
    "deployment": ".*",
}

#: Queries that rightly answer nothing after this workload, by what they select; each must
#: answer no series (so an entry that starts answering fails, and is taken out).
NO_DATA = {
    # kube-state-metrics and KEDA are Kubernetes components; the chart tests cover that side
    "kube_deployment_spec_replicas": "kube-state-metrics does not run here",
    "kube_deployment_status_replicas": "kube-state-metrics does not run here",
    "keda_scaler_metrics_value": "KEDA does not run here",
    # the broker outage that answers 503s is tests/integration/test_metrics.py's
    'status=~"5.."': "a healthy stack answers no 5xx",
}
#: Alerts that must stay quiet after this workload, and why.
QUIET = {
    "CeleryWorkerDown": "both workers run",
    "FlaskCeleryQueueWaitHigh": "no task waits two minutes",
    "FlaskCeleryBeatNotTicking": "beat ticks every second",
    "FlaskCeleryExporterDown": "the exporter is scraped",
    "FlaskCeleryExporterDependencyDown": "Redis and the database answer",
    "FlaskCeleryDeadLettersIncreasing": "it compares with 15 minutes ago: the exporter is younger",
}
#: Alerts the workload makes fire (before their `for:`), with the labels of each series.
FIRING = {
    # jobs.add both succeeds and fails (bad arguments): the mixin's ratio needs both counters
    "CeleryTaskHighFailRate": [
        {"job": WORKERS, "namespace": "test", "queue_name": "default", "name": "jobs.add"}
    ],
    "CeleryHighQueueLength": [{"job": EXPORTER, "namespace": "test", "queue_name": "webhooks"}],
    "FlaskCeleryQueueStuck": [{"job": EXPORTER, "namespace": "test", "queue_name": "webhooks"}],
    "FlaskCeleryRetrySurge": [
        {"job": WORKERS, "namespace": "test", "queue_name": "default", "name": "tests.flaky"}
    ],
}

#: The workload's sizes.
FAILS = 5  # tests.fail: a PermanentError, a dead letter each
BAD_ADDS = 3  # jobs.add("x", 1): a TypeError, a dead letter each
FLAKY = 13  # tests.flaky: one retry each; 12 retries after the first wave (the alert says > 10)
BACKLOG = 101  # webhooks.deliver messages nobody consumes (the mixin's alert says > 100)
WAVE_2_ADDS = 4  # POST /jobs/add in the second wave
LAST_ADDS = 3  # jobs.add sent last: the scrape that sees them finish is the evaluation time


# - The stack and Prometheus ------------------------------------------------------------------


@dataclass
class Stack:
    """The running stack: a Celery client on its broker, web's URL, the metrics targets by job,
    and the folder of its files and logs."""

    celery: Celery
    web: str
    targets: dict[str, list[str]]
    directory: Path


def serves_metrics(address: str) -> bool:
    """Whether `http://<address>/metrics` answers 200."""
    return httpx.get(f"http://{address}/metrics", timeout=1).status_code == 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Starts a redis-server, an SMTP sink, gunicorn (two workers, the metrics hooks), a worker
    per group of GROUPS (metrics port and multiprocess folder each), the broker exporter and
    beat, on free loopback ports, with a migrated SQLite database; stops them all."""
    directory = tmp_path_factory.mktemp("prometheus-stack")
    redis = RedisServer(directory / "redis").start()
    smtp = SmtpSink(directory / "mail", port=free_port()).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = stack_environment(
            directory,
            redis.url(0),
            redis.url(1),
            {
                "FLASK_SMTP_HOST": "127.0.0.1",
                "FLASK_SMTP_PORT": str(smtp.port),
                "FLASK_METRICS_ADDRESS": "127.0.0.1",
                # tests.flaky's retry comes at once
                "FLASK_RETRY_BACKOFF_BASE": "0.01",
                "FLASK_RETRY_BACKOFF_MAX": "0.05",
                "FLASK_CELERY__BEAT_MAX_LOOP_INTERVAL": "1",
                "PYTHONUNBUFFERED": "1",
            },
        )
        app = stack_flask_app(env)
        with app.app_context():
            flask_migrate.upgrade()
        exporter_port = free_port()
        exporter_env = {**env, "FLASK_EXPORTER_PORT": str(exporter_port)}
        exporter_cmd = [sys.executable, "-m", "service.exporter"]
        procs.append(spawn(exporter_cmd, exporter_env, directory / "exporter.log"))
        beat_cmd = [str(BIN / "celery"), "-A", "service.make_celery", "beat", "-l", "INFO"]
        # beat ticks every second but sends nothing: a scheduled task (the hourly one at five
        # past) would change the counts; settings merge into the default schedule, so each
        # entry is disabled rather than the schedule emptied
        disabled = {name: {"enabled": False} for name in app.config["CELERY"]["beat_schedule"]}
        beat_env = {**env, "FLASK_CELERY__BEAT_SCHEDULE": json.dumps(disabled)}
        procs.append(spawn(beat_cmd, beat_env, directory / "beat.log"))
        web_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(directory / "metrics-web")}
        web_proc, web = start_web(web_env, directory / "web.log")
        procs.append(web_proc)
        worker_ports = []
        for group in GROUPS:
            port = free_port()
            group_env = {
                **env,
                "FLASK_WORKER_METRICS_PORT": str(port),
                "PROMETHEUS_MULTIPROC_DIR": str(directory / f"metrics-{group}"),
            }
            log = directory / f"worker-{group}.log"
            proc, _ = start_worker(group_env, WORKER_GROUPS[group], log, extra=INCLUDE_TEST_TASKS)
            procs.append(proc)
            worker_ports.append(port)
        targets = {
            WEB: [web.removeprefix("http://")],
            WORKERS: [f"127.0.0.1:{port}" for port in worker_ports],
            EXPORTER: [f"127.0.0.1:{exporter_port}"],
        }
        for job, addresses in targets.items():
            for address in addresses:
                wait_until(
                    functools.partial(serves_metrics, address),
                    timeout=30,
                    what=f"{job} /metrics at {address} (logs: {directory})",
                )
        yield Stack(app.extensions["celery"], web, targets, directory)
    finally:
        for proc in reversed(procs):
            stop(proc, timeout=30)
        smtp.stop()
        redis.stop()


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> Iterator[PrometheusServer]:
    """Starts Prometheus scraping the stack's web, workers and exporter every second under
    their job names, with TARGET_LABELS on every target, evaluating our rules file."""
    server = PrometheusServer(
        stack.directory / "prometheus", stack.targets, TARGET_LABELS, rule_files=[RULES]
    ).start()
    try:
        wait_until(
            lambda: server.value(f'count(up{{job=~"{WEB}|{WORKERS}|{EXPORTER}"}} == 1)') == 4,
            timeout=30,
            what=f"every target scraped (log: {server.log})",
        )
        yield server
    finally:
        server.stop()


# - The workload ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """A sum the workload determines: one number, or one per value of the label `by`."""

    selector: str
    by: str | None = None

    def read(self, prometheus: PrometheusServer, at: float | None = None) -> Any:
        """The sum at `at` (None: now); None, or {}, when nothing matches."""
        if self.by is None:
            return prometheus.value(f"sum({self.selector})", at)
        found = prometheus.query(f"sum by ({self.by}) ({self.selector})", at)
        return {labels.get(self.by, ""): value for labels, value in found}


def read_all(
    prometheus: PrometheusServer, counts: dict[Count, Any], at: float | None = None
) -> Any:
    """Each count's sum, in the shape of `counts`."""
    return {count: count.read(prometheus, at) for count in counts}


@dataclass
class Workload:
    """What the workload did, and when to evaluate: the scrape that saw its last task end."""

    #: Jobs accepted through the API, by queue (each published one message).
    accepted: dict[str, int] = field(default_factory=dict)
    #: Successful runs by task name.
    succeeded: dict[str, int] = field(default_factory=dict)
    at: float = 0.0

    def ran(self, task: str, n: int = 1) -> None:
        self.succeeded[task] = self.succeeded.get(task, 0) + n

    def settled(self, fails: int = FAILS, bad_adds: int = BAD_ADDS, flaky: int = FLAKY) -> Any:
        """What Prometheus holds once the tasks sent so far have ended."""
        return {
            Count(f'celery_task_failed_total{{job="{WORKERS}"}}', "exception"): {
                "PermanentError": fails,
                "TypeError": bad_adds,
            },
            Count("flask_celery_dead_letters", "name"): {"tests.fail": fails, "jobs.add": bad_adds},
            Count(f'celery_task_succeeded_total{{job="{WORKERS}"}}', "name"): self.succeeded,
            Count('celery_task_retried_total{name="tests.flaky"}'): flaky,
            # each is received twice: its first attempt and its retry
            Count('celery_task_received_total{name="tests.flaky"}'): 2 * flaky,
            Count("celery_task_rejected_total"): 1,
            Count(f'celery_task_sent_total{{job="{WEB}"}}', "queue_name"): self.accepted,
            Count("celery_queue_length", "queue_name"): {
                **dict.fromkeys(QUEUES, 0),
                "webhooks": BACKLOG,
            },
            Count("celery_worker_tasks_active"): 0,
        }


def post(api: httpx.Client, path: str, body: dict[str, Any], status: int = 202, **kw: Any) -> Any:
    """POST `body` to `path`; check the status; return the JSON answer."""
    response = api.post(path, json=body, **kw)
    assert response.status_code == status, response.text
    return response.json()


def publish_a_message_that_is_no_task(celery: Celery, queue: str) -> None:
    """A JSON message without Celery's task headers: its worker rejects it."""
    declared = celery.amqp.queues[queue]
    with celery.connection_for_write() as conn:
        conn.Producer().publish(
            {"not": "a task"},
            exchange=declared.exchange,
            routing_key=declared.routing_key,
            serializer="json",
            declare=[declared],
        )


def wait_for(prometheus: PrometheusServer, expected: dict[Count, Any], what: str) -> None:
    """Poll Prometheus until every count of `expected` has its value."""
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen["last"] = read_all(prometheus, expected)
        return bool(seen["last"] == expected)

    try:
        wait_until(reached, timeout=60, what=what, interval=0.25)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nexpected: {expected}\nlast: {seen.get('last')}") from None


@pytest.fixture(scope="module")
def workload(stack: Stack, prometheus: PrometheusServer) -> Workload:
    """Runs the workload through the API and by sending tasks, in two waves and a last burst;
    returns when Prometheus has every resulting series."""
    celery, done = stack.celery, Workload()
    with httpx.Client(base_url=stack.web, timeout=10, headers=bearer()) as api:

        def enqueue(path: str, body: dict[str, Any], task: str, **kw: Any) -> Any:
            answer = post(api, path, body, **kw)
            queue = queue_for(task)
            done.accepted[queue] = done.accepted.get(queue, 0) + 1
            done.ran(task)
            return answer

        def other_kinds() -> None:
            enqueue("/jobs/welcome-email", {"user_id": user["id"]}, "notify.send_welcome_email")
            enqueue("/jobs/invoice-pdf", {"invoice_id": invoice["id"]}, "invoices.generate_pdf")
            enqueue("/jobs/export", {"table": "users"}, "exports.export_table")

        # First wave: one of everything, so that every series exists before it grows.
        user = post(api, "/users", {"email": "ada@example.com", "name": "Ada"}, 201)
        lines = [{"description": "Consulting", "quantity": 3, "unit_price_cents": 100}]
        invoice = post(api, "/invoices", {"user_id": user["id"], "lines": lines}, 201)
        enqueue("/jobs/add", {"a": 1, "b": 2}, "jobs.add")
        keyed = {"Idempotency-Key": "prometheus-replay"}
        job = enqueue("/jobs/add", {"a": 5, "b": 5}, "jobs.add", headers=keyed)
        replay = api.post("/jobs/add", json={"a": 5, "b": 5}, headers=keyed)
        assert replay.headers.get("Idempotent-Replayed") == "true", replay.text
        assert replay.json()["job_id"] == job["job_id"]
        post(api, "/jobs/add", {"a": "x", "b": 1}, 400)
        other_kinds()
        celery.send_task("tests.fail", (0,), queue="default")
        celery.send_task("tests.flaky", (0,), queue="default")
        done.ran("tests.flaky")
        celery.send_task("jobs.add", ("x", 1))  # a TypeError in the worker
        celery.send_task("jobs.add", (0, 0), expires=datetime.now(UTC) - timedelta(minutes=1))
        publish_a_message_that_is_no_task(celery, "default")
        for n in range(BACKLOG):
            celery.send_task("webhooks.deliver", (n,))
        wait_for(prometheus, done.settled(1, 1, 1), "the first wave in Prometheus")

        # Second wave: every counter grows.
        for n in range(WAVE_2_ADDS):
            enqueue("/jobs/add", {"a": n, "b": n}, "jobs.add")
        other_kinds()
    for n in range(1, FAILS):
        celery.send_task("tests.fail", (n,), queue="default")
    for n in range(1, FLAKY):
        celery.send_task("tests.flaky", (n,), queue="default")
    done.ran("tests.flaky", FLAKY - 1)
    for _ in range(1, BAD_ADDS):
        celery.send_task("jobs.add", ("x", 1))
    wait_for(prometheus, done.settled(), "the whole workload in Prometheus")

    # Last, a few more successes: evaluating at the scrape that saw the last of them end gives
    # `irate` (the mixin's runtime panels) two different samples to compare.
    for n in range(LAST_ADDS):
        celery.send_task("jobs.add", (n, 1))
    done.ran("jobs.add", LAST_ADDS)
    runs = f'celery_task_runtime_count{{job="{WORKERS}", name="jobs.add"}}'
    final = done.succeeded["jobs.add"]
    wait_until(lambda: prometheus.value(runs) == final, timeout=30, what=f"{final} jobs.add runs")
    (series,) = prometheus.samples(runs, "1m")
    done.at = min(float(t) for t, value in series["values"] if float(value) == final)
    # at that scrape a task may have counted its success but not yet left the active gauge
    wait_for(prometheus, done.settled(), "every task over")
    return done


# - Queries of the dashboards and rules -------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One expression as Prometheus receives it, and where it comes from."""

    where: str
    expr: str
    #: For a variable's `label_values(selector, label)`: the label it lists.
    label: str | None = None


def substitute(expr: str) -> str:
    """The expression with each Grafana variable replaced by its GRAFANA value."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        assert name in GRAFANA, f"${name} has no value in GRAFANA: {expr}"
        return GRAFANA[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_queries(path: Path) -> list[Query]:
    """Every variable query and panel target of a dashboard file."""
    board = json.loads(path.read_text())
    out = []
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        found = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query, re.DOTALL)
        assert found, f"{path.name}: ${variable['name']}: {query!r} is not label_values(...)"
        out.append(Query(f"variable ${variable['name']}", substitute(found[1]), found[2]))
    for panel in panels(board["panels"]):
        for n, target in enumerate(panel.get("targets", [])):
            ref = target.get("refId") or f"#{n + 1}"
            out.append(Query(f"panel {panel['title']!r} {ref}", substitute(target["expr"])))
    return out


def rule_queries() -> list[Query]:
    """Every alert expression of our rules file."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [Query(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def no_data_reason(query: Query) -> str | None:
    """Why `query` rightly answers nothing, when NO_DATA says so."""
    return next((why for key, why in NO_DATA.items() if key in query.expr), None)


def problems(prometheus: PrometheusServer, queries: list[Query], at: float) -> list[str]:
    """What is wrong with each query's answer at `at`: a refusal, no series where the workload
    should feed it, only NaN, a series where NO_DATA says none, a variable without values."""
    out = []
    for query in queries:
        try:
            result = prometheus.query(query.expr, at)
        except PromQLError as exc:
            out.append(f"{query.where}: refused: {exc}")
            continue
        reason = no_data_reason(query)
        if reason is not None:
            if result:
                out.append(f"{query.where}: NO_DATA says {reason!r}, yet it answers {result}")
        elif not result:
            out.append(f"{query.where}: no series: {query.expr}")
        elif query.label is not None:
            if not any(labels.get(query.label) for labels, _ in result):
                out.append(f"{query.where}: no series has a {query.label} label: {result}")
        elif not any(math.isfinite(value) for _, value in result):
            out.append(f"{query.where}: only NaN or infinite values: {result}")
    return out


# - Tests -------------------------------------------------------------------------------------


def test_prometheus_scrapes_every_role_with_the_labels_the_mixin_selects(
    prometheus: PrometheusServer, stack: Stack
) -> None:
    active = prometheus.api("targets", state="active")["activeTargets"]
    found = {
        (t["labels"]["job"], t["labels"]["instance"], t["labels"]["namespace"],
         t["labels"]["cluster"], t["health"])
        for t in active
    }  # fmt: skip
    assert found == {
        (job, address, "test", "local", "up")
        for job, addresses in stack.targets.items()
        for address in addresses
    }


@pytest.mark.parametrize(
    "dashboard", [*OUR_DASHBOARDS, *MIXIN_DASHBOARDS], ids=lambda path: path.stem
)
def test_every_query_of_the_dashboard_answers_data(
    dashboard: Path, prometheus: PrometheusServer, workload: Workload
) -> None:
    if not dashboard.is_file():
        pytest.fail(f"{dashboard} is missing: the celery-mixin files come with the shared/ folder")
    queries = dashboard_queries(dashboard)
    assert len(queries) > 10
    assert problems(prometheus, queries, workload.at) == []


def test_every_variable_lists_the_stack_s_values(
    prometheus: PrometheusServer, workload: Workload
) -> None:
    listed: dict[str, set[str]] = {}
    for dashboard in [*OUR_DASHBOARDS, *MIXIN_DASHBOARDS]:
        for query in dashboard_queries(dashboard):
            if query.label is None or no_data_reason(query) is not None:
                continue
            found = prometheus.query(query.expr, workload.at)
            listed.setdefault(query.label, set()).update(
                labels.get(query.label, "") for labels, _ in found
            )
    assert listed == {
        "cluster": {"local"},
        "namespace": {"test"},
        "job": {WEB, WORKERS, EXPORTER},
        "queue_name": set(QUEUES),
        "name": {*workload.succeeded, "tests.fail"},
    }


def test_every_no_data_entry_matches_a_query() -> None:
    queries = [
        q for board in [*OUR_DASHBOARDS, *MIXIN_DASHBOARDS] for q in dashboard_queries(board)
    ]
    unused = {key for key in NO_DATA if not any(key in query.expr for query in queries)}
    assert unused == set()


def test_every_alert_expression_parses_and_only_the_workload_s_alerts_fire(
    prometheus: PrometheusServer, workload: Workload
) -> None:
    queries = rule_queries()
    assert sorted(query.where for query in queries) == sorted(rule.alert for rule in alerts.RULES)
    assert sorted([*FIRING, *QUIET]) == sorted(query.where for query in queries)
    firing = {}
    for query in queries:
        result = prometheus.query(query.expr, workload.at)
        firing[query.where] = [
            {k: v for k, v in labels.items() if k in {"job", "namespace", "queue_name", "name"}}
            for labels, _ in result
        ]
    assert {name: series for name, series in firing.items() if series} == FIRING


def test_prometheus_evaluates_every_rule_and_holds_the_firing_ones_pending(
    prometheus: PrometheusServer, workload: Workload
) -> None:
    rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    assert sorted(rule["name"] for rule in rules) == sorted(rule.alert for rule in alerts.RULES)

    def evaluated() -> bool:
        current = [rule for g in prometheus.api("rules")["groups"] for rule in g["rules"]]
        return all(rule["health"] == "ok" for rule in current)

    wait_until(evaluated, timeout=10, what="every rule evaluated without error")
    wait_until(
        lambda: (
            {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]} == set(FIRING)
        ),
        timeout=15,
        what=f"exactly {sorted(FIRING)} pending or firing",
    )


def test_the_counts_are_exactly_what_the_workload_did(
    prometheus: PrometheusServer, workload: Workload
) -> None:
    expected = workload.settled() | {
        Count(f'flask_celery_enqueue_total{{job="{WEB}"}}', "outcome"): {
            "accepted": sum(workload.accepted.values()),
            "replayed": 1,
            "refused": 1,
        },
        Count('flask_celery_http_requests_total{status="400"}'): 1,
        Count("celery_worker_up"): len(GROUPS),
        Count("celery_active_worker_count", "queue_name"): {
            queue: sum(queue in WORKER_GROUPS[group] for group in GROUPS) for queue in QUEUES
        },
    }
    # now rather than at the evaluation time: nothing runs any more, the gauges are at rest
    assert read_all(prometheus, expected) == expected


def test_every_routed_queue_has_a_length_series(
    prometheus: PrometheusServer, workload: Workload
) -> None:
    lengths = prometheus.query("celery_queue_length", workload.at)
    assert sorted(labels["queue_name"] for labels, _ in lengths) == sorted(QUEUES)


def test_beat_s_last_tick_is_recent(prometheus: PrometheusServer, workload: Workload) -> None:
    tick = "flask_celery_beat_last_tick_timestamp_seconds"
    since = prometheus.value(f"time() - max({tick})", workload.at)
    # beat writes its tick while the exporter is being scraped: a hair after the sample's time
    assert since is not None and -1 < since < 10


def test_a_revoked_task_is_counted(prometheus: PrometheusServer, workload: Workload) -> None:
    assert prometheus.value("sum(celery_task_revoked_total)", workload.at) == 1
