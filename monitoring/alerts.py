"""The alert rules: one table, each rule with its default thresholds, rendered to Prometheus YAML.

Expressions, `for` and annotations are templates whose `@name` placeholders come from the rule's
`params` (its defaults) and `COMMON`; `rule_groups(overrides)` renders them with other values,
which is how the chart's PrometheusRule takes its thresholds from values. The `celery` group is
celery-mixin's (the celery-exporter project's) alerts, kept word for word at their defaults so
users' existing routes, silences and the mixin's own promtool tests keep working; the
`flask-celery` group covers what only this project exports: dead letters, in-flight work,
beat's tick, the exporter itself.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

#: Parameters every rule shares: which scrape jobs are flask-celery's. The mixin's selectors
#: expect `job` to match `.*celery.*`; the chart narrows it to its release.
COMMON: Mapping[str, str] = {"job": ".*celery.*", "grafana_url": ""}

_OVERVIEW = "@grafana_url/d/flask-celery-overview/flask-celery-overview"
_TASKS = "@grafana_url/d/flask-celery-tasks/flask-celery-tasks"
_QUEUE_VARS = "?var-namespace={{ $labels.namespace }}&var-queue_name={{ $labels.queue_name }}"
_TASK_VARS = f"{_QUEUE_VARS}&var-task={{{{ $labels.name }}}}"


class _Template(string.Template):
    # `$` and `{}` already mean something in PromQL and in Prometheus' Go templates.
    delimiter = "@"


@dataclass(frozen=True)
class Rule:
    """One alerting rule; `params` holds its defaults, `for` among them."""

    alert: str
    group: Literal["celery", "flask-celery"]
    severity: Literal["warning", "critical"]
    expr: str
    summary: str
    description: str
    dashboard_url: str
    params: Mapping[str, str] = field(default_factory=dict)

    def render(self, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The rule as Prometheus reads it, with `overrides` replacing the defaults."""
        values = {**COMMON, **self.params, **(overrides or {})}

        def fill(text: str) -> str:
            return _Template(text).substitute(values)

        return {
            "alert": self.alert,
            "expr": fill(self.expr),
            "for": values["for"],
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": fill(self.summary),
                "description": fill(self.description),
                "dashboard_url": fill(self.dashboard_url),
            },
        }


