{{/*
Pod pieces shared by every component: security contexts, scheduling, volumes, checkov skips,
and the pieces the bundled servers' StatefulSets share.
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
initContainers of a web, worker or beat pod. The bundled PostgreSQL does not exist yet when
pre-install hooks run, so with it every pod migrates the database before it starts; the
service holds a PostgreSQL advisory lock while migrating, so pods that start together take
turns and the later ones find the schema at head. An init container that starts before
PostgreSQL accepts connections exits non-zero, and the kubelet runs it again with its restart
back-off (10 s, 20 s, ...) until it succeeds: no shell wait loop needed.
{{- with include "flask-celery.pod.initContainers" (dict "ctx" $ "uid" $uid) }}{{ . | nindent 6 }}{{- end }}
*/}}
{{- define "flask-celery.pod.initContainers" -}}
{{- $v := .ctx.Values }}
{{- if and $v.migrations.enabled (include "flask-celery.database.bundled" .ctx) }}
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
{{- include "flask-celery.pod.commonCheckovSkips" (dict "ctx" . "image" .Values.image "key" "image") }}
{{- end }}

{{/*
checkov skips of every workload, about its image block ({repository, tag, digest, pullPolicy},
at values path `key`) and the opt-in NetworkPolicies; each only while its check would fail.
{{- include "flask-celery.pod.commonCheckovSkips" (dict "ctx" $ "image" .Values.redis.image "key" "redis.image") }}
*/}}
{{- define "flask-celery.pod.commonCheckovSkips" -}}
{{- if not .image.digest }}
checkov.io/skip2: CKV_K8S_43=The image is pinned by tag; set {{ .key }}.digest to pin it by digest.
{{- end }}
{{- if ne .image.pullPolicy "Always" }}
checkov.io/skip3: CKV_K8S_15=Pinned tags are not re-pulled, so IfNotPresent avoids a registry round trip on every start; set {{ .key }}.pullPolicy to Always to change it.
{{- end }}
{{- if not .ctx.Values.networkPolicy.enabled }}
checkov.io/skip6: CKV2_K8S_6=NetworkPolicies are opt-in because their peers depend on the cluster (ingress, KEDA and Prometheus namespaces); set networkPolicy.enabled to true in production.
{{- end }}
{{- end }}

{{/*
Bundled servers (Redis, PostgreSQL): one-replica StatefulSets of an official image, each with
a values block holding image, persistence and runAsUser.
*/}}

{{/*
checkov skips of a bundled server's StatefulSet: the official image's own user (a uid below
10000), then the image and NetworkPolicy skips.
{{- include "flask-celery.pod.serverCheckovSkips" (dict "ctx" $ "key" "redis" "image" "Redis" "user" "redis") | trim | nindent 4 }}
*/}}
{{- define "flask-celery.pod.serverCheckovSkips" -}}
{{- $server := get .ctx.Values .key }}
{{- if lt ($server.runAsUser | int) 10000 }}
checkov.io/skip4: CKV_K8S_40=The official {{ .image }} image's {{ .user }} user is uid {{ $server.runAsUser }}, which owns its data directory; set {{ .key }}.runAsUser to change it.
{{- end }}
{{- include "flask-celery.pod.commonCheckovSkips" (dict "ctx" .ctx "image" $server.image "key" (printf "%s.image" .key)) }}
{{- end }}

{{/*
Probes of a bundled server, all running one exec command: startup allows five minutes (a first
initialisation, a long recovery), then liveness and readiness take over.
{{- include "flask-celery.pod.serverProbes" $ping | trim | nindent 10 }}
*/}}
{{- define "flask-celery.pod.serverProbes" -}}
{{- range $kind, $timing := dict "startup" (list 5 60) "liveness" (list 10 3) "readiness" (list 5 3) }}
{{ $kind }}Probe:
  exec:
    command: {{- toYaml $ | nindent 6 }}
  periodSeconds: {{ index $timing 0 }}
  timeoutSeconds: 5
  failureThreshold: {{ index $timing 1 }}
{{- end }}
{{- end }}

{{/*
Services of a bundled server: a ClusterIP Service for clients and the headless one its
StatefulSet names; both target the container port named after the component.
{{ include "flask-celery.pod.serverServices" (dict "ctx" $ "component" "redis" "port" 6379) }}
*/}}
{{- define "flask-celery.pod.serverServices" -}}
{{- $name := include "flask-celery.names.component" (dict "ctx" .ctx "component" .component) }}
{{- range $suffix := list "" "-headless" }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}{{ $suffix }}
  namespace: {{ $.ctx.Release.Namespace }}
  labels: {{- include "flask-celery.labels.standard" (dict "ctx" $.ctx "component" $.component) | nindent 4 }}
spec:
  {{- if $suffix }}
  clusterIP: None
  {{- else }}
  type: ClusterIP
  {{- end }}
  selector: {{- include "flask-celery.labels.matchLabels" (dict "ctx" $.ctx "component" $.component) | nindent 4 }}
  ports:
    - name: {{ $.component }}
      port: {{ $.port }}
      targetPort: {{ $.component }}
      protocol: TCP
{{- end }}
{{- end }}

{{/*
The `data` volume of a bundled server: a claim template of its StatefulSet when its
persistence is on, else an emptyDir in the pod's volumes. `part` picks which one to render.
{{- with include "flask-celery.pod.serverData" (dict "ctx" $ "component" "redis" "part" "volume") | trim }}{{ . | nindent 8 }}{{- end }}
{{- with include "flask-celery.pod.serverData" (dict "ctx" $ "component" "redis" "part" "claim") | trim }}{{ . | nindent 2 }}{{- end }}
*/}}
{{- define "flask-celery.pod.serverData" -}}
{{- $p := (get .ctx.Values .component).persistence }}
{{- if and (eq .part "volume") (not $p.enabled) }}
- name: data
  emptyDir: {}
{{- else if and (eq .part "claim") $p.enabled }}
volumeClaimTemplates:
  - apiVersion: v1
    kind: PersistentVolumeClaim
    metadata:
      name: data
      labels: {{- include "flask-celery.labels.standard" (dict "ctx" .ctx "component" .component) | nindent 8 }}
    spec:
      accessModes:
        - ReadWriteOnce
      {{- with $p.storageClass }}
      storageClassName: {{ . }}
      {{- end }}
      resources:
        requests:
          storage: {{ $p.size }}
{{- end }}
{{- end }}
