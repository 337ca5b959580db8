{{/*
Object names. Every object is `<fullname>-<component>[-<group>]`, cut to 63 characters
because names end up in label values and DNS names.
*/}}

{{/*
Chart name.
{{ include "flask-celery.names.name" . }}
*/}}
{{- define "flask-celery.names.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-wide prefix: the release name when it already contains the chart name.
{{ include "flask-celery.names.fullname" . }}
*/}}
{{- define "flask-celery.names.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of one component's objects.
{{ include "flask-celery.names.component" (dict "ctx" $ "component" "web") }}
*/}}
{{- define "flask-celery.names.component" -}}
{{- printf "%s-%s" (include "flask-celery.names.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of one worker group's objects.
{{ include "flask-celery.names.worker" (dict "ctx" $ "group" $group.name) }}
*/}}
{{- define "flask-celery.names.worker" -}}
{{- include "flask-celery.names.component" (dict "ctx" .ctx "component" (printf "worker-%s" .group)) }}
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
