{{/*
Where the broker is and how to authenticate: the bundled Redis StatefulSet, or an external
Redis whose URLs come from an existing Secret. Web, workers, beat and Flower read the URLs from
the Secret; KEDA reads the password from it through a TriggerAuthentication.
*/}}

{{/*
Secret holding the Redis password and the broker / result backend URLs.
{{ include "flask-celery.redis.secretName" . }}
*/}}
{{- define "flask-celery.redis.secretName" -}}
{{- if .Values.redis.enabled }}
{{- default (include "flask-celery.names.component" (dict "ctx" . "component" "redis")) .Values.redis.auth.existingSecret }}
{{- else }}
{{- .Values.externalRedis.existingSecret }}
{{- end }}
{{- end }}

{{/*
Key names in that Secret: "password", "brokerUrl" or "resultBackend".
{{ include "flask-celery.redis.secretKey" (dict "ctx" $ "key" "brokerUrl") }}
*/}}
{{- define "flask-celery.redis.secretKey" -}}
{{- $src := ternary .ctx.Values.redis.auth .ctx.Values.externalRedis .ctx.Values.redis.enabled }}
{{- get $src (printf "%sKey" .key) }}
{{- end }}

{{/*
Redis address as the KEDA operator sees it, from its own namespace.
{{ include "flask-celery.redis.kedaAddress" . }}
*/}}
{{- define "flask-celery.redis.kedaAddress" -}}
{{- if .Values.redis.enabled }}
{{- printf "%s.%s.svc.%s:6379" (include "flask-celery.names.component" (dict "ctx" . "component" "redis")) .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- printf "%s:%d" .Values.externalRedis.host (int .Values.externalRedis.port) }}
{{- end }}
{{- end }}

{{/*
"true" when clients must speak TLS to Redis.
{{ include "flask-celery.redis.tls" . }}
*/}}
{{- define "flask-celery.redis.tls" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls }}true{{ else }}false{{ end }}
{{- end }}

{{/*
"true" when Redis needs a password (always for the bundled one).
{{ include "flask-celery.redis.hasPassword" . }}
*/}}
{{- define "flask-celery.redis.hasPassword" -}}
{{- if or .Values.redis.enabled .Values.externalRedis.passwordKey }}true{{ else }}false{{ end }}
{{- end }}
