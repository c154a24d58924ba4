{{/*
Names, labels and the one pod template every service of the platform shares.
*/}}

{{- define "ingestion.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ingestion.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's objects: "<fullname>-<component>". Call with (list $ "controller"). */}}
{{- define "ingestion.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "ingestion.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ingestion.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ingestion.commonLabels" -}}
helm.sh/chart: {{ include "ingestion.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ingestion-platform
{{- end -}}

{{/* Labels of objects that belong to the release as a whole. */}}
{{- define "ingestion.labels" -}}
{{ include "ingestion.commonLabels" . }}
app.kubernetes.io/name: {{ include "ingestion.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component's objects. Call with (list $ "controller"). */}}
{{- define "ingestion.componentLabels" -}}
{{ include "ingestion.commonLabels" (index . 0) }}
{{ include "ingestion.selectorLabels" . }}
{{- end -}}

{{/* Selector labels of one component. Call with (list $ "controller"). */}}
{{- define "ingestion.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "ingestion.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "ingestion.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ingestion.secretName" -}}
{{- default (include "ingestion.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "ingestion.configMapName" -}}
{{- include "ingestion.componentName" (list . "config") -}}
{{- end -}}

{{- define "ingestion.serviceAccountName" -}}
{{- include "ingestion.fullname" . -}}
{{- end -}}

{{- define "ingestion.controllerServiceAccountName" -}}
{{- include "ingestion.componentName" (list . "controller") -}}
{{- end -}}

{{- define "ingestion.watchNamespace" -}}
{{- default .Release.Namespace .Values.controller.kubernetesWatch.namespace -}}
{{- end -}}

{{/* True when staged data lives on the shared volume rather than in object storage. */}}
{{- define "ingestion.usesDataVolume" -}}
{{- if and .Values.persistence.enabled (not (regexMatch "^[a-z0-9]+://" .Values.config.dataRoot)) -}}
true
{{- end -}}
{{- end -}}

{{- define "ingestion.dataClaimName" -}}
{{- default (include "ingestion.componentName" (list . "data")) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* "true" when the value is true, or "auto" and the cluster serves the API. Call with (list $value $apiVersion $root). */}}
{{- define "ingestion.autoEnabled" -}}
{{- $value := toString (index . 0) -}}
{{- $root := index . 2 -}}
{{- if or (eq $value "true") (and (eq $value "auto") ($root.Capabilities.APIVersions.Has (index . 1))) -}}
true
{{- end -}}
{{- end -}}

{{/* AGENT_URLS: every enabled agent's in-cluster base URL. */}}
{{- define "ingestion.agentUrls" -}}
{{- $root := . -}}
{{- $urls := dict -}}
{{- range $agent, $cfg := .Values.agents -}}
{{- if $cfg.enabled -}}
{{- $_ := set $urls $agent (printf "http://%s:%d" (include "ingestion.componentName" (list $root $agent)) (int $cfg.port)) -}}
{{- end -}}
{{- end -}}
{{- toJson $urls -}}
{{- end -}}

{{/*
The pod template shared by the controller, the engine and the agents.
Call with a dict:
  root            the chart root context ($)
  component       component label (controller, workflow-engine, data-connector, ...)
  port            container port
  command         list: the container command
  resources       resources block
  serviceAccount  service account name
  automountToken  bool: mount the Kubernetes API token (only the controller needs it)
  extraEnv        list of extra container env entries
  gracePeriod     terminationGracePeriodSeconds (default 30)
  dataVolume      bool: mount the shared data volume
  extraLabels     dict of extra pod labels
*/}}
{{- define "ingestion.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
metadata:
  labels:
    {{- include "ingestion.componentLabels" (list $root .component) | nindent 4 }}
    {{- with .extraLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if not $v.secrets.existingSecret }}
    {{- /* The values, not the rendered Secret: generated tokens must not roll pods on every render. */}}
    checksum/secret: {{ toJson $v.secrets | sha256sum }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  terminationGracePeriodSeconds: {{ .gracePeriod | default 30 }}
  serviceAccountName: {{ .serviceAccount }}
  automountServiceAccountToken: {{ .automountToken }}
  enableServiceLinks: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ .component }}
      image: {{ include "ingestion.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command:
        {{- toYaml .command | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ .port }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "ingestion.configMapName" $root }}
        - secretRef:
            name: {{ include "ingestion.secretName" $root }}
      env:
        - name: PORT
          value: {{ .port | quote }}
        {{- with .extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      startupProbe:
        httpGet:
          path: /health
          port: http
        {{- toYaml $v.probes.startup | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /health
          port: http
        {{- toYaml $v.probes.readiness | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /health
          port: http
        {{- toYaml $v.probes.liveness | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if .dataVolume }}
        - name: data
          mountPath: {{ $v.persistence.mountPath }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    {{- if .dataVolume }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ include "ingestion.dataClaimName" $root }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* A ClusterIP Service for one component. Call with (dict "root" $ "component" ... "port" ... "type" ... "annotations" ...). */}}
{{- define "ingestion.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "ingestion.componentName" (list .root .component) }}
  labels:
    {{- include "ingestion.componentLabels" (list .root .component) | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ default "ClusterIP" .type }}
  selector:
    {{- include "ingestion.selectorLabels" (list .root .component) | nindent 4 }}
  ports:
    - name: http
      port: {{ .port }}
      targetPort: http
      protocol: TCP
{{- end -}}

{{/* A PodDisruptionBudget for one component. Call with (dict "root" $ "component" ... "pdb" ...). */}}
{{- define "ingestion.pdb" -}}
{{- if .pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "ingestion.componentName" (list .root .component) }}
  labels:
    {{- include "ingestion.componentLabels" (list .root .component) | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .pdb.minAvailable) }}
  minAvailable: {{ .pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "ingestion.selectorLabels" (list .root .component) | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The engine's scaling behavior: the chart's HPA and the KEDA ScaledObject share it. */}}
{{- define "ingestion.engineScalingBehavior" -}}
scaleDown:
  # Engines release leases on shutdown; scale down slowly to avoid churn.
  stabilizationWindowSeconds: 300
  policies:
    - type: Pods
      value: 1
      periodSeconds: 60
scaleUp:
  stabilizationWindowSeconds: 0
  policies:
    - type: Percent
      value: 100
      periodSeconds: 30
{{- end -}}
