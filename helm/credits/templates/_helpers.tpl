{{/*
Names, labels and small shared snippets of the credits chart.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "credits.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources (63 characters at most, the DNS label limit). A release
whose name already contains the chart name is not repeated: `credits`, not `credits-credits`.
*/}}
{{- define "credits.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, as the helm.sh/chart label. */}}
{{- define "credits.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "credits.labels" -}}
helm.sh/chart: {{ include "credits.chart" . }}
{{ include "credits.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: credits
{{- end }}

{{/* Labels that select the release's pods (immutable in a Deployment: never change them). */}}
{{- define "credits.selectorLabels" -}}
app.kubernetes.io/name: {{ include "credits.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels that select the server pods only: the migration Job's pods share the selector labels above
but have component "migrations", so Service, PDB and NetworkPolicy never pick them.
*/}}
{{- define "credits.serverSelectorLabels" -}}
{{ include "credits.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/* The server pods' ServiceAccount. */}}
{{- define "credits.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "credits.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest. */}}
{{- define "credits.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret with the Stripe keys and gRPC tokens: the existing one or the chart's. */}}
{{- define "credits.secretName" -}}
{{- default (include "credits.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The Secret holding DATABASE_URL for the server: the existing one or the chart's. */}}
{{- define "credits.databaseSecretName" -}}
{{- default (include "credits.fullname" .) .Values.database.existingSecret }}
{{- end }}

{{/* The key of DATABASE_URL in that Secret. */}}
{{- define "credits.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else -}}
DATABASE_URL
{{- end }}
{{- end }}

{{/* Where the ConfigMap's packs.toml is mounted, and so CREDIT_PACKS_FILE. */}}
{{- define "credits.packsDir" -}}
/etc/credits
{{- end }}

{{/* True when the chart creates the Secret for Stripe keys/tokens or for DATABASE_URL. */}}
{{- define "credits.createSecret" -}}
{{- if or (not .Values.secrets.existingSecret) (not .Values.database.existingSecret) }}true{{ end }}
{{- end }}
