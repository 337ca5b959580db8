{{/*
Object names. Every object is `<fullname>-<component>`, within the limit of its kind: 63
characters (label values, DNS-1035 Service names), 52 for the bundled servers' StatefulSets,
whose pods carry a `controller-revision-hash` label of the name plus an 11-character suffix. A
name that would be longer keeps its component whole and cuts the release prefix, adding a short
hash of the full name so that cut names stay unique. _validate.tpl refuses what cannot fit.
*/}}

{{/*
Length limit of a component's names: 52 for the bundled servers, whose StatefulSet, Services,
ConfigMap and Secret share one name, else 63.
{{ include "flask-celery.names.limit" "redis" }}
*/}}
{{- define "flask-celery.names.limit" -}}
{{- if has . (list "redis" "postgresql") }}52{{ else }}63{{ end }}
{{- end }}

{{/*
`<prefix>-<suffix>` (or the prefix alone when suffix is empty) within `limit` characters:
unchanged when it fits, else the prefix cut to make room for `-<8-character hash>` of the full
name before the suffix.
{{ include "flask-celery.names.fit" (dict "prefix" $fullname "suffix" "web" "limit" 63) }}
*/}}
{{- define "flask-celery.names.fit" -}}
{{- $full := ternary (printf "%s-%s" .prefix .suffix) .prefix (ne .suffix "") }}
{{- $limit := int .limit }}
{{- if le (len $full) $limit }}
{{- $full }}
{{- else }}
{{- $tail := ternary (printf "-%s-%s" ($full | sha256sum | trunc 8) .suffix) (printf "-%s" ($full | sha256sum | trunc 8)) (ne .suffix "") }}
{{- $room := sub $limit (len $tail) | int }}
{{- printf "%s%s" (.prefix | trunc (max $room 0 | int) | trimSuffix "-") $tail }}
{{- end }}
{{- end }}

{{/*
Chart name.
{{ include "flask-celery.names.name" . }}
*/}}
{{- define "flask-celery.names.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-wide prefix, uncut: fullnameOverride, else the release name when it already contains
the chart name, else `<release>-<chart name>`. Object names cut it to their limit.
{{ include "flask-celery.names.prefix" . }}
*/}}
{{- define "flask-celery.names.prefix" -}}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride }}
{{- else if contains $name .Release.Name }}
{{- .Release.Name }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name }}
{{- end }}
{{- end }}

{{/*
Name of the release-wide objects (the ServiceAccount): the prefix within 63 characters.
{{ include "flask-celery.names.fullname" . }}
*/}}
{{- define "flask-celery.names.fullname" -}}
{{- include "flask-celery.names.fit" (dict "prefix" (include "flask-celery.names.prefix" .) "suffix" "" "limit" 63) }}
{{- end }}

{{/*
Name of one component's objects, e.g. "web", "redis-headless", "worker-<group>-internet".
{{ include "flask-celery.names.component" (dict "ctx" $ "component" "web") }}
*/}}
{{- define "flask-celery.names.component" -}}
{{- include "flask-celery.names.fit" (dict "prefix" (include "flask-celery.names.prefix" .ctx) "suffix" .component "limit" (include "flask-celery.names.limit" .component)) }}
{{- end }}

{{/*
Name of one worker group's objects; `suffix` (optional) names a second object of the group.
{{ include "flask-celery.names.worker" (dict "ctx" $ "group" $group.name) }}
{{ include "flask-celery.names.worker" (dict "ctx" $ "group" $group.name "suffix" "internet") }}
*/}}
{{- define "flask-celery.names.worker" -}}
{{- include "flask-celery.names.component" (dict "ctx" .ctx "component" (trimSuffix "-" (printf "worker-%s-%s" .group (default "" .suffix)))) }}
{{- end }}

{{/*
Chart label value.
{{ include "flask-celery.names.chart" . }}
*/}}
{{- define "flask-celery.names.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
ServiceAccount the pods run as.
{{ include "flask-celery.names.serviceAccount" . }}
*/}}
{{- define "flask-celery.names.serviceAccount" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flask-celery.names.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
