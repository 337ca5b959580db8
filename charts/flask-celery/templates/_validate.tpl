{{/*
Cross-value rules the schema cannot express. Each flask-celery.validate.<rule> returns one
message per violation, naming the values to change; flask-celery.validate.values collects them
into a single `fail`, so a user sees every problem at once.
*/}}

{{/*
Render nothing, or fail listing every violated rule.
{{ include "flask-celery.validate.values" . }}
*/}}
{{- define "flask-celery.validate.values" -}}
{{- $messages := list }}
{{- $messages = append $messages (include "flask-celery.validate.workerGroups" .) }}
{{- $messages = append $messages (include "flask-celery.validate.queues" .) }}
{{- $messages = append $messages (include "flask-celery.validate.timeBudget" .) }}
{{- $messages = append $messages (include "flask-celery.validate.workerMemory" .) }}
{{- $messages = append $messages (include "flask-celery.validate.pool" .) }}
{{- $messages = append $messages (include "flask-celery.validate.retry" .) }}
{{- $messages = append $messages (include "flask-celery.validate.autoscaling" .) }}
{{- $messages = append $messages (include "flask-celery.validate.beatLock" .) }}
{{- $messages = append $messages (include "flask-celery.validate.webShutdown" .) }}
{{- $messages = append $messages (include "flask-celery.validate.beatProbe" .) }}
{{- $messages = append $messages (include "flask-celery.validate.smtp" .) }}
{{- $messages = append $messages (include "flask-celery.validate.caBundle" .) }}
{{- $messages = append $messages (include "flask-celery.validate.flowerIngress" .) }}
{{- $messages = append $messages (include "flask-celery.validate.redis" .) }}
{{- $messages = append $messages (include "flask-celery.validate.database" .) }}
{{- $messages = append $messages (include "flask-celery.validate.flower" .) }}
{{- $messages = append $messages (include "flask-celery.validate.networkPolicy" .) }}
{{- $messages = append $messages (include "flask-celery.validate.metrics" .) }}
{{- $messages = append $messages (include "flask-celery.validate.auth" .) }}
{{- $messages = append $messages (include "flask-celery.validate.names" .) }}
{{- $messages = without $messages "" }}
{{- if $messages }}
{{- printf "\nVALUES VALIDATION:\n%s" (join "\n" $messages) | fail }}
{{- end }}
{{- end }}