RULES: tuple[Rule, ...] = (
    # - celery-mixin: names, expressions, labels and annotations as the mixin ships them -----
    Rule(
        alert="CeleryTaskHighFailRate",
        group="celery",
        severity="warning",
        expr="""\
sum(
  increase(
    celery_task_failed_total{
      job=~"@job",
      queue_name!~"None",
      name!~"None"
    }[@window]
  )
)  by (job, namespace, queue_name, name)
/
(
  sum(
    increase(
      celery_task_failed_total{
        job=~"@job",
        queue_name!~"None",
        name!~"None"
      }[@window]
    )
  )  by (job, namespace, queue_name, name)
  +
  sum(
    increase(
      celery_task_succeeded_total{
        job=~"@job",
        queue_name!~"None",
        name!~"None"
      }[@window]
    )
  )  by (job, namespace, queue_name, name)
)
* 100 > @threshold
""",
        summary="Celery high task fail rate.",
        description="More than @threshold% tasks failed for the task {{ $labels.job }}/"
        "{{ $labels.queue_name }}/{{ $labels.name }} the past @window.",
        dashboard_url="https://grafana.com/d/celery-tasks-by-task-32s3/celery-tasks-by-task"
        "?var-job={{ $labels.job }}&var-queue_name={{ $labels.queue_name }}"
        "&var-task={{ $labels.name }}",
        params={"threshold": "5", "window": "10m", "for": "1m"},
    ),
    Rule(
        alert="CeleryHighQueueLength",
        group="celery",
        severity="warning",
        expr="""\
sum(
  celery_queue_length{
    job=~"@job",
    queue_name!~"None"
  }
)  by (job, namespace, queue_name)
> @threshold
""",
        summary="Celery high queue length.",
        description="More than @threshold tasks in the queue {{ $labels.job }}/"
        "{{ $labels.queue_name }} the past @for.",
        dashboard_url="https://grafana.com/d/celery-tasks-overview-32s3/celery-tasks-overview"
        "?&var-job={{ $labels.job }}&var-queue_name={{ $labels.queue_name }}",
        params={"threshold": "100", "for": "20m"},
    ),
    Rule(
        alert="CeleryWorkerDown",
        group="celery",
        severity="warning",
        expr='celery_worker_up{job=~"@job"} == 0\n',
        summary="A Celery worker is offline.",
        description="The Celery worker {{ $labels.job }}/{{ $labels.hostname }} is offline.",
        dashboard_url="https://grafana.com/d/celery-tasks-overview-32s3/celery-tasks-overview"
        "?&var-job={{ $labels.job }}",
        params={"for": "15m"},
    ),
    # - flask-celery: what only this project exports -------------------------------------------
    Rule(
        alert="FlaskCeleryDeadLettersIncreasing",
        group="flask-celery",
        severity="warning",
        # A task's first dead letter makes a new series, which counts from zero; only where
        # the exporter was already reporting `window` ago, so that a fresh start of it (or of
        # Prometheus) does not alert on dead letters that were already there.
        expr="""\
sum by (job, namespace, queue_name, name) (
  flask_celery_dead_letters{job=~"@job"}
  - (
    flask_celery_dead_letters{job=~"@job"} offset @window
    or
    flask_celery_dead_letters{job=~"@job"} * 0
  )
)
> @threshold
and on (job, namespace)
flask_celery_exporter_scrape_duration_seconds{job=~"@job"} offset @window
""",
        summary="Celery tasks are being dead-lettered.",
        description="{{ $value | humanize }} new dead letters of task {{ $labels.name }} from "
        "queue {{ $labels.job }}/{{ $labels.queue_name }} in the past @window. Runbook: list "
        "them with GET /dead-letters?task={{ $labels.name }}, read a traceback with GET "
        "/dead-letters/<id>, fix the cause (a permanent failure, or retries exhausted), then "
        "re-drive each with POST /dead-letters/<id>/redrive.",
        dashboard_url=_TASKS + _TASK_VARS,
        params={"threshold": "0", "window": "15m", "for": "1m"},
    ),
    Rule(
        alert="FlaskCeleryQueueStuck",
        group="flask-celery",
        severity="critical",
        expr="""\
sum by (job, namespace, queue_name) (celery_queue_length{job=~"@job"}) > @threshold
unless on (job, namespace, queue_name)
sum by (job, namespace, queue_name) (flask_celery_queue_inflight{job=~"@job"}) > 0
""",
        summary="A Celery queue has a backlog and nothing in flight.",
        description="Queue {{ $labels.job }}/{{ $labels.queue_name }} has {{ $value | humanize }} "
        "waiting messages and no task in flight for @for: no worker is taking its tasks. "
        "Runbook: check that a worker group consumes {{ $labels.queue_name }} "
        "(workers.groups[].queues), that its pods are Ready (kubectl get pods -l "
        "app.kubernetes.io/component=worker), that its KEDA ScaledObject is Active (kubectl "
        "describe scaledobject), and the workers' logs for broker connection errors.",
        dashboard_url=_OVERVIEW + _QUEUE_VARS,
        params={"threshold": "0", "for": "10m"},
    ),
    Rule(
        alert="FlaskCeleryQueueWaitHigh",
        group="flask-celery",
        severity="warning",
        expr="""\
histogram_quantile(0.95,
  sum by (job, namespace, queue_name, le) (
    rate(celery_task_queue_wait_time_bucket{job=~"@job", queue_name!~"None"}[@window])
  )
)
> @threshold
""",
        summary="Celery tasks wait long before they start.",
        description="95% of the tasks on queue {{ $labels.job }}/{{ $labels.queue_name }} "
        "started within {{ $value | humanizeDuration }} of being sent (or of their eta) over the "
        "past @window, more than @threshold s. Runbook: compare the backlog with the worker "
        "replicas on the Flask Celery / Overview dashboard; raise the group's KEDA "
        "maxReplicaCount or its concurrency, or find the slow tasks that hold the workers "
        "(Flask Celery / Tasks, runtime).",
        dashboard_url=_OVERVIEW + _QUEUE_VARS,
        params={"threshold": "120", "window": "10m", "for": "10m"},
    ),
    Rule(
        alert="FlaskCeleryBeatNotTicking",
        group="flask-celery",
        severity="critical",
        expr="""\
time() - max by (job, namespace) (flask_celery_beat_last_tick_timestamp_seconds{job=~"@job"})
> @threshold
""",
        summary="Celery beat has stopped ticking.",
        description="Beat last ticked {{ $value | humanizeDuration }} ago ({{ $labels.job }}), "
        "more than @threshold s, though it checks its schedule every few seconds "
        "(beat_max_loop_interval): periodic tasks are not being sent. Runbook: check the beat "
        "pod's status and logs; a new beat waits redbeat_lock_timeout for a dead leader's lock "
        "in Redis, so check that Redis is reachable from beat.",
        dashboard_url=_OVERVIEW + "?var-namespace={{ $labels.namespace }}",
        params={"threshold": "120", "for": "2m"},
    ),
    Rule(
        alert="FlaskCeleryRetrySurge",
        group="flask-celery",
        severity="warning",
        # Comparisons filter left to right: more than `min_retries` retries, and more retries
        # than `threshold`% of the messages received.
        expr="""\
sum by (job, namespace, queue_name, name) (
  increase(celery_task_retried_total{job=~"@job", queue_name!~"None", name!~"None"}[@window])
)
> @min_retries
> sum by (job, namespace, queue_name, name) (
  increase(celery_task_received_total{job=~"@job", queue_name!~"None", name!~"None"}[@window])
)
* @threshold / 100
""",
        summary="Celery tasks are retrying more than usual.",
        description="{{ $value | humanize }} retries of task {{ $labels.name }} on queue "
        "{{ $labels.job }}/{{ $labels.queue_name }} in the past @window, more than @threshold% "
        "of the tasks received. Runbook: see its failures by exception on the Flask Celery / "
        "Tasks dashboard; a dependency it calls (SMTP, a webhook endpoint, the database) is "
        "likely failing; exhausted retries end as dead letters.",
        dashboard_url=_TASKS + _TASK_VARS,
        params={"threshold": "20", "min_retries": "10", "window": "15m", "for": "5m"},
    ),
    Rule(
        alert="FlaskCeleryExporterDown",
        group="flask-celery",
        severity="warning",
        expr='absent(flask_celery_exporter_scrape_duration_seconds{job=~"@job"})\n',
        summary="The flask-celery exporter is not scraped.",
        description='No series from the flask-celery exporter (job=~"@job") for @for: queue '
        "lengths, in-flight counts, dead letters and beat's tick are unknown, and the alerts "
        "built on them cannot fire. Runbook: check the exporter Deployment's pod and logs, and "
        "that Prometheus scrapes it (its ServiceMonitor, or the pod's scrape annotations).",
        dashboard_url=_OVERVIEW,
        params={"for": "5m"},
    ),
    Rule(
        alert="FlaskCeleryExporterDependencyDown",
        group="flask-celery",
        severity="critical",
        expr="""\
max by (job, namespace, dependency) (flask_celery_exporter_dependency_up{job=~"@job"}) == 0
""",
        summary="The flask-celery exporter cannot reach a dependency.",
        description="The exporter {{ $labels.job }} cannot reach {{ $labels.dependency }} for "
        "@for; the gauges it reads there are stale. Runbook: if it is the broker, Redis is "
        "likely down for everyone (check the redis pod and the API's 503s); otherwise check the "
        "exporter's credentials and network policy for {{ $labels.dependency }}.",
        dashboard_url=_OVERVIEW + "?var-namespace={{ $labels.namespace }}",
        params={"for": "5m"},
    ),
)


