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
{{- /* The init container sets the folder's mode to 0700, which on / or a
shared folder such as /var/lib would lock other users out of it. */ -}}
{{- $hostPath := toString (.Values.state.hostPath | default "") -}}
{{- if or (not (isAbs $hostPath)) (eq (clean $hostPath) "/") (has ".." (splitList "/" $hostPath)) -}}
{{- fail (printf "state.hostPath %q is invalid: expected the absolute path of a folder for jibrild alone, such as /var/lib/jibril, without '..'; its mode is set to 0700" $hostPath) -}}
{{- end -}}
{{- /* jibrild's level names and the other Jibril level names it maps to them. */ -}}
{{- $logLevels := list "debug" "info" "warning" "error" "trace" "warn" "critical" "fatal" "panic" -}}
{{- $logLevel := toString (.Values.logLevel | default "") -}}
{{- if and $logLevel (not (has (lower (trim $logLevel)) $logLevels)) -}}
{{- fail (printf "logLevel %q is invalid: expected debug, info, warning or error (or trace, warn, critical, fatal, panic)" $logLevel) -}}
{{- end -}}
{{- /* The pod would get such a name twice, and the kubelet keeps only the
last value, so an extraEnv entry could replace the token file or move the
agent token out of the state folder, silently. */ -}}
{{- $chartVariables := dict
  "NODE_NAME" "it comes from the downward API"
  "JIBRIL_CLUSTER_NAME" "set cluster.name instead"
  "JIBRIL_RUNTIME_ENVIRONMENT" "it is always kubernetes in this chart"
  "GARNET_API_TOKEN" "set garnet.token or garnet.existingSecret instead"
  "GARNET_API_TOKEN_FILE" "set garnet.token or garnet.existingSecret instead"
  "GARNET_AGENT_TOKEN_PATH" "set state.hostPath instead"
  "GARNET_API_URL" "set garnet.url instead"
  "JIBRIL_LOG_LEVEL" "set logLevel instead"
-}}
{{- range .Values.extraEnv -}}
{{- $name := toString .name -}}
{{- if hasKey $chartVariables $name -}}
{{- fail (printf "extraEnv sets %s, which the chart sets itself; %s" $name (get $chartVariables $name)) -}}
{{- end -}}
{{- end -}}
{{- /* The pod template would get such a key twice, which is invalid YAML,
and the DaemonSet's selector needs the chart's own selector labels. */ -}}
{{- $selectorLabels := include "jibril.selectorLabels" . | fromYaml -}}
{{- range $key, $_ := .Values.podLabels -}}
{{- if hasKey $selectorLabels $key -}}
{{- fail (printf "podLabels sets %s, which the chart sets itself as a selector label of the DaemonSet; remove it from podLabels" $key) -}}
{{- end -}}
{{- end -}}
{{- if hasKey (.Values.podAnnotations | default dict) "checksum/project-token" -}}
{{- fail "podAnnotations sets checksum/project-token, which the chart sets itself so that a new project token rolls the pods; remove it from podAnnotations" -}}
{{- end -}}
{{- end -}}
