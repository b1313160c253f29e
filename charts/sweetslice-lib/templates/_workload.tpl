{{- define "sweetslice.serviceaccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "sweetslice.fullname" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
# The services never call the Kubernetes API; a token in the pod would only be something to steal.
automountServiceAccountToken: false
{{- end -}}

{{- define "sweetslice.tmpVolume" -}}
# The root filesystem is read-only; /tmp holds the Prometheus multiprocess files (and SQLite,
# when a service runs without PostgreSQL in development).
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{- define "sweetslice.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "sweetslice.fullname" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "sweetslice.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # A new pod must be ready before an old one goes: a rollout never lowers capacity.
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "sweetslice.labels" . | nindent 8 }}
      annotations:
        # A change of settings or secrets rolls the pods: they read both only at start. Over
        # what values set, not the rendered Secret: generated passwords are random in each
        # render until stored, and kept unchanged from then on.
        checksum/config: {{ include "sweetslice.configmap" . | sha256sum }}
        checksum/secret: {{ list .Values.secretConfig .Values.database .Values.signingKey .Values.global.internalToken (and .Values.global.consul.enabled .Values.global.consul.token) | toJson | sha256sum }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "sweetslice.fullname" . }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- include "sweetslice.podSecurityContext" . | nindent 8 }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      topologySpreadConstraints:
        {{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
        - topologyKey: {{ . }}
          maxSkew: 1
          # Spread when the cluster allows it; a one-node kind cluster must still schedule.
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "sweetslice.selectorLabels" $ | nindent 14 }}
          matchLabelKeys: ["pod-template-hash"]
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .Values.serviceName }}
          image: {{ include "sweetslice.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy | default .Values.global.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ .Values.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "sweetslice.fullname" . }}
          {{- if .Values.global.consul.enabled }}
          env:
            # The address registered in Consul: the pod's own, which only the pod knows.
            - name: {{ include "sweetslice.envPrefix" . }}ADVERTISE_ADDRESS
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
          {{- end }}
          startupProbe:
            httpGet:
              path: /livez
              port: http
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: /livez
              port: http
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          lifecycle:
            preStop:
              {{- if .Values.global.consul.enabled }}
              # Leave Consul first, so callers stop picking this instance, and keep serving
              # while their watches catch up and what is in flight finishes; SIGTERM follows.
              exec:
                command:
                  - python
                  - -m
                  - shop_{{ .Values.serviceName }}.main
                  - deregister
                  - --drain-seconds
                  - {{ .Values.preStopSleepSeconds | quote }}
              {{- else }}
              # Endpoints are removed asynchronously: keep serving a moment after the pod is
              # marked terminating, then SIGTERM drains what is in flight.
              sleep:
                seconds: {{ .Values.preStopSleepSeconds }}
              {{- end }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          securityContext:
            {{- include "sweetslice.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- include "sweetslice.secretMount" . | nindent 12 }}
      volumes:
        {{- include "sweetslice.tmpVolume" . | nindent 8 }}
        {{- include "sweetslice.secretVolume" (dict "root" . "consul" true) | nindent 8 }}
{{- end -}}

{{- define "sweetslice.svc" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "sweetslice.fullname" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "sweetslice.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .Values.port }}
      targetPort: http
      protocol: TCP
{{- end -}}

{{- define "sweetslice.hpa" -}}
{{- if .Values.autoscaling.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "sweetslice.fullname" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "sweetslice.fullname" . }}
  minReplicas: {{ .Values.autoscaling.minReplicas }}
  maxReplicas: {{ .Values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .Values.autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      selectPolicy: Max
      policies:
        - type: Percent
          value: 100
          periodSeconds: 30
        - type: Pods
          value: 2
          periodSeconds: 30
    scaleDown:
      # Load comes in waves; hold capacity for a while rather than flap.
      stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDownStabilizationSeconds }}
      selectPolicy: Min
      policies:
        - type: Percent
          value: 50
          periodSeconds: 60
{{- end }}
{{- end -}}

{{- define "sweetslice.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "sweetslice.fullname" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
spec:
  # maxUnavailable, not minAvailable: with one replica (kind) a drain can still proceed.
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "sweetslice.selectorLabels" . | nindent 6 }}
{{- end -}}

{{- define "sweetslice.servicemonitor" -}}
{{- if .Values.global.monitoring.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "sweetslice.fullname" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
    {{- with .Values.global.monitoring.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "sweetslice.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ .Values.global.monitoring.interval }}
      # The metrics carry a `service` label of their own (the rules and dashboards group by
      # it); without this Prometheus would rename it exported_service.
      honorLabels: true
{{- end }}
{{- end -}}
