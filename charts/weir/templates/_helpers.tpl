{{/*
The chart's name, overridable with nameOverride.
*/}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name, with the chart's name appended unless
the release name already contains it. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "weir.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "weir.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object. managed-by is Helm here: the operator's own objects carry
managed-by=weir-operator, which is what its watches select on.
*/}}
{{- define "weir.labels" -}}
helm.sh/chart: {{ include "weir.chart" . }}
{{ include "weir.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: weir
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (Deployment selectors are immutable).
*/}}
{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "weir.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
The operator's rights, the same whether granted cluster-wide (ClusterRole) or per watched
namespace (Role). Derived from operator/src/lib.rs and operator/src/controller/*.rs; each rule
says which call needs it. Nothing else: no Secrets, no Pods (status comes from the StatefulSets'
status and the coordinators), no Leases (no leader election yet), no PersistentVolumeClaims (the
StatefulSet controller makes them from volumeClaimTemplates).
*/}}
{{- define "weir.rbacRules" -}}
# The three reconciled kinds: watched and listed by the controllers (lib.rs); Clusters read
# with get by the Topic and ConsumerGroup reconciles and patched by the Cluster reconcile
# (the weir.dev/spread-brokers annotation); Topics listed to find a conflicting owner and
# patched to add and remove the weir.dev/topic finalizer (kube-runtime finalizer(), a JSON
# patch). `update` is kept for replace-style writes.
- apiGroups: ["weir.dev"]
  resources: ["clusters", "topics", "consumergroups"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Status of all three, written with merge patches (patch_status) after each reconcile.
- apiGroups: ["weir.dev"]
  resources: ["clusters/status", "topics/status", "consumergroups/status"]
  verbs: ["get", "patch", "update"]
# Every object the operator creates carries an ownerReference to its Cluster with
# blockOwnerDeletion (desired::owner, controller_owner_ref). With the
# OwnerReferencesPermissionEnforcement admission plugin on, setting that needs update on the
# owner's finalizers subresource. topics/finalizers: the operator puts the weir.dev/topic
# finalizer on Topics; the API server asks for this right only for blockOwnerDeletion (nothing
# is owned by a Topic today), but it is the usual grant for a kind an operator finalizes
# (kubebuilder's rbac markers) and lets a Topic own objects later without a chart change.
- apiGroups: ["weir.dev"]
  resources: ["clusters/finalizers", "topics/finalizers"]
  verbs: ["update"]
# A Cluster's StatefulSets, Services, ConfigMaps and PodDisruptionBudgets: server-side applied
# (a patch that creates the object when missing, so it needs create too), watched through
# Controller::owns, and read with get (the broker StatefulSet's current replicas). They go with
# their Cluster by garbage collection; update and delete are kept for replace and clean-up.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Events about Clusters and Topics (ScaledDown, Draining, topic created/deleted...):
# kube-runtime's Recorder writes events.k8s.io/v1 Events, creating one and then patching its
# series count when it repeats.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