def rule_groups(overrides: Mapping[str, Mapping[str, str]] | None = None) -> list[dict[str, Any]]:
    """The rule groups, with `overrides[alert]` (or `overrides["*"]`) replacing defaults."""
    overrides = overrides or {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for rule in RULES:
        params = {**overrides.get("*", {}), **overrides.get(rule.alert, {})}
        groups.setdefault(rule.group, []).append(rule.render(params))
    return [{"name": name, "rules": rules} for name, rules in groups.items()]


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no type hints
    """Expressions as literal blocks and annotations on one line each, as people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = """\
# Prometheus alerting rules for flask-celery, at their default thresholds. Generated from
# monitoring/alerts.py by `python -m monitoring --write`: change the table there, not this file.
"""


def _dump(groups: list[dict[str, Any]]) -> str:
    text: str = yaml.dump(
        {"groups": groups}, Dumper=_Dumper, sort_keys=False, width=1_000_000, allow_unicode=True
    )
    return text


def rules_file() -> str:
    """The plain Prometheus rules file, for a Prometheus without the Operator."""
    return HEADER + _dump(rule_groups())


#: Where the chart's values hold each parameter: `COMMON`'s under metrics.prometheusRule, a
#: rule's own under metrics.prometheusRule.rules.<alert>, camelCased (`min_retries`: minRetries).
CHART_VALUES = "metrics.prometheusRule"
CHART_COMMON = {"job": "jobRegex", "grafana_url": "grafanaUrl"}

TEMPLATE_HEADER = """\
{{- /*
The alert rules of files/prometheus-rules.yaml as a Helm template: every threshold, window and
`for` is a value under metrics.prometheusRule, and Prometheus's own templates ($labels, $value)
are kept verbatim in raw strings. Generated from monitoring/alerts.py by
`python -m monitoring --write`: change the table there, not this file.
templates/monitoring/prometheusrule.yaml renders it with `tpl`.
*/ -}}
"""


def chart_value(alert: str, param: str) -> str:
    """The chart's values path of one parameter (`alert` "*" for `COMMON`'s)."""
    if alert == "*":
        return f"{CHART_VALUES}.{CHART_COMMON[param]}"
    head, *rest = param.split("_")
    return f"{CHART_VALUES}.rules.{alert}.{head}{''.join(w.title() for w in rest)}"


def _placeholder(alert: str, param: str) -> str:
    # Letters and underscores only: YAML keeps it a plain scalar and PromQL never has it.
    return f"__chart_param_{alert.replace('*', 'COMMON')}_{param}__"


_PLACEHOLDER = re.compile(r"__chart_param_(\w+?)_([a-z]+(?:_[a-z]+)*)__")
_GO_TEMPLATE = re.compile(r"\{\{.*?\}\}")


def chart_rules_template() -> str:
    """`groups:` for the chart's PrometheusRule: the rules file with each parameter replaced by
    `{{ .Values.<chart_value> }}` and Prometheus's `{{ $labels.x }}` escaped from Helm."""
    overrides = {"*": {p: _placeholder("*", p) for p in COMMON}}
    for rule in RULES:
        overrides[rule.alert] = {p: _placeholder(rule.alert, p) for p in rule.params}
    body = _dump(rule_groups(overrides))
    if "`" in body:
        raise ValueError("a rule contains a backtick, which Helm's raw strings cannot hold")
    body = _GO_TEMPLATE.sub(lambda m: "{{`" + m.group(0) + "`}}", body)

    def value(match: re.Match[str]) -> str:
        alert = "*" if match.group(1) == "COMMON" else match.group(1)
        return "{{ .Values." + chart_value(alert, match.group(2)) + " }}"

    return TEMPLATE_HEADER + _PLACEHOLDER.sub(value, body)
