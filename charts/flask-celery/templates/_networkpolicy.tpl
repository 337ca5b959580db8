{{/*
NetworkPolicy pieces. With networkPolicy.enabled the release's pods deny everything
(app/networkpolicy.yaml) and each component's policy opens exactly its own flows.
*/}}

{{/*
Egress rule to Redis: the bundled StatefulSet's pods, or the external Redis' ranges.
{{ include "flask-celery.networkPolicy.redisEgress" . | nindent 4 }}
*/}}
{{- define "flask-celery.networkPolicy.redisEgress" -}}
{{- if .Values.redis.enabled }}
{{- include "flask-celery.networkPolicy.toComponent" (dict "ctx" . "component" "redis" "port" 6379) }}
{{- else }}
- to: {{- include "flask-celery.networkPolicy.ipBlocks" (dict "cidrs" .Values.networkPolicy.externalRedis.cidrs) | nindent 4 }}
  ports:
    - port: {{ .Values.externalRedis.port }}
      protocol: TCP
{{- end }}
{{- end }}

{{/*
Egress rule to the database: the bundled PostgreSQL's pods, or the external database's ranges
(database.existingSecret).
{{ include "flask-celery.networkPolicy.databaseEgress" . | nindent 4 }}
*/}}
{{- define "flask-celery.networkPolicy.databaseEgress" -}}
{{- if include "flask-celery.database.bundled" . }}
{{- include "flask-celery.networkPolicy.toComponent" (dict "ctx" . "component" "postgresql" "port" 5432) }}
{{- else }}
- to: {{- include "flask-celery.networkPolicy.ipBlocks" (dict "cidrs" .Values.networkPolicy.database.cidrs) | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.database.port }}
      protocol: TCP
{{- end }}
{{- end }}

{{/*
Egress rule to the pods of one of the release's components, on one port.
{{ include "flask-celery.networkPolicy.toComponent" (dict "ctx" . "component" "redis" "port" 6379) }}
*/}}
{{- define "flask-celery.networkPolicy.toComponent" -}}
- to:
    - podSelector:
        matchLabels: {{- include "flask-celery.labels.matchLabels" (dict "ctx" .ctx "component" .component) | nindent 10 }}
  ports:
    - port: {{ .port }}
      protocol: TCP
{{- end }}

{{/*
NetworkPolicy of a bundled server: in on its port from the pods of the `clients` components
(and any `extraPeers`, rendered peers); nothing out.
{{ include "flask-celery.networkPolicy.server" (dict "ctx" $ "component" "postgresql" "port" 5432 "clients" (list "web" "worker")) }}
*/}}
{{- define "flask-celery.networkPolicy.server" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "flask-celery.names.component" (dict "ctx" .ctx "component" .component) }}
  namespace: {{ .ctx.Release.Namespace }}
  labels: {{- include "flask-celery.labels.standard" (dict "ctx" .ctx "component" .component) | nindent 4 }}
spec:
  podSelector:
    matchLabels: {{- include "flask-celery.labels.matchLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        {{- range .clients }}
        - podSelector:
            matchLabels: {{- include "flask-celery.labels.matchLabels" (dict "ctx" $.ctx "component" .) | nindent 14 }}
        {{- end }}
        {{- with .extraPeers }}
        {{- . | nindent 8 }}
        {{- end }}
      ports:
        - port: {{ .port }}
          protocol: TCP
  egress: []
{{- end }}

{{/*
ipBlock peers for a list of ranges; an empty list means any address.
{{ include "flask-celery.networkPolicy.ipBlocks" (dict "cidrs" $cidrs) | nindent 4 }}
*/}}
{{- define "flask-celery.networkPolicy.ipBlocks" -}}
{{- range (.cidrs | default (list "0.0.0.0/0")) }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- end }}

{{/*
Peer for every pod of one namespace, by its kubernetes.io/metadata.name label.
{{ include "flask-celery.networkPolicy.namespace" "monitoring" | nindent 8 }}
*/}}
{{- define "flask-celery.networkPolicy.namespace" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
{{- end }}

{{/*
The TCP ports of an internet egress rule.
ports: {{- include "flask-celery.networkPolicy.internetPorts" $np.internet.ports | trim | nindent 8 }}
*/}}
{{- define "flask-celery.networkPolicy.internetPorts" -}}
{{- range . }}
- port: {{ . }}
  protocol: TCP
{{- end }}
{{- end }}

{{/*
Egress rules to the internet on `ports`: any IPv4 and IPv6 address except the internal ranges
(networkPolicy.internet.exceptCidrs) and the cluster's (networkPolicy.internet.clusterCidrs),
each in the rule of its family, plus the ranges in `allowed` (IPv4 ones that webhooks may reach).
{{ include "flask-celery.networkPolicy.internetEgress" (dict "ctx" $ "ports" (list 443) "allowed" list) | nindent 4 }}
*/}}
{{- define "flask-celery.networkPolicy.internetEgress" -}}
{{- $np := .ctx.Values.networkPolicy }}
{{- $except4 := list }}
{{- $except6 := list }}
{{- range concat $np.internet.exceptCidrs $np.internet.clusterCidrs }}
{{- if contains ":" . }}{{ $except6 = append $except6 . }}{{ else }}{{ $except4 = append $except4 . }}{{ end }}
{{- end }}
{{- $ports := include "flask-celery.networkPolicy.internetPorts" .ports | trim }}
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        {{- with $except4 }}
        except: {{- toYaml . | nindent 10 }}
        {{- end }}
    {{- range .allowed }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports: {{- $ports | nindent 4 }}
- to:
    - ipBlock:
        cidr: ::/0
        {{- with $except6 }}
        except: {{- toYaml . | nindent 10 }}
        {{- end }}
  ports: {{- $ports | nindent 4 }}
{{- end }}

{{/*
Port of web's identity provider (auth.jwt.jwksUrl): the URL's own, else 443.
{{ include "flask-celery.networkPolicy.jwksPort" . }}
*/}}
{{- define "flask-celery.networkPolicy.jwksPort" -}}
{{- $host := (urlParse .Values.auth.jwt.jwksUrl).host }}
{{- $port := regexFind ":[0-9]+$" $host | trimPrefix ":" }}
{{- $port | default "443" }}
{{- end }}
