{{/* Chart name. */}}
{{- define "taskpod-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-based, 63 characters at most. */}}
{{- define "taskpod-webhook.fullname" -}}
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

{{/* Standard labels. */}}
{{- define "taskpod-webhook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "taskpod-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: webhook
{{- end }}

{{/* Selector labels. */}}
{{- define "taskpod-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskpod-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "taskpod-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "taskpod-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "taskpod-webhook.tlsSecretName" -}}
{{- printf "%s-tls" (include "taskpod-webhook.fullname" .) }}
{{- end }}

{{/* The namespace opt-in selector: the values' one, or the default label. */}}
{{- define "taskpod-webhook.namespaceSelector" -}}
{{- $sel := .Values.config.namespaces.selector | default dict }}
{{- if and (not $sel.matchLabels) (not $sel.matchExpressions) }}
{{- $sel = dict "matchLabels" (dict "taskpod.io/inject" "enabled") }}
{{- end }}
{{- toYaml $sel }}
{{- end }}

{{/* The config file, with the effective namespace selector and empty source namespaces set to
the release namespace. */}}
{{- define "taskpod-webhook.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "namespaces" (dict "selector" (include "taskpod-webhook.namespaceSelector" . | fromYaml)) }}
{{- $secrets := list }}
{{- range $cfg.imagePullSecrets }}
{{- $entry := deepCopy . }}
{{- if $entry.source }}
{{- if not $entry.source.namespace }}
{{- $_ := set $entry.source "namespace" $.Release.Namespace }}
{{- end }}
{{- end }}
{{- $secrets = append $secrets $entry }}
{{- end }}
{{- $_ := set $cfg "imagePullSecrets" $secrets }}
{{- toYaml $cfg }}
{{- end }}

{{/* Whether any injected secret is synced from a source. */}}
{{- define "taskpod-webhook.syncsSecrets" -}}
{{- range .Values.config.imagePullSecrets }}{{ if .source }}true{{ end }}{{ end }}
{{- end }}

{{/* Namespaces never mutated or synced into. */}}
{{- define "taskpod-webhook.excludedNamespaces" -}}
{{- $ns := list "kube-system" .Release.Namespace }}
{{- range .Values.webhook.excludeNamespaces }}{{ $ns = append $ns . }}{{ end }}
{{- $ns | uniq | sortAlpha | toJson }}
{{- end }}

{{/* A CEL string literal. */}}
{{- define "taskpod-webhook.celQuote" -}}
'{{ . | replace "\\" "\\\\" | replace "'" "\\'" }}'
{{- end }}

{{/* CEL for one label selector over object.metadata.labels (same as webhook/registration). */}}
{{- define "taskpod-webhook.selectorCEL" -}}
{{- $m := "object.metadata.labels" }}
{{- $has := printf "has(%s)" $m }}
{{- $terms := list }}
{{- $labels := .matchLabels | default dict }}
{{- range $k := keys $labels | sortAlpha }}
{{- $terms = append $terms (printf "%s && %s in %s && %s[%s] == %s" $has (include "taskpod-webhook.celQuote" $k) $m $m (include "taskpod-webhook.celQuote" $k) (include "taskpod-webhook.celQuote" (index $labels $k))) }}
{{- end }}
{{- range .matchExpressions }}
{{- $key := include "taskpod-webhook.celQuote" .key }}
{{- $present := printf "%s && %s in %s" $has $key $m }}
{{- $values := list }}
{{- range .values }}{{ $values = append $values (include "taskpod-webhook.celQuote" .) }}{{ end }}
{{- $list := printf "[%s]" (join ", " $values) }}
{{- if eq .operator "In" }}
{{- $terms = append $terms (printf "%s && %s[%s] in %s" $present $m $key $list) }}
{{- else if eq .operator "NotIn" }}
{{- $terms = append $terms (printf "!(%s) || !(%s[%s] in %s)" $present $m $key $list) }}
{{- else if eq .operator "Exists" }}
{{- $terms = append $terms $present }}
{{- else if eq .operator "DoesNotExist" }}
{{- $terms = append $terms (printf "!(%s)" $present) }}
{{- end }}
{{- end }}
{{- printf "(%s)" (join ") && (" $terms) }}
{{- end }}

{{/* CEL that is true for task pods: any of the selectors. */}}
{{- define "taskpod-webhook.taskPodCEL" -}}
{{- $any := list }}
{{- range .Values.config.taskPods.selectors }}{{ $any = append $any (include "taskpod-webhook.selectorCEL" .) }}{{ end }}
{{- if eq (len $any) 1 }}{{ first $any }}{{ else }}{{ printf "(%s)" (join ") || (" $any) }}{{ end }}
{{- end }}

{{/* DNS names of the serving certificate. */}}
{{- define "taskpod-webhook.dnsNames" -}}
{{- $svc := include "taskpod-webhook.fullname" . }}
{{- $names := list (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- concat $names .Values.tls.extraDNSNames | toYaml }}
{{- end }}

{{/*
Without cert-manager: a CA and a serving certificate generated once per render and kept across
upgrades (an existing Secret is reused, so pods and the caBundle stay in step). Rendered by the
Secret and the webhook configuration alike; the result is memoised in the release's values so
both get the same pair.
*/}}
{{- define "taskpod-webhook.generatedTLS" -}}
{{- if not (index .Values "_generatedTLS") }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "taskpod-webhook.tlsSecretName" .) }}
{{- if and $existing (index $existing.data "ca.crt") }}
{{- $_ := set .Values "_generatedTLS" (dict "ca" (index $existing.data "ca.crt") "cert" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key")) }}
{{- else }}
{{- $ca := genCA (printf "%s-ca" (include "taskpod-webhook.fullname" .)) 3650 }}
{{- $names := include "taskpod-webhook.dnsNames" . | fromYamlArray }}
{{- $cert := genSignedCert (first $names) nil $names 3650 $ca }}
{{- $_ := set .Values "_generatedTLS" (dict "ca" ($ca.Cert | b64enc) "cert" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc)) }}
{{- end }}
{{- end }}
{{- toYaml (index .Values "_generatedTLS") }}
{{- end }}
