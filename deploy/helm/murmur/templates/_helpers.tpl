{{/* Names ---------------------------------------------------------------------------------- */}}
{{- define "murmur.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "murmur.fullname" -}}
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

{{/* Name of one component: (dict "root" $ "component" "auth") */}}
{{- define "murmur.componentName" -}}
{{- printf "%s-%s" (include "murmur.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "murmur.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "murmur.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: murmur
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "auth") */}}
{{- define "murmur.selectorLabels" -}}
app.kubernetes.io/name: {{ include "murmur.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "murmur.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "murmur.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "murmur.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "murmur.secretName" -}}
{{- default (printf "%s-secrets" (include "murmur.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* Backing service addresses (bundled: in-release Services; external: from values) -------- */}}
{{- define "murmur.postgresHost" -}}
{{- if .Values.postgresql.bundled }}{{ include "murmur.componentName" (dict "root" . "component" "postgresql") }}{{ else }}{{ required "postgresql.host is required when postgresql.bundled is false" .Values.postgresql.host }}{{ end }}
{{- end }}

{{- define "murmur.redisHost" -}}
{{- if .Values.redis.bundled }}{{ include "murmur.componentName" (dict "root" . "component" "redis") }}{{ else }}{{ required "redis.host is required when redis.bundled is false" .Values.redis.host }}{{ end }}
{{- end }}

{{- define "murmur.rabbitmqHost" -}}
{{- if .Values.rabbitmq.bundled }}{{ include "murmur.componentName" (dict "root" . "component" "rabbitmq") }}{{ else }}{{ required "rabbitmq.host is required when rabbitmq.bundled is false" .Values.rabbitmq.host }}{{ end }}
{{- end }}

{{- define "murmur.neo4jUri" -}}
{{- if .Values.neo4j.bundled }}{{ printf "bolt://%s:7687" (include "murmur.componentName" (dict "root" . "component" "neo4j")) }}{{ else }}{{ required "neo4j.uri is required when neo4j.bundled is false" .Values.neo4j.uri }}{{ end }}
{{- end }}

{{- define "murmur.smtpHost" -}}
{{- if .Values.mailpit.bundled }}{{ include "murmur.componentName" (dict "root" . "component" "mailpit") }}{{ else }}{{ required "smtp.host is required when mailpit.bundled is false" .Values.smtp.host }}{{ end }}
{{- end }}

{{- define "murmur.smtpPort" -}}
{{- if .Values.mailpit.bundled }}1025{{ else }}{{ .Values.smtp.port }}{{ end }}
{{- end }}

{{- define "murmur.serviceUrl" -}}
{{- printf "http://%s:%v" (include "murmur.componentName" (dict "root" .root "component" .component)) (index .root.Values.services .component).port }}
{{- end }}

{{/* Secret env var from the chart's (or the existing) Secret: (dict "root" $ "name" "X" "key" "k") */}}
{{- define "murmur.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "murmur.secretName" .root }}
      key: {{ .key }}
{{- end }}

{{/* Environment of one service (settings prefix = upper-cased name): (dict "root" $ "component" "auth") */}}
{{- define "murmur.serviceEnv" -}}
{{- $root := .root }}
{{- $p := printf "%s_" (upper .component) }}
{{- include "murmur.secretEnv" (dict "root" $root "name" (printf "%sAMQP_URL" $p) "key" "amqp-url") }}
{{- if $root.Values.tracing.otlpEndpoint }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "%s_service" .component }}
{{- end }}
{{ include "murmur.secretEnv" (dict "root" $root "name" (printf "%sINTERNAL_TOKEN" $p) "key" "internal-token") }}
{{ include "murmur.secretEnv" (dict "root" $root "name" (printf "%sREDIS_URL" $p) "key" "redis-url") }}
{{- if eq .component "auth" }}
{{ include "murmur.secretEnv" (dict "root" $root "name" "AUTH_DATABASE_URL" "key" "auth-database-url") }}
{{ include "murmur.secretEnv" (dict "root" $root "name" "AUTH_SIGNING_KEYS" "key" "signing-keys") }}
{{ include "murmur.secretEnv" (dict "root" $root "name" "AUTH_EVENT_SEAL_KEYS" "key" "event-seal-keys") }}
{{- else if eq .component "post" }}
{{ include "murmur.secretEnv" (dict "root" $root "name" "POST_DATABASE_URL" "key" "post-database-url") }}
{{- else if eq .component "feed" }}
{{/* post_service's Redis (the same key as POST_REDIS_URL): read-your-own-writes reads the
write marks there instead of calling post_service on every first page (docs/feed.md). */}}
{{ include "murmur.secretEnv" (dict "root" $root "name" "FEED_WRITE_MARKS_REDIS_URL" "key" "redis-url") }}
{{- else if eq .component "network" }}
{{ include "murmur.secretEnv" (dict "root" $root "name" "NETWORK_NEO4J_PASSWORD" "key" "neo4j-password") }}
{{- else if eq .component "email" }}
{{ include "murmur.secretEnv" (dict "root" $root "name" "EMAIL_SMTP_PASSWORD" "key" "smtp-password") }}
{{ include "murmur.secretEnv" (dict "root" $root "name" "EMAIL_EVENT_SEAL_KEYS" "key" "event-seal-keys") }}
{{- end }}
{{- end }}

{{/* Pod-level bits shared by every Murmur pod */}}
{{- define "murmur.podSpecCommon" -}}
serviceAccountName: {{ include "murmur.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
