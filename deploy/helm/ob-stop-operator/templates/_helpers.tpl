{{/* Names, labels and checks shared by every template. */}}

{{- define "obstop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or just the release name when it already contains the chart name. */}}
{{- define "obstop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "obstop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "obstop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "obstop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "obstop.labels" -}}
helm.sh/chart: {{ include "obstop.chart" . }}
{{ include "obstop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: ob-stop-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "obstop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "obstop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "obstop.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "obstop.peeringName" -}}
{{- default (include "obstop.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/* True ("true") when the controller watches the whole cluster. */}}
{{- define "obstop.clusterwide" -}}
{{- if not .Values.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/*
Refuse value combinations that would render but not work. Included by the Deployment, so every
`helm template` / `helm install` runs it.
*/}}
{{- define "obstop.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.peering.enabled) -}}
{{- fail (printf "replicas=%d needs peering.enabled=true: without Kopf peering every replica would act on every ObStopRequest (set peering.enabled=true, or replicas=1)" (int .Values.replicas)) -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) -}}
{{- fail "serviceMonitor.enabled=true needs service.enabled=true: the ServiceMonitor scrapes the Service" -}}
{{- end -}}
{{- if .Values.podDisruptionBudget.enabled -}}
{{- $min := .Values.podDisruptionBudget.minAvailable -}}
{{- $max := .Values.podDisruptionBudget.maxUnavailable -}}
{{- if or (and (kindIs "invalid" $min) (kindIs "invalid" $max)) (and (not (kindIs "invalid" $min)) (not (kindIs "invalid" $max))) -}}
{{- fail "podDisruptionBudget: set exactly one of minAvailable and maxUnavailable (the other to null)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
