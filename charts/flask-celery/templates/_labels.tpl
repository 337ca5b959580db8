{{/*
Labels (contract 8). Every object carries the standard set; selectors keep only name,
instance, component and worker group, because a Deployment's selector is immutable and must
not change when the chart or app version does.
*/}}

{{/*
Standard labels of an object.
{{ include "flask-celery.labels.standard" (dict "ctx" $ "component" "worker" "group" $group.name) }}
*/}}
{{- define "flask-celery.labels.standard" -}}
{{ include "flask-celery.labels.matchLabels" . }}
app.kubernetes.io/version: {{ .ctx.Values.image.tag | default .ctx.Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/part-of: flask-celery
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "flask-celery.names.chart" .ctx }}
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
