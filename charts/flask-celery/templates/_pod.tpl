{{/*
The application pod: web, workers, beat, Flower, the exporter and the migration Job run the one
image in one pod scaffold, with the same security, scheduling and volumes; each caller gives only
its container's own fields. Also the pod metadata, and the migration that pods run first when the
database is the bundled PostgreSQL.
*/}}

{{/*
Pod template of an application workload, as the value of a Deployment's or Job's `template`:
labels and annotations, the ServiceAccount without a token, the pod securityContext, image pull
Secrets, scheduling, init containers, the one container and the app volumes. Every pod and
container runs as image.runAsUser (user, group and fsGroup): the Dockerfile's USER, which owns
the directories the image creates for storage and metrics. Arguments:
  component                      web, worker, beat, flower, exporter or migrations; names the
                                 container
  group                          the worker group's name (workers only)
  container                      YAML of the container's own fields: command, ports, env,
                                 probes, resources
  metricsPort                    adds the Prometheus scrape annotations when metrics are
                                 scraped by annotation
  annotations                    YAML of the component's own pod annotations (checksums of
                                 the Secrets it reads at start), optional
  terminationGracePeriodSeconds  set on the pod when given
The component's own values (flask-celery.scheduling.own) add to the release-wide ones: pod
annotations and labels, scheduling, priorityClassName, extra volumes, init containers and
sidecars, and, on its container, envFrom sources, volume mounts and lifecycle hooks.
The migration hook Job (component "migrations") runs once, before the release's regular
objects exist: restartPolicy Never, its own hook ServiceAccount (named like the Job), no topology
spread, and only the user's pod annotations; like Flower it has no init containers, and its
storage is an emptyDir (flask-celery.volumes.app). The hook Job and the test Pod ("web-test")
run to completion, so they get no extra init containers or sidecars.
{{ include "flask-celery.pod.app" (dict "ctx" $ "component" "web" "metricsPort" 8000 "terminationGracePeriodSeconds" 30 "container" (include "flask-celery.web.container" .)) | nindent 4 }}
*/}}
{{- define "flask-celery.pod.app" -}}
{{- $uid := .ctx.Values.image.runAsUser | int }}
{{- $hook := eq .component "migrations" }}
{{- $selector := dict "ctx" .ctx "component" .component "group" .group -}}
{{- $own := include "flask-celery.scheduling.own" $selector | fromYaml }}
{{- $longRunning := not (has .component (list "migrations" "web-test")) -}}
metadata:
  labels: {{- include "flask-celery.pod.labels" $selector | nindent 4 }}
  {{- with include "flask-celery.pod.annotations" (dict "ctx" .ctx "metricsPort" .metricsPort "own" .annotations "user" $own.podAnnotations) }}
  annotations: {{- . | nindent 4 }}
  {{- end }}
