{{/*
Scheduling of a pod: the release-wide nodeSelector, tolerations and affinity, and the spread of
each component's pods across topology domains.
*/}}

{{/*
Scheduling: node selector, tolerations, affinity, and one spread constraint per topology key
over the pods of this component (and worker group).
{{- with include "flask-celery.scheduling.pod" (dict "ctx" $ "component" "web") | trim }}{{ . | nindent 6 }}{{- end }}
*/}}
{{- define "flask-celery.scheduling.pod" -}}
{{- $v := .ctx.Values -}}
{{- include "flask-celery.scheduling.nodes" .ctx }}
{{- with $v.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.topologySpread.enabled }}
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

{{/*
Node selector and tolerations only: which nodes a pod may run on. The migration hook Job
uses only these.
{{- with include "flask-celery.scheduling.nodes" . | trim }}{{ . | nindent 6 }}{{- end }}
*/}}
{{- define "flask-celery.scheduling.nodes" -}}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
