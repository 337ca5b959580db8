{{/*
Labels (contract 8). Every object carries the standard set; selectors and the bundled servers'
claim templates keep only name, instance, component and worker group, because Kubernetes never
lets them change and they must not change when the chart or app version does. Pod templates
leave the chart label out, so a chart release alone restarts nothing. The bundled servers are
labelled with their own image's version, not the app's: an app deploy leaves them running.
*/}}

{{/*
Standard labels of an object.
{{ include "flask-celery.labels.standard" (dict "ctx" $ "component" "worker" "group" $group.name) }}
*/}}
{{- define "flask-celery.labels.standard" -}}
{{ include "flask-celery.labels.pod" . }}
helm.sh/chart: {{ include "flask-celery.names.chart" .ctx }}
{{- end }}

{{/*
Labels of a pod template: the standard ones but the chart's.
{{ include "flask-celery.labels.pod" (dict "ctx" $ "component" "redis") }}
*/}}
{{- define "flask-celery.labels.pod" -}}
{{ include "flask-celery.labels.matchLabels" . }}
app.kubernetes.io/version: {{ include "flask-celery.labels.version" . | quote }}
app.kubernetes.io/part-of: flask-celery
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end }}

{{/*
Version label value: the bundled server's image tag for "redis" and "postgresql" (its
flask-celery.servers.tag), else the app's image tag (default: the chart's appVersion).
{{ include "flask-celery.labels.version" (dict "ctx" $ "component" "redis") }}
*/}}
{{- define "flask-celery.labels.version" -}}
{{- if has .component (list "redis" "postgresql") }}
{{- include "flask-celery.servers.tag" (dict "ctx" .ctx "component" .component) | trunc 63 | trimSuffix "-" | trimSuffix "." }}
{{- else }}
{{- .ctx.Values.image.tag | default .ctx.Chart.AppVersion | toString | trunc 63 | trimSuffix "-" | trimSuffix "." }}
{{- end }}
{{- end }}

{{/*
Selector labels: name, instance, component, and the worker group for worker objects.
{{ include "flask-celery.labels.matchLabels" (dict "ctx" $ "component" "web") }}
*/}}
{{- define "flask-celery.labels.matchLabels" -}}
app.kubernetes.io/name: {{ include "flask-celery.names.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .group }}
flask-celery.io/worker-group: {{ .group }}
{{- end }}
{{- end }}

{{/*
Labels that select every pod of the release, whatever its component.
{{ include "flask-celery.labels.release" . }}
*/}}
{{- define "flask-celery.labels.release" -}}
app.kubernetes.io/name: {{ include "flask-celery.names.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
