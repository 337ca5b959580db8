"""The metric families that dashboards and alerts may query, and who exposes each.

Task and worker families carry celery-exporter's names and labels (contract 6), so the
celery-mixin's dashboards and alerts work unchanged; web and exporter families are our own.
A query that names anything else is a typo or a metric nobody exports: the tests check every
query against this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Labels Prometheus adds to every scraped series (`namespace`, `pod` and `service` under the
#: Prometheus Operator; `cluster` where a remote-write or federation setup adds it).
TARGET_LABELS = ("job", "instance", "namespace", "pod", "service", "cluster")

_TASK = ("name", "hostname", "queue_name")


@dataclass(frozen=True)
class Family:
    """One metric family: its exposed name (counters with `_total`), type, labels, exposer."""

    name: str
    type: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    source: Literal["tasks", "web", "exporter", "keda", "kube-state-metrics"]

    def series(self) -> dict[str, tuple[str, ...]]:
        """The series names this family exposes, each with its own labels."""
        if self.type != "histogram":
            return {self.name: self.labels}
        return {
            f"{self.name}_bucket": (*self.labels, "le"),
            f"{self.name}_sum": self.labels,
            f"{self.name}_count": self.labels,
        }


FAMILIES: tuple[Family, ...] = (
    # Every process that publishes or runs tasks (gunicorn, beat, workers).
    *(
        Family(f"celery_task_{event}_total", "counter", _TASK, "tasks")
        for event in ("sent", "received", "started", "succeeded", "rejected", "revoked", "retried")
    ),
    Family("celery_task_failed_total", "counter", (*_TASK, "exception"), "tasks"),
    Family("celery_task_runtime", "histogram", _TASK, "tasks"),
    Family("celery_task_queue_wait_time", "histogram", _TASK, "tasks"),
    Family("celery_worker_up", "gauge", ("hostname",), "tasks"),
    Family("celery_worker_tasks_active", "gauge", ("hostname",), "tasks"),
    # gunicorn.
    Family("flask_celery_http_requests_total", "counter", ("endpoint", "method", "status"), "web"),
    Family(
        "flask_celery_http_request_duration_seconds", "histogram", ("endpoint", "method"), "web"
    ),
    Family("flask_celery_enqueue_total", "counter", ("endpoint", "outcome"), "web"),
    # The one exporter process: broker-level state, so never summed over replicas.
    Family("celery_queue_length", "gauge", ("queue_name",), "exporter"),
    Family("celery_active_worker_count", "gauge", ("queue_name",), "exporter"),
    Family("celery_active_process_count", "gauge", ("queue_name",), "exporter"),
    Family("flask_celery_queue_inflight", "gauge", ("queue_name",), "exporter"),
    Family("flask_celery_queue_oldest_message_age_seconds", "gauge", ("queue_name",), "exporter"),
    Family("flask_celery_dead_letters", "gauge", ("name", "queue_name"), "exporter"),
    Family("flask_celery_beat_last_tick_timestamp_seconds", "gauge", (), "exporter"),
    Family("flask_celery_exporter_dependency_up", "gauge", ("dependency",), "exporter"),
    Family("flask_celery_exporter_scrape_duration_seconds", "gauge", (), "exporter"),
    # The cluster's own exporters.
    Family("keda_scaler_metrics_value", "gauge", ("scaledObject", "scaler", "metric"), "keda"),
    Family(
        "kube_deployment_status_replicas",
        "gauge",
        ("deployment", "namespace"),
        "kube-state-metrics",
    ),
    Family(
        "kube_deployment_spec_replicas", "gauge", ("deployment", "namespace"), "kube-state-metrics"
    ),
)


def series_labels() -> dict[str, frozenset[str]]:
    """Every queryable series name with the labels it may carry, target labels included."""
    return {
        name: frozenset((*labels, *TARGET_LABELS))
        for family in FAMILIES
        for name, labels in family.series().items()
    }
