{{/*
Which database the application uses: an external PostgreSQL whose SQLAlchemy URL is in
database.existingSecret, or the bundled development PostgreSQL, and where its URL is.
*/}}

{{/*
"true" when the release runs its own PostgreSQL (postgresql.enabled and no
database.existingSecret), empty otherwise: an existing Secret wins, and NOTES.txt says so when
both are set. flask-celery.validate.database refuses neither.
{{- if include "flask-celery.database.bundled" . }}
*/}}
{{- define "flask-celery.database.bundled" -}}
{{- if and .Values.postgresql.enabled (not .Values.database.existingSecret) }}true{{ end }}
{{- end }}

{{/*
Secret holding the application's SQLAlchemy URL: database.existingSecret, else the bundled
PostgreSQL's (the chart's, or postgresql.auth.existingSecret).
{{ include "flask-celery.database.secretName" . }}
*/}}
{{- define "flask-celery.database.secretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- default (include "flask-celery.names.component" (dict "ctx" . "component" "postgresql")) .Values.postgresql.auth.existingSecret }}
{{- end }}
{{- end }}

{{/*
Key of the SQLAlchemy URL in that Secret.
{{ include "flask-celery.database.secretKey" . }}
*/}}
{{- define "flask-celery.database.secretKey" -}}
{{- ternary .Values.database.secretKey .Values.postgresql.auth.databaseUrlKey (ne .Values.database.existingSecret "") }}
{{- end }}
