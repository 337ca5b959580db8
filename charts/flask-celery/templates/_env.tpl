{{/*
Environment lists of the application containers: the part they all share (web, workers, beat,
Flower, the exporter, migrations), a worker group's task settings, and a publisher's time limits.
Non-secret settings are literal values, so one rendered manifest shows the whole configuration;
secrets come only through secretKeyRef, never from a ConfigMap. Celery settings use the
FLASK_CELERY__ prefix that the service folds into its CELERY config (contract 4).
*/}}

{{/*
The shared env list items; the caller appends the component's own variables. Every process
that publishes or runs tasks counts them, so every one learns whether metrics are on and the
`hostname` label to count under.
Migrations (the hook Job, or the init containers) need only the database URL: the hook runs
before the chart's own Secrets exist on first install, and only runs with
database.existingSecret, a user-provided Secret.
{{ include "flask-celery.env.app" (dict "ctx" $ "component" "web") | nindent 12 }}
*/}}
{{- define "flask-celery.env.app" -}}
{{- $v := .ctx.Values }}
{{- $hook := eq .component "migrations" }}
- name: FLASK_LOG_FORMAT
  value: json
- name: PROMETHEUS_MULTIPROC_DIR
  value: /var/run/prometheus
- name: FLASK_METRICS_ENABLED
  value: {{ $v.metrics.enabled | toString | quote }}
{{- with $v.metrics.hostnameLabel }}
- name: FLASK_METRICS_HOSTNAME_LABEL
  value: {{ . | quote }}
{{- end }}
- name: FLASK_STORAGE_DIR
  value: {{ printf "%s/storage" $v.storage.mountPath | quote }}
- name: FLASK_SQLALCHEMY_DATABASE_URI
  valueFrom:
    secretKeyRef:
      name: {{ include "flask-celery.database.secretName" .ctx }}
      key: {{ include "flask-celery.database.secretKey" .ctx }}
- name: FLASK_CELERY__BROKER_TRANSPORT_OPTIONS__visibility_timeout
  value: {{ $v.celery.visibilityTimeoutSeconds | int | quote }}
{{- if not $hook }}
- name: FLASK_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "flask-celery.secrets.appSecretName" .ctx }}
      key: {{ ternary $v.app.existingSecretKey "secret-key" (ne $v.app.existingSecret "") }}
{{- range $setting, $key := dict "FLASK_CELERY__BROKER_URL" "brokerUrl" "FLASK_CELERY__RESULT_BACKEND" "resultBackend" }}
- name: {{ $setting }}
{{- $secretKey := include "flask-celery.redis.secretKey" (dict "ctx" $.ctx "key" $key) }}
{{- if $secretKey }}
  valueFrom:
    secretKeyRef:
      name: {{ include "flask-celery.redis.secretName" $.ctx }}
      key: {{ $secretKey }}
{{- else }}
  value: {{ include "flask-celery.redis.externalUrl" (dict "ctx" $.ctx "database" (ternary $v.redis.brokerDatabase $v.redis.resultDatabase (eq $key "brokerUrl"))) | quote }}
{{- end }}
{{- end }}
{{- if not $v.redis.enabled }}
{{- with $v.externalRedis.username }}
- name: FLASK_REDIS_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if $v.externalRedis.passwordKey }}
- name: FLASK_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.externalRedis.existingSecret }}
      key: {{ $v.externalRedis.passwordKey }}
{{- end }}
{{- if $v.externalRedis.tls }}
- name: FLASK_REDIS_REQUIRE_TLS
  value: "true"
{{- end }}
{{- end }}
{{- if $v.smtp.host }}
- name: FLASK_SMTP_HOST
  value: {{ $v.smtp.host | quote }}
- name: FLASK_SMTP_PORT
  value: {{ $v.smtp.port | int | quote }}
- name: FLASK_SMTP_TLS
  value: {{ $v.smtp.tls | quote }}
{{- end }}
{{- if $v.smtp.username }}
- name: FLASK_SMTP_USERNAME
  value: {{ $v.smtp.username | quote }}
{{- end }}
{{- if or $v.smtp.existingSecret $v.smtp.password }}
- name: FLASK_SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default (include "flask-celery.names.component" (dict "ctx" .ctx "component" "app")) $v.smtp.existingSecret }}
      key: {{ ternary $v.smtp.existingSecretKey "smtp-password" (ne $v.smtp.existingSecret "") }}
{{- end }}
- name: FLASK_MAIL_FROM
  value: {{ $v.smtp.from | quote }}
