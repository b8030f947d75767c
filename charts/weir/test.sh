#!/usr/bin/env bash
# Tests of the Helm chart (charts/weir) and of the example resources (examples/):
#
#   1. static: `helm lint --strict` and `helm template` in three configurations (all namespaces,
#      watchNamespaces={a,b}, serviceMonitor.enabled), with assertions on the rendered objects
#      read through `kubectl label --local -o jsonpath` (no jq or yq needed, no server either);
#   2. live, against a real API server and controller manager (scripts/controlplane.sh): the
#      CRDs are applied and Established, each configuration's output is applied, the operator's
#      Deployment gets its Pod admitted under the "restricted" Pod Security Standard, and the
#      RBAC is checked for real with `kubectl auth can-i --as=<the operator's service account>`;
#   3. the requests the operator sends (watches, gets, JSON and merge patches, status patches,
#      server-side applies that create owned objects, events) are sent with curl and a token of
#      its service account: all must pass, and the updates, deletes and reads it never sends must
#      get 403;
#   4. the examples (and e2e/kind's Cluster and Topic) validate against the CRD schemas
#      (dry-run=server, CEL included), and bad resources are refused with the CRDs' CEL messages.
#
#   charts/weir/test.sh [DIR]    # DIR: the control plane's state (default: a temp dir, removed
#                                # after a pass, kept with its logs after a failure)
#
# Prints PASS or FAIL per check, then a summary with durations; exits non-zero on any failure.
# Uses the helm and kubectl built by scripts/controlplane.sh (built first if missing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHART=$ROOT/charts/weir
EXAMPLES=$ROOT/examples
CONTROLPLANE=$ROOT/scripts/controlplane.sh
WAIT=60s # every `kubectl wait`

t_start=$SECONDS
"$CONTROLPLANE" build >&2
BIN=$("$CONTROLPLANE" bin)
helm() { "$BIN/helm" "$@"; }
kubectl() { "$BIN/kubectl" "$@"; }

WORK=$(mktemp -d -t weir-chart-test.XXXXXX)
DIR=${1:-}
KEEP_DIR=1
if [[ -z $DIR ]]; then
    DIR=$WORK/controlplane
    KEEP_DIR=0
fi
STARTED=0
cleanup() {
    local status=$?
    ((STARTED)) && "$CONTROLPLANE" stop "$DIR" >&2
    if ((status == 0)) && ((!KEEP_DIR)); then
        rm -rf "$WORK"
    else
        echo "chart-test: rendered charts kept in $WORK, the control plane's state and logs in $DIR" >&2
    fi
}
trap cleanup EXIT

# --- reporting -----------------------------------------------------------------------------