{{/*
Worker groups: at least one queue each, unique names, no queue consumed by two groups (KEDA
would count its work twice).
{{ include "flask-celery.validate.workerGroups" . }}
*/}}
{{- define "flask-celery.validate.workerGroups" -}}
{{- $out := list }}
{{- $names := dict }}
{{- $owner := dict }}
{{- range $i, $g := .Values.workers.groups }}
{{- if not $g.queues }}
{{- $out = append $out (printf "workers.groups[%d] (%s): a worker group needs at least one queue; set workers.groups[%d].queues or remove the group." $i $g.name $i) }}
{{- end }}
{{- if hasKey $names $g.name }}
{{- $out = append $out (printf "workers.groups[%d]: the group name %q is already used by workers.groups[%s]; rename workers.groups[%d].name." $i $g.name (get $names $g.name) $i) }}
{{- else }}
{{- $_ := set $names $g.name (toString $i) }}
{{- end }}
{{- range $q := $g.queues }}
{{- if hasKey $owner $q }}
{{- $out = append $out (printf "workers.groups[%d] (%s): queue %q is already consumed by group %q; remove it from workers.groups[%d].queues (one group per queue, so each queue is scaled once)." $i $g.name $q (get $owner $q) $i) }}
{{- else }}
{{- $_ := set $owner $q $g.name }}
{{- end }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Queue contract with the app: files/queues.yaml (generated from service/routing.py) lists the
queues the app defines and the tasks routed to each. A group consuming any other queue would
crash-loop (its worker exits at once), and a queue no group consumes never runs its tasks.
{{ include "flask-celery.validate.queues" . }}
*/}}
{{- define "flask-celery.validate.queues" -}}
{{- $out := list }}
{{- $app := .Files.Get "files/queues.yaml" | fromYaml }}
{{- $known := $app.queues | default list }}
{{- if not $known }}
{{- $out = append $out "files/queues.yaml, the app's queues, is missing from the chart or empty; regenerate it with `python -m tests.support.chart_queues --write`." }}
{{- else }}
{{- $consumed := list }}
{{- range $i, $g := .Values.workers.groups }}
{{- range $q := $g.queues }}
{{- $consumed = append $consumed $q }}
{{- if not (has $q $known) }}
{{- $out = append $out (printf "workers.groups[%d] (%s): queue %q is not one the app defines (%s), so its workers would exit at once; remove it from workers.groups[%d].queues, or add the queue and its routes to the app (service/routing.py) first." $i $g.name $q (join ", " $known) $i) }}
{{- end }}
{{- end }}
{{- end }}
{{- $groupNames := list }}
{{- range .Values.workers.groups }}{{ $groupNames = append $groupNames .name }}{{ end }}
{{- range $q := $known }}
{{- if not (has $q $consumed) }}
{{- $tasks := get ($app.routes | default dict) $q | default list }}
{{- $out = append $out (printf "queue %q (tasks: %s) is consumed by no worker group, so its tasks would wait for ever; add %q to the queues of one group in workers.groups (%s), or add a group for it." $q (join ", " $tasks | default "none") $q (join ", " $groupNames | default "none")) }}
{{- end }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Time budget chain (design contract 3), per group:
soft time limit < hard time limit < terminationGracePeriodSeconds, hard time limit <
celery.visibilityTimeoutSeconds, soft shutdown timeout < grace period, and with KEDA a
cooldownPeriod longer than the grace period.
{{ include "flask-celery.validate.timeBudget" . }}
*/}}
{{- define "flask-celery.validate.timeBudget" -}}
{{- $out := list }}
{{- $vt := .Values.celery.visibilityTimeoutSeconds | int }}
{{- range $i, $group := .Values.workers.groups }}
{{- $g := include "flask-celery.workers.settings" (dict "ctx" $ "group" $group) | fromYaml }}
{{- $hard := $g.timeLimitSeconds | int }}
{{- $soft := $g.softTimeLimitSeconds | int }}
{{- $grace := $g.terminationGracePeriodSeconds | int }}
{{- $p := printf "workers.groups[%d]" $i }}
{{- if ge $soft $hard }}
{{- $out = append $out (printf "%s (%s): softTimeLimitSeconds (%d) must be less than timeLimitSeconds (%d); lower %s.softTimeLimitSeconds or raise %s.timeLimitSeconds (or workers.defaults.*)." $p $group.name $soft $hard $p $p) }}
{{- end }}
{{- if ge $hard $grace }}
{{- $out = append $out (printf "%s (%s): timeLimitSeconds (%d) must be less than terminationGracePeriodSeconds (%d), or Kubernetes kills running tasks during warm shutdown; raise %s.terminationGracePeriodSeconds (or unset it to get timeLimitSeconds + workers.shutdownMarginSeconds) or lower %s.timeLimitSeconds." $p $group.name $hard $grace $p $p) }}
{{- end }}
{{- if ge $hard $vt }}
{{- $out = append $out (printf "%s (%s): timeLimitSeconds (%d) must be less than celery.visibilityTimeoutSeconds (%d), or Redis redelivers tasks that are still running; raise celery.visibilityTimeoutSeconds or lower %s.timeLimitSeconds." $p $group.name $hard $vt $p) }}
{{- end }}
{{- if ge ($g.softShutdownTimeoutSeconds | int) $grace }}
{{- $out = append $out (printf "%s (%s): softShutdownTimeoutSeconds (%d) must be less than terminationGracePeriodSeconds (%d); lower %s.softShutdownTimeoutSeconds (or workers.defaults.softShutdownTimeoutSeconds) or raise %s.terminationGracePeriodSeconds." $p $group.name ($g.softShutdownTimeoutSeconds | int) $grace $p $p) }}
{{- end }}
{{- if and $.Values.keda.enabled (le ($g.keda.cooldownPeriod | int) $grace) }}
{{- $out = append $out (printf "%s (%s): keda.cooldownPeriod (%d) must be greater than terminationGracePeriodSeconds (%d), so a group is not scaled to zero while a pod is still shutting down; raise %s.keda.cooldownPeriod (or unset it to get the grace period + 60)." $p $group.name ($g.keda.cooldownPeriod | int) $grace $p) }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Worker memory, per group: the leak guard replaces a pool process only after its memory crossed
maxMemoryPerChildMiB, so concurrency x maxMemoryPerChildMiB + mainProcessMemoryMiB must fit the
memory limit, or the kernel OOM-kills the pod (every running task with it) before the guard acts.
Skipped for a group with no memory limit or no memory cap.
{{ include "flask-celery.validate.workerMemory" . }}
*/}}
{{- define "flask-celery.validate.workerMemory" -}}
{{- $out := list }}
{{- range $i, $group := .Values.workers.groups }}
{{- $g := include "flask-celery.workers.settings" (dict "ctx" $ "group" $group) | fromYaml }}
{{- $p := printf "workers.groups[%d]" $i }}
{{- $limit := dig "limits" "memory" "" ($g.resources | default dict) }}
{{- $child := $g.maxMemoryPerChildMiB | int }}
{{- if and $limit (gt $child 0) }}
{{- $limitMiB := div (include "flask-celery.redis.quantityBytes" (dict "quantity" $limit "path" (printf "%s.resources.limits.memory" $p)) | int64) 1048576 }}
{{- $n := $g.concurrency | int }}
{{- $main := $g.mainProcessMemoryMiB | int }}
{{- $need := add (mul $n $child) $main }}
{{- if gt $need $limitMiB }}
{{- $out = append $out (printf "%s (%s): concurrency (%d) x maxMemoryPerChildMiB (%d) + mainProcessMemoryMiB (%d) = %d MiB exceeds resources.limits.memory (%v = %d MiB), so the kernel OOM-kills the pod, and every task running in it, before the leak guard replaces a pool process; lower %s.maxMemoryPerChildMiB to at most %d, or %s.concurrency, or raise %s.resources.limits.memory to at least %dMi (or workers.defaults.*)." $p $group.name $n $child $main $need $limit $limitMiB $p (max 0 (div (sub $limitMiB $main) $n)) $p $p $need) }}
{{- end }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Pools, per group: gevent runs every task in the worker's one process, so there is no pool
process for the leak guard to replace; Celery would ignore its flags. Refuse them rather than
render a guard that does nothing.
{{ include "flask-celery.validate.pool" . }}
*/}}
{{- define "flask-celery.validate.pool" -}}
{{- $out := list }}
{{- range $i, $group := .Values.workers.groups }}
{{- $g := include "flask-celery.workers.settings" (dict "ctx" $ "group" $group) | fromYaml }}
{{- $p := printf "workers.groups[%d]" $i }}
{{- if and (eq $g.pool "gevent") (or (gt ($g.maxTasksPerChild | int) 0) (gt ($g.maxMemoryPerChildMiB | int) 0)) }}
{{- $out = append $out (printf "%s (%s): pool gevent runs every task in one process, which has no pool process to replace, so maxTasksPerChild (%d) and maxMemoryPerChildMiB (%d) would do nothing; set %s.maxTasksPerChild and %s.maxMemoryPerChildMiB to 0 (resources.limits.memory guards the pod), or use pool prefork." $p $group.name ($g.maxTasksPerChild | int) ($g.maxMemoryPerChildMiB | int) $p $p) }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Retry policy: the first delay is at most the longest one, and a retry, which waits out its delay
unacknowledged on a worker and then runs up to its group's hard limit, is delivered once:
celery.retry.backoffMaxSeconds + timeLimitSeconds < celery.visibilityTimeoutSeconds per group.
{{ include "flask-celery.validate.retry" . }}
*/}}
{{- define "flask-celery.validate.retry" -}}
{{- $out := list }}
{{- $r := .Values.celery.retry }}
{{- $vt := .Values.celery.visibilityTimeoutSeconds | int }}
{{- if gt ($r.backoffBaseSeconds | float64) ($r.backoffMaxSeconds | float64) }}
{{- $out = append $out (printf "celery.retry.backoffBaseSeconds (%v) must not exceed celery.retry.backoffMaxSeconds (%v); lower the first or raise the second." $r.backoffBaseSeconds $r.backoffMaxSeconds) }}
{{- end }}
{{- range $i, $group := .Values.workers.groups }}
{{- $g := include "flask-celery.workers.settings" (dict "ctx" $ "group" $group) | fromYaml }}
{{- $p := printf "workers.groups[%d]" $i }}
{{- if ge (addf $r.backoffMaxSeconds $g.timeLimitSeconds) ($vt | float64) }}
{{- $out = append $out (printf "%s (%s): timeLimitSeconds (%d) + celery.retry.backoffMaxSeconds (%v) must be less than celery.visibilityTimeoutSeconds (%d), or Redis delivers a retry twice (it waits out its delay unacknowledged on a worker); lower celery.retry.backoffMaxSeconds or %s.timeLimitSeconds, or raise celery.visibilityTimeoutSeconds." $p $group.name ($g.timeLimitSeconds | int) $r.backoffMaxSeconds $vt $p) }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Replica bounds: min <= max, and scale to zero only with KEDA (an HPA cannot go below one).
{{ include "flask-celery.validate.autoscaling" . }}
*/}}
{{- define "flask-celery.validate.autoscaling" -}}
{{- $out := list }}
{{- range $i, $group := .Values.workers.groups }}
{{- $g := include "flask-celery.workers.settings" (dict "ctx" $ "group" $group) | fromYaml }}
{{- $p := printf "workers.groups[%d]" $i }}
{{- if gt ($g.minReplicas | int) ($g.maxReplicas | int) }}
{{- $out = append $out (printf "%s (%s): minReplicas (%d) must not exceed maxReplicas (%d); change %s.minReplicas or %s.maxReplicas." $p $group.name ($g.minReplicas | int) ($g.maxReplicas | int) $p $p) }}
{{- end }}
{{- if and (not $.Values.keda.enabled) $g.autoscaling.enabled (lt ($g.minReplicas | int) 1) }}
{{- $out = append $out (printf "%s (%s): minReplicas 0 needs KEDA; a CPU HorizontalPodAutoscaler cannot scale to zero. Set keda.enabled=true or %s.minReplicas >= 1." $p $group.name $p) }}
{{- end }}
{{- end }}
{{- if and .Values.web.autoscaling.enabled (gt (.Values.web.autoscaling.minReplicas | int) (.Values.web.autoscaling.maxReplicas | int)) }}
{{- $out = append $out "web.autoscaling.minReplicas must not exceed web.autoscaling.maxReplicas." }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Beat leader lock: the leader renews the lock once per loop, so the lock must outlive the
longest loop or a second beat takes over while the first still runs.
{{ include "flask-celery.validate.beatLock" . }}
*/}}
{{- define "flask-celery.validate.beatLock" -}}
{{- $b := .Values.beat }}
{{- if and $b.enabled (le ($b.lockTimeoutSeconds | int) ($b.maxLoopIntervalSeconds | int)) }}
{{- printf "beat.lockTimeoutSeconds (%d) must be greater than beat.maxLoopIntervalSeconds (%d), or the leader lock expires between two renewals and a second beat sends duplicates; raise beat.lockTimeoutSeconds or lower beat.maxLoopIntervalSeconds." ($b.lockTimeoutSeconds | int) ($b.maxLoopIntervalSeconds | int) }}
{{- end }}
{{- end }}

