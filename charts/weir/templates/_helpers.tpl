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
says which call needs it, and no verb is granted that no call uses. The operator never sends an
update (PUT) or a delete: it writes with patches (JSON, merge, server-side apply), and what it
made goes with its Cluster by garbage collection. Nothing else either: no Secrets, no Pods
(status comes from the StatefulSets' status and the coordinators), no Leases (no leader election
yet), no PersistentVolumeClaims (the StatefulSet controller makes them from
volumeClaimTemplates), no core/v1 Events.
*/}}
{{- define "weir.rbacRules" -}}
# The three reconciled kinds. list and watch: each is a Controller's watch (lib.rs), and the
# Topic reconcile lists the namespace's Topics to find a conflicting owner. get: the Topic and
# ConsumerGroup reconciles read their Cluster (get_opt). patch: the Topic reconcile adds and
# removes the weir.dev/topic finalizer (kube-runtime finalizer(), a JSON patch with a test op),
# and the Cluster reconcile records the weir.dev/spread-brokers annotation (a merge patch).
# No create or delete (users own these objects) and no update (nothing is replaced).
- apiGroups: ["weir.dev"]
  resources: ["clusters", "topics", "consumergroups"]
  verbs: ["get", "list", "watch", "patch"]
# Status of all three, written with a merge patch (patch_status) after each reconcile. Only
# patch: status is read from the watched object itself, never with a get of the subresource.
- apiGroups: ["weir.dev"]
  resources: ["clusters/status", "topics/status", "consumergroups/status"]
  verbs: ["patch"]
# Every object the operator makes carries a controller ownerReference to its Cluster with
# blockOwnerDeletion: true (desired::owner, controller_owner_ref). With the
# OwnerReferencesPermissionEnforcement admission plugin on, setting that needs update on the
# owner's finalizers subresource. Only clusters: nothing is owned by a Topic or a
# ConsumerGroup (the weir.dev/topic finalizer is an ordinary metadata patch, above).
- apiGroups: ["weir.dev"]
  resources: ["clusters/finalizers"]
  verbs: ["update"]
# A Cluster's StatefulSets, Services, ConfigMaps and PodDisruptionBudgets. patch: server-side
# apply (cluster.rs apply()); create: an apply that makes a missing object is authorized as a
# create. list and watch: Controller::owns (lib.rs), on the objects labelled
# managed-by=weir-operator. get: the broker StatefulSet's current replicas (get_opt), before a
# scale-down. No update and no delete: they go with their Cluster by garbage collection. (Under
# OwnerReferencesPermissionEnforcement, changing an existing object's ownerReferences also
# needs delete on it: adopting objects orphaned by `kubectl delete cluster --cascade=orphan`
# into a new Cluster of the same name fails there until they are deleted by hand.)
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Events about Clusters and Topics (ScaledDown, Draining, Created, Deleted...): kube-runtime's
# Recorder writes events.k8s.io/v1 Events, creating one and then, when it repeats, a merge
# patch of its series count.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
