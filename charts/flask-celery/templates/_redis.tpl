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

{{/*
"true" when the app verifies the external Redis against caBundle (caBundle.verifies lists
redis); KEDA then verifies it against the same bundle.
{{ include "flask-celery.redis.privateCa" . }}
*/}}
{{- define "flask-celery.redis.privateCa" -}}
{{- if and (eq (include "flask-celery.redis.tls" .) "true") (has "redis" .Values.caBundle.verifies) }}true{{ else }}false{{ end }}
{{- end }}

{{/*
"true" when KEDA's redis triggers authenticate through the TriggerAuthentication: a password,
an ACL user, or TLS verified against the private CA.
{{ include "flask-celery.redis.kedaAuth" . }}
*/}}
{{- define "flask-celery.redis.kedaAuth" -}}
{{- $user := and (not .Values.redis.enabled) .Values.externalRedis.username }}
{{- if or (eq (include "flask-celery.redis.hasPassword" .) "true") $user (eq (include "flask-celery.redis.privateCa" .) "true") }}true{{ else }}false{{ end }}
{{- end }}

{{/*
A URL the chart builds for the external Redis, when its key (externalRedis.brokerUrlKey or
externalRedis.resultBackendKey) is empty: no credentials (the app adds FLASK_REDIS_USERNAME and
FLASK_REDIS_PASSWORD, escaped), rediss:// with externalRedis.tls.
{{ include "flask-celery.redis.externalUrl" (dict "ctx" $ "database" 0) }}
*/}}
{{- define "flask-celery.redis.externalUrl" -}}
{{- $r := .ctx.Values.externalRedis }}
{{- printf "%s://%s:%d/%d" (ternary "rediss" "redis" (eq (include "flask-celery.redis.tls" .ctx) "true")) $r.host ($r.port | int) (.database | int) }}
{{- end }}

{{/*
A Kubernetes memory quantity (512Mi, 1Gi, 1.5G, 1000000) in bytes, as an integer; `path` names
the value in the message of a quantity this chart cannot read.
{{ include "flask-celery.redis.quantityBytes" (dict "quantity" "1Gi" "path" "redis.resources.limits.memory") }}
*/}}
{{- define "flask-celery.redis.quantityBytes" -}}
{{- if or (kindIs "float64" .quantity) (kindIs "int64" .quantity) (kindIs "int" .quantity) }}
{{- .quantity | int64 }}
{{- else }}
{{- $q := toString .quantity }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- $suffix := trimPrefix $number $q }}
{{- if or (not $number) (not (hasKey $units $suffix)) }}
{{- fail (printf "%s: %q is not a memory quantity this chart reads (a number with one of the suffixes k, M, G, T, Ki, Mi, Gi, Ti, or none)" .path $q) }}
{{- end }}
{{- mulf ($number | float64) (get $units $suffix) | int64 }}
{{- end }}
{{- end }}

{{/*
The bundled Redis' maxmemory: redis.maxmemory when set, else redis.maxmemoryPercent of the
container's memory limit (in bytes), so that noeviction refuses writes before the kernel
OOM-kills Redis; empty when neither is set.
{{ include "flask-celery.redis.maxmemory" . }}
*/}}
{{- define "flask-celery.redis.maxmemory" -}}
{{- $r := .Values.redis }}
{{- $limit := dig "limits" "memory" "" ($r.resources | default dict) }}
{{- if $r.maxmemory }}
{{- $r.maxmemory }}
{{- else if $limit }}
{{- div (mul (include "flask-celery.redis.quantityBytes" (dict "quantity" $limit "path" "redis.resources.limits.memory") | int64) ($r.maxmemoryPercent | int64)) 100 }}
{{- end }}
{{- end }}

{{/*
A password as the user part of a redis:// URL: every character but the unreserved ones
percent-encoded (a space as %20, not +), so `@:/#%?` cannot end the user part early; kombu and
redis-py decode it back.
{{ include "flask-celery.redis.urlPassword" $password }}
*/}}
{{- define "flask-celery.redis.urlPassword" -}}
{{- urlquery . | replace "+" "%20" }}
{{- end }}
