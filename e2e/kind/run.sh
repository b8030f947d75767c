#!/usr/bin/env bash
# End-to-end test of the operator on a real Kubernetes cluster (kind): the images, the Helm
# chart, a three-broker Cluster with rack awareness, a Topic, Kafka clients in pods, a drained
# scale-down that loses nothing, and a Topic deletion that reaches the Weir cluster.
#
#   e2e/kind/run.sh
#
#   1. builds the images (scripts/build-images.sh), then creates the kind cluster weir-e2e
#      (kind-config.yaml: a control plane and three workers in zones a, b, c) and loads the
#      images into its nodes (kind load docker-image; podman save + kind load image-archive);
#   2. helm install weir charts/weir --namespace weir-system --create-namespace --wait;
#   3. applies cluster.yaml (3 brokers, 3 coordinators) in namespace weir-e2e and waits for
#      its Ready condition; checks the pods, their zones and the status;
#   4. applies topic.yaml and waits for Ready; kcat, in a pod, produces 100 messages (acks=all)
#      through the bootstrap Service e2e-bootstrap.weir-e2e.svc:9092 and consumes them back;
#   5. scales the brokers 3 -> 2: waits until status.drainingBrokers is empty and the Cluster is
#      Ready for the new generation, the third broker pod is gone and kcat -L sees 2 brokers;
#      consumes the 100 messages again (every one, each once);
#   6. deletes the Topic and waits until kcat -L no longer lists it;
#   7. deletes the kind cluster (a trap: also after a failure), unless KEEP=1.
#
# Every wait is on a condition, with a deadline. A failure prints what went wrong, then
# `kubectl get all,clusters,topics -A`, the Cluster's status and events, the operator's logs and
# the Weir pods' logs.
#
# Needs kind, kubectl, helm, docker or podman, and what scripts/build-images.sh needs (cargo,
# readelf). Does not run on the development machine: see e2e/kind/README.md.
#
# Environment:
#   KEEP=1                   keep the kind cluster (and its kubeconfig) after the run
#   KCAT_IMAGE               the Kafka client image [edenhill/kcat:1.7.1]; needs `kcat` on PATH
#   KIND_NODE_IMAGE          kind's node image, e.g. kindest/node:v1.35.0 [kind's default]
#   KIND_CLUSTER_NAME        [weir-e2e]
#   E2E_NAMESPACE            the Cluster's namespace [weir-e2e]
#   WEIR_CONTAINER_ENGINE    docker or podman [docker if installed, else podman]
#   SKIP_BUILD=1             use the images already built (localhost/weir/*:VERSION)
#   READY_TIMEOUT            seconds for the Cluster to become Ready, and to scale down [600]
#   TIMEOUT                  seconds for every other wait [180]
#   ARTIFACTS                a directory to write the failure diagnostics to as well
set -euo pipefail
export LC_ALL=C # sort and comm agree on the order

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/e2e/kind
cd "$ROOT"

KEEP=${KEEP:-0}
KCAT_IMAGE=${KCAT_IMAGE:-edenhill/kcat:1.7.1}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}
KIND_CLUSTER_NAME=${KIND_CLUSTER_NAME:-weir-e2e}
NS=${E2E_NAMESPACE:-weir-e2e}
SKIP_BUILD=${SKIP_BUILD:-0}
READY_TIMEOUT=${READY_TIMEOUT:-600}
TIMEOUT=${TIMEOUT:-180}
ARTIFACTS=${ARTIFACTS:-}

OPERATOR_NS=weir-system
RELEASE=weir
CLUSTER=e2e       # metadata.name in cluster.yaml
TOPIC=e2e-orders  # metadata.name in topic.yaml (its Weir topic has the same name)
MESSAGES=100
BROKER_PORT=9092
BOOTSTRAP=$CLUSTER-bootstrap.$NS.svc:$BROKER_PORT
BROKERS_SELECTOR="app.kubernetes.io/instance=$CLUSTER,app.kubernetes.io/component=broker"
WEIR_SELECTOR="app.kubernetes.io/instance=$CLUSTER,app.kubernetes.io/name=weir"

