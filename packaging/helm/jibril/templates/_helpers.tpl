{{/* Name of the chart, shortened to the 63 characters of a label value. */}}
{{- define "jibril.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of the release's objects: the release name, with the chart name
unless the release name already contains it. */}}
{{- define "jibril.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "jibril.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jibril.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jibril.labels" -}}
{{ include "jibril.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Secret and key that contain the project token. */}}
{{- define "jibril.tokenSecretName" -}}
{{- .Values.garnet.existingSecret | default (include "jibril.fullname" .) -}}
{{- end -}}

{{- define "jibril.tokenSecretKey" -}}
{{- if .Values.garnet.existingSecret -}}
{{- required "garnet.existingSecretKey is empty; set it to the key of the project token in garnet.existingSecret" .Values.garnet.existingSecretKey -}}
{{- else -}}
token
{{- end -}}
{{- end -}}

{{/* Stop rendering on values the daemon would reject at start. */}}
{{- define "jibril.validateValues" -}}
{{- if and (not .Values.garnet.token) (not .Values.garnet.existingSecret) -}}
{{- fail "project token missing: set garnet.token, or garnet.existingSecret to a Secret that contains it" -}}
{{- end -}}
{{- if and .Values.garnet.token .Values.garnet.existingSecret -}}
{{- fail "garnet.token and garnet.existingSecret are both set; keep only one of them" -}}
{{- end -}}
{{- /* --set reads a name of digits as a number. */ -}}
{{- $clusterName := toString (.Values.cluster.name | default "") -}}
{{- if not $clusterName -}}
{{- fail "cluster.name missing: set it to the name of this Kubernetes cluster, such as --set cluster.name=prod-eu-1; the kubernetes agent kind requires it" -}}
{{- end -}}
{{- $dns1123Subdomain := "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" -}}
{{- if or (gt (len $clusterName) 253) (not (regexMatch $dns1123Subdomain $clusterName)) -}}
{{- fail (printf "cluster.name %q is invalid: expected a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253 characters)" $clusterName) -}}
{{- end -}}
{{- end -}}
