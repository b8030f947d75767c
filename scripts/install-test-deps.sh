#!/usr/bin/env bash
# Installs what the real-client tests in e2e/python need, on a fresh Debian 12 machine or an
# old one. Idempotent and fast when nothing changed (a re-run does no network I/O).
#
#   scripts/install-test-deps.sh [--no-kafka]
#
# What goes where:
#   apt (only what is missing): kcat; openssl (the TLS tests' throwaway CAs); iproute2 and iptables; python3-venv when the python has no venv module;
#       openjdk-17-jdk-headless and maven when javac/mvn are missing (for the reference Kafka).
#   podman, runc, netavark, aardvark-dns and /etc/containers/containers.conf, through
#       scripts/podman-setup.sh (for the container images and e2e/tests/containers.rs).
#   ${WEIR_CACHE_DIR:-~/.cache/weir}/venv: a virtualenv with e2e/python/requirements.txt
#       (pytest, kafka-python, confluent-kafka, codecs). Reinstalled when that file or the
#       python changes; outside the clone so fresh clones and worktrees share it.
#   ${WEIR_CACHE_DIR:-~/.cache/weir}/kafka-<version>/libs: the reference Kafka jars
#       (scripts/kafka-reference.sh fetch), unless --no-kafka.
#
# Prints the venv's python on the last line of stdout, so:
#   "$(scripts/install-test-deps.sh | tail -n1)" -m pytest e2e/python --targets kafka
#
# Environment: WEIR_CACHE_DIR, PYTHON (interpreter for the venv, default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${WEIR_CACHE_DIR:-$HOME/.cache/weir}
VENV=$CACHE_DIR/venv
REQUIREMENTS=$ROOT/e2e/python/requirements.txt
PYTHON=${PYTHON:-python3}
FETCH_KAFKA=1

log() { echo "install-test-deps: $*" >&2; }
die() { log "error: $*"; exit 1; }

while (($#)); do
    case $1 in
        --no-kafka) FETCH_KAFKA=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done

# --- apt ---------------------------------------------------------------------------------
missing=()
command -v kcat >/dev/null || missing+=(kcat)
command -v openssl >/dev/null || missing+=(openssl)
# Network namespaces, veths and partitions for the cluster fault tests (e2e/src/netns.rs).
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
command -v "$PYTHON" >/dev/null || missing+=(python3)
if command -v "$PYTHON" >/dev/null && ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
fi
if ((FETCH_KAFKA)); then
    # The JDK, not just a JRE: the Java client check runs as a single-file source program.
    command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || missing+=(maven)
fi
if ((${#missing[@]})); then
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# --- podman ------------------------------------------------------------------------------
"$ROOT/scripts/podman-setup.sh"

# --- python venv -------------------------------------------------------------------------
# The stamp covers the requirements and the interpreter, so a python upgrade rebuilds the venv.
stamp=$( (cat "$REQUIREMENTS"; "$PYTHON" -c 'import sys; print(sys.version, sys.executable)') | sha256sum | cut -d' ' -f1)
if [[ -x $VENV/bin/python && -f $VENV/.weir-stamp && $(<"$VENV/.weir-stamp") == "$stamp" ]]; then
    log "venv up to date: $VENV"
else
    log "building venv $VENV"
    rm -rf "$VENV"
    mkdir -p "$CACHE_DIR"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS" >&2
    # A clean import proves the compiled wheels (librdkafka, codecs) load on this machine.
    "$VENV/bin/python" -c 'import confluent_kafka, kafka, kafka.codec as c; assert c.has_gzip() and c.has_snappy() and c.has_lz4() and c.has_zstd()'
    echo "$stamp" >"$VENV/.weir-stamp"
fi

# --- Go client (franz-go) ----------------------------------------------------------------
# Modules pinned by e2e/go/go.sum, into Go's own module cache (outside the clone).
command -v go >/dev/null || die "the Go toolchain is needed for e2e/go (franz-go); this machine kind ships it"
(cd "$ROOT/e2e/go" && go mod download) >&2

# --- reference Kafka ---------------------------------------------------------------------
if ((FETCH_KAFKA)); then
    "$ROOT/scripts/kafka-reference.sh" fetch >/dev/null
fi

log "kcat: $(command -v kcat); venv: $VENV"
echo "$VENV/bin/python"
