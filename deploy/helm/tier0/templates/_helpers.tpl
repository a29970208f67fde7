{{/* Name of the release's objects: the release name, or release-chart. */}}
{{- define "tier0.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tier0.labels" -}}
app.kubernetes.io/name: tier0
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "tier0.commonLabels" . }}
{{- end -}}

{{/* Labels besides the selector's (pod templates add the selector's). */}}
{{- define "tier0.commonLabels" -}}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tier0.selector" -}}
app.kubernetes.io/name: tier0
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "tier0.agentSelector" -}}
app.kubernetes.io/name: tier0
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "tier0.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "tier0.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Stable DNS name of pod N through the headless Service. */}}
{{- define "tier0.podHost" -}}
{{- printf "%s-%d.%s.%s.svc" (include "tier0.fullname" .root) .ordinal (include "tier0.fullname" .root) .root.Release.Namespace -}}
{{- end -}}

{{/* A key URI for production: an HSM or KMS, never a DEV-ONLY soft key. */}}
{{- define "tier0.keyURI" -}}
{{- $uri := required (printf "%s is required: the URI of an HSM or KMS key (pkcs11:, awskms:, gcpkms:)" .name) .uri -}}
{{- if not (or (hasPrefix "pkcs11:" $uri) (hasPrefix "awskms:" $uri) (hasPrefix "gcpkms:" $uri)) -}}
{{- fail (printf "%s must be an HSM or KMS key URI (pkcs11:, awskms:, gcpkms:); DEV-ONLY soft keys are refused" .name) -}}
{{- end -}}
{{- $uri -}}
{{- end -}}

{{/* The store DSN: postgres, and never with a password (PGPASSWORD comes from a Secret). */}}
{{- define "tier0.storeDSN" -}}
{{- $dsn := required "store.dsn is required: postgres://USER@HOST:5432/DB?sslmode=verify-full" .Values.store.dsn -}}
{{- $u := urlParse $dsn -}}
{{- if not (or (eq $u.scheme "postgres") (eq $u.scheme "postgresql")) -}}
{{- fail "store.dsn must be a postgres:// URL: the nodes of a cluster share one record store" -}}
{{- end -}}
{{- if or (contains ":" $u.userinfo) (regexMatch "(?i)(^|[?&])password=" $u.query) -}}
{{- fail "store.dsn must not hold a password: put it in the Secret named by store.passwordSecret (PGPASSWORD)" -}}
{{- end -}}
{{- $dsn -}}
{{- end -}}
