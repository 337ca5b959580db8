{{/*
Ingresses of the release's HTTP components (web, and Flower when flower.ingress.enabled).
*/}}

{{/*
An Ingress routing `ingress` (a {className, annotations, hosts, tls} values block) to the
`component`'s Service, on its port named http; named like that Service.
{{ include "flask-celery.ingress" (dict "ctx" $ "component" "web" "ingress" .Values.web.ingress) }}
*/}}
{{- define "flask-celery.ingress" -}}
{{- $svc := include "flask-celery.names.component" (dict "ctx" .ctx "component" .component) }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ $svc }}
  namespace: {{ .ctx.Release.Namespace }}
  labels: {{- include "flask-celery.labels.standard" (dict "ctx" .ctx "component" .component) | nindent 4 }}
  {{- with .ingress.annotations }}
  annotations: {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with .ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with .ingress.tls }}
  tls: {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    {{- range .ingress.hosts }}
    - host: {{ .host | quote }}
      http:
        paths:
          {{- range .paths }}
          - path: {{ .path }}
            pathType: {{ .pathType }}
            backend:
              service:
                name: {{ $svc }}
                port:
                  name: http
          {{- end }}
    {{- end }}
{{- end }}
