{{/*
Scheduling of a pod: nodeSelector, tolerations, affinity, priorityClassName and topology spread,
each from the component's (or worker group's) own values over the release-wide ones, and by
default the spread of each component's pods across topology domains (topologySpread).
*/}}

{{/*
Scheduling fields of a pod spec. The component's own nodeSelector keys are added to the global
ones; its tolerations, affinity, priorityClassName and topologySpreadConstraints replace the
global ones when set. Without explicit constraints, one per topologySpread key spreads the pods
of this component (and worker group); the migration hook Job (`spread` false) is not spread.
{{- with include "flask-celery.scheduling.pod" (dict "ctx" $ "component" "web") | trim }}{{ . | nindent 6 }}{{- end }}
*/}}
{{- define "flask-celery.scheduling.pod" -}}
{{- $v := .ctx.Values -}}
{{- $own := include "flask-celery.scheduling.own" . | fromYaml -}}
{{- with mergeOverwrite (deepCopy $v.nodeSelector) ($own.nodeSelector | default dict) }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $own.tolerations | default $v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $own.affinity | default $v.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $own.priorityClassName | default $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $own.topologySpreadConstraints | default $v.topologySpreadConstraints }}
topologySpreadConstraints: {{- toYaml . | nindent 2 }}
{{- else }}
{{- if and $v.topologySpread.enabled (ne .spread false) }}
topologySpreadConstraints:
{{- range $v.topologySpread.topologyKeys }}
  - maxSkew: {{ $v.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $v.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels: {{- include "flask-celery.labels.matchLabels" $ | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A component's own values block, as YAML (use with fromYaml): web, beat, flower, migrations,
metrics.exporter, or a worker group's effective settings (flask-celery.workers.settings); empty
for the bundled servers and the test Pod, which take the release-wide values only.
{{ $own := include "flask-celery.scheduling.own" (dict "ctx" $ "component" "worker" "group" "reports") | fromYaml }}
*/}}
{{- define "flask-celery.scheduling.own" -}}
{{- $v := .ctx.Values }}
{{- $own := dict }}
{{- if eq .component "worker" }}
{{- range $v.workers.groups }}
{{- if eq .name $.group }}
{{- $own = include "flask-celery.workers.settings" (dict "ctx" $.ctx "group" .) | fromYaml }}
{{- end }}
{{- end }}
{{- else if eq .component "exporter" }}
{{- $own = $v.metrics.exporter }}
{{- else if has .component (list "web" "beat" "flower" "migrations") }}
{{- $own = get $v .component }}
{{- end }}
{{- toYaml $own }}
{{- end }}
