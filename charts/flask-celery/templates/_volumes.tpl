{{/*
Volumes of the application pods. The root filesystem is read-only, so everything the app
writes goes to a volume: /tmp, the Prometheus multiprocess directory, and file storage; a
private CA bundle (caBundle) is mounted read-only beside them.
*/}}

{{/*
Volumes of an application pod: /tmp, the Prometheus multiprocess directory, and storage
(the shared claim, or an emptyDir). The migrations hook always gets an emptyDir because it runs
before the claim exists on first install; Flower and the exporter too, since they never read
the files, but the app they load creates FLASK_STORAGE_DIR at startup, which a read-only root
would refuse.
{{ include "flask-celery.volumes.app" (dict "ctx" $ "component" "web") | nindent 8 }}
*/}}
{{- define "flask-celery.volumes.app" -}}
{{- $p := .ctx.Values.storage.persistence -}}
- name: tmp
  emptyDir: {}
- name: prometheus
  emptyDir: {}
- name: storage
{{- if and $p.enabled (not (has .component (list "migrations" "flower" "exporter" "web-test"))) }}
  persistentVolumeClaim:
    claimName: {{ default (include "flask-celery.names.component" (dict "ctx" .ctx "component" "storage")) $p.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- with .ctx.Values.caBundle }}
{{- if .configMap }}
- name: ca-bundle
  configMap:
    name: {{ .configMap }}
    items:
      - key: {{ .key }}
        path: ca.crt
{{- else if .secret }}
- name: ca-bundle
  secret:
    secretName: {{ .secret }}
    items:
      - key: {{ .key }}
        path: ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/*
Mounts matching flask-celery.volumes.app.
{{ include "flask-celery.volumes.appMounts" $ | nindent 12 }}
*/}}
{{- define "flask-celery.volumes.appMounts" -}}
- name: tmp
  mountPath: /tmp
- name: prometheus
  mountPath: /var/run/prometheus
- name: storage
  mountPath: {{ .Values.storage.mountPath }}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}
- name: ca-bundle
  mountPath: /etc/flask-celery/ca
  readOnly: true
{{- end }}
{{- end }}

{{/*
Path of the CA bundle (caBundle) in every application container.
{{ include "flask-celery.volumes.caFile" $ }}
*/}}
{{- define "flask-celery.volumes.caFile" -}}
/etc/flask-celery/ca/ca.crt
{{- end }}
