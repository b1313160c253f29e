{{/*
The settings a service reads, by environment variable. Plain ones go in the ConfigMap (the
Deployment reads it with envFrom) and, inline, in the migration Job: the Job runs before an
upgrade applies the new ConfigMap, so it must not read the old one.
*/}}
{{- define "sweetslice.configData" -}}
{{- $prefix := include "sweetslice.envPrefix" . -}}
{{ $prefix }}ENVIRONMENT: {{ .Values.global.environment | quote }}
{{ $prefix }}HOST: "0.0.0.0"
{{ $prefix }}PORT: {{ .Values.port | quote }}
{{ $prefix }}LOG_JSON: "true"
{{ $prefix }}WORKERS: "1"
{{ $prefix }}METRICS_ENABLED: "true"
{{- range .Values.calls }}
{{ $prefix }}{{ .name | upper }}_URL: {{ include "sweetslice.peerUrl" (dict "root" $ "peer" .) | quote }}
{{- end }}
{{- if .Values.usesBroker }}
{{ $prefix }}NATS_URL: {{ tpl .Values.global.broker.url $ | quote }}
{{- end }}
{{- if .Values.global.tracing.enabled }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ tpl .Values.global.tracing.endpoint $ | quote }}
OTEL_SERVICE_NAME: {{ .Values.serviceName | quote }}
{{- end }}
{{- if .Values.global.consul.enabled }}
{{ $prefix }}DISCOVERY: "consul"
{{ $prefix }}CONSUL_HTTP_ADDR: {{ tpl .Values.global.consul.address $ | quote }}
{{- end }}
{{- range $key, $value := .Values.config }}
{{ $prefix }}{{ $key | upper }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{- define "sweetslice.peerUrl" -}}
{{- if .peer.url -}}
{{- tpl .peer.url .root -}}
{{- else -}}
{{- printf "http://%s-%s:%v" .root.Release.Name .peer.name .peer.port -}}
{{- end -}}
{{- end -}}

{{- define "sweetslice.secretName" -}}
{{- include "sweetslice.fullname" . -}}
{{- end -}}

{{/*
Secret settings, each read from its Secret by key. The database URL is assembled by Kubernetes
from the password variable defined just before it, so the password is never in a ConfigMap.
*/}}
{{- define "sweetslice.secretEnv" -}}
{{- $prefix := include "sweetslice.envPrefix" . -}}
{{- $secret := include "sweetslice.secretName" . -}}
{{- if .Values.database.enabled }}
{{- $db := .Values.database }}
- name: SWEETSLICE_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $db.existingSecret | default $secret }}
      key: {{ $db.passwordKey }}
- name: {{ $prefix }}DATABASE_URL
  value: {{ printf "postgresql://%s:$(SWEETSLICE_DATABASE_PASSWORD)@%s:%v/%s" $db.user (tpl .Values.global.database.host .) .Values.global.database.port $db.name | quote }}
{{- end }}
{{- if ne .Values.serviceName "gateway" }}
- name: {{ $prefix }}INTERNAL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ required "global.internalToken.existingSecret names the Secret holding the token every service shares" (tpl .Values.global.internalToken.existingSecret .) }}
      key: {{ .Values.global.internalToken.key }}
{{- end }}
{{- if .Values.signingKey.enabled }}
- name: {{ $prefix }}SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.signingKey.existingSecret | default $secret }}
      key: {{ .Values.signingKey.key }}
{{- end }}
{{- range $key, $_ := .Values.secretConfig }}
- name: {{ $prefix }}{{ $key | upper }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key | upper }}
{{- end }}
{{- end -}}

{{- define "sweetslice.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "sweetslice.fullname" . }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
data:
  {{- include "sweetslice.configData" . | nindent 2 }}
{{- end -}}

{{- define "sweetslice.secret" -}}
{{- $name := include "sweetslice.secretName" . -}}
{{- $data := dict -}}
{{- if and .Values.database.enabled (not .Values.database.existingSecret) -}}
{{- $_ := set $data .Values.database.passwordKey (include "sweetslice.keptSecret" (dict "root" . "secret" $name "key" .Values.database.passwordKey "generate" "password")) -}}
{{- end -}}
{{- if and .Values.signingKey.enabled (not .Values.signingKey.existingSecret) -}}
{{- $_ := set $data .Values.signingKey.key (include "sweetslice.keptSecret" (dict "root" . "secret" $name "key" .Values.signingKey.key "generate" "ed25519")) -}}
{{- end -}}
{{- range $key, $value := .Values.secretConfig -}}
{{- $_ := set $data ($key | upper) ($value | toString | b64enc) -}}
{{- end -}}
{{- if $data }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  labels:
    {{- include "sweetslice.labels" . | nindent 4 }}
type: Opaque
data:
  {{- range $key, $value := $data }}
  {{ $key }}: {{ $value | quote }}
  {{- end }}
{{- end }}
{{- end -}}
