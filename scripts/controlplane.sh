#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the operator's e2e tests: etcd, kube-apiserver
# and kube-controller-manager (StatefulSet controller, garbage collector, service accounts...),
# built from Go modules (e2e/controlplane, k8s.io/kubernetes v1.36.3), plus kubectl and helm.
# No scheduler and no kubelet: Pods are created by the controllers and stay Pending, so a
# StatefulSet with the default podManagementPolicy (OrderedReady) gets only its pod 0, and
# nothing ever becomes Ready. Proved by e2e/controlplane/smoke.sh.
#
#   scripts/controlplane.sh build        # build the binaries once into the cache (instant after)
#   scripts/controlplane.sh start DIR    # start a fresh control plane, state under DIR
#   scripts/controlplane.sh stop DIR     # stop what `start DIR` started
#   scripts/controlplane.sh bin          # print the directory holding the binaries
#
# `start` prints the admin kubeconfig's path (DIR/kubeconfig) as the last line of stdout, so:
#   kubeconfig=$(scripts/controlplane.sh start "$dir" | tail -n1)
#   "$(scripts/controlplane.sh bin)/kubectl" --kubeconfig "$kubeconfig" apply -f ...
# Ports are picked at random among free ones, so several control planes can run side by side.
#
# Binaries: ${WEIR_CACHE:-~/.cache/weir}/controlplane-v1.36.3-<hash>/bin/{kube-apiserver,
#   kube-controller-manager,etcd,kubectl,helm}, all from one `go build` in one Go module
#   (e2e/controlplane); <hash> covers its go.sum and the command list, so a change rebuilds.
#   Outside the clone so clones and worktrees share them. The Go module and build caches stay
#   where Go puts them (GOMODCACHE, GOCACHE: ~/go/pkg/mod, ~/.cache/go-build).
# Layout of DIR after `start`:
#   kubeconfig          admin (client certificate, group system:masters)
#   ports               ETCD_PORT=..., APISERVER_PORT=..., ... (shell syntax, for `source`)
#   pki/                CA, serving and client certificates, service-account key pair
#   etcd/               etcd's data
#   logs/<name>.log     each process's output;  pids/<name>.pid  each process's pid
#
# Needs: go >= 1.26 (build only), openssl, curl. Environment: WEIR_CACHE (WEIR_CACHE_DIR is
# honoured too, as in scripts/install-test-deps.sh), CONTROLPLANE_READY_TIMEOUT (seconds, 120).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBE_VERSION=v1.36.3
CACHE=${WEIR_CACHE:-${WEIR_CACHE_DIR:-$HOME/.cache/weir}}
HELM_VERSION=v3.21.4
# The commands built, by Go package; the binary is named after the package's last element.
GO_PACKAGES=(
    k8s.io/kubernetes/cmd/kube-apiserver
    k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kubectl
    ./cmd/etcd
    helm.sh/helm/v3/cmd/helm
)
BINARIES=("${GO_PACKAGES[@]##*/}")
# Keyed by what decides the binaries: the module's go.sum and this list. A change builds into a
# new directory; the old one stays until removed (a running control plane may use it).
BIN=$CACHE/controlplane-$KUBE_VERSION-$(cat "$ROOT/e2e/controlplane/go.sum" <(printf '%s\n' "${GO_PACKAGES[@]}" "$HELM_VERSION") | sha256sum | cut -c1-12)/bin
# Started in this order, stopped in the reverse one.
PROCESSES=(etcd kube-apiserver kube-controller-manager)
READY_TIMEOUT=${CONTROLPLANE_READY_TIMEOUT:-120}
# Service ClusterIPs; the first address is the `kubernetes` Service, which the serving
# certificate names. Nothing routes to them (no kube-proxy), they only have to be valid.
SERVICE_CIDR=10.96.0.0/24
KUBERNETES_SERVICE_IP=10.96.0.1