passed=0
failures=()
declare -a timings=()
phase_start=$SECONDS
phase() { # ends the current phase (if any), starts the next
    if [[ -n ${PHASE:-} ]]; then timings+=("$PHASE: $((SECONDS - phase_start)) s"); fi
    PHASE=$1
    phase_start=$SECONDS
    printf '\n== %s\n' "$1"
}
ok() { echo "PASS  $1"; passed=$((passed + 1)); }
bad() {
    echo "FAIL  $1"
    # shellcheck disable=SC2001 # indents every line
    [[ -n ${2:-} ]] && sed 's/^/      /' <<<"$2" | tail -n 20
    failures+=("$1")
}
# check WHAT CMD...: CMD must succeed.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$what"; else bad "$what" "$out"; fi
}
# refused WHAT MESSAGE CMD...: CMD must fail, saying MESSAGE.
refused() {
    local what=$1 message=$2 out
    shift 2
    if out=$("$@" 2>&1); then
        bad "$what" "accepted, but should have been refused: $out"
    elif grep -qF -- "$message" <<<"$out"; then
        ok "$what"
    else
        bad "$what" "refused, but without \"$message\": $out"
    fi
}
# same WHAT EXPECTED ACTUAL
same() {
    if [[ $2 == "$3" ]]; then ok "$1"; else bad "$1" "$(printf 'expected: %s\nactual:   %s' "$2" "$3")"; fi
}
# has WHAT NEEDLE HAYSTACK: NEEDLE is a whole line of HAYSTACK.
has() {
    if grep -qxF -- "$2" <<<"$3"; then ok "$1"; else bad "$1" "$(printf 'no line "%s" in:\n%s' "$2" "$3")"; fi
}
lacks() {
    if grep -qxF -- "$2" <<<"$3"; then bad "$1" "$(printf 'unexpected line "%s" in:\n%s' "$2" "$3")"; else ok "$1"; fi
}
# finish: the summary, with each phase's duration; fails if any check failed.
finish() {
    timings+=("$PHASE: $((SECONDS - phase_start)) s" "total: $((SECONDS - t_start)) s")
    printf '\n== summary\n'
    printf '  %s\n' "${timings[@]}"
    if ((${#failures[@]})); then
        echo "chart-test: $passed passed, ${#failures[@]} FAILED:"
        printf '  FAIL  %s\n' "${failures[@]}"
        return 1
    fi
    echo "chart-test: $passed passed, 0 failed"
}

# --- reading rendered output ---------------------------------------------------------------

# q FILE TEMPLATE: TEMPLATE (kubectl jsonpath) applied to each object of FILE, offline.
q() {
    kubectl --kubeconfig=/dev/null label --local -f "$1" weir.dev/chart-test=1 -o "jsonpath=$2"
}
# objects FILE: "Kind namespace/name" per object, sorted.
objects() { q "$1" '{.kind} {.metadata.namespace}/{.metadata.name}{"\n"}' | sort; }
# only FILE KIND TEMPLATE: TEMPLATE applied to the objects of FILE of one kind; TEMPLATE must
# print one line per object (the kind is matched on each line).
only() {
    local file=$1 kind=$2
    q "$file" "{.kind}{\"\\t\"}$3{\"\\n\"}" | awk -F'\t' -v k="$kind" '$1 == k { sub(/^[^\t]*\t/, ""); print }'
}
# render NAME RELEASE NAMESPACE [helm flags]: helm template into $WORK/NAME.yaml.
render() {
    local name=$1 release=$2 ns=$3
    shift 3
    helm template "$release" "$CHART" --namespace "$ns" "$@" >"$WORK/$name.yaml"
}
# can SA VERB RESOURCE [flags]: kubectl auth can-i as the operator's service account,
# with the groups a real service-account token carries. Prints yes or no.
can() {
    local sa=$1
    shift
    kubectl auth can-i "$@" --as="system:serviceaccount:$sa" --as-group=system:serviceaccounts \
        --as-group="system:serviceaccounts:${sa%%:*}" --as-group=system:authenticated 2>/dev/null || true
}
# rbac_synced SA VERB RESOURCE [flags]: polls until SA may do it (for up to 60 s). The RBAC
# authorizer reads Roles and bindings from a watch cache, so a binding applied a moment ago may
# not count yet; every check after this sees it in force, the denials included.
rbac_synced() {
    local deadline=$((SECONDS + 60))
    until [[ $(can "$@") == yes ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}
# admitted NS DEPLOYMENT: the Deployment's Pod was created, i.e. admitted (without a kubelet it
# stays Pending). On failure, prints why the ReplicaSet could not create it.
admitted() {
    kubectl -n "$1" wait --for=jsonpath='{.status.replicas}'=1 "deployment/$2" --timeout="$WAIT" && return
    kubectl -n "$1" get replicasets -o jsonpath='{range .items[*]}{.status.conditions[*].message}{"\n"}{end}'
    return 1
}
# allowed SA WHAT VERB RESOURCE [flags], denied SA WHAT VERB RESOURCE [flags]
allowed() { same "$1 may $2" yes "$(can "$1" "${@:3}")"; }
denied() { same "$1 may not $2" no "$(can "$1" "${@:3}")"; }

APP_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART/Chart.yaml")
[[ -n $APP_VERSION ]] || { echo "no appVersion in $CHART/Chart.yaml" >&2; exit 1; }

# The operator's rights: one line per rule, "groups|resources|verbs". Read with q, not only:
# a line per rule, and only ClusterRoles and Roles have rules. A change here is a change of
# what the operator may do; it must match what operator/src/controller does.
EXPECTED_RULES='weir.dev|clusters topics consumergroups|get list watch patch
weir.dev|clusters/status topics/status consumergroups/status|patch
weir.dev|clusters/finalizers|update
apps|statefulsets|get list watch create patch
|services configmaps|get list watch create patch
policy|poddisruptionbudgets|get list watch create patch
events.k8s.io|events|create patch'
RULES='{range .rules[*]}{.apiGroups[*]}|{.resources[*]}|{.verbs[*]}{"\n"}{end}'

# ============================================================================================
phase "static: helm lint and helm template"

check "helm lint (all namespaces)" helm lint --strict "$CHART"
check "helm lint (watchNamespaces={a,b})" helm lint --strict "$CHART" --set 'watchNamespaces={a,b}'
check "helm lint (serviceMonitor.enabled)" helm lint --strict "$CHART" --set serviceMonitor.enabled=true
refused "kubeVersion >=1.30 is enforced" "incompatible with Kubernetes" \
    helm template weir "$CHART" --kube-version 1.29.0

render all weir weir-system
render scoped scoped weir-scoped --set 'watchNamespaces={a,b}'
render monitor weir weir-system --set serviceMonitor.enabled=true --set serviceMonitor.labels.release=prometheus
render custom weir weir-system --set image.tag=dev --set logJson=true \
    --set brokerImage.repository=registry.example/weir/broker \
    --set 'extraArgs={--cluster-resync-seconds=30}'

# All namespaces: a ClusterRole and its binding, nothing namespaced for RBAC, no ServiceMonitor.
same "all namespaces: objects" "$(printf '%s\n' 'ClusterRole /weir' 'ClusterRoleBinding /weir' \
    'Deployment weir-system/weir' 'Service weir-system/weir' 'ServiceAccount weir-system/weir')" \
    "$(objects "$WORK/all.yaml")"
same "all namespaces: ClusterRole rules are the least-privilege set" "$EXPECTED_RULES" \
    "$(q "$WORK/all.yaml" "$RULES")"
same "all namespaces: ClusterRoleBinding binds the ClusterRole to weir-system/weir" \
    "ClusterRole weir ServiceAccount weir-system/weir" \
    "$(only "$WORK/all.yaml" ClusterRoleBinding '{.roleRef.kind} {.roleRef.name} {.subjects[0].kind} {.subjects[0].namespace}/{.subjects[0].name}')"
deploy='{.spec.template.spec.containers[0]'
same "image defaults to localhost/weir/operator:<appVersion $APP_VERSION>" \
    "localhost/weir/operator:$APP_VERSION IfNotPresent" \
    "$(only "$WORK/all.yaml" Deployment "$deploy.image} $deploy.imagePullPolicy}")"
same "operator args (all namespaces: no --namespaces)" \
    "--http-addr=0.0.0.0:8080 --broker-image=localhost/weir/broker --coordinator-image=localhost/weir/coordinator" \
    "$(only "$WORK/all.yaml" Deployment "$deploy.args[*]}")"
same "one replica, Recreate, service account weir" "1 Recreate weir" \
    "$(only "$WORK/all.yaml" Deployment '{.spec.replicas} {.spec.strategy.type} {.spec.template.spec.serviceAccountName}')"
same "probes: /livez and /readyz on http-metrics (8080)" "/livez http-metrics /readyz http-metrics 8080" \
    "$(only "$WORK/all.yaml" Deployment "$deploy.livenessProbe.httpGet.path} $deploy.livenessProbe.httpGet.port} $deploy.readinessProbe.httpGet.path} $deploy.readinessProbe.httpGet.port} $deploy.ports[?(@.name==\"http-metrics\")].containerPort}")"
same "env: POD_NAME from metadata.name, no WEIR_LOG_JSON by default" "POD_NAME=metadata.name WEIR_LOG=info" \
    "$(only "$WORK/all.yaml" Deployment "{range .spec.template.spec.containers[0].env[*]}{.name}={.valueFrom.fieldRef.fieldPath}{.value} {end}" | sed 's/ $//')"
same "security: non-root 65532, seccomp RuntimeDefault, read-only root, no privilege escalation, drop ALL" \
    "true 65532 65532 RuntimeDefault true false ALL" \
    "$(only "$WORK/all.yaml" Deployment "{.spec.template.spec.securityContext.runAsNonRoot} {.spec.template.spec.securityContext.runAsUser} {.spec.template.spec.securityContext.runAsGroup} {.spec.template.spec.securityContext.seccompProfile.type} $deploy.securityContext.readOnlyRootFilesystem} $deploy.securityContext.allowPrivilegeEscalation} $deploy.securityContext.capabilities.drop[*]}")"
