{{/*
Security contexts: every pod runs non-root under a fixed uid/gid with seccomp RuntimeDefault,
and every container on a read-only root with no capabilities and no privilege escalation.
*/}}

{{/*
Pod securityContext: non-root, fixed uid/gid, seccomp RuntimeDefault.
{{ include "flask-celery.security.podSecurityContext" (dict "uid" $uid) | nindent 6 }}
*/}}
{{- define "flask-celery.security.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container securityContext: read-only root, no capabilities, no privilege escalation.
{{ include "flask-celery.security.containerSecurityContext" (dict "uid" $uid) | nindent 12 }}
*/}}
{{- define "flask-celery.security.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}
