#!/usr/bin/env bash
# Smoke test of scripts/controlplane.sh: proves that the control plane built from Go modules
# runs the controllers the operator relies on. The StatefulSet controller creates a
# StatefulSet's Pods (they stay Pending: there is no scheduler or kubelet), and the garbage
# collector deletes an object whose owner was deleted. Also checks that RBAC is enforced, and
# that the built helm renders a chart.
#
#   e2e/controlplane/smoke.sh [DIR]    # DIR: where the control plane keeps its state
#                                      # (default: a temp dir, removed if the test passes)
#
# Builds the binaries first if needed (scripts/controlplane.sh build) and stops the control plane
# on exit, whatever happened. Prints "5 passed, 0 failed" at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONTROLPLANE=$ROOT/scripts/controlplane.sh
TIMEOUT=60 # seconds for each condition below

"$CONTROLPLANE" build
BIN=$("$CONTROLPLANE" bin)
if [[ -n ${1:-} ]]; then
    DIR=$1
    trap '"$CONTROLPLANE" stop "$DIR"' EXIT
else
    # A temp dir of our own: removed after a pass, kept (with the logs) after a failure.
    DIR=$(mktemp -d -t weir-controlplane.XXXXXX)
    trap 'status=$?; "$CONTROLPLANE" stop "$DIR"
          if ((status == 0)); then rm -rf "$DIR"; else echo "smoke: state and logs kept in $DIR" >&2; fi' EXIT
fi

KUBECONFIG=$("$CONTROLPLANE" start "$DIR" | tail -n1)
export KUBECONFIG
kubectl() { "$BIN/kubectl" "$@"; }
passed=0

pass() { echo "smoke: ok: $*" >&2; passed=$((passed + 1)); }
fail() { echo "smoke: FAILED: $*" >&2; echo "$passed passed, 1 failed"; exit 1; }

# Polls a command until it succeeds, for at most TIMEOUT seconds; $1 says what is awaited.
await() {
    local what=$1 deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "no $what within ${TIMEOUT}s"
        sleep 0.5
    done
}

kubectl version >&2
kubectl apply -f - >&2 <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: smoke
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: smoke
spec:
  serviceName: web
  replicas: 2
  # OrderedReady (the default) creates web-1 only once web-0 is Ready, which never happens
  # without a kubelet; Parallel creates both at once.
  podManagementPolicy: Parallel
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.invalid/never-pulled:1
EOF

# 1. The StatefulSet controller created both Pods; no kubelet, so they stay Pending.
two_pending_pods() {
    [[ $(kubectl -n smoke get pods -l app=web --field-selector=status.phase=Pending \
        -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}') == $'web-0\nweb-1' ]]
}
await "2 Pending Pods web-0, web-1 from the StatefulSet controller" two_pending_pods
pass "StatefulSet controller created web-0 and web-1 (Pending)"

# 2. A ConfigMap owned by the StatefulSet goes when its owner goes (garbage collector).
uid=$(kubectl -n smoke get statefulset web -o jsonpath='{.metadata.uid}')
kubectl apply -f - >&2 <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: smoke
  ownerReferences:
  - apiVersion: apps/v1
    kind: StatefulSet
    name: web
    uid: $uid
data:
  owned: "yes"
EOF
kubectl -n smoke delete statefulset web --wait=false >&2
configmap_gone() { ! kubectl -n smoke get configmap web-config; }
await "deletion of the owned ConfigMap by the garbage collector" configmap_gone
pass "garbage collector deleted the ConfigMap owned by the deleted StatefulSet"

# 3. The Pods are owned by the StatefulSet too: the garbage collector deletes them as well.
no_pods() { [[ -z $(kubectl -n smoke get pods -o name) ]]; }
await "deletion of the StatefulSet's Pods" no_pods
pass "garbage collector deleted the StatefulSet's Pods"

# 4. RBAC is enforced: a service account without a binding is refused, and allowed once bound.
kubectl -n smoke create serviceaccount probe >&2
as_probe=(--as=system:serviceaccount:smoke:probe)
[[ $(kubectl -n smoke auth can-i list configmaps "${as_probe[@]}" 2>/dev/null || true) == no ]] ||
    fail "an unbound service account may list configmaps: RBAC is not enforced"
kubectl -n smoke create role read-configmaps --verb=list --resource=configmaps >&2
kubectl -n smoke create rolebinding probe-reads --role=read-configmaps \
    --serviceaccount=smoke:probe >&2
await "list permission after the RoleBinding" \
    kubectl -n smoke auth can-i list configmaps "${as_probe[@]}"
pass "RBAC denies an unbound service account and allows it once bound"

# 5. helm: a chart made by `helm create` lints and renders against this API server's version.
chart_dir=$DIR/chart
rm -rf "$chart_dir" && mkdir -p "$chart_dir"
"$BIN/helm" create "$chart_dir/smoke" >&2
"$BIN/helm" lint "$chart_dir/smoke" >&2
"$BIN/helm" template smoke "$chart_dir/smoke" --namespace smoke >"$chart_dir/rendered.yaml"
kubectl apply --dry-run=server -n smoke -f "$chart_dir/rendered.yaml" >&2
pass "helm lint and helm template of a chart; the API server accepts the output (dry run)"

echo "smoke: all checks passed" >&2
echo "$passed passed, 0 failed"
