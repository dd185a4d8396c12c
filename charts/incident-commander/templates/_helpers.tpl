{{- define "incident-commander.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "incident-commander.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "incident-commander.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "incident-commander.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "incident-commander.selectorLabels" -}}
app.kubernetes.io/name: {{ include "incident-commander.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "incident-commander.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "incident-commander.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "incident-commander.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "incident-commander.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "incident-commander.monitoringAvailable" -}}
{{- if or .Values.monitoring.forceRender (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}

{{/*
Rules the operator needs in every namespace it watches, verb by verb (see docs/packaging.md):
- its three kinds: kopf lists and watches them and patches its annotations; IncidentPolicy
  finalizers are set with a merge patch. No get, create, update or delete.
- their status subresources: merge patches only.
- Secrets: AwsConnection credentials are read and watched; IncidentPolicy API-key and
  signing-key Secrets are created, replaced (update) and deleted.
- core/v1 Events: created on condition transitions (by the operator and by kopf).
*/}}
{{- define "incident-commander.namespacedRules" -}}
- apiGroups: [incidentcommander.io]
  resources: [awsconnections, budgetpolicies, incidentpolicies]
  verbs: [list, watch, patch]
- apiGroups: [incidentcommander.io]
  resources: [awsconnections/status, budgetpolicies/status, incidentpolicies/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{- define "incident-commander.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/*
"true" when the CRD named .name exists and belongs to no release of this name and namespace (it
was applied by hand or by another tool): the chart then leaves it alone. Call with
(dict "name" NAME "root" $).
*/}}
{{- define "incident-commander.crdManagedElsewhere" -}}
{{- $existing := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" .name | default dict }}
{{- if $existing }}
{{- $release := dig "metadata" "annotations" "meta.helm.sh/release-name" "" $existing }}
{{- $namespace := dig "metadata" "annotations" "meta.helm.sh/release-namespace" "" $existing }}
{{- if not (and (eq $release .root.Release.Name) (eq $namespace .root.Release.Namespace)) }}true{{ end }}
{{- end }}
{{- end }}