{{/*
Web shutdown: the preStop sleep and then gunicorn's graceful timeout must fit in the pod's grace
period, which counts from the start of the preStop hook.
{{ include "flask-celery.validate.webShutdown" . }}
*/}}
{{- define "flask-celery.validate.webShutdown" -}}
{{- $w := .Values.web }}
{{- $sleep := $w.preStopSleepSeconds | int }}
{{- if ge (add $sleep ($w.gracefulTimeoutSeconds | int)) ($w.terminationGracePeriodSeconds | int) }}
{{- printf "web.preStopSleepSeconds (%d) + web.gracefulTimeoutSeconds (%d) must be less than web.terminationGracePeriodSeconds (%d), or Kubernetes kills requests gunicorn is still finishing; lower web.preStopSleepSeconds or web.gracefulTimeoutSeconds, or raise web.terminationGracePeriodSeconds." $sleep ($w.gracefulTimeoutSeconds | int) ($w.terminationGracePeriodSeconds | int) }}
{{- end }}
{{- end }}

{{/*
Beat liveness: a beat that replaces another waits up to the lock timeout for its lock and one
loop more before it ticks, and the probe must not fail it for that.
{{ include "flask-celery.validate.beatProbe" . }}
*/}}
{{- define "flask-celery.validate.beatProbe" -}}
{{- $b := .Values.beat }}
{{- $wait := add ($b.lockTimeoutSeconds | int) ($b.maxLoopIntervalSeconds | int) }}
{{- if and $b.enabled (le ($b.tickMaxAgeSeconds | int) $wait) }}
{{- printf "beat.tickMaxAgeSeconds (%d) must be greater than beat.lockTimeoutSeconds + beat.maxLoopIntervalSeconds (%d), or the liveness probe restarts a beat that is still waiting for the lock of the one it replaced; raise beat.tickMaxAgeSeconds." ($b.tickMaxAgeSeconds | int) $wait }}
{{- end }}
{{- end }}

