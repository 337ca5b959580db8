{{/*
Pod pieces shared by every component: security contexts, scheduling, volumes.
*/}}

{{/*
Pod securityContext: non-root, fixed uid/gid, seccomp RuntimeDefault.
{{ include "flask-celery.pod.securityContext" (dict "uid" 10001) | nindent 6 }}
*/}}
{{- define "flask-celery.pod.securityContext" -}}
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
{{ include "flask-celery.pod.containerSecurityContext" (dict "uid" 10001) | nindent 12 }}
*/}}
{{- define "flask-celery.pod.containerSecurityContext" -}}
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

{{/*
Pod annotations: the user's, plus Prometheus scrape hints when metrics are on.
{{ include "flask-celery.pod.annotations" (dict "ctx" $ "metricsPort" 9808) | nindent 8 }}
*/}}
{{- define "flask-celery.pod.annotations" -}}
{{- $a := deepCopy .ctx.Values.podAnnotations }}
{{- if and .ctx.Values.metrics.enabled .metricsPort }}
{{- $_ := set $a "prometheus.io/scrape" "true" }}
{{- $_ := set $a "prometheus.io/port" (toString .metricsPort) }}
{{- $_ := set $a "prometheus.io/path" "/metrics" }}
{{- end }}
{{- with $a }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod labels: the selector labels plus the standard ones and the user's.
{{ include "flask-celery.pod.labels" (dict "ctx" $ "component" "web") | nindent 8 }}
*/}}
{{- define "flask-celery.pod.labels" -}}
{{ include "flask-celery.labels.standard" . }}
{{- with .ctx.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Scheduling: node selector, tolerations, affinity, and one spread constraint per topology key
over the pods of this component (and worker group).
{{ include "flask-celery.pod.scheduling" (dict "ctx" $ "component" "web") | nindent 6 }}
*/}}
{{- define "flask-celery.pod.scheduling" -}}
{{- $v := .ctx.Values -}}
{{- with $v.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.topologySpread.enabled }}
topologySpreadConstraints:
{{- range $v.topologySpread.topologyKeys }}
  - maxSkew: {{ $v.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $v.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels: {{- include "flask-celery.labels.matchLabels" $ | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Volumes of an application pod: /tmp, the Prometheus multiprocess directory, and storage
(the shared claim, or an emptyDir). The migrations hook always gets an emptyDir because it runs
before the claim exists on first install; Flower too, since it never reads the files, but the
app it loads creates FLASK_STORAGE_DIR at startup, which a read-only root would refuse.
{{ include "flask-celery.pod.appVolumes" (dict "ctx" $ "component" "web") | nindent 8 }}
*/}}
{{- define "flask-celery.pod.appVolumes" -}}
{{- $p := .ctx.Values.storage.persistence -}}
- name: tmp
  emptyDir: {}
- name: prometheus
  emptyDir: {}
- name: storage
{{- if and $p.enabled (not (has .component (list "migrations" "flower"))) }}
  persistentVolumeClaim:
    claimName: {{ default (include "flask-celery.names.component" (dict "ctx" .ctx "component" "storage")) $p.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}

{{/*
Mounts matching flask-celery.pod.appVolumes.
{{ include "flask-celery.pod.appVolumeMounts" $ | nindent 12 }}
*/}}
{{- define "flask-celery.pod.appVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: prometheus
  mountPath: /var/run/prometheus
- name: storage
  mountPath: {{ .Values.storage.mountPath }}
{{- end }}

{{/*
The migration command, shared by the hook Job and the init containers.
{{ include "flask-celery.pod.migrateCommand" . | nindent 12 }}
*/}}
{{- define "flask-celery.pod.migrateCommand" -}}
- flask
- --app
- service.wsgi
- db
- upgrade
{{- end }}

{{/*
initContainers of a web, worker or beat pod. With the SQLite default (no
database.existingSecret) each pod has its own database file, which the pre-install hook cannot
reach, so the pod migrates its own file before it starts. With storage.persistence.enabled the
pods share one file; a pod that loses the race on first install fails its init container once
and succeeds on the retry.
{{- with include "flask-celery.pod.initContainers" (dict "ctx" $ "uid" $uid) }}{{ . | nindent 6 }}{{- end }}
*/}}
{{- define "flask-celery.pod.initContainers" -}}
{{- $v := .ctx.Values }}
{{- if and $v.migrations.enabled (not $v.database.existingSecret) }}
initContainers:
  - name: migrate
    image: {{ include "flask-celery.images.app" .ctx }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    command: {{- include "flask-celery.pod.migrateCommand" .ctx | nindent 6 }}
    env: {{- include "flask-celery.env.app" (dict "ctx" .ctx "component" "migrations") | trim | nindent 6 }}
    resources: {{- toYaml $v.migrations.resources | nindent 6 }}
    securityContext: {{- include "flask-celery.pod.containerSecurityContext" (dict "uid" .uid) | nindent 6 }}
    volumeMounts: {{- include "flask-celery.pod.appVolumeMounts" .ctx | nindent 6 }}
{{- end }}
{{- end }}

{{/*
checkov skip annotations that hold for every application pod, each with its reason.
{{ include "flask-celery.pod.checkovSkips" . | nindent 4 }}
*/}}
{{- define "flask-celery.pod.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_35=The service reads its configuration from the environment (12-factor, design contract 4); values come from Secrets via secretKeyRef, never from a ConfigMap.
{{- if not .Values.image.digest }}
checkov.io/skip2: CKV_K8S_43=The image is pinned by tag (the chart's appVersion); set image.digest to pin by digest.
{{- end }}
{{- if ne .Values.image.pullPolicy "Always" }}
checkov.io/skip3: CKV_K8S_15=Release tags are immutable, so IfNotPresent avoids a registry round trip on every start; set image.pullPolicy to Always to change it.
{{- end }}
{{- if not .Values.networkPolicy.enabled }}
checkov.io/skip6: CKV2_K8S_6=NetworkPolicies are opt-in because their peers depend on the cluster (ingress, KEDA and Prometheus namespaces); set networkPolicy.enabled to true in production.
{{- end }}
{{- end }}