- name: FLASK_WEBHOOK_ALLOWED_NETWORKS
  value: {{ toJson $v.webhooks.allowedNetworks | quote }}
{{- include "flask-celery.env.caFiles" .ctx }}
{{- end }}
{{- with $v.app.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Task execution settings of one worker group (its effective settings, from
flask-celery.workers.settings). Time limits go through the app configuration because every task
copies task_time_limit when it is bound, and a request prefers the task's limit to the pool's, so
a worker's --time-limit flag would never apply. The delivery profile sets acks_late and
reject_on_worker_lost together: crashSafe requeues the task of a worker that died,
fireAndForget acknowledges on receipt and loses it.
{{ include "flask-celery.env.worker" (dict "ctx" $ "group" $g) | trim | nindent 12 }}
*/}}
{{- define "flask-celery.env.worker" -}}
{{- $retry := .ctx.Values.celery.retry }}
{{- $crashSafe := eq .group.profile "crashSafe" | toString | quote }}
- name: FLASK_CELERY__TASK_TIME_LIMIT
  value: {{ .group.timeLimitSeconds | int | quote }}
- name: FLASK_CELERY__TASK_SOFT_TIME_LIMIT
  value: {{ .group.softTimeLimitSeconds | int | quote }}
- name: FLASK_CELERY__TASK_ACKS_LATE
  value: {{ $crashSafe }}
- name: FLASK_CELERY__TASK_REJECT_ON_WORKER_LOST
  value: {{ $crashSafe }}
- name: FLASK_RETRY_MAX_RETRIES
  value: {{ $retry.maxRetries | int | quote }}
- name: FLASK_RETRY_BACKOFF_BASE
  value: {{ toJson $retry.backoffBaseSeconds | quote }}
- name: FLASK_RETRY_BACKOFF_MAX
  value: {{ toJson $retry.backoffMaxSeconds | quote }}
{{- if .ctx.Values.keda.enabled }}
- name: FLASK_KEDA_DATABASE_INDEX
  value: {{ .ctx.Values.redis.brokerDatabase | int | quote }}
{{- end }}
{{- end }}

{{/*
Time limits of a process that publishes tasks (web, beat): the longest hard and soft limits of
all worker groups. Messages do not carry the publisher's limits (the service strips them),
but the API bounds countdowns by the visibility timeout minus the publisher's task_time_limit,
which must therefore be the longest limit any group runs a task under.
{{ include "flask-celery.env.publisherTimeLimits" $ | trim | nindent 12 }}
*/}}
{{- define "flask-celery.env.publisherTimeLimits" -}}
{{- $hard := 0 }}
{{- $soft := 0 }}
{{- range $group := .Values.workers.groups }}
{{- $g := include "flask-celery.workers.settings" (dict "ctx" $ "group" $group) | fromYaml }}
{{- $hard = max $hard ($g.timeLimitSeconds | int) }}
{{- $soft = max $soft ($g.softTimeLimitSeconds | int) }}
{{- end }}
- name: FLASK_CELERY__TASK_TIME_LIMIT
  value: {{ $hard | quote }}
- name: FLASK_CELERY__TASK_SOFT_TIME_LIMIT
  value: {{ $soft | quote }}
{{- end }}

{{/*
The CA bundle (caBundle) as the CA file of each connection in caBundle.verifies; a connection
not listed keeps the system's CAs (each setting replaces them, it does not add to them).
{{- include "flask-celery.env.caFiles" $ }}
*/}}
{{- define "flask-celery.env.caFiles" -}}
{{- $ca := .Values.caBundle }}
{{- if or $ca.configMap $ca.secret }}
{{- range $connection, $setting := dict "smtp" "FLASK_SMTP_CA_FILE" "webhooks" "FLASK_WEBHOOK_CA_FILE" "jwt" "FLASK_AUTH_JWT_CA_FILE" "redis" "FLASK_REDIS_CA_FILE" }}
{{- if has $connection $ca.verifies }}
- name: {{ $setting }}
  value: {{ include "flask-celery.volumes.caFile" $ }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