{{/*
SMTP: the TLS mode must suit the port's convention (implicit TLS on 465, STARTTLS on 587), or
every mail waits for a handshake that never comes.
{{ include "flask-celery.validate.smtp" . }}
*/}}
{{- define "flask-celery.validate.smtp" -}}
{{- $s := .Values.smtp }}
{{- $port := $s.port | int }}
{{- if and $s.host (eq $s.tls "ssl") (eq $port 587) }}
{{- print "smtp.tls is ssl (TLS from the first byte) but smtp.port is 587, where relays expect STARTTLS; set smtp.tls=starttls, or smtp.port=465 for implicit TLS." }}
{{- else if and $s.host (eq $s.tls "starttls") (eq $port 465) }}
{{- print "smtp.tls is starttls but smtp.port is 465, where relays speak TLS from the first byte; set smtp.tls=ssl, or smtp.port=587 for STARTTLS." }}
{{- end }}
{{- end }}

{{/*
Flower behind an Ingress: with NetworkPolicies on, Flower accepts only networkPolicy.flowerFrom,
so the Ingress controller must be listed there or every request is dropped.
{{ include "flask-celery.validate.flowerIngress" . }}
*/}}
{{- define "flask-celery.validate.flowerIngress" -}}
{{- $v := .Values }}
{{- if and $v.flower.enabled $v.flower.ingress.enabled $v.networkPolicy.enabled (not $v.networkPolicy.flowerFrom) }}
{{- print "flower.ingress.enabled with networkPolicy.enabled lets no one reach Flower: networkPolicy.flowerFrom is empty; add the Ingress controller's pods (e.g. a namespaceSelector for its namespace) to networkPolicy.flowerFrom." }}
{{- end }}
{{- end }}

