{{/*
Names, labels and the pieces every workload shares.
*/}}

{{- define "caretrail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-caretrail, or the release name when it already contains the chart name.
Truncated so that "<fullname>-object-store-xxxxxxxxxx-xxxxx" pod names and
"<fullname>-ledger-headless" stay within DNS limits. */}}
{{- define "caretrail.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "caretrail.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select a release's pods (stable across upgrades). */}}
{{- define "caretrail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "caretrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every resource's labels. */}}
{{- define "caretrail.labels" -}}
helm.sh/chart: {{ include "caretrail.chart" . }}
{{ include "caretrail.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: caretrail
{{- with .Values.region.name }}
caretrail.io/region: {{ . | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "caretrail.componentSelectorLabels" -}}
{{ include "caretrail.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's resources. */}}
{{- define "caretrail.componentLabels" -}}
{{ include "caretrail.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* metadata.annotations from commonAnnotations (plus "extra"), already indented for
metadata, or nothing: use as `{{- include "caretrail.metaAnnotations" (dict "root" $) }}`. */}}
{{- define "caretrail.metaAnnotations" -}}
{{- $all := merge (dict) (.extra | default dict) (.root.Values.commonAnnotations | default dict) -}}
{{- with $all }}
{{- printf "annotations:\n%s" (toYaml . | indent 2) | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* Resource name of a component: <fullname>-<component>. */}}
{{- define "caretrail.componentName" -}}
{{- printf "%s-%s" (include "caretrail.fullname" .root) .component -}}
{{- end -}}

{{- define "caretrail.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "caretrail.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository:tag@digest */}}
{{- define "caretrail.image" -}}
{{- $img := .Values.image -}}
{{- $repo := $img.repository -}}
{{- if $img.registry -}}{{- $repo = printf "%s/%s" $img.registry $img.repository -}}{{- end -}}
{{- $tag := default .Chart.AppVersion $img.tag -}}
{{- if $img.digest -}}
{{- printf "%s:%s@%s" $repo $tag $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* Public URL of the gateway. */}}
{{- define "caretrail.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl | trimSuffix "/" -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hostname -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.hostname -}}
{{- else if .Values.gatewayApi.hostnames -}}
{{- printf "https://%s" (first .Values.gatewayApi.hostnames) -}}
{{- else -}}
{{- printf "http://%s.%s.svc.%s:%v" (include "caretrail.componentName" (dict "root" . "component" "gateway")) .Release.Namespace .Values.clusterDomain .Values.defaults.httpPort -}}
{{- end -}}
{{- end -}}

{{- define "caretrail.tokenIssuer" -}}
{{- default (include "caretrail.publicUrl" .) .Values.tokenIssuer -}}
{{- end -}}

{{/* In-cluster base URL of a component's HTTP API. */}}
{{- define "caretrail.internalUrl" -}}
{{- printf "http://%s.%s.svc.%s:%v" (include "caretrail.componentName" .) .root.Release.Namespace .root.Values.clusterDomain .root.Values.defaults.httpPort -}}
{{- end -}}

{{- define "caretrail.jwksUrl" -}}
{{- printf "%s/.well-known/jwks.json" (include "caretrail.internalUrl" (dict "root" . "component" "identity")) -}}
{{- end -}}

{{/* ---------------- ledger peers ---------------- */}}

{{- define "caretrail.ledger.name" -}}
{{- include "caretrail.componentName" (dict "root" . "component" "ledger") -}}
{{- end -}}

{{- define "caretrail.ledger.headless" -}}
{{- printf "%s-headless" (include "caretrail.ledger.name" .) -}}
{{- end -}}

{{/* DNS name of ledger pod <ordinal>: <sts>-<i>.<headless>.<ns>.svc.<domain> */}}
{{- define "caretrail.ledger.peerHost" -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "caretrail.ledger.name" .root) (int .ordinal) (include "caretrail.ledger.headless" .root) .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/* CARETRAIL_LEDGER_INITIAL_MEMBERS: "1=<pod-0 dns>:<port>,2=<pod-1 dns>:<port>,…"
(node id = ordinal + 1; the format services/ledger/src/config.rs parses). */}}
{{- define "caretrail.ledger.initialMembers" -}}
{{- $members := list -}}
{{- range $i := until (int .Values.ledger.replicas) -}}
{{- $members = append $members (printf "%d=%s:%v" (add1 $i) (include "caretrail.ledger.peerHost" (dict "root" $ "ordinal" $i)) $.Values.ledger.clusterPort) -}}
{{- end -}}
{{- join "," $members -}}
{{- end -}}

{{/* ---------------- workload pieces ---------------- */}}

{{/* A service's value with a fallback to defaults: (dict "svc" .Values.x "key" "k" "root" $) */}}
{{- define "caretrail.setting" -}}
{{- $v := index .svc .key -}}
{{- if kindIs "invalid" $v -}}{{- index .root.Values.defaults .key -}}{{- else -}}{{- $v -}}{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds consistent with CARETRAIL_SHUTDOWN_TIMEOUT_SECS. */}}
{{- define "caretrail.terminationGrace" -}}
{{- $d := .root.Values.defaults -}}
{{- add (int $d.preStopSleepSeconds) (int (include "caretrail.setting" (dict "svc" .svc "key" "shutdownTimeoutSecs" "root" .root))) (int $d.shutdownMarginSeconds) -}}
{{- end -}}

{{/* CARETRAIL_* settings every HTTP service has (ConfigMap data). */}}
{{- define "caretrail.config.http" -}}
CARETRAIL_HTTP_HOST: "0.0.0.0"
CARETRAIL_HTTP_PORT: {{ .root.Values.defaults.httpPort | quote }}
CARETRAIL_HTTP_WORKERS: {{ include "caretrail.setting" (dict "svc" .svc "key" "httpWorkers" "root" .root) | quote }}
CARETRAIL_SHUTDOWN_TIMEOUT_SECS: {{ include "caretrail.setting" (dict "svc" .svc "key" "shutdownTimeoutSecs" "root" .root) | quote }}
CARETRAIL_JSON_LIMIT_BYTES: {{ .root.Values.defaults.jsonLimitBytes | int64 | quote }}
CARETRAIL_LOG_FORMAT: {{ .root.Values.observability.logFormat | quote }}
CARETRAIL_TOKEN_ISSUER: {{ include "caretrail.tokenIssuer" .root | quote }}
CARETRAIL_BUS_PREFIX: {{ .root.Values.bus.prefix | quote }}
CARETRAIL_BUS_QUORUM_QUEUES: {{ .root.Values.bus.quorumQueues | quote }}
{{- with .root.Values.observability.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- with .root.Values.observability.rustLog }}
RUST_LOG: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* CARETRAIL_* database settings of a service with a schema. */}}
{{- define "caretrail.config.db" -}}
CARETRAIL_DATABASE_SCHEMA: {{ .schema | quote }}
CARETRAIL_DATABASE_MAX_CONNECTIONS: {{ default .root.Values.database.maxConnections .svc.databaseMaxConnections | quote }}
CARETRAIL_RUN_MIGRATIONS: "false"
{{- end -}}

{{/* env entries from Secrets: the bus URL (every service) and the database URL (withDb). */}}
{{- define "caretrail.env.secrets" -}}
{{- if .withDb }}
- name: CARETRAIL_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.database.existingSecret | quote }}
      key: {{ .root.Values.database.urlKey | quote }}
{{- end }}
- name: CARETRAIL_BUS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.bus.existingSecret | quote }}
      key: {{ .root.Values.bus.urlKey | quote }}
{{- end -}}

{{/* Pod-level scheduling: node selector, tolerations, affinity, topology spread.
(dict "root" $ "svc" .Values.x "component" "gateway" "antiAffinity" "soft" "zoneSpread" dict) */}}
{{- define "caretrail.scheduling" -}}
{{- $root := .root -}}
{{- $d := $root.Values.defaults -}}
{{- with (default $d.nodeSelector .svc.nodeSelector) }}
nodeSelector:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with (default $d.tolerations .svc.tolerations) }}
tolerations:
{{ toYaml . | indent 2 }}
{{- end }}
{{- with (default $d.priorityClassName .svc.priorityClassName) }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- if .svc.affinity }}
affinity:
{{ toYaml .svc.affinity | indent 2 }}
{{- else if eq .antiAffinity "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
{{ include "caretrail.componentSelectorLabels" (dict "root" $root "component" .component) | indent 12 }}
{{- else if eq .antiAffinity "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
{{ include "caretrail.componentSelectorLabels" (dict "root" $root "component" .component) | indent 14 }}
{{- end }}
{{- if .svc.topologySpreadConstraints }}
topologySpreadConstraints:
{{ toYaml .svc.topologySpreadConstraints | indent 2 }}
{{- else if .zoneSpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .zoneSpread.maxSkew }}
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ .zoneSpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
{{ include "caretrail.componentSelectorLabels" (dict "root" $root "component" .component) | indent 8 }}
{{- end }}
{{- end -}}

{{/* Probes on the "http" port: startup and liveness on /healthz, readiness on /readyz. */}}
{{- define "caretrail.probes" -}}
{{- $d := .root.Values.defaults -}}
{{- $startup := merge (dict) (.startup | default dict) $d.startupProbe -}}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: {{ $startup.periodSeconds }}
  timeoutSeconds: {{ $startup.timeoutSeconds }}
  failureThreshold: {{ $startup.failureThreshold }}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  initialDelaySeconds: {{ $d.livenessProbe.initialDelaySeconds }}
  periodSeconds: {{ $d.livenessProbe.periodSeconds }}
  timeoutSeconds: {{ $d.livenessProbe.timeoutSeconds }}
  failureThreshold: {{ $d.livenessProbe.failureThreshold }}
readinessProbe:
  httpGet: {path: /readyz, port: http}
  initialDelaySeconds: {{ $d.readinessProbe.initialDelaySeconds }}
  periodSeconds: {{ $d.readinessProbe.periodSeconds }}
  timeoutSeconds: {{ $d.readinessProbe.timeoutSeconds }}
  failureThreshold: {{ $d.readinessProbe.failureThreshold }}
{{- end -}}

{{/* preStop: keep serving while endpoints and proxies forget this pod. */}}
{{- define "caretrail.lifecycle" -}}
{{- if gt (int .Values.defaults.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    exec:
      command: ["/bin/sleep", "{{ .Values.defaults.preStopSleepSeconds }}"]
{{- end }}
{{- end -}}

{{/* Cross-field checks the JSON schema cannot express; each fails with a clear message. */}}
{{- define "caretrail.validate" -}}
{{- $l := .Values.ledger -}}
{{- if not (and (lt (int $l.heartbeatMs) (int $l.electionTimeoutMinMs)) (lt (int $l.electionTimeoutMinMs) (int $l.electionTimeoutMaxMs))) -}}
{{- fail "ledger: need 0 < heartbeatMs < electionTimeoutMinMs < electionTimeoutMaxMs" -}}
{{- end -}}
{{- if gt (int $l.updateStrategy.partition) (int $l.replicas) -}}
{{- fail (printf "ledger.updateStrategy.partition (%v) must be between 0 and ledger.replicas (%v)" $l.updateStrategy.partition $l.replicas) -}}
{{- end -}}
{{- if eq .Values.objectStore.storage "local" -}}
{{- if or .Values.objectStore.autoscaling.enabled (ne (int .Values.objectStore.replicaCount) 1) -}}
{{- fail "objectStore.storage=local keeps objects on one ReadWriteOnce volume: set objectStore.replicaCount=1 and objectStore.autoscaling.enabled=false (or use storage=s3)" -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.ingress.enabled) .Values.gatewayApi.enabled (not (or .Values.gatewayApi.hostnames .Values.ingress.hostname)) -}}
{{- fail "gatewayApi.enabled needs gatewayApi.hostnames (or ingress.hostname)" -}}
{{- end -}}
{{- range $name := list "gateway" "objectStore" -}}
{{- $a := (index $.Values $name).autoscaling -}}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas must not exceed maxReplicas" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* ---------------- NetworkPolicy pieces ---------------- */}}

{{/* An egress rule from {to: [peers], ports: [...]}; an empty `to` means any address. */}}
{{- define "caretrail.egress.rule" -}}
- ports:
{{ toYaml .ports | indent 4 }}
{{- with .to }}
  to:
{{ toYaml . | indent 4 }}
{{- end }}
{{- end -}}

{{- define "caretrail.egress.dns" -}}
{{ include "caretrail.egress.rule" .Values.networkPolicy.dns }}
{{- end -}}

{{/* A peer selecting one component's pods of this release. */}}
{{- define "caretrail.peer" -}}
- podSelector:
    matchLabels:
{{ include "caretrail.componentSelectorLabels" . | indent 6 }}
{{- end -}}
