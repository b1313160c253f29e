{{/*
Labels, the image and the security contexts come from the library chart (sweetslice-lib), as
for the services; what is here is the operator's own: its name, the namespaces it watches and
the RBAC rules.
*/}}

{{/*
The release name when it already says "sweetslice-operator" (`make rollout` installs it so),
<release>-sweetslice-operator otherwise: nothing calls the operator by name, so it need not
follow the services' fixed <release>-<chart> form.
*/}}
{{- define "sweetslice-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The namespaces a namespaced operator watches: the listed ones, else the release's. */}}
{{- define "sweetslice-operator.namespaces" -}}
{{- if .Values.watch.allNamespaces -}}
{{- else if .Values.watch.namespaces -}}
{{- join "," .Values.watch.namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does, and nothing more (no wildcard anywhere):
- ServiceRollouts: watch them, add and remove kopf's finalizer, write their status;
- Deployments: read the stable one and patch its pod template on promotion; create, patch
  and delete the canary (the stable one is never deleted, and its replica count is the HPA's);
- Events: one per phase change (kopf posts core/v1 Events and may patch a repeated one);
- kopf's peering object, only when peering is on.
Namespaces are not listed: kopf serves named namespaces without watching them, and
cluster-wide it does not observe namespaces at all. CRDs are not listed either: without that
right kopf resolves the ServiceRollout resource once at start instead of watching for it.
Argument: (dict "root" . "peering" "kopfpeerings" | "clusterkopfpeerings").
*/}}
{{- define "sweetslice-operator.rules" -}}
- apiGroups: ["rollouts.sweetslice.dev"]
  resources: ["servicerollouts", "servicerollouts/status"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .root.Values.peering.name }}
- apiGroups: ["kopf.dev"]
  resources: [{{ .peering | quote }}]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}
