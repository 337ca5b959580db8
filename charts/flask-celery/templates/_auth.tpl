{{/*
API authentication of the web pods: where FLASK_API_KEYS (the digests of the keys accepted
besides the database's) comes from, and the identity provider whose JWTs web accepts. Only web
authenticates requests, so only its container gets these variables.
*/}}

{{/*
Render "true" when web reads API keys from a Secret: the chart's (auth.apiKeys) or the user's
(auth.existingSecret).
{{ if include "flask-celery.auth.keysFromSecret" . }}...{{ end }}
*/}}
{{- define "flask-celery.auth.keysFromSecret" -}}
{{- if or .Values.auth.apiKeys .Values.auth.existingSecret }}true{{ end }}
{{- end }}

{{/*
Render "true" when the chart generates the API keys Secret: auth.apiKeys without
auth.existingSecret.
{{ if include "flask-celery.auth.chartSecret" . }}...{{ end }}
*/}}
{{- define "flask-celery.auth.chartSecret" -}}
{{- if and .Values.auth.apiKeys (not .Values.auth.existingSecret) }}true{{ end }}
{{- end }}

{{/*
Name of the Secret holding the API keys JSON: auth.existingSecret, else the chart's.
{{ include "flask-celery.auth.secretName" . }}
*/}}
{{- define "flask-celery.auth.secretName" -}}
{{- default (include "flask-celery.names.component" (dict "ctx" . "component" "api-keys")) .Values.auth.existingSecret }}
{{- end }}

{{/*
Key of the API keys JSON in that Secret.
{{ include "flask-celery.auth.secretKey" . }}
*/}}
{{- define "flask-celery.auth.secretKey" -}}
{{- ternary .Values.auth.existingSecretKey "api-keys.json" (ne .Values.auth.existingSecret "") }}
{{- end }}

{{/*
auth.apiKeys as the JSON list FLASK_API_KEYS holds (the schema allows only name, scopes and
sha256 in each entry).
{{ include "flask-celery.auth.apiKeysJson" . }}
*/}}
{{- define "flask-celery.auth.apiKeysJson" -}}
{{- toJson .Values.auth.apiKeys }}
{{- end }}

{{/*
Pod annotation of web that changes with the chart's API keys Secret, so a changed key list
rolls the web pods (they read FLASK_API_KEYS at start); nothing with auth.existingSecret,
whose content the chart does not know.
{{ include "flask-celery.auth.podAnnotations" . }}
*/}}
{{- define "flask-celery.auth.podAnnotations" -}}
{{- if include "flask-celery.auth.chartSecret" . }}
checksum/api-keys: {{ include (print .Template.BasePath "/web/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/*
The web container's authentication variables: FLASK_API_KEYS from the keys Secret, and the
identity provider's settings as plain values (none of them is secret).
{{ include "flask-celery.auth.env" . | trim | nindent 2 }}
*/}}
{{- define "flask-celery.auth.env" -}}
{{- if include "flask-celery.auth.keysFromSecret" . }}
- name: FLASK_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "flask-celery.auth.secretName" . }}
      key: {{ include "flask-celery.auth.secretKey" . }}
{{- end }}
{{- with .Values.auth.jwt }}
{{- if .issuer }}
- name: FLASK_AUTH_JWT_ISSUER
  value: {{ .issuer | quote }}
- name: FLASK_AUTH_JWT_AUDIENCE
  value: {{ .audience | quote }}
- name: FLASK_AUTH_JWT_JWKS_URL
  value: {{ .jwksUrl | quote }}
- name: FLASK_AUTH_JWT_SCOPES_CLAIM
  value: {{ .scopesClaim | quote }}
{{- end }}
{{- end }}
{{- end }}
