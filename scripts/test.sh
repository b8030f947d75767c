#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, builds Weir once,
# runs every test (Rust unit, property, protocol, crash and client tests; the container images
# as a podman cluster; the operator against a loopback Kubernetes control plane and the Helm
# chart; the Python real-client suite against both Weir and the reference Apache Kafka), then
# the read-only checks, and prints how long each phase took.
#
#   scripts/test.sh                 everything (what CI runs)
#   scripts/test.sh --quick         the Rust build and the Rust suites against Weir only
#   scripts/test.sh --only PHASE    one phase (for development; it builds what it needs)
#   scripts/test.sh --list          the phases, in order
#
# One Rust build serves everything: `cargo build --release --workspace --all-targets` compiles
# the binaries and every test binary under one feature resolution, with clippy linting the
# workspace's crates as they compile; the images are made from those binaries; the Rust suites
# run the test binaries it built (scripts/run-test-binaries.py) instead of asking cargo for a
# subset of the workspace, which would resolve features anew and compile again; the checks
# replay the build's warnings. docs/ci.md has the measurements.
#
# Heavy tooling is cached outside the clone, keyed by version (${WEIR_CACHE_DIR:-~/.cache/weir}):
# the Python venv with kafka-python and confluent-kafka, the Kafka jars, the control plane and
# helm built from Go modules, and Cargo's build output. Exits non-zero as soon as a phase fails,
# after printing the phase table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PHASES=(install go-tools rust-build images test-crates test-e2e test-operator doctests helm
    python checks)
QUICK_PHASES=(rust-build test-crates test-e2e test-operator doctests)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; }
run=("${PHASES[@]}")
QUICK=0 ONLY=0
case ${1:-} in
    "") ;;
    --quick) QUICK=1; run=("${QUICK_PHASES[@]}") ;;
    --only)
        [[ -n ${2:-} && " ${PHASES[*]} " == *" $2 "* ]] ||
            { echo "test.sh: --only takes one of: ${PHASES[*]}" >&2; exit 2; }
        run=("$2") ONLY=1 ;;
    --list) printf '%s\n' "${PHASES[@]}"; exit 0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument $1 (--quick, --only PHASE, --list)" >&2; exit 2 ;;
esac

# Cargo's build output lives outside the clone, keyed by the toolchain, like the other heavy
# tooling: CI clones afresh for every run, and a machine that has built Weir before then reuses
# the compiled dependency graph (workspace crates rebuild, their path being new). A fresh
# machine builds it all. An explicit CARGO_TARGET_DIR wins.
CACHE_DIR=${WEIR_CACHE_DIR:-$HOME/.cache/weir}
if [[ -z ${CARGO_TARGET_DIR:-} ]]; then
    toolchain=$(rustc --version | tr -c 'A-Za-z0-9.\n' '_')
    export CARGO_TARGET_DIR="$CACHE_DIR/cargo-target/$toolchain"
fi
TARGET=$CARGO_TARGET_DIR
# Clippy lints the workspace's crates inside the one release build (see scripts/check.sh): every
# cargo command here sets it, as a different wrapper would compile the workspace's crates again.
export RUSTC_WORKSPACE_WRAPPER=${RUSTC_WORKSPACE_WRAPPER:-clippy-driver}
# Where the Rust build writes the list of test binaries the suites run.
TESTS_JSON=$TARGET/weir-test-binaries.json

# The binaries the Python suite, the crash test and the cluster tests start.
export WEIR_BIN="$TARGET/release/weir"
export WEIR_COORDINATOR_BIN="$TARGET/release/weir-coordinator"
export WEIR_BROKER_BIN="$TARGET/release/weir-broker"
export WEIR_IMAGE_TAG=dev
if ((!QUICK)); then
    # No silent skip of the podman and control-plane tests in CI: without them they fail.
    export WEIR_REQUIRE_PODMAN=1 WEIR_REQUIRE_CONTROLPLANE=1
fi

step() { printf '\n==> %s\n' "$*" >&2; }

# --- phases --------------------------------------------------------------------------------

PY=
phase_install() {
    step "test dependencies: apt, podman, Python venv, Go client modules, reference Kafka jars"
    PY=$(scripts/install-test-deps.sh | tail -n1)
}

