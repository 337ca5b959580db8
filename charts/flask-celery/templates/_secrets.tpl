{{/*
Secrets the chart generates: their passwords, kept across upgrades, and the name of the
application's own Secret.
*/}}

{{/*
A password for a Secret the chart generates: the value given, else the one already stored
under `key` in the Secret `name` (so an upgrade keeps what the server or clients were set up
with), else a new random one of `length` characters. `lookup` finds nothing under
`helm template`, hence the values that fix a password.
{{ $password := include "flask-celery.secrets.password" (dict "ctx" $ "name" $name "key" "redis-password" "value" $a.password "length" 32) }}
*/}}
{{- define "flask-celery.secrets.password" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $old := lookup "v1" "Secret" .ctx.Release.Namespace .name }}
{{- if and $old $old.data (hasKey $old.data .key) }}
{{- index $old.data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Secret holding FLASK_SECRET_KEY (and the SMTP password when given as a value).
{{ include "flask-celery.secrets.appSecretName" . }}
*/}}
{{- define "flask-celery.secrets.appSecretName" -}}
{{- default (include "flask-celery.names.component" (dict "ctx" . "component" "app")) .Values.app.existingSecret }}
{{- end }}