spec:
  {{- if $hook }}
  restartPolicy: Never
  serviceAccountName: {{ include "flask-celery.names.component" $selector }}
  {{- else }}
  serviceAccountName: {{ include "flask-celery.names.serviceAccount" .ctx }}
  {{- end }}
  automountServiceAccountToken: false
  {{- if hasKey . "terminationGracePeriodSeconds" }}
  terminationGracePeriodSeconds: {{ .terminationGracePeriodSeconds }}
  {{- end }}
  securityContext: {{- include "flask-celery.security.podSecurityContext" (dict "uid" $uid) | nindent 4 }}
  {{- with include "flask-celery.images.pullSecrets" .ctx }}{{ . | nindent 2 }}{{- end }}
  {{- with include "flask-celery.scheduling.pod" (merge (dict "spread" (not $hook)) $selector) | trim }}{{ . | nindent 2 }}{{- end }}
  {{- $init := include "flask-celery.pod.initContainers" (dict "ctx" .ctx "component" .component "uid" $uid "own" $own) | fromYamlArray }}
  {{- if $longRunning }}
  {{- $init = concat $init .ctx.Values.extraInitContainers ($own.extraInitContainers | default list) }}
  {{- end }}
  {{- with $init }}
  initContainers: {{- toYaml . | nindent 4 }}
  {{- end }}
  containers: {{- include "flask-celery.pod.container" (dict "ctx" .ctx "name" .component "uid" $uid "fields" .container "own" $own "main" true) | nindent 4 }}
    {{- if $longRunning }}
    {{- with concat .ctx.Values.extraContainers ($own.extraContainers | default list) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- end }}
  volumes: {{- include "flask-celery.volumes.app" $selector | nindent 4 }}
    {{- with concat .ctx.Values.extraVolumes ($own.extraVolumes | default list) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
One application container, as a list item: the app image, its securityContext and the app
volume mounts around the caller's own `fields` (command, ports, env, probes, resources), with
the envFrom sources and volume mounts of app.extraEnvFrom, extraVolumeMounts and the
component's own values (`own`); the pod's main container (`main`) also gets the component's
lifecycle hooks.
{{ include "flask-celery.pod.container" (dict "ctx" $ "name" "web" "uid" $uid "fields" $fields "own" $own "main" true) | nindent 4 }}
*/}}
{{- define "flask-celery.pod.container" -}}
{{- $own := .own | default dict -}}
- name: {{ .name }}
  image: {{ include "flask-celery.images.app" .ctx }}
  imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
  {{- .fields | trim | nindent 2 }}
  {{- with concat .ctx.Values.app.extraEnvFrom ($own.extraEnvFrom | default list) }}
  envFrom: {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .main }}
  {{- with $own.lifecycle }}
  lifecycle: {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  securityContext: {{- include "flask-celery.security.containerSecurityContext" (dict "uid" .uid) | nindent 4 }}
  volumeMounts: {{- include "flask-celery.volumes.appMounts" .ctx | nindent 4 }}
    {{- with concat .ctx.Values.extraVolumeMounts ($own.extraVolumeMounts | default list) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
Pod annotations: the user's (podAnnotations, then the component's own podAnnotations, `user`),
the component's checksums (`own`, YAML, optional), plus Prometheus scrape hints when Prometheus
finds the pods by annotation (flask-celery.metrics.byAnnotations).
{{ include "flask-celery.pod.annotations" (dict "ctx" $ "metricsPort" 9808) | nindent 8 }}
*/}}
{{- define "flask-celery.pod.annotations" -}}
{{- $a := mergeOverwrite (deepCopy .ctx.Values.podAnnotations) (deepCopy (.user | default dict)) (fromYaml (default "" .own)) }}
{{- if and (include "flask-celery.metrics.byAnnotations" .ctx) .metricsPort }}
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
{{ include "flask-celery.labels.pod" . }}
{{- with mergeOverwrite (deepCopy .ctx.Values.podLabels) ((include "flask-celery.scheduling.own" . | fromYaml).podLabels | default dict) }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The migration container's own fields (`flask db upgrade`, the database URL, its resources),
shared by the hook Job and the init containers.
{{ include "flask-celery.pod.migrate" $ }}
*/}}
{{- define "flask-celery.pod.migrate" -}}
command:
  - flask
  - --app
  - service.wsgi
  - db
  - upgrade
env: {{- include "flask-celery.env.app" (dict "ctx" . "component" "migrations") | trim | nindent 2 }}
resources: {{- toYaml .Values.migrations.resources | nindent 2 }}
{{- end }}

{{/*
The chart's init container of a web, worker or beat pod, as a YAML list (empty when none) (Flower only talks to the broker, the exporter
reads the database only when scraped and reports it down while it cannot, and the hook Job is
itself the migration). The bundled PostgreSQL does not exist yet when pre-install hooks run, so
with it every pod migrates the database before it starts; the service holds a PostgreSQL
advisory lock while migrating, so pods that start together take turns and the later ones find
the schema at head. An init container that starts before PostgreSQL accepts connections exits
non-zero, and the kubelet runs it again with its restart back-off (10 s, 20 s, ...) until it
succeeds: no shell wait loop needed.
{{ $init := include "flask-celery.pod.initContainers" (dict "ctx" $ "component" "web" "uid" $uid "own" $own) | fromYamlArray }}
*/}}
{{- define "flask-celery.pod.initContainers" -}}
{{- $v := .ctx.Values }}
{{- if and $v.migrations.enabled (include "flask-celery.database.bundled" .ctx) (has .component (list "web" "worker" "beat")) }}
{{- include "flask-celery.pod.container" (dict "ctx" .ctx "name" "migrate" "uid" .uid "fields" (include "flask-celery.pod.migrate" .ctx) "own" .own) }}
{{- end }}
{{- end }}