log() { echo "controlplane: $*" >&2; }
die() { log "error: $*"; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is required${2:+ ($2)}"; }

# --- build -------------------------------------------------------------------------------

build() {
    local missing=() name
    for name in "${BINARIES[@]}"; do [[ -x $BIN/$name ]] || missing+=("$name"); done
    if ((${#missing[@]} == 0)); then
        log "binaries up to date in $BIN"
        return
    fi
    need go "Go 1.26 or newer; only the Go module proxy is needed"
    log "building ${missing[*]} into $BIN (cold: about ten minutes on 2 cores)"
    local started=$SECONDS staging=$BIN.partial
    rm -rf "$staging"
    mkdir -p "$staging"

    # Common flags: static binaries (no C toolchain needed, as upstream builds them), no
    # absolute paths, no symbol tables or DWARF (about a third of the size), no VCS stamping of
    # our own module (the clone's git state does not matter and may be unreadable), and at most
    # two packages compiled at once so a 2-core machine stays usable. -mod=readonly (the default)
    # on purpose: go.sum is committed and complete, and a build must never edit the clone.
    local goflags=(-p 2 -trimpath -buildvcs=false -mod=readonly)
    export CGO_ENABLED=0

    # One -ldflags for every command: -X of a variable a binary does not link is ignored.
    # Kubernetes's version (hack/lib/version.sh): without it the binaries call themselves
    # v0.0.0-master, which kubectl's skew warning and helm's kubeVersion constraints trip over.
    local x=() key val
    for key in gitVersion gitMajor gitMinor gitTreeState buildDate; do
        case $key in
            gitVersion) val=$KUBE_VERSION ;;
            gitMajor) val=1 ;;
            gitMinor) val=${KUBE_VERSION#v1.}; val=${val%%.*} ;;
            gitTreeState) val=clean ;;
            buildDate) val=1970-01-01T00:00:00Z ;; # reproducible: the version names the source
        esac
        x+=("-X k8s.io/component-base/version.$key=$val" "-X k8s.io/client-go/pkg/version.$key=$val")
    done
    # helm's, as its Makefile sets them: without the k8sVersion ones `helm template` reports
    # Capabilities.KubeVersion v1.20 and `helm lint` checks deprecations against 1.20. Its k8s.io
    # libraries are the control plane's (one module), so the Kubernetes version is theirs too.
    local minor=${KUBE_VERSION#v1.}
    minor=${minor%%.*}
    x+=("-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean")
    for key in lint/rules chartutil; do
        x+=("-X helm.sh/helm/v3/pkg/$key.k8sVersionMajor=1" "-X helm.sh/helm/v3/pkg/$key.k8sVersionMinor=$minor")
    done

    # One `go build` of every command: one module (e2e/controlplane/go.mod), one dependency
    # graph compiled once, packages of all the commands scheduled together.
    (
        cd "$ROOT/e2e/controlplane"
        go build "${goflags[@]}" -ldflags="-s -w ${x[*]}" -o "$staging/" "${GO_PACKAGES[@]}"
    )

    # Move in only once everything built, so a half-done build is never taken for a whole one.
    rm -rf "$BIN"
    mv -f "$staging" "$BIN"
    log "built in $((SECONDS - started))s: $(du -sh "$BIN" | cut -f1) in $BIN"
}

# --- start -------------------------------------------------------------------------------

# Prints a TCP port that nothing listens on and that this script has not handed out yet. The
# kernel's ephemeral range is avoided so an outgoing connection cannot be sitting on it. There is
# a window before the process binds it; a lost race shows up as an early exit, reported below.
declare -A TAKEN_PORTS=()
free_port() {
    local listening port
    # Local addresses of listening sockets (state 0A), as hex ports, from /proc/net/tcp{,6}.
    listening=$(awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 12000)) # 20000..31999, below the usual ephemeral range
        [[ -n ${TAKEN_PORTS[$port]:-} ]] && continue
        grep -qix "$(printf '%04X' "$port")" <<<"$listening" && continue
        TAKEN_PORTS[$port]=1
        echo "$port"
        return
    done
    die "no free port found"
}

