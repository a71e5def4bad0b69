{{/*
A stateless Caretrail service: ConfigMap (its CARETRAIL_* settings), Deployment, Service,
PodDisruptionBudget and, when asked, a HorizontalPodAutoscaler.

(dict
  "root"      $                      the chart context
  "component" "object-store"         resource suffix and app.kubernetes.io/component
  "svc"       .Values.objectStore    the service's values
  "binary"    "caretrail-object-store"
  "config"    "<yaml lines>"         service-specific ConfigMap entries
  "withDb"    true                   the service has a database schema
  "secretEnv" "<yaml list>"          extra env entries from Secrets
  "volumes"   "<yaml list>"          extra volumes
  "mounts"    "<yaml list>"          extra volume mounts
  "hpa"       true                   the service may autoscale
  "recreate"  false                  Recreate instead of RollingUpdate (one RWO volume))
*/}}
{{- define "caretrail.statelessWorkload" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $name := include "caretrail.componentName" (dict "root" $root "component" .component) -}}
{{- $ctx := dict "root" $root "component" .component -}}
{{- $configData := merge (fromYaml (include "caretrail.config.http" (dict "root" $root "svc" $svc))) (fromYaml (.config | default "")) | toYaml -}}
{{- $autoscale := and .hpa $svc.autoscaling $svc.autoscaling.enabled -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
{{ include "caretrail.componentLabels" $ctx | indent 4 }}
{{- include "caretrail.metaAnnotations" (dict "root" $root) }}
data:
{{ $configData | trim | indent 2 }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
{{ include "caretrail.componentLabels" $ctx | indent 4 }}
{{- include "caretrail.metaAnnotations" (dict "root" $root) }}
spec:
{{- if not $autoscale }}
  replicas: {{ $svc.replicaCount }}
{{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
{{ include "caretrail.componentSelectorLabels" $ctx | indent 6 }}
  strategy:
{{- if .recreate }}
    type: Recreate
{{- else }}
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
{{- end }}
  template:
    metadata:
      labels:
{{ include "caretrail.componentLabels" $ctx | indent 8 }}
{{- with $svc.podLabels }}
{{ toYaml . | indent 8 }}
{{- end }}
      annotations:
        checksum/config: {{ $configData | sha256sum }}
{{- with $svc.podAnnotations }}
{{ toYaml . | indent 8 }}
{{- end }}
    spec:
      serviceAccountName: {{ include "caretrail.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "caretrail.terminationGrace" (dict "root" $root "svc" $svc) }}
{{- with $root.Values.image.pullSecrets }}
      imagePullSecrets:
{{- range . }}
        - name: {{ . | quote }}
{{- end }}
{{- end }}
      securityContext:
{{ toYaml $root.Values.defaults.podSecurityContext | indent 8 }}
{{- with (include "caretrail.scheduling" (dict "root" $root "svc" $svc "component" .component "antiAffinity" $root.Values.defaults.podAntiAffinity "zoneSpread" $root.Values.defaults.zoneSpread) | trim) }}
{{ . | indent 6 }}
{{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "caretrail.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["/usr/local/bin/{{ .binary }}"]
          ports:
            - name: http
              containerPort: {{ $root.Values.defaults.httpPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ $name }}
          env:
{{- include "caretrail.env.secrets" (dict "root" $root "withDb" .withDb) | trim | nindent 12 }}
{{- with .secretEnv }}
{{ . | trim | indent 12 }}
{{- end }}
{{- with $svc.extraEnv }}
{{ toYaml . | indent 12 }}
{{- end }}
{{ include "caretrail.probes" (dict "root" $root) | indent 10 }}
{{- with (include "caretrail.lifecycle" $root | trim) }}
{{ . | indent 10 }}
{{- end }}
          resources:
{{ toYaml $svc.resources | indent 12 }}
          securityContext:
{{ toYaml $root.Values.defaults.containerSecurityContext | indent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
{{- with .mounts }}
{{ . | trim | indent 12 }}
{{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $root.Values.defaults.tmpSizeLimit }}
{{- with .volumes }}
{{ . | trim | indent 8 }}
{{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
{{ include "caretrail.componentLabels" $ctx | indent 4 }}
    caretrail.io/scrape: "true"
{{- include "caretrail.metaAnnotations" (dict "root" $root) }}
spec:
  type: ClusterIP
  selector:
{{ include "caretrail.componentSelectorLabels" $ctx | indent 4 }}
  ports:
    - name: http
      port: {{ $root.Values.defaults.httpPort }}
      targetPort: http
      protocol: TCP
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
{{ include "caretrail.componentLabels" $ctx | indent 4 }}
{{- include "caretrail.metaAnnotations" (dict "root" $root) }}
spec:
  maxUnavailable: {{ $svc.pdb.maxUnavailable }}
  # A crash-looping replica must not block node drains (stateless: nothing to protect).
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
{{ include "caretrail.componentSelectorLabels" $ctx | indent 6 }}
{{- if $autoscale }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
{{ include "caretrail.componentLabels" $ctx | indent 4 }}
{{- include "caretrail.metaAnnotations" (dict "root" $root) }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $svc.autoscaling.minReplicas }}
  maxReplicas: {{ $svc.autoscaling.maxReplicas }}
  metrics:
{{- with $svc.autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ . }}
{{- end }}
{{- with $svc.autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
{{- end }}
  behavior:
    scaleDown:
      # Scale in slowly: a gateway or object-store pod may be streaming a large record.
      stabilizationWindowSeconds: 300
      policies:
        - type: Pods
          value: 1
          periodSeconds: 60
{{- end }}
{{- end -}}