{{/*
CA bundle: one source, and it verifies at least one connection; a connection listed without a
bundle would have nothing to verify against.
{{ include "flask-celery.validate.caBundle" . }}
*/}}
{{- define "flask-celery.validate.caBundle" -}}
{{- $ca := .Values.caBundle }}
{{- if and $ca.configMap $ca.secret }}
{{- print "caBundle.configMap and caBundle.secret are both set; keep the one that holds the bundle." }}
{{- else if and (or $ca.configMap $ca.secret) (not $ca.verifies) }}
{{- print "caBundle names a bundle but caBundle.verifies is empty, so no connection uses it; list the connections it verifies (smtp, webhooks, jwt)." }}
{{- else if and $ca.verifies (not (or $ca.configMap $ca.secret)) }}
{{- printf "caBundle.verifies lists %s but no bundle is set; set caBundle.configMap or caBundle.secret (and caBundle.key), or empty caBundle.verifies." (join ", " $ca.verifies) }}
{{- end }}
{{- end }}

{{/*
Redis: an external Redis needs its Secret and host; broker and results use different databases;
a CA for Redis needs a Redis that speaks TLS, and a Secret when KEDA reads it; the database KEDA
counts is the one a broker URL set in extraEnv selects (workers check URLs from Secrets when
they start).
{{ include "flask-celery.validate.redis" . }}
*/}}
{{- define "flask-celery.validate.redis" -}}
{{- $out := list }}
{{- $r := .Values.externalRedis }}
{{- if not .Values.redis.enabled }}
{{- if and (not $r.existingSecret) (or $r.brokerUrlKey $r.resultBackendKey $r.passwordKey) }}
{{- $out = append $out "redis.enabled=false needs externalRedis.existingSecret: a Secret holding the password (key externalRedis.passwordKey) and the URLs whose keys are set (externalRedis.brokerUrlKey, externalRedis.resultBackendKey; empty keys: the chart builds the URL)." }}
{{- end }}
{{- if and .Values.keda.enabled (not $r.host) }}
{{- $out = append $out "redis.enabled=false with keda.enabled=true needs externalRedis.host (and externalRedis.port): KEDA reads the queue lengths from it." }}
{{- else if and (not $r.host) (or (not $r.brokerUrlKey) (not $r.resultBackendKey)) }}
{{- $out = append $out "externalRedis.host is empty but the chart builds a Redis URL from it (externalRedis.brokerUrlKey or externalRedis.resultBackendKey is empty); set externalRedis.host, or the keys of URLs in externalRedis.existingSecret." }}
{{- end }}
{{- end }}
{{- if has "redis" .Values.caBundle.verifies }}
{{- if .Values.redis.enabled }}
{{- $out = append $out "caBundle.verifies lists redis, but the bundled Redis (redis.enabled=true) speaks no TLS and the app refuses a CA for a plain redis:// URL; remove redis from caBundle.verifies." }}
{{- else if not $r.tls }}
{{- $out = append $out "caBundle.verifies lists redis, but externalRedis.tls is false, so the app would refuse to start (a CA for a plain redis:// URL); set externalRedis.tls=true for a Redis that speaks TLS, or remove redis from caBundle.verifies." }}
{{- else if and .Values.keda.enabled .Values.caBundle.configMap }}
{{- $out = append $out (printf "caBundle.verifies lists redis with keda.enabled=true, but KEDA reads the CA of its TriggerAuthentication from a Secret only and the bundle is in ConfigMap %q; put it in a Secret and set caBundle.secret instead of caBundle.configMap (same key, caBundle.key)." .Values.caBundle.configMap) }}
{{- end }}
{{- end }}
{{- if .Values.keda.enabled }}
{{- $keda := .Values.redis.brokerDatabase | int }}
{{- range $i, $group := .Values.workers.groups }}
{{- $g := include "flask-celery.workers.settings" (dict "ctx" $ "group" $group) | fromYaml }}
{{- $url := "" }}
{{- $source := "" }}
{{- range $where, $env := dict "app.extraEnv" ($.Values.app.extraEnv | default list) "extraEnv" ($g.extraEnv | default list) }}
{{- range $env }}
{{- if and (eq .name "FLASK_CELERY__BROKER_URL") (hasKey . "value") }}
{{- $url = .value }}
{{- $source = $where }}
{{- end }}
{{- end }}
{{- end }}
{{- $m := regexFindAll "^rediss?://[^/?#]*(/[0-9]*)?" $url 1 }}
{{- if $m }}
{{- $path := trimPrefix "/" (regexFind "/[0-9]*$" (index $m 0)) }}
{{- $db := ternary ($path | int) 0 (ne $path "") }}
{{- if ne $db $keda }}
{{- $p := printf "workers.groups[%d]" $i }}
{{- $where := ternary "app.extraEnv" (printf "%s.extraEnv (or workers.defaults.extraEnv)" $p) (eq $source "app.extraEnv") }}
{{- $out = append $out (printf "%s (%s): FLASK_CELERY__BROKER_URL in %s selects Redis database %d, but KEDA counts the group's queues in redis.brokerDatabase (%d), so it would scale on queues the workers never consume (and they refuse to start); end that URL with /%d, or set redis.brokerDatabase=%d." $p $group.name $where $db $keda $keda $db) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq (.Values.redis.brokerDatabase | int) (.Values.redis.resultDatabase | int) }}
{{- $out = append $out (printf "redis.brokerDatabase and redis.resultDatabase are both %d; use two database indexes so results never mix with queues." (.Values.redis.brokerDatabase | int)) }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Database: an external one (database.existingSecret) or the bundled PostgreSQL; with neither
the pods would have no database to share. Both set is fine: the existing Secret wins.
{{ include "flask-celery.validate.database" . }}
*/}}
{{- define "flask-celery.validate.database" -}}
{{- if and (not .Values.database.existingSecret) (not .Values.postgresql.enabled) }}
{{- print "No database: set database.existingSecret to a Secret holding the SQLAlchemy URL of your PostgreSQL (key database.secretKey) for production, or postgresql.enabled=true for the bundled development PostgreSQL." }}
{{- end }}
{{- end }}