# The certificates, as kubeadm lays them out: one CA signs the apiserver's serving certificate and
# the client certificates, and the apiserver trusts it for clients (--client-ca-file). A second
# CA, front-proxy, signs the client certificate the apiserver's aggregator uses towards extension
# servers; the controller manager's own port reads it (it is the requestheader CA) and logs an
# error every few seconds without it. The service-account key pair signs and checks tokens.
# RSA 2048 and PKCS#8 keys: what every client (kube-rs with rustls, kubectl, client-go) reads.
make_pki() {
    local pki=$1
    mkdir -p "$pki"
    (
        cd "$pki"
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=weir-e2e-ca" \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=weir-e2e-front-proxy-ca" \
            -keyout front-proxy-ca.key -out front-proxy-ca.crt 2>/dev/null
        # $1 name, $2 subject, $3 extensions, $4 signing CA's base name (default ca)
        sign() {
            local ca=${4:-ca}
            openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
            printf '%s\n' "$3" >"$1.ext"
            openssl x509 -req -in "$1.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
                -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
            rm "$1.csr" "$1.ext"
        }
        sign apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
            "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")"
        local client
        client=$(printf '%s\n' "basicConstraints=CA:FALSE" \
            "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth")
        # The test's admin, and the controller manager: with --use-service-account-credentials=
        # false every controller acts as this one identity, which needs the union of their
        # rights, so it is in system:masters too (the bootstrap system:kube-controller-manager
        # role alone is not enough).
        sign admin "/O=system:masters/CN=weir-e2e-admin" "$client"
        sign controller-manager "/O=system:masters/CN=system:kube-controller-manager" "$client"
        sign front-proxy-client "/CN=front-proxy-client" "$client" front-proxy-ca
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        chmod 644 ca.crt ./*.crt sa.pub
    )
}

# $1 path, $2 server URL, $3 pki dir, $4 client certificate's base name in it. The data is
# embedded so the file stands alone (a test can copy it, kube-rs reads it as is).
write_kubeconfig() {
    local b64='base64 -w0'
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weir-e2e
  cluster:
    server: $2
    certificate-authority-data: $($b64 <"$3/ca.crt")
users:
- name: $4
  user:
    client-certificate-data: $($b64 <"$3/$4.crt")
    client-key-data: $($b64 <"$3/$4.key")
contexts:
- name: weir-e2e
  context:
    cluster: weir-e2e
    user: $4
current-context: weir-e2e
EOF
    chmod 600 "$1"
}

# $1 DIR, $2 name, rest: the command. Started in the background with its output in logs/NAME.log.
launch() {
    local dir=$1 name=$2
    shift 2
    "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/pids/$name.pid"
}

# True while the process `start` recorded for NAME runs.
alive() {
    local pid
    pid=$(cat "$1/pids/$2.pid" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null
}

# Fails the start: shows NAME's log (the reason it exited or did not get ready) and stops the rest.
fail() {
    local dir=$1 name=$2 why=$3
    log "error: $name $why; last 50 lines of $dir/logs/$name.log:"
    tail -n 50 "$dir/logs/$name.log" >&2 || true
    stop "$dir" >/dev/null 2>&1 || true
    exit 1
}

# Polls CHECK (a command) until it succeeds; fails if any process started so far exits
# meanwhile (an apiserver that dies makes the controller manager wait forever) or the deadline
# (shared by the whole start) passes.
wait_for() {
    local dir=$1 name=$2 what=$3 other
    shift 3
    until "$@" >/dev/null 2>&1; do
        for other in "${PROCESSES[@]}"; do
            [[ -e $dir/pids/$other.pid ]] || continue
            alive "$dir" "$other" || fail "$dir" "$other" "exited while waiting for $name to be $what"
        done
        ((SECONDS < DEADLINE)) || fail "$dir" "$name" "was not $what within ${READY_TIMEOUT}s"
        sleep 0.2
    done
}

start() {
    local dir=${1:?usage: $0 start DIR}
    need openssl
    need curl
    local name
    for name in "${BINARIES[@]}"; do
        [[ -x $BIN/$name ]] || die "$BIN/$name is missing: run $0 build"
    done
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for name in "${PROCESSES[@]}"; do
        alive "$dir" "$name" && die "$name from an earlier start still runs: $0 stop $dir"
    done
    # Only what this script creates is removed: DIR may hold the caller's files too.
    rm -rf "$dir/pki" "$dir/etcd" "$dir/controller-manager" "$dir/flexvolume" "$dir/logs" "$dir/pids" \
        "$dir/kubeconfig" "$dir/controller-manager.kubeconfig" "$dir/ports"
    mkdir -p "$dir/logs" "$dir/pids"

    local started=$SECONDS
    DEADLINE=$((SECONDS + READY_TIMEOUT))
    local etcd_port etcd_peer_port api_port kcm_port
    etcd_port=$(free_port)
    etcd_peer_port=$(free_port)
    api_port=$(free_port)
    kcm_port=$(free_port)
    printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\nCONTROLLER_MANAGER_PORT=%s\n' \
        "$etcd_port" "$etcd_peer_port" "$api_port" "$kcm_port" >"$dir/ports"

    make_pki "$dir/pki"
    local pki=$dir/pki server=https://127.0.0.1:$api_port
    write_kubeconfig "$dir/kubeconfig" "$server" "$pki" admin
    write_kubeconfig "$dir/controller-manager.kubeconfig" "$server" "$pki" controller-manager

    # etcd: one member, plain HTTP on loopback (nothing else can reach it). --unsafe-no-fsync:
    # the data is thrown away after the test, and fsync on a shared CI disk is what makes a
    # loaded etcd slow enough for apiserver timeouts.
    launch "$dir" etcd "$BIN/etcd" \
        --name=weir-e2e \
        --data-dir="$dir/etcd" \
        --listen-client-urls="http://127.0.0.1:$etcd_port" \
        --advertise-client-urls="http://127.0.0.1:$etcd_port" \
        --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
        --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
        --initial-cluster="weir-e2e=http://127.0.0.1:$etcd_peer_port" \
        --unsafe-no-fsync \
        --log-level=warn
    wait_for "$dir" etcd "healthy" curl -fsS "http://127.0.0.1:$etcd_port/health"

    # kube-apiserver: RBAC only (so the chart's Roles are enforced on the operator's service
    # account), client certificates from our CA, service-account tokens signed with pki/sa.key.
    # --endpoint-reconciler-type=none: the default one writes the apiserver's address into the
    # `kubernetes` Endpoints every 10 s, and refuses (logging an error each time) a loopback one;
    # no Pod ever runs here to call it.
    launch "$dir" kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$etcd_port" \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --secure-port="$api_port" \
        --tls-cert-file="$pki/apiserver.crt" \
        --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
        --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User \
        --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$pki/front-proxy-client.crt" \
        --proxy-client-key-file="$pki/front-proxy-client.key" \
        --authorization-mode=RBAC \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$pki/sa.pub" \
        --service-account-signing-key-file="$pki/sa.key" \
        --allow-privileged=true \
        --endpoint-reconciler-type=none \
        --profiling=false
    # /readyz is "ok" once etcd is reachable, the RBAC bootstrap roles are in and the informers
    # have synced; the admin certificate authenticates the probe, as it will the tests.
    wait_for "$dir" kube-apiserver "ready" \
        "$BIN/kubectl" --kubeconfig="$dir/kubeconfig" get --raw=/readyz

    # kube-controller-manager: every default controller (statefulset, replicaset, deployment,
    # garbage-collector, namespace, serviceaccount, serviceaccount-token, ...), all acting as
    # the controller-manager's own identity. --authentication/authorization-kubeconfig let it
    # check callers of its own port; /healthz is always allowed. --flex-volume-plugin-dir: the
    # default, /usr/libexec/kubernetes/kubelet-plugins/volume/exec, is created if missing.
    launch "$dir" kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig="$dir/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 \
        --secure-port="$kcm_port" \
        --cert-dir="$dir/controller-manager" \
        --controllers='*' \
        --use-service-account-credentials=false \
        --service-account-private-key-file="$pki/sa.key" \
        --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" \
        --cluster-signing-key-file="$pki/ca.key" \
        --leader-elect=false \
        --flex-volume-plugin-dir="$dir/flexvolume" \
        --profiling=false
    wait_for "$dir" kube-controller-manager "healthy" \
        curl -fsSk "https://127.0.0.1:$kcm_port/healthz"
    # Healthy only means its server is up. The `default` ServiceAccount, made by the
    # serviceaccount controller once its informers synced, shows the controllers run: before
    # it exists the ServiceAccount admission plugin would refuse every Pod a test creates.
    wait_for "$dir" kube-controller-manager "running its controllers" \
        "$BIN/kubectl" --kubeconfig="$dir/kubeconfig" -n default get serviceaccount default

    log "ready in $((SECONDS - started))s: apiserver $server, etcd 127.0.0.1:$etcd_port, controller-manager 127.0.0.1:$kcm_port"
    echo "$dir/kubeconfig"
}

# --- stop --------------------------------------------------------------------------------

# Stops what `start DIR` recorded, newest first: SIGTERM, up to 10 s to exit, then SIGKILL. A
# recorded pid is only signalled while it still runs one of our binaries (pids get reused).
stop() {
    local dir=${1:?usage: $0 stop DIR} i name pid exe
    for ((i = ${#PROCESSES[@]} - 1; i >= 0; i--)); do
        name=${PROCESSES[i]}
        pid=$(cat "$dir/pids/$name.pid" 2>/dev/null) || continue
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || exe=
        exe=${exe% (deleted)} # the binary was rebuilt while it ran
        if [[ $exe == "$(readlink -f "$BIN/$name")" ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                log "$name ($pid) ignored SIGTERM for 10s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            log "stopped $name ($pid)"
        fi
        rm -f "$dir/pids/$name.pid"
    done
}

case ${1:-} in
    build) build ;;
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    bin) echo "$BIN" ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' ;;
    *) die "usage: $0 build | start DIR | stop DIR | bin" ;;
esac