same "resources: 50m/64Mi requested, 256Mi limit" "50m 64Mi 256Mi" \
    "$(only "$WORK/all.yaml" Deployment "$deploy.resources.requests.cpu} $deploy.resources.requests.memory} $deploy.resources.limits.memory}")"
same "metrics Service: port 8080 named http-metrics onto the container port, selecting the pods" \
    "http-metrics 8080 http-metrics weir weir" \
    "$(only "$WORK/all.yaml" Service "{.spec.ports[0].name} {.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.selector.app\.kubernetes\.io/name} {.spec.selector.app\.kubernetes\.io/instance}")"

# watchNamespaces={a,b}: a Role and RoleBinding in each, nothing cluster-scoped, --namespaces=a,b.
same "watchNamespaces={a,b}: objects (Role and RoleBinding in a and b, no ClusterRole)" \
    "$(printf '%s\n' 'Deployment weir-scoped/scoped-weir' 'Role a/scoped-weir' 'Role b/scoped-weir' \
        'RoleBinding a/scoped-weir' 'RoleBinding b/scoped-weir' 'Service weir-scoped/scoped-weir' \
        'ServiceAccount weir-scoped/scoped-weir')" \
    "$(objects "$WORK/scoped.yaml")"
same "watchNamespaces={a,b}: each Role has the same rules as the ClusterRole" \
    "$(printf '%s\n%s' "$EXPECTED_RULES" "$EXPECTED_RULES")" "$(q "$WORK/scoped.yaml" "$RULES")"
same "watchNamespaces={a,b}: RoleBindings bind the Role to weir-scoped/scoped-weir" \
    "$(printf '%s\n' 'Role scoped-weir weir-scoped/scoped-weir' 'Role scoped-weir weir-scoped/scoped-weir')" \
    "$(only "$WORK/scoped.yaml" RoleBinding '{.roleRef.kind} {.roleRef.name} {.subjects[0].namespace}/{.subjects[0].name}')"
has "watchNamespaces={a,b}: the operator gets --namespaces=a,b" "--namespaces=a,b" \
    "$(only "$WORK/scoped.yaml" Deployment "$deploy.args[*]}" | tr ' ' '\n')"

