{{- /*
The alert rules of files/prometheus-rules.yaml as a Helm template: every threshold, window and
`for` is a value under metrics.prometheusRule, and Prometheus's own templates ($labels, $value)
are kept verbatim in raw strings. Generated from monitoring/alerts.py by
`python -m monitoring --write`: change the table there, not this file.
templates/monitoring/prometheusrule.yaml renders it with `tpl`.
*/ -}}
groups:
- name: celery
  rules:
  - alert: CeleryTaskHighFailRate
    expr: |
      sum(
        increase(
          celery_task_failed_total{
            job=~"{{ .Values.metrics.prometheusRule.jobRegex }}",
            queue_name!~"None",
            name!~"None"
          }[{{ .Values.metrics.prometheusRule.rules.CeleryTaskHighFailRate.window }}]
        )
      )  by (job, namespace, queue_name, name)
      /
      (
        sum(
          increase(
            celery_task_failed_total{
              job=~"{{ .Values.metrics.prometheusRule.jobRegex }}",
              queue_name!~"None",
              name!~"None"
            }[{{ .Values.metrics.prometheusRule.rules.CeleryTaskHighFailRate.window }}]
          )
        )  by (job, namespace, queue_name, name)
        +
        sum(
          increase(
            celery_task_succeeded_total{
              job=~"{{ .Values.metrics.prometheusRule.jobRegex }}",
              queue_name!~"None",
              name!~"None"
            }[{{ .Values.metrics.prometheusRule.rules.CeleryTaskHighFailRate.window }}]
          )
        )  by (job, namespace, queue_name, name)
      )
      * 100 > {{ .Values.metrics.prometheusRule.rules.CeleryTaskHighFailRate.threshold }}
    for: {{ .Values.metrics.prometheusRule.rules.CeleryTaskHighFailRate.for }}
    labels:
      severity: warning
    annotations:
      summary: Celery high task fail rate.
      description: More than {{ .Values.metrics.prometheusRule.rules.CeleryTaskHighFailRate.threshold }}% tasks failed for the task {{`{{ $labels.job }}`}}/{{`{{ $labels.queue_name }}`}}/{{`{{ $labels.name }}`}} the past {{ .Values.metrics.prometheusRule.rules.CeleryTaskHighFailRate.window }}.
      dashboard_url: https://grafana.com/d/celery-tasks-by-task-32s3/celery-tasks-by-task?var-job={{`{{ $labels.job }}`}}&var-queue_name={{`{{ $labels.queue_name }}`}}&var-task={{`{{ $labels.name }}`}}
  - alert: CeleryHighQueueLength
    expr: |
      sum(
        celery_queue_length{
          job=~"{{ .Values.metrics.prometheusRule.jobRegex }}",
          queue_name!~"None"
        }
      )  by (job, namespace, queue_name)
      > {{ .Values.metrics.prometheusRule.rules.CeleryHighQueueLength.threshold }}
    for: {{ .Values.metrics.prometheusRule.rules.CeleryHighQueueLength.for }}
    labels:
      severity: warning
    annotations:
      summary: Celery high queue length.
      description: More than {{ .Values.metrics.prometheusRule.rules.CeleryHighQueueLength.threshold }} tasks in the queue {{`{{ $labels.job }}`}}/{{`{{ $labels.queue_name }}`}} the past {{ .Values.metrics.prometheusRule.rules.CeleryHighQueueLength.for }}.
      dashboard_url: https://grafana.com/d/celery-tasks-overview-32s3/celery-tasks-overview?&var-job={{`{{ $labels.job }}`}}&var-queue_name={{`{{ $labels.queue_name }}`}}
  - alert: CeleryWorkerDown
    expr: |
      celery_worker_up{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"} == 0
    for: {{ .Values.metrics.prometheusRule.rules.CeleryWorkerDown.for }}
    labels:
      severity: warning
    annotations:
      summary: A Celery worker is offline.
      description: The Celery worker {{`{{ $labels.job }}`}}/{{`{{ $labels.hostname }}`}} is offline.
      dashboard_url: https://grafana.com/d/celery-tasks-overview-32s3/celery-tasks-overview?&var-job={{`{{ $labels.job }}`}}
- name: flask-celery
  rules:
  - alert: FlaskCeleryDeadLettersIncreasing
    expr: |
      sum by (job, namespace, queue_name, name) (
        flask_celery_dead_letters{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"}
        - (
          flask_celery_dead_letters{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"} offset {{ .Values.metrics.prometheusRule.rules.FlaskCeleryDeadLettersIncreasing.window }}
          or
          flask_celery_dead_letters{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"} * 0
        )
      )
      > {{ .Values.metrics.prometheusRule.rules.FlaskCeleryDeadLettersIncreasing.threshold }}
      and on (job, namespace)
      flask_celery_exporter_scrape_duration_seconds{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"} offset {{ .Values.metrics.prometheusRule.rules.FlaskCeleryDeadLettersIncreasing.window }}
    for: {{ .Values.metrics.prometheusRule.rules.FlaskCeleryDeadLettersIncreasing.for }}
    labels:
      severity: warning
    annotations:
      summary: Celery tasks are being dead-lettered.
      description: '{{`{{ $value | humanize }}`}} new dead letters of task {{`{{ $labels.name }}`}} from queue {{`{{ $labels.job }}`}}/{{`{{ $labels.queue_name }}`}} in the past {{ .Values.metrics.prometheusRule.rules.FlaskCeleryDeadLettersIncreasing.window }}. Runbook: list them with GET /dead-letters?task={{`{{ $labels.name }}`}}, read a traceback with GET /dead-letters/<id>, fix the cause (a permanent failure, or retries exhausted), then re-drive each with POST /dead-letters/<id>/redrive.'
      dashboard_url: {{ .Values.metrics.prometheusRule.grafanaUrl }}/d/flask-celery-tasks/flask-celery-tasks?var-namespace={{`{{ $labels.namespace }}`}}&var-queue_name={{`{{ $labels.queue_name }}`}}&var-task={{`{{ $labels.name }}`}}
  - alert: FlaskCeleryQueueStuck
    expr: |
      sum by (job, namespace, queue_name) (celery_queue_length{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"}) > {{ .Values.metrics.prometheusRule.rules.FlaskCeleryQueueStuck.threshold }}
      unless on (job, namespace, queue_name)
      sum by (job, namespace, queue_name) (flask_celery_queue_inflight{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"}) > 0
    for: {{ .Values.metrics.prometheusRule.rules.FlaskCeleryQueueStuck.for }}
    labels:
      severity: critical
    annotations:
      summary: A Celery queue has a backlog and nothing in flight.
      description: 'Queue {{`{{ $labels.job }}`}}/{{`{{ $labels.queue_name }}`}} has {{`{{ $value | humanize }}`}} waiting messages and no task in flight for {{ .Values.metrics.prometheusRule.rules.FlaskCeleryQueueStuck.for }}: no worker is taking its tasks. Runbook: check that a worker group consumes {{`{{ $labels.queue_name }}`}} (workers.groups[].queues), that its pods are Ready (kubectl get pods -l app.kubernetes.io/component=worker), that its KEDA ScaledObject is Active (kubectl describe scaledobject), and the workers'' logs for broker connection errors.'
      dashboard_url: {{ .Values.metrics.prometheusRule.grafanaUrl }}/d/flask-celery-overview/flask-celery-overview?var-namespace={{`{{ $labels.namespace }}`}}&var-queue_name={{`{{ $labels.queue_name }}`}}
  - alert: FlaskCeleryQueueWaitHigh
    expr: |
      histogram_quantile(0.95,
        sum by (job, namespace, queue_name, le) (
          rate(celery_task_queue_wait_time_bucket{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}", queue_name!~"None"}[{{ .Values.metrics.prometheusRule.rules.FlaskCeleryQueueWaitHigh.window }}])
        )
      )
      > {{ .Values.metrics.prometheusRule.rules.FlaskCeleryQueueWaitHigh.threshold }}
    for: {{ .Values.metrics.prometheusRule.rules.FlaskCeleryQueueWaitHigh.for }}
    labels:
      severity: warning
    annotations:
      summary: Celery tasks wait long before they start.
      description: '95% of the tasks on queue {{`{{ $labels.job }}`}}/{{`{{ $labels.queue_name }}`}} started within {{`{{ $value | humanizeDuration }}`}} of being sent (or of their eta) over the past {{ .Values.metrics.prometheusRule.rules.FlaskCeleryQueueWaitHigh.window }}, more than {{ .Values.metrics.prometheusRule.rules.FlaskCeleryQueueWaitHigh.threshold }} s. Runbook: compare the backlog with the worker replicas on the Flask Celery / Overview dashboard; raise the group''s KEDA maxReplicaCount or its concurrency, or find the slow tasks that hold the workers (Flask Celery / Tasks, runtime).'
      dashboard_url: {{ .Values.metrics.prometheusRule.grafanaUrl }}/d/flask-celery-overview/flask-celery-overview?var-namespace={{`{{ $labels.namespace }}`}}&var-queue_name={{`{{ $labels.queue_name }}`}}
  - alert: FlaskCeleryBeatNotTicking
    expr: |
      time() - max by (job, namespace) (flask_celery_beat_last_tick_timestamp_seconds{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"})
      > {{ .Values.metrics.prometheusRule.rules.FlaskCeleryBeatNotTicking.threshold }}
    for: {{ .Values.metrics.prometheusRule.rules.FlaskCeleryBeatNotTicking.for }}
    labels:
      severity: critical
    annotations:
      summary: Celery beat has stopped ticking.
      description: 'Beat last ticked {{`{{ $value | humanizeDuration }}`}} ago ({{`{{ $labels.job }}`}}), more than {{ .Values.metrics.prometheusRule.rules.FlaskCeleryBeatNotTicking.threshold }} s, though it checks its schedule every few seconds (beat_max_loop_interval): periodic tasks are not being sent. Runbook: check the beat pod''s status and logs; a new beat waits redbeat_lock_timeout for a dead leader''s lock in Redis, so check that Redis is reachable from beat.'
      dashboard_url: {{ .Values.metrics.prometheusRule.grafanaUrl }}/d/flask-celery-overview/flask-celery-overview?var-namespace={{`{{ $labels.namespace }}`}}
  - alert: FlaskCeleryRetrySurge
    expr: |
      sum by (job, namespace, queue_name, name) (
        increase(celery_task_retried_total{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}", queue_name!~"None", name!~"None"}[{{ .Values.metrics.prometheusRule.rules.FlaskCeleryRetrySurge.window }}])
      )
      > {{ .Values.metrics.prometheusRule.rules.FlaskCeleryRetrySurge.minRetries }}
      > sum by (job, namespace, queue_name, name) (
        increase(celery_task_received_total{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}", queue_name!~"None", name!~"None"}[{{ .Values.metrics.prometheusRule.rules.FlaskCeleryRetrySurge.window }}])
      )
      * {{ .Values.metrics.prometheusRule.rules.FlaskCeleryRetrySurge.threshold }} / 100
    for: {{ .Values.metrics.prometheusRule.rules.FlaskCeleryRetrySurge.for }}
    labels:
      severity: warning
    annotations:
      summary: Celery tasks are retrying more than usual.
      description: '{{`{{ $value | humanize }}`}} retries of task {{`{{ $labels.name }}`}} on queue {{`{{ $labels.job }}`}}/{{`{{ $labels.queue_name }}`}} in the past {{ .Values.metrics.prometheusRule.rules.FlaskCeleryRetrySurge.window }}, more than {{ .Values.metrics.prometheusRule.rules.FlaskCeleryRetrySurge.threshold }}% of the tasks received. Runbook: see its failures by exception on the Flask Celery / Tasks dashboard; a dependency it calls (SMTP, a webhook endpoint, the database) is likely failing; exhausted retries end as dead letters.'
      dashboard_url: {{ .Values.metrics.prometheusRule.grafanaUrl }}/d/flask-celery-tasks/flask-celery-tasks?var-namespace={{`{{ $labels.namespace }}`}}&var-queue_name={{`{{ $labels.queue_name }}`}}&var-task={{`{{ $labels.name }}`}}
  - alert: FlaskCeleryExporterDown
    expr: |
      absent(flask_celery_exporter_scrape_duration_seconds{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"})
    for: {{ .Values.metrics.prometheusRule.rules.FlaskCeleryExporterDown.for }}
    labels:
      severity: warning
    annotations:
      summary: The flask-celery exporter is not scraped.
      description: 'No series from the flask-celery exporter (job=~"{{ .Values.metrics.prometheusRule.jobRegex }}") for {{ .Values.metrics.prometheusRule.rules.FlaskCeleryExporterDown.for }}: queue lengths, in-flight counts, dead letters and beat''s tick are unknown, and the alerts built on them cannot fire. Runbook: check the exporter Deployment''s pod and logs, and that Prometheus scrapes it (its ServiceMonitor, or the pod''s scrape annotations).'
      dashboard_url: {{ .Values.metrics.prometheusRule.grafanaUrl }}/d/flask-celery-overview/flask-celery-overview
  - alert: FlaskCeleryExporterDependencyDown
    expr: |
      max by (job, namespace, dependency) (flask_celery_exporter_dependency_up{job=~"{{ .Values.metrics.prometheusRule.jobRegex }}"}) == 0
    for: {{ .Values.metrics.prometheusRule.rules.FlaskCeleryExporterDependencyDown.for }}
    labels:
      severity: critical
    annotations:
      summary: The flask-celery exporter cannot reach a dependency.
      description: 'The exporter {{`{{ $labels.job }}`}} cannot reach {{`{{ $labels.dependency }}`}} for {{ .Values.metrics.prometheusRule.rules.FlaskCeleryExporterDependencyDown.for }}; the gauges it reads there are stale. Runbook: if it is the broker, Redis is likely down for everyone (check the redis pod and the API''s 503s); otherwise check the exporter''s credentials and network policy for {{`{{ $labels.dependency }}`}}.'
      dashboard_url: {{ .Values.metrics.prometheusRule.grafanaUrl }}/d/flask-celery-overview/flask-celery-overview?var-namespace={{`{{ $labels.namespace }}`}}
