{{/* Names, labels and the values derived from several keys. */}}

{{- define "igd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-driver" (.Release.Name | trunc 33 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}

{{- define "igd.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "igd.agentSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{/* no_proxy, accepting the original chart's spelling "noproxy". */}}
{{- define "igd.noProxy" -}}
{{- .Values.proxy.no_proxy | default .Values.proxy.noproxy -}}
{{- end -}}

{{/* Repository of driver images. */}}
{{- define "igd.driverRepository" -}}
{{- .Values.driver.image.repository | default .Values.local.image -}}
{{- end -}}

{{- define "igd.agentImage" -}}
{{- printf "%s:%s" .Values.agent.image.repository (.Values.agent.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "igd.registrySecretName" -}}
{{- printf "%s-registry" (include "igd.fullname" .) -}}
{{- end -}}

{{/* A DaemonSet name for a kernel: "5.15.0-135-generic" -> "<fullname>-k-5-15-0-135-generic". */}}
{{- define "igd.kernelSuffix" -}}
{{- regexReplaceAll "[^a-z0-9-]" (lower .) "-" | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Port of a proxy URL ("http://proxy.acme.com:3128/", "proxy.acme.com:8080"), or "". */}}
{{- define "igd.proxyPort" -}}
{{- $hostPort := regexReplaceAll "^[a-zA-Z][a-zA-Z0-9+.-]*://" . "" -}}
{{- $hostPort = regexReplaceAll "^[^@/]*@" $hostPort "" -}}
{{- $hostPort = regexReplaceAll "/.*$" $hostPort "" -}}
{{- trimPrefix ":" (regexFind ":[0-9]+$" $hostPort) -}}
{{- end -}}

{{/* Environment shared by the agent containers: proxies. */}}
{{- define "igd.proxyEnv" -}}
{{- with .Values.proxy.http }}
- name: HTTP_PROXY
  value: {{ . | quote }}
- name: http_proxy
  value: {{ . | quote }}
{{- end }}
{{- with .Values.proxy.https }}
- name: HTTPS_PROXY
  value: {{ . | quote }}
- name: https_proxy
  value: {{ . | quote }}
{{- end }}
{{- $noProxy := include "igd.noProxy" . }}
{{- if or .Values.proxy.http .Values.proxy.https }}
{{- /* The agent calls the API server at $KUBERNETES_SERVICE_HOST: never through the proxy. */}}
{{- $noProxy = list $noProxy "$(KUBERNETES_SERVICE_HOST)" | compact | join "," }}
{{- end }}
{{- with $noProxy }}
- name: NO_PROXY
  value: {{ . | quote }}
- name: no_proxy
  value: {{ . | quote }}
{{- end }}
{{- end -}}