# serviceMonitor: only when enabled, on the Service's port and labels.
lacks "no ServiceMonitor by default" "ServiceMonitor weir-system/weir" "$(objects "$WORK/all.yaml")"
has "serviceMonitor.enabled: a ServiceMonitor" "ServiceMonitor weir-system/weir" "$(objects "$WORK/monitor.yaml")"
same "ServiceMonitor scrapes http-metrics /metrics every 30s, carries serviceMonitor.labels" \
    "monitoring.coreos.com/v1 http-metrics /metrics 30s prometheus weir-system" \
    "$(only "$WORK/monitor.yaml" ServiceMonitor '{.apiVersion} {.spec.endpoints[0].port} {.spec.endpoints[0].path} {.spec.endpoints[0].interval} {.metadata.labels.release} {.spec.namespaceSelector.matchNames[0]}')"

# Overrides reach the container.
same "image.tag overrides appVersion" "localhost/weir/operator:dev" \
    "$(only "$WORK/custom.yaml" Deployment "$deploy.image}")"
has "logJson sets WEIR_LOG_JSON=true" "WEIR_LOG_JSON=true" \
    "$(only "$WORK/custom.yaml" Deployment "{range .spec.template.spec.containers[0].env[*]}{.name}={.value} {end}" | tr ' ' '\n')"
same "brokerImage.repository and extraArgs reach the args" \
    "--http-addr=0.0.0.0:8080 --broker-image=registry.example/weir/broker --coordinator-image=localhost/weir/coordinator --cluster-resync-seconds=30" \
    "$(only "$WORK/custom.yaml" Deployment "$deploy.args[*]}")"

# ============================================================================================
phase "live: control plane start"

STARTED=1
KUBECONFIG=$("$CONTROLPLANE" start "$DIR" | tail -n1)
export KUBECONFIG

# ============================================================================================
phase "live: CRDs, chart, RBAC"

# The operator's namespaces enforce the "restricted" Pod Security Standard: its Pod must pass.
kubectl create namespace weir-system >&2
kubectl create namespace weir-scoped >&2
kubectl label namespace weir-system weir-scoped pod-security.kubernetes.io/enforce=restricted >&2
for ns in a b c examples; do kubectl create namespace "$ns" >&2; done

# Nothing below can work without the CRDs: a refused one ends the test here.
if ! out=$(kubectl apply --server-side -f "$CHART/crds" 2>&1); then
    bad "the CRDs in charts/weir/crds are accepted by the API server" "$out"
    finish || exit 1
fi
ok "the CRDs in charts/weir/crds are accepted by the API server"
check "CRDs Established" kubectl wait --for condition=established --timeout="$WAIT" \
    crd/clusters.weir.dev crd/topics.weir.dev crd/consumergroups.weir.dev

notes=$(helm install notes "$CHART" --namespace a --set 'watchNamespaces={a,b}' --dry-run=server 2>&1 || true)
has "NOTES tell how to apply a Cluster and a Topic" \
    "  kubectl -n a apply --server-side -f examples/cluster.yaml" "$notes"
has "NOTES name the topic example" "  kubectl -n a apply --server-side -f examples/topic.yaml" "$notes"

# --- all namespaces
check "chart (all namespaces) applies" kubectl apply --server-side -f "$WORK/all.yaml"
same "Deployment weir runs as service account weir, which exists" "weir weir" \
    "$(kubectl -n weir-system get deployment weir -o jsonpath='{.spec.template.spec.serviceAccountName}') $(kubectl -n weir-system get serviceaccount weir -o jsonpath='{.metadata.name}')"
# Without a kubelet the Pod stays Pending, but being created at all means it was admitted.
check "the operator Pod is admitted in a namespace enforcing Pod Security \"restricted\"" \
    admitted weir-system weir

