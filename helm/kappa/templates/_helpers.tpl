{{/* Chart name, truncated to a DNS label. */}}
{{- define "kappa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources. Truncated so that "<fullname>-taskmanager-<n>" pod names
and their controller-revision-hash label stay within 63 characters.
*/}}
{{- define "kappa.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kappa.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "kappa.labels" -}}
helm.sh/chart: {{ include "kappa.chart" . }}
app.kubernetes.io/name: {{ include "kappa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kappa
{{- end }}

{{/* Selector labels of a component: include with (dict "ctx" $ "component" "jobmanager"). */}}
{{- define "kappa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kappa.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kappa.componentLabels" -}}
{{ include "kappa.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kappa.jobmanager.fullname" -}}
{{- printf "%s-jobmanager" (include "kappa.fullname" .) }}
{{- end }}

{{- define "kappa.taskmanager.fullname" -}}
{{- printf "%s-taskmanager" (include "kappa.fullname" .) }}
{{- end }}

{{- define "kappa.configName" -}}
{{- printf "%s-config" (include "kappa.fullname" .) }}
{{- end }}

{{- define "kappa.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kappa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kappa.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: existingSecret, or the chart's own. */}}
{{- define "kappa.secretName" -}}
{{- default (include "kappa.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* "true" when the chart's own S3 keys are set. */}}
{{- define "kappa.s3KeysSet" -}}
{{- if and .Values.s3.accessKeyId .Values.s3.secretAccessKey }}true{{ end }}
{{- end }}

{{/* "true" when the chart renders its own Secret. */}}
{{- define "kappa.createSecret" -}}
{{- if and (not .Values.existingSecret) (or (include "kappa.s3KeysSet" .) .Values.auth.enabled) }}true{{ end }}
{{- end }}

{{/* The Service of the REST API, web UI and /metrics. */}}
{{- define "kappa.jobmanager.restService" -}}
{{- printf "%s-rest" (include "kappa.jobmanager.fullname" .) }}
{{- end }}

{{/* The Service of the jobmanagers' gRPC, which taskmanagers register at. */}}
{{- define "kappa.jobmanager.rpcService" -}}
{{- printf "%s-rpc" (include "kappa.jobmanager.fullname" .) }}
{{- end }}

{{/* "true" when cluster gRPC runs over mutual TLS (not tls.insecure). */}}
{{- define "kappa.clusterTls" -}}
{{- if not .Values.tls.insecure }}true{{ end }}
{{- end }}

{{/* gRPC URL of the jobmanager, as taskmanagers reach it. */}}
{{- define "kappa.jobmanagerRpcUrl" -}}
{{- printf "%s://%s:%d" (ternary "https" "http" (eq (include "kappa.clusterTls" .) "true")) (include "kappa.jobmanager.rpcService" .) (int .Values.jobmanager.rpcPort) }}
{{- end }}

{{/*
The cluster TLS Secret of a process: include with (dict "ctx" $ "process" "jobmanager") or
(dict "ctx" $ "process" "taskmanager" "ordinal" N).
*/}}
{{- define "kappa.clusterTlsSecret" -}}
{{- if eq .process "jobmanager" }}
{{- printf "%s-tls" (include "kappa.jobmanager.fullname" .ctx) }}
{{- else }}
{{- printf "%s-%d-tls" (include "kappa.taskmanager.fullname" .ctx) (int .ordinal) }}
{{- end }}
{{- end }}

{{/* The Secret of the REST certificate. */}}
{{- define "kappa.restTlsSecret" -}}
{{- default (printf "%s-rest-tls" (include "kappa.jobmanager.fullname" .)) .Values.rest.tls.secretName }}
{{- end }}

{{/* DNS names of a Service inside the cluster: include with (dict "ctx" $ "service" NAME). */}}
{{- define "kappa.serviceDnsNames" -}}
{{- $ns := .ctx.Release.Namespace }}
{{- toJson (list .service (printf "%s.%s" .service $ns) (printf "%s.%s.svc" .service $ns) (printf "%s.%s.svc.%s" .service $ns .ctx.Values.clusterDomain)) }}
{{- end }}

{{/* Where the pods see their Secrets. */}}
{{- define "kappa.secretsDir" -}}/var/run/secrets/kappa{{- end }}

{{/*
The auth token of the chart's Secret: auth.token, else the one an earlier install generated
(lookup; empty in `helm template`), else a new random one.
*/}}
{{- define "kappa.authToken" -}}
{{- $old := (lookup "v1" "Secret" .Release.Namespace (include "kappa.fullname" .)).data | default dict }}
{{- $kept := get $old .Values.secretKeys.authToken | default "" | b64dec }}
{{- .Values.auth.token | default $kept | default (randAlphaNum 48) }}
{{- end }}

{{/* Key prefix in etcd. */}}
{{- define "kappa.haPrefix" -}}
{{- default (printf "/kappa/%s/%s" .Release.Namespace (include "kappa.fullname" .)) .Values.ha.prefix }}
{{- end }}

{{/* A TOML value: strings quoted (JSON escapes are valid TOML), numbers as integers, booleans. */}}
{{- define "kappa.tomlValue" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) }}{{ int64 . }}
{{- else }}{{ fail (printf "kappa: config values must be strings, numbers or booleans, not %s" (toJson .)) }}
{{- end }}
{{- end }}

{{/* Environment shared by both components: logging, S3 settings and credentials. */}}
{{- define "kappa.commonEnv" -}}
- name: KAPPA_LOG
  value: {{ .Values.logLevel | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- if .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ .Values.s3.endpoint | quote }}
{{- end }}
{{- if .Values.s3.region }}
- name: AWS_REGION
  value: {{ .Values.s3.region | quote }}
{{- end }}
- name: AWS_ALLOW_HTTP
  value: {{ .Values.s3.allowHttp | toString | quote }}
{{- if or .Values.existingSecret (include "kappa.s3KeysSet" .) }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "kappa.secretName" . }}
      key: {{ .Values.secretKeys.accessKeyId }}
      {{- if .Values.existingSecret }}
      optional: true
      {{- end }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "kappa.secretName" . }}
      key: {{ .Values.secretKeys.secretAccessKey }}
      {{- if .Values.existingSecret }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pods when their configuration changes. */}}
{{- define "kappa.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if include "kappa.createSecret" . }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* Volumes and mounts shared by both components: kappa.toml and a writable /tmp. */}}
{{- define "kappa.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "kappa.configName" . }}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "kappa.commonVolumeMounts" -}}
- name: config
  mountPath: /etc/kappa
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* The arguments of mutual TLS: include with (dict "ctx" $ "dir" DIRECTORY-OF-THE-PEM-FILES). */}}
{{- define "kappa.clusterTlsArgs" -}}
{{- if include "kappa.clusterTls" .ctx }}
- --cluster-cert={{ .dir }}/tls.crt
- --cluster-key={{ .dir }}/tls.key
- --cluster-ca={{ .dir }}/ca.crt
{{- end }}
{{- end }}

{{/* Secret volume items of the cluster TLS files, under a directory: include with (dict "dir" DIR). */}}
{{- define "kappa.clusterTlsItems" -}}
{{- range list "tls.crt" "tls.key" "ca.crt" }}
- key: {{ . }}
  path: {{ $.dir }}{{ . }}
{{- end }}
{{- end }}

{{/* A PodDisruptionBudget's limits; include with the component's values. */}}
{{- define "kappa.pdbLimits" -}}
{{- if not (kindIs "invalid" .values.minAvailable) }}
minAvailable: {{ .values.minAvailable }}
{{- else if not (kindIs "invalid" .values.maxUnavailable) }}
maxUnavailable: {{ .values.maxUnavailable }}
{{- else }}
{{- fail (printf "kappa: podDisruptionBudget.%s needs minAvailable or maxUnavailable (or podDisruptionBudget.enabled=false)" .component) }}
{{- end }}
{{- end }}

{{/*
Checks of the values that make no sense; each fails rendering with a message naming the value.
*/}}
{{- define "kappa.validate" -}}
{{- $jm := .Values.jobmanager }}
{{- $tm := .Values.taskmanager }}
{{- if lt (int $jm.replicas) 0 }}
{{- fail (printf "kappa: jobmanager.replicas must not be negative (got %v)" $jm.replicas) }}
{{- end }}
{{- if and (gt (int $jm.replicas) 1) (not .Values.ha.enabled) }}
{{- fail (printf "kappa: jobmanager.replicas=%v needs high availability: set ha.enabled=true with ha.etcd.endpoints (one leader, the others on standby); without HA jobmanager.replicas must be 1" $jm.replicas) }}
{{- end }}
{{- if .Values.ha.enabled }}
{{- if not .Values.ha.etcd.endpoints }}
{{- fail "kappa: ha.enabled=true needs ha.etcd.endpoints, the etcd client URLs (e.g. --set ha.etcd.endpoints={http://etcd:2379})" }}
{{- end }}
{{- if not (kindIs "slice" .Values.ha.etcd.endpoints) }}
{{- fail "kappa: ha.etcd.endpoints must be a list of etcd client URLs, e.g. [http://etcd-0.etcd:2379, http://etcd-1.etcd:2379]" }}
{{- end }}
{{- range .Values.ha.etcd.endpoints }}
{{- if or (not (kindIs "string" .)) (eq (trim (toString .)) "") (contains "," (toString .)) }}
{{- fail (printf "kappa: ha.etcd.endpoints: %s is not one etcd URL (give one URL per list item)" (toJson .)) }}
{{- end }}
{{- end }}
{{- if not .Values.checkpoints.dir }}
{{- fail "kappa: ha.enabled=true needs checkpoints.dir (e.g. s3://bucket/kappa): a new leader resumes the jobs from their checkpoints there" }}
{{- end }}
{{- end }}
{{- if not (or (kindIs "float64" $tm.slots) (kindIs "int" $tm.slots) (kindIs "int64" $tm.slots)) }}
{{- fail (printf "kappa: taskmanager.slots must be a whole number of at least 1 (got %s)" (toJson $tm.slots)) }}
{{- end }}
{{- if lt (int $tm.slots) 1 }}
{{- fail (printf "kappa: taskmanager.slots must be at least 1 (got %v): a taskmanager offers its slots to jobs" $tm.slots) }}
{{- end }}
{{- if lt (int $tm.replicas) 0 }}
{{- fail (printf "kappa: taskmanager.replicas must not be negative (got %v)" $tm.replicas) }}
{{- end }}
{{- if not (has $tm.advertisedAddress (list "podIP" "dns")) }}
{{- fail (printf "kappa: taskmanager.advertisedAddress must be podIP or dns (got %s)" (toJson $tm.advertisedAddress)) }}
{{- end }}
{{- if not (has $jm.restartStrategy.strategy (list "none" "fixed-delay" "exponential-backoff")) }}
{{- fail (printf "kappa: jobmanager.restartStrategy.strategy must be none, fixed-delay or exponential-backoff (got %s)" (toJson $jm.restartStrategy.strategy)) }}
{{- end }}
{{- if and .Values.s3.accessKeyId (not .Values.s3.secretAccessKey) }}
{{- fail "kappa: s3.accessKeyId is set but s3.secretAccessKey is empty: set both, or neither (existingSecret or the pod's identity)" }}
{{- end }}
{{- if and .Values.s3.secretAccessKey (not .Values.s3.accessKeyId) }}
{{- fail "kappa: s3.secretAccessKey is set but s3.accessKeyId is empty: set both, or neither (existingSecret or the pod's identity)" }}
{{- end }}
{{- if and .Values.existingSecret (or .Values.s3.accessKeyId .Values.s3.secretAccessKey .Values.auth.token) }}
{{- fail "kappa: existingSecret is set, so s3.accessKeyId, s3.secretAccessKey and auth.token must be empty: put them in that Secret" }}
{{- end }}
{{- $loopback := or (hasPrefix "127." (toString $jm.bindAddress)) (eq (toString $jm.bindAddress) "::1") }}
{{- if and (not .Values.auth.enabled) (not $loopback) }}
{{- fail (printf "kappa: auth.enabled=false, but a jobmanager whose REST API listens on %s (jobmanager.bindAddress; the probes, Services and taskmanagers need a pod address) refuses to start without a token: keep auth.enabled=true (the chart generates a token, or give auth.token or existingSecret)" (toString $jm.bindAddress)) }}
{{- end }}
{{- if include "kappa.clusterTls" . }}
{{- if eq $tm.advertisedAddress "podIP" }}
{{- fail "kappa: taskmanager.advertisedAddress=podIP needs tls.insecure=true: the jobmanager checks a taskmanager's certificate against the name it dials, and no certificate names a pod's IP; use advertisedAddress=dns" }}
{{- end }}
{{- end }}
{{- if and .Values.auth.token (not .Values.auth.enabled) }}
{{- fail "kappa: auth.token is set but auth.enabled=false: set auth.enabled=true to require it, or drop the token" }}
{{- end }}
{{- if and $tm.persistence.enabled (not $tm.persistence.size) }}
{{- fail "kappa: taskmanager.persistence.enabled=true needs taskmanager.persistence.size (e.g. 10Gi)" }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.tls.enabled (not .Values.ingress.tls.secretName) }}
{{- fail "kappa: ingress.tls.enabled=true needs ingress.tls.secretName" }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.tls.enabled (not .Values.ingress.host) }}
{{- fail "kappa: ingress.tls.enabled=true needs ingress.host" }}
{{- end }}
{{- end }}
