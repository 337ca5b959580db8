{{/*
checkov skip annotations, each with its reason, on the workloads whose check would fail on
purpose; a skip that depends on values is set only while its check would fail.
*/}}

{{/*
checkov skip annotations that hold for every application pod, each with its reason.
{{ include "flask-celery.checkov.appSkips" . | nindent 4 }}
*/}}
{{- define "flask-celery.checkov.appSkips" -}}
checkov.io/skip1: CKV_K8S_35=The service reads its configuration from the environment (12-factor, design contract 4); values come from Secrets via secretKeyRef, never from a ConfigMap.
{{- include "flask-celery.checkov.commonSkips" (dict "ctx" . "image" .Values.image "key" "image") }}
{{- end }}

{{/*
checkov skips of every workload, about its image block ({repository, tag, digest, pullPolicy},
at values path `key`) and the opt-in NetworkPolicies; each only while its check would fail.
{{- include "flask-celery.checkov.commonSkips" (dict "ctx" $ "image" .Values.redis.image "key" "redis.image") }}
*/}}
{{- define "flask-celery.checkov.commonSkips" -}}
{{- if not .image.digest }}
checkov.io/skip2: CKV_K8S_43=The image is referenced by its tag {{ .image.tag | default .ctx.Chart.AppVersion | quote }}, which its registry can move to another image; set {{ .key }}.digest to pin it.
{{- end }}
{{- if and (not .image.digest) (ne .image.pullPolicy "Always") }}
checkov.io/skip3: CKV_K8S_15=IfNotPresent starts pods from the image a node already holds, without a registry round trip, even if the tag has moved since; set {{ .key }}.digest to pin the image, or {{ .key }}.pullPolicy to Always.
{{- end }}
{{- if not .ctx.Values.networkPolicy.enabled }}
checkov.io/skip6: CKV2_K8S_6=NetworkPolicies are opt-in because their peers depend on the cluster (ingress, KEDA and Prometheus namespaces); set networkPolicy.enabled to true in production.
{{- end }}
{{- end }}

{{/*
checkov skips of a bundled server's StatefulSet: the official image's own user (a uid below
10000), then the image and NetworkPolicy skips.
{{- include "flask-celery.checkov.serverSkips" (dict "ctx" $ "key" "redis" "image" "Redis" "user" "redis") | trim | nindent 4 }}
*/}}
{{- define "flask-celery.checkov.serverSkips" -}}
{{- $server := get .ctx.Values .key }}
{{- if lt ($server.runAsUser | int) 10000 }}
checkov.io/skip4: CKV_K8S_40=The official {{ .image }} image's {{ .user }} user is uid {{ $server.runAsUser }}, which owns its data directory; set {{ .key }}.runAsUser to change it.
{{- end }}
{{- include "flask-celery.checkov.commonSkips" (dict "ctx" .ctx "image" $server.image "key" (printf "%s.image" .key)) }}
{{- end }}