sa=weir-system:weir
check "$sa: its ClusterRoleBinding is in force" rbac_synced $sa watch clusters.weir.dev --all-namespaces
allowed $sa "watch clusters in any namespace" watch clusters.weir.dev --all-namespaces
allowed $sa "patch topics/status" patch topics.weir.dev --subresource=status -n a
allowed $sa "update clusters/finalizers (blockOwnerDeletion)" update clusters.weir.dev --subresource=finalizers -n c
allowed $sa "patch consumergroups/status" patch consumergroups.weir.dev --subresource=status -n b
allowed $sa "patch topics (the weir.dev/topic finalizer)" patch topics.weir.dev -n a
allowed $sa "create statefulsets in any namespace" create statefulsets.apps -n c
allowed $sa "patch poddisruptionbudgets" patch poddisruptionbudgets.policy -n c
allowed $sa "create events.k8s.io events" create events.events.k8s.io -n a
allowed $sa "patch events.k8s.io events (a repeated event's series)" patch events.events.k8s.io -n a
# Nothing the operator never calls: no update (PUT) of anything, no get of a status, no delete.
denied $sa "update topics (finalizers go by patch)" update topics.weir.dev -n a
denied $sa "update clusters" update clusters.weir.dev -n a
denied $sa "get clusters/status (status comes with the object)" get clusters.weir.dev --subresource=status -n a
denied $sa "update topics/status (status goes by patch)" update topics.weir.dev --subresource=status -n a
denied $sa "update topics/finalizers (nothing is owned by a Topic)" update topics.weir.dev --subresource=finalizers -n a
denied $sa "update statefulsets (server-side apply only)" update statefulsets.apps -n c
denied $sa "delete statefulsets (garbage collection removes them)" delete statefulsets.apps -n c
denied $sa "delete services" delete services -n c
denied $sa "update configmaps" update configmaps -n c
denied $sa "delete poddisruptionbudgets" delete poddisruptionbudgets.policy -n c
denied $sa "delete events.k8s.io events" delete events.events.k8s.io -n a
denied $sa "get secrets" get secrets -n a
denied $sa "list secrets in any namespace" list secrets --all-namespaces
denied $sa "get pods" get pods -n a
denied $sa "create topics (users create them)" create topics.weir.dev -n a
denied $sa "delete clusters" delete clusters.weir.dev -n a
denied $sa "create core/v1 events" create events -n a
denied $sa "create customresourcedefinitions" create customresourcedefinitions.apiextensions.k8s.io
# Exactly the rights the rules mean, asked of the authorizer verb by verb: every verb on every
# kind the operator touches (and on their subresources), and on kinds it must not touch.
granted=()
for res in clusters.weir.dev topics.weir.dev consumergroups.weir.dev statefulsets.apps services \
    configmaps poddisruptionbudgets.policy events.events.k8s.io events secrets pods \
    persistentvolumeclaims leases.coordination.k8s.io; do
    subs=("")
    [[ $res == *.weir.dev ]] && subs+=(status finalizers)
    for sub in "${subs[@]}"; do
        for verb in get list watch create patch update delete deletecollection; do
            if [[ $(can $sa "$verb" "$res" ${sub:+--subresource="$sub"} -n a) == yes ]]; then
                granted+=("$res${sub:+/$sub} $verb")
            fi
        done
    done
done
same "$sa: the authorizer grants exactly the operator's calls (13 kinds and their subresources, 8 verbs)" \
    "$(printf '%s\n' \
        'clusters.weir.dev get' 'clusters.weir.dev list' 'clusters.weir.dev watch' 'clusters.weir.dev patch' \
        'clusters.weir.dev/status patch' 'clusters.weir.dev/finalizers update' \
        'topics.weir.dev get' 'topics.weir.dev list' 'topics.weir.dev watch' 'topics.weir.dev patch' \
        'topics.weir.dev/status patch' \
        'consumergroups.weir.dev get' 'consumergroups.weir.dev list' 'consumergroups.weir.dev watch' \
        'consumergroups.weir.dev patch' 'consumergroups.weir.dev/status patch' \
        'statefulsets.apps get' 'statefulsets.apps list' 'statefulsets.apps watch' \
        'statefulsets.apps create' 'statefulsets.apps patch' \
        'services get' 'services list' 'services watch' 'services create' 'services patch' \
        'configmaps get' 'configmaps list' 'configmaps watch' 'configmaps create' 'configmaps patch' \
        'poddisruptionbudgets.policy get' 'poddisruptionbudgets.policy list' \
        'poddisruptionbudgets.policy watch' 'poddisruptionbudgets.policy create' \
        'poddisruptionbudgets.policy patch' \
        'events.events.k8s.io create' 'events.events.k8s.io patch')" \
    "$(printf '%s\n' "${granted[@]}")"

# --- watchNamespaces={a,b}
check "chart (watchNamespaces={a,b}) applies" kubectl apply --server-side -f "$WORK/scoped.yaml"
same "Deployment scoped-weir runs as service account scoped-weir" "scoped-weir" \
    "$(kubectl -n weir-scoped get deployment scoped-weir -o jsonpath='{.spec.template.spec.serviceAccountName}')"
check "the scoped operator's Pod is admitted (restricted)" admitted weir-scoped scoped-weir
sa=weir-scoped:scoped-weir
for ns in a b; do
    check "$sa: its RoleBinding in $ns is in force" rbac_synced $sa watch clusters.weir.dev -n $ns
done
for ns in a b; do
    allowed $sa "patch topics/status in $ns" patch topics.weir.dev --subresource=status -n $ns
    allowed $sa "update clusters/finalizers in $ns" update clusters.weir.dev --subresource=finalizers -n $ns
    denied $sa "update topics/finalizers in $ns" update topics.weir.dev --subresource=finalizers -n $ns
    denied $sa "delete statefulsets in $ns" delete statefulsets.apps -n $ns
    allowed $sa "create statefulsets in $ns" create statefulsets.apps -n $ns
    allowed $sa "watch clusters in $ns" watch clusters.weir.dev -n $ns
    allowed $sa "create events.k8s.io events in $ns" create events.events.k8s.io -n $ns
    denied $sa "get secrets in $ns" get secrets -n $ns
