{{/*
Pod metadata and the migration that web, worker and beat pods run first.
*/}}

{{/*
Pod annotations: the user's, plus Prometheus scrape hints when metrics are on.
{{ include "flask-celery.pod.annotations" (dict "ctx" $ "metricsPort" 9808) | nindent 8 }}
*/}}
{{- define "flask-celery.pod.annotations" -}}
{{- $a := deepCopy .ctx.Values.podAnnotations }}
{{- if and .ctx.Values.metrics.enabled .metricsPort }}
{{- $_ := set $a "prometheus.io/scrape" "true" }}
{{- $_ := set $a "prometheus.io/port" (toString .metricsPort) }}
{{- $_ := set $a "prometheus.io/path" "/metrics" }}
{{- end }}
{{- with $a }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod labels: the selector labels plus the standard ones and the user's.
{{ include "flask-celery.pod.labels" (dict "ctx" $ "component" "web") | nindent 8 }}
*/}}
{{- define "flask-celery.pod.labels" -}}
{{ include "flask-celery.labels.standard" . }}
{{- with .ctx.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The migration command, shared by the hook Job and the init containers.
{{ include "flask-celery.pod.migrateCommand" . | nindent 12 }}
*/}}
{{- define "flask-celery.pod.migrateCommand" -}}
- flask
- --app
- service.wsgi
- db
- upgrade
{{- end }}

{{/*
initContainers of a web, worker or beat pod. The bundled PostgreSQL does not exist yet when
pre-install hooks run, so with it every pod migrates the database before it starts; the
service holds a PostgreSQL advisory lock while migrating, so pods that start together take
turns and the later ones find the schema at head. An init container that starts before
PostgreSQL accepts connections exits non-zero, and the kubelet runs it again with its restart
back-off (10 s, 20 s, ...) until it succeeds: no shell wait loop needed.
{{- with include "flask-celery.pod.initContainers" (dict "ctx" $ "uid" $uid) }}{{ . | nindent 6 }}{{- end }}
*/}}
{{- define "flask-celery.pod.initContainers" -}}
{{- $v := .ctx.Values }}
{{- if and $v.migrations.enabled (include "flask-celery.database.bundled" .ctx) }}
initContainers:
  - name: migrate
    image: {{ include "flask-celery.images.app" .ctx }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    command: {{- include "flask-celery.pod.migrateCommand" .ctx | nindent 6 }}
    env: {{- include "flask-celery.env.app" (dict "ctx" .ctx "component" "migrations") | trim | nindent 6 }}
    resources: {{- toYaml $v.migrations.resources | nindent 6 }}
    securityContext: {{- include "flask-celery.security.containerSecurityContext" (dict "uid" .uid) | nindent 6 }}
    volumeMounts: {{- include "flask-celery.volumes.appMounts" .ctx | nindent 6 }}
{{- end }}
{{- end }}
