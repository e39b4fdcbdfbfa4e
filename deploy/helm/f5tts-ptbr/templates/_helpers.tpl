{{- define "f5tts-ptbr.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "f5tts-ptbr.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "f5tts-ptbr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "f5tts-ptbr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "f5tts-ptbr.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "f5tts-ptbr.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "f5tts-ptbr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "f5tts-ptbr.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "f5tts-ptbr.claimName" -}}
{{- default (printf "%s-data" (include "f5tts-ptbr.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{- /* repository:tag, or repository@digest when a digest is given (tag defaults to the chart's appVersion) */ -}}
{{- define "f5tts-ptbr.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}