done
denied $sa "do anything in the non-watched namespace c ('*' '*')" '*' '*' -n c
# Every verb on every kind the operator touches, one by one, in c and in its own namespace.
for ns in c weir-scoped; do
    granted=()
    for res in clusters.weir.dev topics.weir.dev consumergroups.weir.dev statefulsets.apps services \
        configmaps poddisruptionbudgets.policy events.events.k8s.io secrets pods; do
        for verb in get list watch create patch update delete; do
            [[ $(can $sa "$verb" "$res" -n "$ns") == no ]] || granted+=("$verb $res")
        done
    done
    same "$sa may do nothing in non-watched namespace $ns (70 verb/resource pairs)" "" "${granted[*]}"
done
denied $sa "list topics across all namespaces" list topics.weir.dev --all-namespaces

# --- serviceMonitor.enabled: needs prometheus-operator's CRD. A minimal stub of it (the real one
# is not vendored) is installed so the chart's output is applied whole, as in a cluster that has
# prometheus-operator: the API server checks the ServiceMonitor's group, version, kind and the
# fields typed below; then the ServiceMonitor's selector must find the metrics Service.
kubectl apply --server-side -f - >&2 <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
            required: [selector, endpoints]
            properties:
              selector:
                type: object
                properties:
                  matchLabels: {type: object, additionalProperties: {type: string}}
              namespaceSelector:
                type: object
                properties:
                  matchNames: {type: array, items: {type: string}}
              endpoints:
                type: array
                items:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
                  properties:
                    port: {type: string}
                    path: {type: string}
                    interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
EOF
check "ServiceMonitor CRD stub Established" kubectl wait --for condition=established --timeout="$WAIT" \
    crd/servicemonitors.monitoring.coreos.com
check "chart (serviceMonitor.enabled) applies over the first release" \
    kubectl apply --server-side -f "$WORK/monitor.yaml"
# shellcheck disable=SC2016 # a go-template, not shell
selector=$(kubectl -n weir-system get servicemonitor weir \
    -o go-template='{{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}' 2>&1 || true)
same "the ServiceMonitor's selector finds the metrics Service" "service/weir" \
    "$(kubectl -n weir-system get services -l "${selector%,}" -o name 2>&1)"

# ============================================================================================
phase "live: the operator's calls, as its service account"

# The requests operator/src/controller sends (kube-rs: one request per call, no GET before a
# patch), sent with curl and a token of the operator's service account (weir-system:weir, the
# all-namespaces release): each must pass the chart's RBAC as it is, a server-side apply that
# creates an object included, and requests the operator never sends must be refused. Not
# kubectl as the service account: `kubectl patch` GETs the object first, which the operator
# never does (and may not, for the status subresource).
TOKEN=$(kubectl -n weir-system create token weir --duration=10m)
SERVER=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' |
    base64 -d >"$WORK/ca.crt"
