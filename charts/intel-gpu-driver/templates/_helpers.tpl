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

{{/* An image reference from {repository, tag, digest}: repository[:tag][@digest]; a digest pins the content. */}}
{{- define "igd.image" -}}
{{- $ref := .repository -}}
{{- with .tag }}{{ $ref = printf "%s:%s" $ref . }}{{ end -}}
{{- with .digest }}{{ $ref = printf "%s@%s" $ref . }}{{ end -}}
{{- $ref -}}
{{- end -}}

{{- define "igd.agentImage" -}}
{{- $image := .Values.agent.image -}}
{{- include "igd.image" (dict "repository" $image.repository "tag" ($image.tag | default .Chart.AppVersion) "digest" $image.digest) -}}
{{- end -}}

{{/* The build-on-node image: driver.buildImage, else the agent image's toolchain variant (same tag + "-toolchain"). */}}
{{- define "igd.buildImage" -}}
{{- $build := .Values.driver.buildImage -}}
{{- $repository := $build.repository | default .Values.agent.image.repository -}}
{{- $tag := $build.tag | default .Chart.AppVersion -}}
{{- if not $build.repository }}{{ $tag = printf "%s-toolchain" (.Values.agent.image.tag | default .Chart.AppVersion) }}{{ end -}}
{{- include "igd.image" (dict "repository" $repository "tag" $tag "digest" $build.digest) -}}
{{- end -}}

{{/* The prebuilt driver image of one kernel: (dict "root" $ "kernel" KVER). */}}
{{- define "igd.driverImage" -}}
{{- $root := .root -}}
{{- $tag := printf "%s-%s" $root.Values.recipe.driverTag .kernel -}}
{{- $digest := get ($root.Values.driver.image.digests | default dict) .kernel -}}
{{- include "igd.image" (dict "repository" (include "igd.driverRepository" $root) "tag" $tag "digest" $digest) -}}
{{- end -}}

{{- define "igd.uninstallImage" -}}
{{- $image := .Values.uninstall.image -}}
{{- include "igd.image" (dict "repository" $image.repository "tag" $image.tag "digest" $image.digest) -}}
{{- end -}}

{{/* The node labels the agent writes (agent/lifecycle/labels.py), as a CEL list's items. */}}
{{- define "igd.agentLabels" -}}
'gpu-driver.intel.com/state'
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
