{{/*
Prometheus metrics: which pods serve `/metrics` on which port, how Prometheus finds them (pod
annotations, or ServiceMonitors / PodMonitors of the Prometheus Operator), and the `job` label
each target gets, which the alerts select with metrics.prometheusRule.jobRegex.
*/}}

{{/*
The scrape targets, as YAML (use with fromYaml): under `targets`, one per component that serves
`/metrics`, with its container port's name and number and the Service in front of it. Web
answers on its API port; every worker's main process serves its pool on 9808; the exporter is
the one replica of the broker-level gauges.
{{- range (include "flask-celery.metrics.targets" $ | fromYaml).targets }}
*/}}
{{- define "flask-celery.metrics.targets" -}}
targets:
  - component: web
    port: http
    number: 8000
    service: {{ include "flask-celery.names.component" (dict "ctx" . "component" "web") }}
  - component: worker
    port: metrics
    number: 9808
    service: {{ include "flask-celery.names.component" (dict "ctx" . "component" "worker-metrics") }}
  - component: exporter
    port: metrics
    number: 9808
    service: {{ include "flask-celery.names.component" (dict "ctx" . "component" "exporter") }}
{{- end }}

{{/*
"true" when Prometheus finds the pods by their prometheus.io/* annotations: metrics are on and
neither a ServiceMonitor nor a PodMonitor scrapes them (a Prometheus that honoured both would
scrape every target twice).
{{- if include "flask-celery.metrics.byAnnotations" . }}
*/}}
{{- define "flask-celery.metrics.byAnnotations" -}}
{{- $m := .Values.metrics }}
{{- if and $m.enabled (not $m.serviceMonitor.enabled) (not $m.podMonitor.enabled) }}true{{ end }}
{{- end }}

{{/*
The `job` label the Prometheus Operator gives one target's series: a ServiceMonitor's is the
Service's name, a PodMonitor's `<namespace>/<PodMonitor name>`.
{{ include "flask-celery.metrics.job" (dict "ctx" $ "target" $target "kind" "ServiceMonitor") }}
*/}}
{{- define "flask-celery.metrics.job" -}}
{{- if eq .kind "ServiceMonitor" }}
{{- .target.service }}
{{- else }}
{{- printf "%s/%s" .ctx.Release.Namespace (include "flask-celery.names.component" (dict "ctx" .ctx "component" .target.component)) }}
{{- end }}
{{- end }}

{{/*
A ServiceMonitor or PodMonitor per scrape target, from the values block of that `kind`
(metrics.serviceMonitor or metrics.podMonitor): named after its component, selecting the
component's Service or pods, scraping `/metrics` on the target's named port.
{{ include "flask-celery.metrics.monitors" (dict "ctx" $ "kind" "ServiceMonitor") }}
*/}}
{{- define "flask-celery.metrics.monitors" -}}
{{- $ctx := .ctx }}
{{- $isService := eq .kind "ServiceMonitor" }}
{{- $v := ternary $ctx.Values.metrics.serviceMonitor $ctx.Values.metrics.podMonitor $isService }}
{{- range (include "flask-celery.metrics.targets" $ctx | fromYaml).targets }}
---
apiVersion: monitoring.coreos.com/v1
kind: {{ $.kind }}
metadata:
  name: {{ include "flask-celery.names.component" (dict "ctx" $ctx "component" .component) }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "flask-celery.labels.standard" (dict "ctx" $ctx "component" .component) | nindent 4 }}
    {{- with $v.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels: {{- include "flask-celery.labels.matchLabels" (dict "ctx" $ctx "component" .component) | nindent 6 }}
  {{ ternary "endpoints" "podMetricsEndpoints" $isService }}:
    - port: {{ .port }}
      path: /metrics
      {{- with $v.interval }}
      interval: {{ . }}
      {{- end }}
      {{- with $v.scrapeTimeout }}
      scrapeTimeout: {{ . }}
      {{- end }}
{{- end }}
{{- end }}
