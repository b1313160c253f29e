{{/*
Names and labels. Selectors use name + instance only: the other labels change on upgrade, and a
Deployment's selector cannot.
*/}}
{{- define "sweetslice.name" -}}
{{- .Chart.Name -}}
{{- end -}}

{{/*
<release>-<chart>, always: services find one another by these names (calls in values), so no
override is offered that would break them.
*/}}
{{- define "sweetslice.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sweetslice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sweetslice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sweetslice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sweetslice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Values.component | default "service" }}
app.kubernetes.io/part-of: sweetslice
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector of another chart's pods in the same release, by that chart's name. */}}
{{- define "sweetslice.peerSelector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* SWEETSLICE_<SERVICE>_: every setting of a service is read under its prefix. */}}
{{- define "sweetslice.envPrefix" -}}
{{- printf "SWEETSLICE_%s_" (.Values.serviceName | upper) -}}
{{- end -}}

{{- define "sweetslice.image" -}}
{{- $registry := .Values.global.image.registry -}}
{{- $repository := .Values.image.repository -}}
{{- $tag := .Values.image.tag | default .Values.global.image.tag | default .Chart.AppVersion -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry $repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
A generated secret value that survives upgrades: the value already stored in the cluster when
there is one (lookup), a new random one otherwise. Without lookup every upgrade would rotate
database passwords and signing keys, locking services out and logging every shopper off.
Arguments: root, secret (name), key, generate (a function name: "password" or "ed25519").
*/}}
{{- define "sweetslice.keptSecret" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else if eq .generate "ed25519" -}}
{{- genPrivateKey "ed25519" | b64enc -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The pod and container security context of the `restricted` Pod Security Standard. */}}
{{- define "sweetslice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sweetslice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