phase_go-tools() {
    step "Kubernetes control plane and helm from Go modules, one go build (cached)"
    # For the operator's reconcile tests (operator/tests/controlplane/) and the chart test.
    scripts/controlplane.sh build
}

BUILT=0
phase_rust-build() {
    step "cargo build --release --workspace --all-targets: binaries and test binaries, once"
    # --timings: each crate's compile time, in $TARGET/cargo-timings/cargo-timing.html.
    cargo build --release --workspace --all-targets --timings
    # Compiles nothing (the same units, features and profile as above); it lists the test
    # binaries for the suites. A unit compiled here would be a second build of the graph.
    cargo test --release --workspace --no-run --message-format=json >"$TESTS_JSON.partial"
    # Enforced: a dev-dependency that turns on a feature the build does not would make `cargo
    # test` compile part of the graph again, silently (docs/ci.md says how to align it).
    python3 -c '
import json, sys
again = sorted({m["target"]["name"] for m in map(json.loads, open(sys.argv[1]))
                if m.get("reason") == "compiler-artifact" and not m.get("fresh")})
if again:
    sys.exit("test.sh: cargo test compiled again what the build had built (features differ "
             "between build and test, see docs/ci.md): " + ", ".join(again))
' "$TESTS_JSON.partial"
    mv "$TESTS_JSON.partial" "$TESTS_JSON"
    BUILT=1
}

# A phase run alone (--only) builds first, so it never runs binaries older than the sources;
# when the build is up to date that takes seconds. In a whole run the rust-build phase did it.
ensure_built() {
    if ((ONLY && !BUILT)) || [[ ! -f $TESTS_JSON ]]; then phase_rust-build; fi
}

phase_images() {
    step "container images from the release binaries (podman, FROM scratch)"
    # e2e/tests/containers.rs runs them as a cluster.
    ensure_built
    WEIR_SKIP_CARGO_BUILD=1 scripts/build-images.sh
}

# $@: run-test-binaries.py's selection.
run_tests() {
    ensure_built
    scripts/run-test-binaries.py "$TESTS_JSON" "$@"
}

phase_test-crates() {
    step "Rust: unit, property, protocol, crash-recovery, quorum and simulation tests"
    run_tests --except weir-e2e,weir-operator
}

phase_test-e2e() {
    step "Rust: clusters as processes and containers, faults, groups, librdkafka against Weir and Kafka"
    local targets=weir,kafka
    ((QUICK)) && targets=weir
    WEIR_E2E_TARGETS=$targets run_tests --packages weir-e2e
}

phase_test-operator() {
    step "Rust: the operator against a real Kubernetes control plane, the CRDs"
    ((QUICK)) || scripts/controlplane.sh build
    run_tests --packages weir-operator
}

phase_doctests() {
    step "Rust: documentation examples"
    cargo test --release --workspace --doc
}

phase_helm() {
    step "Helm chart: lint, render, apply to the control plane, RBAC, examples against the CRDs"
    scripts/controlplane.sh build
    charts/weir/test.sh
}

phase_python() {
    step "real-client suite (kcat, kafka-python, confluent-kafka, Java, franz-go) against Weir and Kafka"
    [[ -n $PY ]] || phase_install
    ensure_built
    "$PY" -m pytest e2e/python --targets kafka,weir --weir-bin "$WEIR_BIN" -q
}

phase_checks() {
    step "checks: rustfmt; rustc and clippy warnings of the build, denied"
    scripts/check.sh
}

# --- the phase table -------------------------------------------------------------------------

declare -A took=() result=()
t0=$SECONDS
current= started=0
table() {
    local name total=$((SECONDS - t0))
    [[ -n $current && -z ${took[$current]:-} ]] && took[$current]=$((SECONDS - started))
    {
        printf '\n%-14s %8s  %s\n' phase "wall (s)" result
        for name in "${run[@]}"; do
            printf '%-14s %8s  %s\n' "$name" "${took[$name]:--}" "${result[$name]:-not run}"
        done
        printf '%-14s %8s\n' total "$total"
    } >&2
}
trap table EXIT

for name in "${run[@]}"; do
    current=$name started=$SECONDS
    result[$name]=FAILED
    "phase_$name"
    took[$name]=$((SECONDS - started))
    result[$name]=ok
done
step "all phases passed in $((SECONDS - t0)) s"
