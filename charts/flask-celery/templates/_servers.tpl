{{/*
Bundled servers (Redis, PostgreSQL): one-replica StatefulSets of an official image, each with
a values block holding image, persistence and runAsUser. These are the pieces their
StatefulSets and Services share.
*/}}

{{/*
Image tag of a bundled server: its image.tag, else the major version the chart was tested with.
{{ include "flask-celery.servers.tag" (dict "ctx" $ "component" "redis") }}
*/}}
{{- define "flask-celery.servers.tag" -}}
{{- (get .ctx.Values .component).image.tag | default (get (dict "redis" "7.2" "postgresql" "16") .component) | toString }}
{{- end }}

{{/*
Image reference of a bundled server.
{{ include "flask-celery.servers.image" (dict "ctx" $ "component" "redis") }}
*/}}
{{- define "flask-celery.servers.image" -}}
{{- include "flask-celery.images.ref" (dict "image" (get .ctx.Values .component).image "default" (include "flask-celery.servers.tag" .)) }}
{{- end }}

{{/*
Probes of a bundled server, all running one exec command: startup allows five minutes (a first
initialisation, a long recovery), then liveness and readiness take over.
{{- include "flask-celery.servers.probes" $ping | trim | nindent 10 }}
*/}}
{{- define "flask-celery.servers.probes" -}}
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
{{ include "flask-celery.servers.services" (dict "ctx" $ "component" "redis" "port" 6379) }}
*/}}
{{- define "flask-celery.servers.services" -}}
{{- range $suffix := list "" "-headless" }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "flask-celery.names.component" (dict "ctx" $.ctx "component" (printf "%s%s" $.component $suffix)) }}
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
{{- with include "flask-celery.servers.data" (dict "ctx" $ "component" "redis" "part" "volume") | trim }}{{ . | nindent 8 }}{{- end }}
{{- with include "flask-celery.servers.data" (dict "ctx" $ "component" "redis" "part" "claim") | trim }}{{ . | nindent 2 }}{{- end }}
*/}}
{{- define "flask-celery.servers.data" -}}
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
      # Only the selector's labels: Kubernetes refuses any change to a claim template.
      labels: {{- include "flask-celery.labels.matchLabels" (dict "ctx" .ctx "component" .component) | nindent 8 }}
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
