#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, builds Weir, runs
# every test (Rust unit, property, protocol, crash and client tests; the container images as a
# podman cluster; the operator against a loopback Kubernetes control plane and the Helm chart;
# the Python real-client suite against both Weir and the reference Apache Kafka), then the
# read-only checks.
#
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --quick    Rust tests only, no reference Kafka, no Python suite
#
# Heavy tooling is cached outside the clone, keyed by version (${WEIR_CACHE_DIR:-~/.cache/weir}):
# the Python venv with kafka-python and confluent-kafka, the Kafka jars, and the control plane
# binaries built from Go modules. Exits non-zero as
# soon as a step fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
QUICK=0
[[ ${1:-} == --quick ]] && QUICK=1

# Cargo's build output lives outside the clone, keyed by the toolchain, like the other heavy
# tooling: CI clones afresh for every run, and a machine that has built Weir before then reuses
# the compiled dependency graph (workspace crates rebuild, their path being new). A fresh
# machine builds it all. An explicit CARGO_TARGET_DIR wins.
if [[ -z ${CARGO_TARGET_DIR:-} ]]; then
    toolchain=$(rustc --version | tr -c 'A-Za-z0-9.\n' '_')
    export CARGO_TARGET_DIR="${WEIR_CACHE_DIR:-$HOME/.cache/weir}/cargo-target/$toolchain"
fi
TARGET=$CARGO_TARGET_DIR

step() { printf '\n==> %s\n' "$*" >&2; }
t0=$SECONDS

if ((QUICK)); then
    step "cargo test (release)"
    WEIR_E2E_TARGETS=weir cargo test --release --workspace
    exit 0
fi

step "installing test dependencies (apt, Python venv, reference Kafka jars)"
PY=$(scripts/install-test-deps.sh | tail -n1)

step "Kubernetes control plane from Go modules: etcd, kube-apiserver, kube-controller-manager, kubectl, helm (cached)"
# For the operator's reconcile tests (operator/tests/*_controlplane.rs) and the Helm chart test.
scripts/controlplane.sh build
# No silent skip of the control-plane tests in CI.
export WEIR_REQUIRE_CONTROLPLANE=1

step "building (release)"
cargo build --release --workspace --bins

step "container images: static binaries, FROM-scratch images (podman)"
# The images e2e/tests/containers.rs runs as a cluster; podman itself was installed and
# configured with the test dependencies (scripts/podman-setup.sh).
scripts/build-images.sh
export WEIR_IMAGE_TAG=dev
# No silent skip of the container test in CI: without podman it fails.
export WEIR_REQUIRE_PODMAN=1

step "cargo test (release): unit, property, protocol, crash-recovery and librdkafka tests"
# The same binary the Python suite and the crash test use.
export WEIR_BIN="$TARGET/release/weir"
# The replicated cluster's processes for e2e/tests/cluster_faults.rs (needs root: network namespaces).
export WEIR_COORDINATOR_BIN="$TARGET/release/weir-coordinator"
export WEIR_BROKER_BIN="$TARGET/release/weir-broker"
WEIR_E2E_TARGETS=weir,kafka cargo test --release --workspace

step "Helm chart: lint, render, apply to the control plane, RBAC checked with the operator's own requests, examples against the CRDs"
charts/weir/test.sh

step "real-client suite (kcat, kafka-python, confluent-kafka, the Java client, franz-go) against Weir and Apache Kafka"
"$PY" -m pytest e2e/python --targets kafka,weir --weir-bin "$WEIR_BIN" -q

step "checks: rustfmt, clippy"
scripts/check.sh

step "all tests passed in $((SECONDS - t0)) s"