{{/*
Flower: OAuth needs a provider and the Secret with the client credentials.
{{ include "flask-celery.validate.flower" . }}
*/}}
{{- define "flask-celery.validate.flower" -}}
{{- $o := .Values.flower.oauth }}
{{- if and .Values.flower.enabled $o.enabled (or (not $o.provider) (not $o.existingSecret)) }}
{{- print "flower.oauth.enabled=true needs flower.oauth.provider and flower.oauth.existingSecret (with keys flower.oauth.keyKey and flower.oauth.secretKey)." }}
{{- end }}
{{- end }}

{{/*
Network policies: internet egress names existing worker groups.
{{ include "flask-celery.validate.networkPolicy" . }}
*/}}
{{- define "flask-celery.validate.networkPolicy" -}}
{{- $out := list }}
{{- if .Values.networkPolicy.enabled }}
{{- $names := list }}
{{- range .Values.workers.groups }}{{ $names = append $names .name }}{{ end }}
{{- range .Values.networkPolicy.internet.groups }}
{{- if not (has . $names) }}
{{- $out = append $out (printf "networkPolicy.internet.groups names %q, which is not a worker group; fix networkPolicy.internet.groups or workers.groups." .) }}
{{- end }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Metrics: what scrapes, charts or alerts on the metrics needs metrics.enabled (else no pod serves
them, and the exporter alert fires at once); one way of scraping, not two; and the alerts'
jobRegex must match the `job` label the Prometheus Operator gives every target, or they never
see a series.
{{ include "flask-celery.validate.metrics" . }}
*/}}
{{- define "flask-celery.validate.metrics" -}}
{{- $out := list }}
{{- $m := .Values.metrics }}
{{- $on := list }}
{{- range $key := list "serviceMonitor" "podMonitor" "dashboards" "prometheusRule" }}
{{- if (get $m $key).enabled }}{{ $on = append $on (printf "metrics.%s.enabled" $key) }}{{ end }}
{{- end }}
{{- if and $on (not $m.enabled) }}
{{- $out = append $out (printf "%s need metrics.enabled=true: without it no pod serves the metrics they scrape, chart or alert on; set metrics.enabled=true or turn them off." (join ", " $on)) }}
{{- end }}
{{- if and $m.serviceMonitor.enabled $m.podMonitor.enabled }}
{{- $out = append $out "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled are both true: Prometheus would scrape every target twice and double every sum; turn one of them off." }}
{{- end }}
{{- if and $m.enabled $m.prometheusRule.enabled }}
{{- $unmatched := list }}
{{- range $kind := list "ServiceMonitor" "PodMonitor" }}
{{- if (get $m (untitle $kind)).enabled }}
{{- range (include "flask-celery.metrics.targets" $ | fromYaml).targets }}
{{- $job := include "flask-celery.metrics.job" (dict "ctx" $ "target" . "kind" $kind) }}
{{- if not (mustRegexMatch (printf "^(?:%s)$" $m.prometheusRule.jobRegex) $job) }}
{{- $unmatched = append $unmatched (printf "%q (%s %s)" $job .component $kind) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $unmatched }}
{{- $out = append $out (printf "metrics.prometheusRule.jobRegex (%q) does not match the scrape jobs %s, so the alerts would never see their series; set metrics.prometheusRule.jobRegex to match them, or keep \"celery\" in the object names (the release name, nameOverride or fullnameOverride)." $m.prometheusRule.jobRegex (join ", " $unmatched)) }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
API authentication: keys from one place (auth.apiKeys or auth.existingSecret); each name once
(web would refuse to start) and each digest once (one token would silently be one of two keys);
an identity provider given whole or not at all (web would refuse to start).
{{ include "flask-celery.validate.auth" . }}
*/}}
{{- define "flask-celery.validate.auth" -}}
{{- $out := list }}
{{- $a := .Values.auth }}
{{- if and $a.apiKeys $a.existingSecret }}
{{- $out = append $out (printf "auth.apiKeys and auth.existingSecret are both set, and web reads its keys from one Secret: move the auth.apiKeys entries into the JSON list under key %q of Secret %q and remove auth.apiKeys, or unset auth.existingSecret." $a.existingSecretKey $a.existingSecret) }}
{{- end }}
{{- $names := dict }}
{{- $digests := dict }}
{{- range $i, $k := $a.apiKeys }}
{{- if hasKey $names $k.name }}
{{- $out = append $out (printf "auth.apiKeys[%d]: the name %q is already used by auth.apiKeys[%s]; rename auth.apiKeys[%d].name." $i $k.name (get $names $k.name) $i) }}
{{- else }}
{{- $_ := set $names $k.name (toString $i) }}
{{- end }}
{{- if hasKey $digests $k.sha256 }}
{{- $out = append $out (printf "auth.apiKeys[%d] (%s): its sha256 is that of auth.apiKeys[%s], so one token would be two keys; give auth.apiKeys[%d] the digest of a token of its own (flask api-keys digest %s)." $i $k.name (get $digests $k.sha256) $i $k.name) }}
{{- else }}
{{- $_ := set $digests $k.sha256 (toString $i) }}
{{- end }}
{{- end }}
{{- $jwt := $a.jwt }}
{{- $given := list }}
{{- $missing := list }}
{{- range $key := list "issuer" "audience" "jwksUrl" }}
{{- if get $jwt $key }}
{{- $given = append $given (printf "auth.jwt.%s" $key) }}
{{- else }}
{{- $missing = append $missing (printf "auth.jwt.%s" $key) }}
{{- end }}
{{- end }}
{{- if and $given $missing }}
{{- $out = append $out (printf "%s set without %s: an identity provider needs its issuer, audience and JWKS URL together; set %s, or unset %s." (join ", " $given) (join ", " $missing) (join ", " $missing) (join ", " $given)) }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{/*
Names: every object name starts with the release prefix (flask-celery.names.prefix), so it must
suit the strictest kind, a Service (DNS-1035 label); nameOverride is also a label value. Each
component's own part must leave room within its kind's limit for at least one character of the
prefix and the 8-character hash that keeps cut names unique (see _names.tpl).
{{ include "flask-celery.validate.names" . }}
*/}}
{{- define "flask-celery.validate.names" -}}
{{- $out := list }}
{{- $prefix := include "flask-celery.names.prefix" . }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $prefix) }}
{{- $out = append $out (printf "Object names start with %q (release name %q, nameOverride, fullnameOverride), but Service names must be DNS-1035 labels: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit; choose such a release name or set fullnameOverride." $prefix .Release.Name) }}
{{- end }}
{{- with .Values.nameOverride }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" .) }}
{{- $out = append $out (printf "nameOverride %q is the app.kubernetes.io/name label's value: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit." .) }}
{{- end }}
{{- end }}
{{- $components := list }}
{{- range $i, $g := .Values.workers.groups }}
{{- $components = append $components (list (printf "workers.groups[%d].name" $i) (printf "worker-%s" $g.name)) }}
{{- end }}
{{- range $i, $g := .Values.networkPolicy.internet.groups }}
{{- $components = append $components (list (printf "networkPolicy.internet.groups[%d]" $i) (printf "worker-%s-internet" $g)) }}
{{- end }}
{{- range $c := $components }}
{{- $limit := include "flask-celery.names.limit" (index $c 1) | int }}
{{- if gt (add (len (index $c 1)) 11) $limit }}
{{- $out = append $out (printf "%s: the object name part %q cannot fit the %d-character limit of Kubernetes names with the release prefix and the 8-character hash that keeps cut names unique (at most %d characters); shorten it." (index $c 0) (index $c 1) $limit (sub $limit 11)) }}
{{- end }}
{{- end }}
{{- join "\n" $out }}
{{- end }}
