{{/*
Each service's pods may receive only from the services that call it (and, with Consul, from
Consul's checks) and send only to the ones it calls, its database, the broker (if it uses one),
Consul (when on) and DNS. Everything else is refused by the umbrella's default-deny policy.
The graph is declared in values (calls / calledBy).
*/}}
{{- define "sweetslice.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.global.networkPolicy.dnsNamespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.global.networkPolicy.dnsPodLabels | nindent 10 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}

{{- define "sweetslice.databaseEgress" -}}
{{- if .Values.database.enabled }}
{{- with .Values.global.database.egressTo }}
- to:
    {{- toYaml . | nindent 4 }}
{{- else }}
- to:
    - podSelector:
        matchLabels:
          {{- include "sweetslice.peerSelector" (dict "root" . "name" "postgresql") | nindent 10 }}
{{- end }}
  ports:
    - port: {{ .Values.global.database.port }}
      protocol: TCP
{{- end }}
{{- end -}}

{{- define "sweetslice.networkpolicy" -}}
{{- if .Values.global.networkPolicy.enabled }}
{{- if and .Values.global.consul.enabled (not .Values.global.consul.egressTo) }}
{{- fail "global.consul.egressTo must name Consul's pods (an empty `to` would open the port to every destination)" }}
{{- end }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "sweetslice.fullname" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "sweetslice.selectorLabels" . | nindent 6 }}
  policyTypes: ["Ingress", "Egress"]
  ingress:
    {{- if .Values.calledBy }}
    - from:
        {{- range .Values.calledBy }}
        - podSelector:
            matchLabels:
              {{- include "sweetslice.peerSelector" (dict "root" $ "name" .) | nindent 14 }}
        {{- end }}
      ports:
        - port: {{ .Values.port }}
          protocol: TCP
    {{- end }}
    {{- with .Values.networkPolicy.ingressFrom }}
    - from:
        {{- toYaml . | nindent 8 }}
      ports:
        - port: {{ $.Values.port }}
          protocol: TCP
    {{- end }}
    {{- if .Values.global.consul.enabled }}
    # Consul's agent runs each registered instance's HTTP check (/readyz) against the pod.
    - from:
        {{- toYaml .Values.global.consul.egressTo | nindent 8 }}
      ports:
        - port: {{ .Values.port }}
          protocol: TCP
    {{- end }}
    {{- if .Values.global.monitoring.enabled }}
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ .Values.global.monitoring.namespace }}
      ports:
        - port: {{ .Values.port }}
          protocol: TCP
    {{- end }}
  egress:
    {{- include "sweetslice.dnsEgress" . | nindent 4 }}
    {{- range .Values.calls }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "sweetslice.peerSelector" (dict "root" $ "name" .name) | nindent 14 }}
      ports:
        - port: {{ .port }}
          protocol: TCP
    {{- end }}
    {{- include "sweetslice.databaseEgress" . | nindent 4 }}
    {{- if .Values.usesBroker }}
    {{- with .Values.global.broker.egressTo }}
    - to:
        {{- toYaml . | nindent 8 }}
    {{- else }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "sweetslice.peerSelector" (dict "root" . "name" "nats") | nindent 14 }}
    {{- end }}
      ports:
        - port: {{ .Values.global.broker.port }}
          protocol: TCP
    {{- end }}
    {{- if .Values.global.tracing.enabled }}
    {{- if not .Values.global.tracing.egressTo }}
    {{- fail "global.tracing.egressTo must name the collector's pods (an empty `to` would open the port to every destination)" }}
    {{- end }}
    - to:
        {{- toYaml .Values.global.tracing.egressTo | nindent 8 }}
      ports:
        - port: {{ .Values.global.tracing.port }}
          protocol: TCP
    {{- end }}
    {{- if .Values.global.consul.enabled }}
    - to:
        {{- toYaml .Values.global.consul.egressTo | nindent 8 }}
      ports:
        - port: {{ .Values.global.consul.port }}
          protocol: TCP
    {{- end }}
    {{- with .Values.networkPolicy.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- if and .Values.database.enabled .Values.migrations.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "sweetslice.migrationName" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
spec:
  # A regular resource, not a hook: it must exist before the pre-upgrade migration runs.
  podSelector:
    matchLabels:
      app.kubernetes.io/name: {{ include "sweetslice.name" . }}-migrate
      app.kubernetes.io/instance: {{ .Release.Name }}
  policyTypes: ["Ingress", "Egress"]
  ingress: []
  egress:
    {{- include "sweetslice.dnsEgress" . | nindent 4 }}
    {{- include "sweetslice.databaseEgress" . | nindent 4 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Everything a service chart renders. */}}
{{- define "sweetslice.service" -}}
{{- $parts := list "serviceaccount" "configmap" "secret" "deployment" "svc" "hpa" "pdb" "networkpolicy" "migrationJob" "servicemonitor" -}}
{{- range $parts }}
{{- $doc := include (printf "sweetslice.%s" .) $ | trim -}}
{{- if $doc }}
---
{{ $doc }}
{{- end }}
{{- end }}
{{- end -}}
