{{- define "sweetslice.migrationName" -}}
{{- printf "%s-migrate" (include "sweetslice.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The migration Job, a Helm hook: after install (the database is in the same release and may
still be starting; the command waits for it) and before upgrade, so the schema is migrated once
before new pods roll. Its pods carry a name of their own so the Service, the PodDisruptionBudget
and the service's NetworkPolicy never select them.
*/}}
{{- define "sweetslice.migrationJob" -}}
{{- if and .Values.database.enabled .Values.migrations.enabled }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "sweetslice.migrationName" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
  annotations:
    helm.sh/hook: post-install,pre-upgrade
    helm.sh/hook-weight: "0"
    # Deleted once it succeeds, so uninstall leaves nothing; a failed one stays to be read.
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ .Values.migrations.backoffLimit }}
  # A failed one stays a day to be read, then goes (uninstall does not delete hooks).
  ttlSecondsAfterFinished: 86400
  activeDeadlineSeconds: {{ .Values.migrations.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ include "sweetslice.name" . }}-migrate
        app.kubernetes.io/instance: {{ .Release.Name }}
        app.kubernetes.io/component: migration
        app.kubernetes.io/part-of: sweetslice
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "sweetslice.fullname" . }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- include "sweetslice.podSecurityContext" . | nindent 8 }}
      containers:
        - name: migrate
          image: {{ include "sweetslice.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy | default .Values.global.image.pullPolicy }}
          command: ["python", "-m", "shop_{{ .Values.serviceName }}.main", "migrate"]
          args: ["--wait-seconds", "{{ .Values.migrations.waitSeconds }}"]
          env:
            {{- range $name, $value := include "sweetslice.configData" . | fromYaml }}
            - name: {{ $name }}
              value: {{ $value | toString | quote }}
            {{- end }}
          resources:
            {{- toYaml .Values.migrations.resources | nindent 12 }}
          securityContext:
            {{- include "sweetslice.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- include "sweetslice.secretMount" . | nindent 12 }}
      volumes:
        {{- include "sweetslice.tmpVolume" . | nindent 8 }}
        {{- include "sweetslice.secretVolume" (dict "root" . "consul" false) | nindent 8 }}
{{- end }}
{{- end -}}