# call METHOD PATH [CONTENT-TYPE BODY]: the HTTP status, then the response body.
call() {
    local args=(-sS --cacert "$WORK/ca.crt" -H "Authorization: Bearer $TOKEN" -X "$1" -w '\n%{http_code}')
    (($# > 2)) && args+=(-H "Content-Type: $3" --data-binary "$4")
    local out
    out=$(curl "${args[@]}" "$SERVER$2" 2>&1) || { printf '000\n%s' "$out"; return; }
    printf '%s\n%s' "${out##*$'\n'}" "${out%$'\n'*}"
}
# may WHAT METHOD PATH [CONTENT-TYPE BODY]: a 2xx answer. may_not WHAT METHOD PATH [...]: 403.
may() {
    local what=$1 out
    shift
    out=$(call "$@")
    if [[ ${out%%$'\n'*} == 2?? ]]; then ok "$what"; else bad "$what" "$1 $2: $out"; fi
}
may_not() {
    local what=$1 out
    shift
    out=$(call "$@")
    if [[ ${out%%$'\n'*} == 403 ]]; then ok "refused: $what"; else bad "refused: $what" "$1 $2: expected 403, got: $out"; fi
}
merge=application/merge-patch+json
jsonpatch=application/json-patch+json
apply=application/apply-patch+yaml
now() { date -u +%Y-%m-%dT%H:%M:%S.000000Z; }

kubectl create namespace calls >&2
kubectl -n calls apply --server-side -f "$EXAMPLES/dev-cluster.yaml" >&2
kubectl -n calls apply --server-side -f - >&2 <<'YAML'
apiVersion: weir.dev/v1alpha1
kind: Topic
metadata:
  name: calls
spec:
  cluster: dev
  partitions: 1
  replicationFactor: 1
---
apiVersion: weir.dev/v1alpha1
kind: ConsumerGroup
metadata:
  name: calls
spec:
  cluster: dev
YAML
uid=$(kubectl -n calls get cluster dev -o jsonpath='{.metadata.uid}')
W=/apis/weir.dev/v1alpha1
NS=namespaces/calls

# The controllers' watches (Api::all: every namespace), and the reconciles' reads.
for kind in clusters topics consumergroups; do
    may "list and watch $kind in every namespace" GET "$W/$kind?watch=1&timeoutSeconds=1"
done
may "list and watch owned StatefulSets (managed-by=weir-operator)" GET \
    "/apis/apps/v1/statefulsets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dweir-operator&watch=1&timeoutSeconds=1"
may "get a Cluster (the Topic and ConsumerGroup reconciles)" GET "$W/$NS/clusters/dev"
may "list a namespace's Topics (a conflicting owner)" GET "$W/$NS/topics"

# kube-runtime's finalizer(): JSON patches testing the list it saw before adding or removing.
may "add the weir.dev/topic finalizer (JSON patch)" PATCH "$W/$NS/topics/calls" $jsonpatch \
    '[{"op":"test","path":"/metadata/finalizers","value":null},{"op":"add","path":"/metadata/finalizers","value":["weir.dev/topic"]}]'
may "annotate a Cluster with weir.dev/spread-brokers (merge patch)" PATCH "$W/$NS/clusters/dev" $merge \
    '{"metadata":{"annotations":{"weir.dev/spread-brokers":"1"}}}'
may "merge-patch a Cluster's status" PATCH "$W/$NS/clusters/dev/status" $merge \
    '{"status":{"brokersReady":0,"coordinatorsReady":0}}'
may "merge-patch a Topic's status" PATCH "$W/$NS/topics/calls/status" $merge '{"status":{"topicName":"calls"}}'
may "merge-patch a ConsumerGroup's status" PATCH "$W/$NS/consumergroups/calls/status" $merge \
    '{"status":{"members":0}}'
same "the status patches landed" "0 calls 0" \
    "$(kubectl -n calls get cluster dev -o jsonpath='{.status.brokersReady}') $(kubectl -n calls get topic calls -o jsonpath='{.status.topicName}') $(kubectl -n calls get consumergroup calls -o jsonpath='{.status.members}')"

# Server-side apply with the operator's field manager, forced (PatchParams::apply(..).force()):
# it creates the objects (authorized as create), each controlled by the Cluster with
# blockOwnerDeletion as desired::owner sets it; applied again changed, it patches.
# owned KIND NAME APIVERSION SPEC-YAML: an object as desired::* builds them.
owned() {
    printf '%s\n' "apiVersion: $3" "kind: $1" "metadata:" "  name: $2" "  namespace: calls" \
        "  labels: {app.kubernetes.io/managed-by: weir-operator}" "  ownerReferences:" \
        "  - {apiVersion: weir.dev/v1alpha1, kind: Cluster, name: dev, uid: \"$uid\", controller: true, blockOwnerDeletion: true}" \
        "$4"
}
ssa='fieldManager=weir-operator&force=true'
may "server-side apply creates an owned ConfigMap" PATCH "/api/v1/$NS/configmaps/dev-calls?$ssa" $apply \
    "$(owned ConfigMap dev-calls v1 'data: {generation: "1"}')"
may "server-side apply changes the ConfigMap" PATCH "/api/v1/$NS/configmaps/dev-calls?$ssa" $apply \
    "$(owned ConfigMap dev-calls v1 'data: {generation: "2"}')"
may "server-side apply creates an owned Service" PATCH "/api/v1/$NS/services/dev-calls?$ssa" $apply \
    "$(owned Service dev-calls v1 'spec: {clusterIP: None, selector: {app: calls}, ports: [{name: kafka, port: 9092}]}')"
may "server-side apply creates an owned PodDisruptionBudget" PATCH \
    "/apis/policy/v1/$NS/poddisruptionbudgets/dev-calls?$ssa" $apply \
    "$(owned PodDisruptionBudget dev-calls policy/v1 'spec: {maxUnavailable: 1, selector: {matchLabels: {app: calls}}}')"
may "server-side apply creates an owned StatefulSet" PATCH "/apis/apps/v1/$NS/statefulsets/dev-calls?$ssa" $apply \
    "$(owned StatefulSet dev-calls apps/v1 'spec: {replicas: 0, serviceName: dev-calls, selector: {matchLabels: {app: calls}}, template: {metadata: {labels: {app: calls}}, spec: {containers: [{name: broker, image: localhost/weir/broker:dev}]}}}')"
may "get the StatefulSet (the broker StatefulSet's current replicas)" GET "/apis/apps/v1/$NS/statefulsets/dev-calls"
same "the ConfigMap is the operator's, controlled by the Cluster, blocking its deletion" \
    "2 weir-operator Cluster dev true true" \
    "$(kubectl -n calls get configmap dev-calls -o jsonpath='{.data.generation} {.metadata.managedFields[0].manager} {.metadata.ownerReferences[0].kind} {.metadata.ownerReferences[0].name} {.metadata.ownerReferences[0].controller} {.metadata.ownerReferences[0].blockOwnerDeletion}')"

# kube-runtime's Recorder: creates an events.k8s.io/v1 Event, then merge-patches its series.
may "create an events.k8s.io Event about the Cluster" POST "/apis/events.k8s.io/v1/$NS/events" \
    application/json "$(printf '{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"dev.calls"},"eventTime":"%s","type":"Normal","reason":"Draining","action":"Reassign","note":"moving 1 partition(s) between brokers","reportingController":"weir-operator","reportingInstance":"weir-operator","regarding":{"apiVersion":"weir.dev/v1alpha1","kind":"Cluster","name":"dev","namespace":"calls","uid":"%s"}}' "$(now)" "$uid")"
may "merge-patch its series (the event repeats)" PATCH "/apis/events.k8s.io/v1/$NS/events/dev.calls" $merge \
    "$(printf '{"series":{"count":2,"lastObservedTime":"%s"}}' "$(now)")"
may "remove the weir.dev/topic finalizer (JSON patch)" PATCH "$W/$NS/topics/calls" $jsonpatch \
    '[{"op":"test","path":"/metadata/finalizers/0","value":"weir.dev/topic"},{"op":"remove","path":"/metadata/finalizers/0"}]'

# Requests the operator never sends.
may_not "get a Cluster's status subresource" GET "$W/$NS/clusters/dev/status"
may_not "update (PUT) a Topic" PUT "$W/$NS/topics/calls" application/json \
    "$(kubectl -n calls get topic calls -o json)"
may_not "update (PUT) a Topic's status" PUT "$W/$NS/topics/calls/status" application/json \
    "$(kubectl -n calls get topic calls -o json)"
may_not "update (PUT) an owned ConfigMap" PUT "/api/v1/$NS/configmaps/dev-calls" application/json \
    "$(kubectl -n calls get configmap dev-calls -o json)"
may_not "delete an owned StatefulSet" DELETE "/apis/apps/v1/$NS/statefulsets/dev-calls"
may_not "delete a Topic" DELETE "$W/$NS/topics/calls"
may_not "create a Cluster" POST "$W/$NS/clusters" application/json \
    '{"apiVersion":"weir.dev/v1alpha1","kind":"Cluster","metadata":{"name":"other"},"spec":{"brokers":{"replicas":1,"storage":{"size":"1Gi"}},"coordinators":{"replicas":1}}}'
may_not "list Secrets" GET "/api/v1/$NS/secrets"
may_not "list Pods" GET "/api/v1/$NS/pods"

# What the operator made goes with its Cluster: the controller manager's garbage collector
# follows the ownerReferences applied above.
kubectl -n calls delete cluster dev --wait=false >&2
check "deleting the Cluster garbage-collects what was applied as the operator" \
    kubectl -n calls wait --for=delete --timeout="$WAIT" configmap/dev-calls service/dev-calls \
    poddisruptionbudget/dev-calls statefulset/dev-calls

# ============================================================================================
phase "live: examples against the CRDs"

for f in "$EXAMPLES"/*.yaml; do
    check "examples/${f##*/} validates (dry-run=server)" \
        kubectl -n examples apply --server-side --dry-run=server -f "$f"
done
# The kind e2e test's resources (e2e/kind/run.sh cannot run here: no kind, no image pulls).
for f in "$ROOT"/e2e/kind/cluster.yaml "$ROOT"/e2e/kind/topic.yaml; do
    check "e2e/kind/${f##*/} validates (dry-run=server)" \
        kubectl -n examples apply --server-side --dry-run=server -f "$f"
done

check "examples/topic.yaml applied for real" kubectl -n examples apply --server-side -f "$EXAMPLES/topic.yaml"
shrunk=$(sed 's/^\(  partitions:\) 6$/\1 3/' "$EXAMPLES/topic.yaml")
grep -qx '  partitions: 3' <<<"$shrunk" || bad "examples/topic.yaml has 'partitions: 6' to change" "$shrunk"
refused "Topic partitions 6 -> 3 is refused" "partitions cannot decrease" \
    kubectl -n examples apply --server-side -f - <<<"$shrunk"
grown=$(sed 's/^\(  partitions:\) 6$/\1 12/' "$EXAMPLES/topic.yaml")
check "Topic partitions 6 -> 12 is accepted (dry-run)" \
    kubectl -n examples apply --server-side --dry-run=server -f - <<<"$grown"
misspelt=$(sed 's/^\(    \)retention\.ms:/\1retention.mss:/' "$EXAMPLES/topic.yaml")
grep -q 'retention.mss:' <<<"$misspelt" || bad "examples/topic.yaml has retention.ms to misspell" "$misspelt"
refused "Topic config key retention.mss is refused" "unknown topic config key" \
    kubectl -n examples apply --server-side --dry-run=server -f - <<<"$misspelt"
refused "Cluster with coordinators.replicas 2 is refused" "must be 1, 3 or 5" \
    kubectl -n examples apply --server-side --dry-run=server -f - <<'EOF'
apiVersion: weir.dev/v1alpha1
kind: Cluster
metadata:
  name: even-quorum
spec:
  brokers:
    replicas: 3
    storage:
      size: 10Gi
  coordinators:
    replicas: 2
EOF

# ============================================================================================
finish || exit 1
