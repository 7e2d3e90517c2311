{{/*
The name of every object: the release's name, with the chart's name added
unless it holds it already, so that `helm install kafka-connector` gives
kafka-connector.
*/}}
{{- define "kafka-connector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kafka-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kafka-connector.labels" -}}
{{ include "kafka-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
The port of http_addr (":8081" gives 8081): the container port, the probes
and the scrape annotations follow it, so that they cannot disagree with
where the connector listens.
*/}}
{{- define "kafka-connector.port" -}}
{{- $addr := toString (.Values.config.http_addr | default ":8081") -}}
{{- $port := regexFind "[0-9]+$" $addr -}}
{{- if not $port -}}
{{- fail (printf "config.http_addr=%q: want host:port or :port" $addr) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{/*
envValue writes a value of config as the connector reads it. Helm reads
numbers of a values file as floats, which would print 6291456 as
6.291456e+06; lists are joined with commas.
*/}}
{{- define "kafka-connector.envValue" -}}
{{- $v := . -}}
{{- if kindIs "invalid" $v -}}
{{- else if kindIs "slice" $v -}}
{{- $parts := list -}}
{{- range $v -}}{{- $parts = append $parts (include "kafka-connector.envValue" .) -}}{{- end -}}
{{- join "," $parts -}}
{{- else if and (kindIs "float64" $v) (eq $v (floor $v)) -}}
{{- printf "%d" (int64 $v) -}}
{{- else -}}
{{- toString $v -}}
{{- end -}}
{{- end -}}

{{/*
managedSettings are the variables the chart sets from its other keys; in
config or extraEnv they would contradict them.
*/}}
{{- define "kafka-connector.managedSettings" -}}
basic_auth: gatewayAuth.enabled
secret_mount_path: gatewayAuth.secretName
tls: tls.enabled
tls_insecure_skip_verify: tls.insecureSkipVerify
tls_ca_file: tls.ca.secretName
tls_cert_file: tls.clientCert.secretName
tls_key_file: tls.clientCert.secretName
sasl_mechanism: sasl.mechanism
sasl_username: sasl.username
sasl_username_file: sasl.secretName and sasl.usernameKey
sasl_password_file: sasl.secretName and sasl.passwordKey
sasl_password: sasl.secretName and sasl.passwordKey (a Secret, never a value)
instance_id: instanceIdFromPodName
schema_registry_username_file: schemaRegistry.secretName and schemaRegistry.usernameKey
schema_registry_password_file: schemaRegistry.secretName and schemaRegistry.passwordKey
schema_registry_token_file: schemaRegistry.secretName and schemaRegistry.tokenKey
schema_registry_ca_file: schemaRegistry.ca.secretName
OTEL_EXPORTER_OTLP_ENDPOINT: tracing.endpoint
OTEL_EXPORTER_OTLP_PROTOCOL: tracing.protocol
OTEL_TRACES_SAMPLER: tracing.sampler
OTEL_TRACES_SAMPLER_ARG: tracing.samplerArg
{{- end -}}

{{/*
validate stops the install on values the connector would refuse at start,
so that the mistake shows in helm's answer rather than in a crash loop.
*/}}
{{- define "kafka-connector.validate" -}}
{{- $managed := include "kafka-connector.managedSettings" . | fromYaml -}}
{{- range $name, $_ := .Values.config -}}
{{- if hasKey $managed $name -}}
{{- fail (printf "config.%s: set it with %s" $name (get $managed $name)) -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if not .name -}}
{{- fail (printf "extraEnv: an entry without a name: %v" .) -}}
{{- end -}}
{{- if hasKey $managed .name -}}
{{- fail (printf "extraEnv %s: set it with %s" .name (get $managed .name)) -}}
{{- end -}}
{{- if ne (include "kafka-connector.envValue" (get $.Values.config .name)) "" -}}
{{- fail (printf "extraEnv %s: config.%s sets it already" .name .name) -}}
{{- end -}}
{{- end -}}
{{- $tls := .Values.tls -}}
{{- if not $tls.enabled -}}
{{- if or $tls.ca.secretName $tls.clientCert.secretName $tls.insecureSkipVerify -}}
{{- fail "tls.ca, tls.clientCert and tls.insecureSkipVerify need tls.enabled=true" -}}
{{- end -}}
{{- end -}}
{{- with .Values.tracing -}}
{{- if .endpoint -}}
{{- if not (regexMatch "^https?://[^/]+" (toString .endpoint)) -}}
{{- fail (printf "tracing.endpoint=%q: want an http or https URL, such as http://otel-collector:4318" .endpoint) -}}
{{- end -}}
{{- if not (has .protocol (list "http/protobuf" "grpc")) -}}
{{- fail (printf "tracing.protocol=%q: want http/protobuf or grpc" .protocol) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $sasl := .Values.sasl -}}
{{- if $sasl.mechanism -}}
{{- if not (has (upper $sasl.mechanism) (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) -}}
{{- fail (printf "sasl.mechanism=%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" $sasl.mechanism) -}}
{{- end -}}
{{- if not $sasl.secretName -}}
{{- fail "sasl.mechanism is set: sasl.secretName must name the Secret holding the password" -}}
{{- end -}}
{{- else if or $sasl.secretName $sasl.username -}}
{{- fail "sasl.secretName and sasl.username need sasl.mechanism" -}}
{{- end -}}
{{- if and (or .Values.schemaRegistry.secretName .Values.schemaRegistry.ca.secretName) (not .Values.config.schema_registry_url) -}}
{{- fail "schemaRegistry.secretName and schemaRegistry.ca need config.schema_registry_url" -}}
{{- end -}}
{{- end -}}

{{/*
kafkaFiles are the Secret keys mounted in /var/kafka-secrets, as a list of
{secret, key, path}; the paths are those of the kustomize Deployment. The
schema registry's files join the Kafka credentials there.
*/}}
{{- define "kafka-connector.kafkaFiles" -}}
{{- $files := list -}}
{{- with .Values.tls -}}
{{- if and .enabled .ca.secretName -}}
{{- $files = append $files (dict "secret" .ca.secretName "key" .ca.key "path" "ca.crt") -}}
{{- end -}}
{{- if and .enabled .clientCert.secretName -}}
{{- $files = append $files (dict "secret" .clientCert.secretName "key" .clientCert.certKey "path" "tls.crt") -}}
{{- $files = append $files (dict "secret" .clientCert.secretName "key" .clientCert.keyKey "path" "tls.key") -}}
{{- end -}}
{{- end -}}
{{- with .Values.sasl -}}
{{- if .mechanism -}}
{{- if not .username -}}
{{- $files = append $files (dict "secret" .secretName "key" .usernameKey "path" "sasl-username") -}}
{{- end -}}
{{- $files = append $files (dict "secret" .secretName "key" .passwordKey "path" "sasl-password") -}}
{{- end -}}
{{- end -}}
{{- with .Values.schemaRegistry -}}
{{- if and .secretName .tokenKey -}}
{{- $files = append $files (dict "secret" .secretName "key" .tokenKey "path" "registry-token") -}}
{{- else if .secretName -}}
{{- $files = append $files (dict "secret" .secretName "key" .usernameKey "path" "registry-username") -}}
{{- $files = append $files (dict "secret" .secretName "key" .passwordKey "path" "registry-password") -}}
{{- end -}}
{{- if .ca.secretName -}}
{{- $files = append $files (dict "secret" .ca.secretName "key" .ca.key "path" "registry-ca.crt") -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "files" $files) -}}
{{- end -}}
