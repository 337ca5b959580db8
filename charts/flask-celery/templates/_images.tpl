{{/*
Image references.
*/}}

{{/*
`repository:tag` or `repository@digest` of an image block ({repository, tag, digest}).
{{ include "flask-celery.images.ref" (dict "image" .Values.image "default" .Chart.AppVersion) }}
*/}}
{{- define "flask-celery.images.ref" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (toString (.image.tag | default .default)) }}
{{- end }}
{{- end }}

{{/*
The application image, which runs every role.
{{ include "flask-celery.images.app" . }}
*/}}
{{- define "flask-celery.images.app" -}}
{{- include "flask-celery.images.ref" (dict "image" .Values.image "default" .Chart.AppVersion) }}
{{- end }}

{{/*
imagePullSecrets of a pod spec.
{{ include "flask-celery.images.pullSecrets" . }}
*/}}
{{- define "flask-celery.images.pullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}
