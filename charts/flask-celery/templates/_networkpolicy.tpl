{{/*
NetworkPolicy pieces. With networkPolicy.enabled the release's pods deny everything
(app/networkpolicy.yaml) and each component's policy opens exactly its own flows.
*/}}

{{/*
Egress rule to Redis: the bundled StatefulSet's pods, or the external Redis' ranges.
{{ include "flask-celery.networkPolicy.redisEgress" . | nindent 4 }}
*/}}
{{- define "flask-celery.networkPolicy.redisEgress" -}}
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels: {{- include "flask-celery.labels.matchLabels" (dict "ctx" . "component" "redis") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- else }}
- to: {{- include "flask-celery.networkPolicy.ipBlocks" (dict "cidrs" .Values.networkPolicy.externalRedis.cidrs) | nindent 4 }}
  ports:
    - port: {{ .Values.externalRedis.port }}
      protocol: TCP
{{- end }}
{{- end }}

{{/*
Egress rule to the database, when it is external (database.existingSecret).
{{ include "flask-celery.networkPolicy.databaseEgress" . | nindent 4 }}
*/}}
{{- define "flask-celery.networkPolicy.databaseEgress" -}}
{{- if .Values.database.existingSecret }}
- to: {{- include "flask-celery.networkPolicy.ipBlocks" (dict "cidrs" .Values.networkPolicy.database.cidrs) | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.database.port }}
      protocol: TCP
{{- end }}
{{- end }}

{{/*
ipBlock peers for a list of ranges; an empty list means any address.
{{ include "flask-celery.networkPolicy.ipBlocks" (dict "cidrs" $cidrs) | nindent 4 }}
*/}}
{{- define "flask-celery.networkPolicy.ipBlocks" -}}
{{- range (.cidrs | default (list "0.0.0.0/0")) }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- end }}

{{/*
Peer for every pod of one namespace, by its kubernetes.io/metadata.name label.
{{ include "flask-celery.networkPolicy.namespace" "monitoring" | nindent 8 }}
*/}}
{{- define "flask-celery.networkPolicy.namespace" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
{{- end }}
