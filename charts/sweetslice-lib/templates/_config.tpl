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
{{- with .Values.global.consul }}
{{- if .enabled }}
{{- if ge (int .checkTimeoutSeconds) (int .checkIntervalSeconds) }}
{{- fail "global.consul.checkTimeoutSeconds must be below checkIntervalSeconds (a check that may run longer than its interval overlaps the next one)" }}
{{- end }}
{{ $prefix }}DISCOVERY: "consul"
{{ $prefix }}CONSUL_HTTP_ADDR: {{ tpl .address $ | quote }}
{{ $prefix }}CONSUL_CHECK_INTERVAL_SECONDS: {{ .checkIntervalSeconds | quote }}
{{ $prefix }}CONSUL_CHECK_TIMEOUT_SECONDS: {{ .checkTimeoutSeconds | quote }}
{{ $prefix }}CONSUL_DEREGISTER_AFTER_SECONDS: {{ .deregisterAfterSeconds | quote }}
{{ $prefix }}CONSUL_WAIT_SECONDS: {{ .waitSeconds | quote }}
{{- else }}
{{- /* Kubernetes DNS: each *_URL host is re-resolved by the service, so a Service whose
addresses change is followed without a restart. */}}
{{ $prefix }}DISCOVERY: "dns"
{{- end }}
{{- end }}
{{- if include "sweetslice.hasSecrets" . }}
SWEETSLICE_SECRETS_DIR: {{ include "sweetslice.secretsDir" . | quote }}
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

{{/*
Secret settings reach the service as files, one per setting, named like its environment
variable (shopkit reads SWEETSLICE_SECRETS_DIR): a projected volume of the service's Secret,
the token every service shares and, with Consul, its ACL token. Never environment variables,
which child processes inherit and /proc/<pid>/environ shows.
*/}}
{{- define "sweetslice.secretsDir" -}}/run/secrets/sweetslice{{- end -}}

{{/* The Consul ACL token's Secret, when Consul is on and one is named ("" otherwise). */}}
{{- define "sweetslice.consulTokenSecret" -}}
{{- if .Values.global.consul.enabled -}}
{{- tpl .Values.global.consul.token.existingSecret . -}}
{{- end -}}
{{- end -}}

{{- define "sweetslice.hasSecrets" -}}
{{- if or .Values.database.enabled .Values.signingKey.enabled .Values.secretConfig (ne .Values.serviceName "gateway") (include "sweetslice.consulTokenSecret" .) -}}true{{- end -}}
{{- end -}}

{{/*
Arguments: root, and consul - whether the pod gets the Consul token: the serving pods register
with it; the migration Job never talks to Consul, so it is not handed the token.
*/}}
{{- define "sweetslice.secretVolume" -}}
{{- $root := .root -}}
{{- if include "sweetslice.hasSecrets" $root -}}
{{- $values := $root.Values -}}
{{- $prefix := include "sweetslice.envPrefix" $root -}}
{{- $secret := include "sweetslice.fullname" $root -}}
{{- $consulToken := and .consul (include "sweetslice.consulTokenSecret" $root) -}}
{{- $own := list -}}
{{- if and $values.signingKey.enabled (not $values.signingKey.existingSecret) -}}
{{- $own = append $own (dict "key" $values.signingKey.key "path" (printf "%sSIGNING_KEY" $prefix)) -}}
{{- end -}}
{{- range $key, $_ := $values.secretConfig -}}
{{- $own = append $own (dict "key" ($key | upper) "path" (printf "%s%s" $prefix ($key | upper))) -}}
{{- end -}}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
      {{- if $values.database.enabled }}
      - secret:
          name: {{ tpl $values.database.existingSecret $root | default $secret }}
          items:
            - key: {{ $values.database.urlKey }}
              path: {{ $prefix }}DATABASE_URL
      {{- end }}
      {{- if $own }}
      - secret:
          name: {{ $secret }}
          items:
            {{- range $own }}
            - key: {{ .key }}
              path: {{ .path }}
            {{- end }}
      {{- end }}
      {{- if and $values.signingKey.enabled $values.signingKey.existingSecret }}
      - secret:
          name: {{ tpl $values.signingKey.existingSecret $root }}
          items:
            - key: {{ $values.signingKey.key }}
              path: {{ $prefix }}SIGNING_KEY
      {{- end }}
      {{- if ne $values.serviceName "gateway" }}
      - secret:
          name: {{ required "global.internalToken.existingSecret names the Secret holding the token every service shares" (tpl $values.global.internalToken.existingSecret $root) }}
          items:
            - key: {{ $values.global.internalToken.key }}
              path: {{ $prefix }}INTERNAL_TOKEN
      {{- end }}
      {{- if $consulToken }}
      - secret:
          name: {{ $consulToken }}
          items:
            - key: {{ $values.global.consul.token.key }}
              path: {{ $prefix }}CONSUL_TOKEN
      {{- end }}
{{- end }}
{{- end -}}

{{- define "sweetslice.secretMount" -}}
{{- if include "sweetslice.hasSecrets" . -}}
- name: secrets
  mountPath: {{ include "sweetslice.secretsDir" . }}
  readOnly: true
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
{{- $name := include "sweetslice.fullname" . -}}
{{- $data := dict -}}
{{- if and .Values.database.enabled (not .Values.database.existingSecret) -}}
{{- $db := .Values.database -}}
{{- $password := include "sweetslice.keptSecret" (dict "root" . "secret" $name "key" $db.passwordKey "generate" "password") -}}
{{- $_ := set $data $db.passwordKey $password -}}
{{- $url := printf "postgresql://%s:%s@%s:%v/%s" $db.user (b64dec $password) (tpl .Values.global.database.host .) .Values.global.database.port $db.name -}}
{{- $_ := set $data $db.urlKey ($url | b64enc) -}}
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