# --- output --------------------------------------------------------------------------------

t_start=$SECONDS
STEP=
step_start=$SECONDS
declare -a timings=()
log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# step NAME: ends the current step (recording its duration) and starts the next.
step() {
    [[ -n $STEP ]] && timings+=("$STEP: $((SECONDS - step_start)) s")
    STEP=$1
    step_start=$SECONDS
    printf '\n[e2e %s] == %s\n' "$(date +%H:%M:%S)" "$1" >&2
}
die() {
    log "FAILED in step \"$STEP\": $*"
    exit 1
}

# --- prerequisites -------------------------------------------------------------------------

missing=()
for tool in kind kubectl helm; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
engine=${WEIR_CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
    # docker first: it is kind's default provider, and `kind load docker-image` reads from it.
    if command -v docker >/dev/null; then
        engine=docker
    elif command -v podman >/dev/null; then
        engine=podman
    else
        missing+=("docker or podman")
    fi
elif ! command -v "$engine" >/dev/null; then
    missing+=("$engine (WEIR_CONTAINER_ENGINE)")
fi
if [[ $SKIP_BUILD != 1 ]]; then
    for tool in cargo ldd; do
        command -v "$tool" >/dev/null || missing+=("$tool (scripts/build-images.sh; or SKIP_BUILD=1)")
    done
fi
if ((${#missing[@]})); then
    log "missing: ${missing[*]}"
    log "e2e/kind/run.sh needs kind, kubectl, helm and docker or podman; see e2e/kind/README.md"
    exit 2
fi
if kind get clusters 2>/dev/null | grep -qxF "$KIND_CLUSTER_NAME"; then
    log "a kind cluster named $KIND_CLUSTER_NAME exists already (left by KEEP=1?); delete it with"
    log "  kind delete cluster --name $KIND_CLUSTER_NAME"
    exit 2
fi

VERSION=$(awk -F'"' '/^\[workspace\.package\]/ { s = 1; next } /^\[/ { s = 0 } s && /^version *=/ { print $2; exit }' Cargo.toml)
[[ -n $VERSION ]] || { log "no version in [workspace.package] of Cargo.toml"; exit 2; }
IMAGES=("localhost/weir/broker:$VERSION" "localhost/weir/coordinator:$VERSION" "localhost/weir/operator:$VERSION")

# The kcat image by its full name: podman refuses an unqualified short name without a TTY to
# ask on, and the name a node's containerd files an image under is the qualified one.
kcat_image=$KCAT_IMAGE
first=${kcat_image%%/*}
if [[ $kcat_image != */* ]]; then
    kcat_image=docker.io/library/$kcat_image
elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
    kcat_image=docker.io/$kcat_image
fi

# Everything of this run: the kind cluster's kubeconfig (the user's own is left alone), the
# messages, saved image archives.
WORK=$(mktemp -d -t weir-kind-e2e.XXXXXX)
export KUBECONFIG=$WORK/kubeconfig
CREATED=0

# --- failure diagnostics and clean-up ------------------------------------------------------

diagnostics() {
    local pod
    printf '\n==================== diagnostics ====================\n'
    printf '\n--- kubectl get all,clusters,topics -A -o wide\n'
    kubectl get all,clusters,topics -A -o wide 2>&1 || kubectl get all -A -o wide 2>&1 # no CRDs yet
    printf '\n--- kubectl get pvc,pdb,configmaps -n %s\n' "$NS"
    kubectl -n "$NS" get pvc,pdb,configmaps -o wide 2>&1
    printf '\n--- nodes and their zones\n'
    kubectl get nodes -L topology.kubernetes.io/zone 2>&1
    printf '\n--- Cluster %s/%s\n' "$NS" "$CLUSTER"
    kubectl -n "$NS" get clusters.weir.dev "$CLUSTER" -o yaml 2>&1
    printf '\n--- Topics in %s\n' "$NS"
    kubectl -n "$NS" get topics.weir.dev -o yaml 2>&1
    printf '\n--- events in %s and %s\n' "$NS" "$OPERATOR_NS"
    kubectl -n "$NS" get events --sort-by=.lastTimestamp 2>&1 | tail -n 60
    kubectl -n "$OPERATOR_NS" get events --sort-by=.lastTimestamp 2>&1 | tail -n 20
    printf '\n--- operator logs (deployment/%s)\n' "$RELEASE"
    kubectl -n "$OPERATOR_NS" logs "deployment/$RELEASE" --all-containers --tail=400 2>&1
    printf '\n--- operator logs, previous container (after a restart)\n'
    kubectl -n "$OPERATOR_NS" logs "deployment/$RELEASE" --all-containers --previous --tail=100 2>&1
    for pod in $(kubectl -n "$NS" get pods -l "$WEIR_SELECTOR" -o name 2>/dev/null); do
        printf '\n--- logs of %s\n' "$pod"
        kubectl -n "$NS" describe "$pod" 2>&1 | sed -n '/^Conditions:/,$p' | tail -n 25
        kubectl -n "$NS" logs "$pod" --tail=200 2>&1
        if [[ $(kubectl -n "$NS" get "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}' 2>/dev/null) != 0 ]]; then
            printf -- '--- %s, previous container\n' "$pod"
            kubectl -n "$NS" logs "$pod" --previous --tail=100 2>&1
        fi
    done
    for pod in $(kubectl -n "$NS" get pods -l app.kubernetes.io/name=weir-e2e-kcat -o name 2>/dev/null); do
        printf '\n--- %s (kcat)\n' "$pod"
        kubectl -n "$NS" get "$pod" -o jsonpath='{.status.phase} {.status.containerStatuses[0].state}{"\n"}' 2>&1
        kubectl -n "$NS" logs "$pod" --tail=50 2>&1
    done
    printf '\n==================== end of diagnostics ====================\n'
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if ((status != 0)) && ((CREATED)) && [[ -s $KUBECONFIG ]]; then
        if [[ -n $ARTIFACTS ]] && mkdir -p "$ARTIFACTS"; then
            diagnostics 2>&1 | tee "$ARTIFACTS/diagnostics.txt" >&2 || true
        else
            diagnostics >&2 || true
        fi
    fi
    if ((CREATED)); then
        if [[ $KEEP == 1 ]]; then
            log "KEEP=1: the kind cluster $KIND_CLUSTER_NAME is kept:"
            log "  export KUBECONFIG=$KUBECONFIG   # or: kind export kubeconfig --name $KIND_CLUSTER_NAME"
            log "  kind delete cluster --name $KIND_CLUSTER_NAME   # when done"
        else
            log "deleting the kind cluster $KIND_CLUSTER_NAME"
            kind delete cluster --name "$KIND_CLUSTER_NAME" >&2 || log "kind delete cluster failed"
        fi
    fi
    [[ $KEEP == 1 ]] || rm -rf "$WORK"
    [[ -n $STEP ]] && timings+=("$STEP: $((SECONDS - step_start)) s")
    timings+=("total: $((SECONDS - t_start)) s")
    printf '\n' >&2
    printf '  %s\n' "${timings[@]}" >&2
    if ((status == 0)); then
        log "PASS"
    else
        log "FAIL (exit $status) in step \"$STEP\""
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- waiting -------------------------------------------------------------------------------

# jp KIND/NAME JSONPATH: a field of an object in $NS ("" when absent or unreadable).
jp() { kubectl -n "$NS" get "$1" -o "jsonpath=$2" 2>/dev/null || true; }

# until_true SECONDS WHAT CMD...: runs CMD every 2 s until it succeeds; dies after SECONDS,
# printing CMD's last output.
until_true() {
    local seconds=$1 what=$2 out deadline
    shift 2
    deadline=$((SECONDS + seconds))
    log "waiting (up to ${seconds}s) until $what"
    until out=$("$@" 2>&1); do
        ((SECONDS < deadline)) || die "not within ${seconds}s: $what; last: $out"
        sleep 2
    done
    log "ok: $what"
}

# --- kcat in a pod -------------------------------------------------------------------------

# kcat_pod WHAT ARG...: runs `kcat ARG...` in a pod of its own (named kcat-WHAT-<random>, the
# messages ConfigMap mounted at /messages), waits for it to end and prints its output (stdout
# and stderr). Fails when the pod fails or has not ended within $TIMEOUT s. The pod is deleted
# after a success, kept for the diagnostics after a failure.
kcat_pod() {
    local what=$1 name args="" a phase deadline
    shift
    for a in "$@"; do # a JSON array of strings
        a=${a//\\/\\\\}
        a=${a//\"/\\\"}
        args+="${args:+,}\"$a\""
    done
    name=$(kubectl -n "$NS" create -o 'jsonpath={.metadata.name}' -f - <<EOF
{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {"generateName": "kcat-$what-", "labels": {"app.kubernetes.io/name": "weir-e2e-kcat"}},
  "spec": {
    "restartPolicy": "Never",
    "containers": [{
      "name": "kcat",
      "image": "$kcat_image",
      "imagePullPolicy": "IfNotPresent",
      "command": ["kcat"],
      "args": [$args],
      "volumeMounts": [{"name": "messages", "mountPath": "/messages", "readOnly": true}]
    }],
    "volumes": [{"name": "messages", "configMap": {"name": "e2e-messages"}}]
  }
}
EOF
    ) || return 1
    deadline=$((SECONDS + TIMEOUT))
    while :; do
        phase=$(jp "pod/$name" '{.status.phase}')
        [[ $phase == Succeeded || $phase == Failed ]] && break
        if ((SECONDS >= deadline)); then
            log "pod $name did not end within ${TIMEOUT}s (phase ${phase:-unknown}):"
            kubectl -n "$NS" describe "pod/$name" 2>&1 | sed -n '/^Events:/,$p' >&2
            kubectl -n "$NS" logs "pod/$name" 2>&1 | tail -n 20 >&2
            return 1
        fi
        sleep 1
    done
    kubectl -n "$NS" logs "pod/$name" 2>&1
    if [[ $phase != Succeeded ]]; then
        log "pod $name (kcat $*) failed: $(jp "pod/$name" '{.status.containerStatuses[0].state.terminated.reason}, exit code {.status.containerStatuses[0].state.terminated.exitCode}')"
        return 1
    fi
    kubectl -n "$NS" delete "pod/$name" --wait=false >/dev/null 2>&1 || true
}

# metadata: kcat -L against the bootstrap Service.
metadata() { kcat_pod metadata -b "$BOOTSTRAP" -L -m 15; }

# consume_all WHAT: reads the topic from the beginning until every message that was produced
# has been read back, each exactly once (retrying a read that fails or comes back short, as
# a client would while leaders move, until $TIMEOUT s have passed).
consume_all() {
    local what=$1 out got n deadline
    deadline=$((SECONDS + TIMEOUT))
    while :; do
        if out=$(kcat_pod consume -b "$BOOTSTRAP" -C -t "$TOPIC" -o beginning -e -c "$MESSAGES" \
            -q -f '%k:%s\n' -m 15); then
            got=$(grep -E '^key-[0-9]+:message-[0-9]+$' <<<"$out" | sort || true)
            n=$(grep -c . <<<"$got" || true)
            if [[ $got == "$EXPECTED" ]]; then
                log "ok: $what: consumed $n messages, each of the $MESSAGES produced exactly once"
                return 0
            fi
            log "$what: consumed $n messages, not the $MESSAGES produced:"
            log "  missing: $(comm -23 <(printf '%s\n' "$EXPECTED") <(printf '%s\n' "$got") | head -n 10 | tr '\n' ' ')"
            log "  unexpected or repeated: $(printf '%s\n' "$got" | uniq -d | head -n 10 | tr '\n' ' ')"
            grep -vE '^key-[0-9]+:message-[0-9]+$' <<<"$out" | head -n 10 >&2 || true
        else
            log "$what: kcat failed (retrying): $(tail -n 5 <<<"$out")"
        fi
        ((SECONDS < deadline)) || die "$what: the $MESSAGES messages were not read back within ${TIMEOUT}s"
        sleep 2
    done
}

# --- checks on the Cluster -----------------------------------------------------------------

# cluster_settled REPLICAS: the Cluster's status describes its current generation, its Ready
# condition is True for that generation, no broker is draining, and the broker StatefulSet has
# REPLICAS replicas, all ready. Prints what it saw when not.
cluster_settled() {
    local want=$1 gen observed ready ready_gen draining brokers_ready replicas ready_replicas
    gen=$(jp "clusters.weir.dev/$CLUSTER" '{.metadata.generation}')
    IFS='|' read -r observed ready ready_gen draining brokers_ready <<<"$(jp "clusters.weir.dev/$CLUSTER" \
        '{.status.observedGeneration}|{.status.conditions[?(@.type=="Ready")].status}|{.status.conditions[?(@.type=="Ready")].observedGeneration}|{.status.drainingBrokers}|{.status.brokersReady}')"
    IFS='|' read -r replicas ready_replicas <<<"$(jp "statefulset/$CLUSTER-broker" '{.spec.replicas}|{.status.readyReplicas}')"
    [[ $draining == "[]" ]] && draining= # left out of the status when empty; [] is empty too
    if [[ -n $gen && $observed == "$gen" && $ready == True && $ready_gen == "$gen" && -z $draining &&
        $brokers_ready == "$want" && $replicas == "$want" && $ready_replicas == "$want" ]]; then
        return 0
    fi
    echo "generation ${gen:-?}: status.observedGeneration ${observed:-none}, Ready ${ready:-none}" \
        "(for generation ${ready_gen:-none}), drainingBrokers ${draining:-none}, brokersReady" \
        "${brokers_ready:-none}; StatefulSet $CLUSTER-broker: replicas ${replicas:-none}, ready ${ready_replicas:-0}"
    return 1
}

# pod_gone NAME: no pod NAME in $NS (an error reading it counts as not gone).
pod_gone() {
    local out
    out=$(kubectl -n "$NS" get "pod/$1" --ignore-not-found -o name 2>&1)
    [[ -z $out ]] || { echo "$out"; return 1; }
}

# listed_brokers N: kcat -L reports N brokers.
listed_brokers() {
    local out
    out=$(metadata) || return 1
    grep -qE "^ *$1 brokers:" <<<"$out" || { grep -E 'brokers:' <<<"$out"; return 1; }
}
# topic_listed / topic_gone: whether kcat -L lists the topic.
topic_listed() {
    local out
    out=$(metadata) || return 1
    grep -qF "topic \"$TOPIC\"" <<<"$out" || { echo "kcat -L does not list $TOPIC"; return 1; }
}
topic_gone() {
    local out
    out=$(metadata) || return 1
    ! grep -F "topic \"$TOPIC\"" <<<"$out"
}

# ===========================================================================================

if [[ $SKIP_BUILD == 1 ]]; then
    step "images: reusing localhost/weir/*:$VERSION (SKIP_BUILD=1)"
else
    step "images: scripts/build-images.sh ($engine)"
    WEIR_CONTAINER_ENGINE=$engine scripts/build-images.sh
fi
for image in "${IMAGES[@]}"; do
    "$engine" image inspect "$image" >/dev/null 2>&1 ||
        die "no image $image in $engine (did scripts/build-images.sh build the operator?)"
done
log "pulling $kcat_image"
"$engine" pull "$kcat_image" >&2 || die "cannot pull $kcat_image (set KCAT_IMAGE to an image with kcat)"

step "kind cluster $KIND_CLUSTER_NAME"
config=$HERE/kind-config.yaml
if [[ $KIND_NODE_IMAGE =~ :v1\.3[34]\. ]]; then
    # Kubernetes 1.33 and 1.34 have PodTopologyLabels admission behind an alpha gate.
    config=$WORK/kind-config.yaml
    { cat "$HERE/kind-config.yaml"; printf 'featureGates:\n  PodTopologyLabelsAdmission: true\n'; } >"$config"
    log "node image $KIND_NODE_IMAGE: enabling the PodTopologyLabelsAdmission feature gate"
fi
create=(--name "$KIND_CLUSTER_NAME" --config "$config" --kubeconfig "$KUBECONFIG" --wait 5m)
[[ -z $KIND_NODE_IMAGE ]] || create+=(--image "$KIND_NODE_IMAGE")
CREATED=1 # from here on, a failure deletes whatever kind managed to create
kind create cluster "${create[@]}"
kubectl version >&2
same_zones=$(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' \
    -o jsonpath='{range .items[*]}{.metadata.labels.topology\.kubernetes\.io/zone}{"\n"}{end}' | sort | tr '\n' ' ')
[[ $same_zones == "a b c " ]] || die "the workers' zones are \"$same_zones\", not \"a b c\""
log "ok: three workers, in zones a, b and c"

step "loading the images into the nodes"
if [[ $engine == docker ]]; then
    kind load docker-image --name "$KIND_CLUSTER_NAME" "${IMAGES[@]}" "$kcat_image"
else
    for image in "${IMAGES[@]}" "$kcat_image"; do
        archive=$WORK/image.tar
        rm -f "$archive"
        podman save --format docker-archive -o "$archive" "$image"
        kind load image-archive --name "$KIND_CLUSTER_NAME" "$archive"
    done
    rm -f "$WORK/image.tar"
fi

step "helm install $RELEASE charts/weir"
helm install "$RELEASE" charts/weir --namespace "$OPERATOR_NS" --create-namespace --wait --timeout 5m \
    --set image.tag="$VERSION" --set image.pullPolicy=Never
kubectl -n "$OPERATOR_NS" get deployment,pods -o wide >&2
# The operator cannot do its work without its RBAC: a rule missing from the chart would show as
# forbidden errors in its log rather than as a wait that times out.

step "Cluster $CLUSTER: 3 brokers, 3 coordinators"
kubectl create namespace "$NS" >&2
# The messages kcat produces, mounted into its pods.
for ((i = 1; i <= MESSAGES; i++)); do
    printf 'key-%03d:message-%03d\n' "$i" "$i"
done >"$WORK/messages.txt"
EXPECTED=$(sort "$WORK/messages.txt")
kubectl -n "$NS" create configmap e2e-messages --from-file=messages.txt="$WORK/messages.txt" >&2
kubectl -n "$NS" apply --server-side -f "$HERE/cluster.yaml" >&2
kubectl -n "$NS" wait --for=condition=Ready "clusters.weir.dev/$CLUSTER" --timeout="${READY_TIMEOUT}s" >&2 ||
    die "the Cluster did not become Ready within ${READY_TIMEOUT}s"
until_true "$TIMEOUT" "the Cluster's status describes 3 ready brokers" cluster_settled 3
[[ $(jp "clusters.weir.dev/$CLUSTER" '{.status.coordinatorsReady}') == 3 ]] ||
    die "status.coordinatorsReady is not 3: $(jp "clusters.weir.dev/$CLUSTER" '{.status}')"
[[ $(jp "clusters.weir.dev/$CLUSTER" '{.status.bootstrap}') == "$BOOTSTRAP" ]] ||
    die "status.bootstrap is not $BOOTSTRAP: $(jp "clusters.weir.dev/$CLUSTER" '{.status.bootstrap}')"
kubectl -n "$NS" get pods -l "$WEIR_SELECTOR" -o wide -L topology.kubernetes.io/zone >&2
images=$(kubectl -n "$NS" get pods -l "$WEIR_SELECTOR" \
    -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort -u | tr '\n' ' ')
[[ $images == "localhost/weir/broker:$VERSION localhost/weir/coordinator:$VERSION " ]] ||
    die "the pods run \"$images\", not the images loaded"
# Each broker's rack is its pod's copy of its node's zone (PodTopologyLabels admission, through
# the downward API); without it every broker would report an empty rack.
zones=$(kubectl -n "$NS" get pods -l "$BROKERS_SELECTOR" \
    -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.labels.topology\.kubernetes\.io/zone}{"\n"}{end}')
log "broker zones: $(tr '\n' ' ' <<<"$zones")"
if grep -qE '=$' <<<"$zones"; then
    die "a broker pod has no topology.kubernetes.io/zone label: the API server does not copy the node's zone onto pods (PodTopologyLabels admission: Kubernetes 1.35, or 1.33-1.34 with the PodTopologyLabelsAdmission gate; set KIND_NODE_IMAGE, see README.md)"
fi
[[ $(cut -d= -f2 <<<"$zones" | sort -u | wc -l) == 3 ]] ||
    log "note: the brokers are not in three different zones (the spread is ScheduleAnyway)"

step "Topic $TOPIC: produce $MESSAGES messages, consume them back"
kubectl -n "$NS" apply --server-side -f "$HERE/topic.yaml" >&2
kubectl -n "$NS" wait --for=condition=Ready "topics.weir.dev/$TOPIC" --timeout="${TIMEOUT}s" >&2 ||
    die "the Topic did not become Ready within ${TIMEOUT}s"
until_true "$TIMEOUT" "kcat -L lists $TOPIC" topic_listed
# Idempotent, acks=all: each message written once, on both replicas, or kcat reports it failed.
out=$(kcat_pod produce -b "$BOOTSTRAP" -P -t "$TOPIC" -K : -l /messages/messages.txt \
    -X acks=all -X enable.idempotence=true -X message.timeout.ms=60000) ||
    die "kcat could not produce: $out"
# librdkafka logs transient connection errors it recovers from; a lost message is reported as
# a failed delivery (and the read-back below would miss it anyway).
if grep -qE 'Delivery failed|% ERROR' <<<"$out"; then
    die "kcat reported failed deliveries: $out"
fi
[[ -z $out ]] || log "kcat said: $out"
log "ok: produced $MESSAGES messages to $TOPIC through $BOOTSTRAP"
consume_all "read back"

step "scale down: brokers 3 -> 2"
kubectl -n "$NS" patch "clusters.weir.dev/$CLUSTER" --type=merge -p '{"spec":{"brokers":{"replicas":2}}}' >&2
# The drain (moving every replica off broker 2) can be too quick to see; it is reported, not
# required. What is required: the end state, with nothing lost.
deadline=$((SECONDS + READY_TIMEOUT))
saw_draining=no
log "waiting (up to ${READY_TIMEOUT}s) until the Cluster is Ready with 2 brokers and none draining"
until last=$(cluster_settled 2); do
    [[ $(jp "clusters.weir.dev/$CLUSTER" '{.status.drainingBrokers}') == *2* ]] && saw_draining=yes
    ((SECONDS < deadline)) || die "the scale-down did not settle within ${READY_TIMEOUT}s: $last"
    sleep 2
done
log "ok: Ready with 2 brokers, none draining (status.drainingBrokers showed broker 2 while waiting: $saw_draining)"
until_true "$TIMEOUT" "pod $CLUSTER-broker-2 is gone" pod_gone "$CLUSTER-broker-2"
until_true "$TIMEOUT" "kcat -L reports 2 brokers" listed_brokers 2
consume_all "read back after the scale-down"

step "delete Topic $TOPIC"
kubectl -n "$NS" delete "topics.weir.dev/$TOPIC" --timeout="${TIMEOUT}s" >&2 ||
    die "the Topic was not deleted within ${TIMEOUT}s (its weir.dev/topic finalizer stays until the topic is deleted in the cluster)"
until_true "$TIMEOUT" "kcat -L no longer lists $TOPIC" topic_gone

step "done"
