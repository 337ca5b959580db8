{{/*
Worker group settings: a group's keys override workers.defaults (two levels, merged key by
key; lists replace), then the derived values are added:
  terminationGracePeriodSeconds = timeLimitSeconds + workers.shutdownMarginSeconds (unless set)
  keda.cooldownPeriod           = terminationGracePeriodSeconds + 60 (unless set)
*/}}

{{/*
Effective settings of one group, as YAML (use with fromYaml).
{{ $g := include "flask-celery.workers.settings" (dict "ctx" $ "group" $group) | fromYaml }}
*/}}
{{- define "flask-celery.workers.settings" -}}
{{- $w := .ctx.Values.workers }}
{{- $s := mergeOverwrite (deepCopy $w.defaults) (deepCopy .group) }}
{{- $grace := $s.terminationGracePeriodSeconds | default (add $s.timeLimitSeconds $w.shutdownMarginSeconds) | int }}
{{- $_ := set $s "terminationGracePeriodSeconds" $grace }}
{{- $keda := $s.keda | default dict }}
{{- $_ := set $keda "cooldownPeriod" ($keda.cooldownPeriod | default (add $grace 60) | int) }}
{{- $_ := set $s "keda" $keda }}
{{- toYaml $s }}
{{- end }}
