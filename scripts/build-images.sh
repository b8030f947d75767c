#!/usr/bin/env bash
# Builds Weir's container images from the release binaries the tests run: one FROM-scratch image
# each, holding the binary and the few shared libraries it loads (as distroless images do).
#
#   scripts/build-images.sh [--no-operator]
#
# Images (VERSION is the workspace version in Cargo.toml), each also tagged :dev:
#   localhost/weir/broker:VERSION        broker/Containerfile
#   localhost/weir/coordinator:VERSION   coordinator/Containerfile
#   localhost/weir/operator:VERSION      operator/Containerfile, only when the workspace has
#                                        the weir-operator package (and not --no-operator)
#
# The binaries are $CARGO_TARGET_DIR/release/<name>, from `cargo build --release --workspace
# --all-targets`, which this script runs first (a no-op when they are up to date). That is the
# build scripts/test.sh and `cargo test --release --workspace` use, so the images cost no
# compile of their own. They link glibc dynamically: each image gets the program interpreter and
# the NEEDED libraries `ldd` resolves (libc, libm, libgcc_s: about 3 MB), copied from this
# machine at the paths the binary looks for them. docs/ci.md has the measurements behind
# choosing this over a second, static (crt-static) build. Each image is built from a temporary
# context holding just its binary, its libraries and an empty data directory, not the
# repository.
#
# Engine: $WEIR_CONTAINER_ENGINE (podman or docker), else podman, else docker. As root on
# this machine kind podman needs scripts/podman-setup.sh first (for running containers; a
# FROM-scratch build with only COPY steps runs none).
#
# Environment: WEIR_CONTAINER_ENGINE, CARGO_TARGET_DIR, WEIR_SKIP_CARGO_BUILD=1 (the caller
# has just built the workspace, as scripts/test.sh has).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REGISTRY=localhost/weir
WITH_OPERATOR=1

log() { echo "build-images: $*" >&2; }
die() { log "error: $*"; exit 1; }

while (($#)); do
    case $1 in
        --no-operator) WITH_OPERATOR=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done

engine=${WEIR_CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
    if command -v podman >/dev/null; then
        engine=podman
    elif command -v docker >/dev/null; then
        engine=docker
    else
        die "neither podman nor docker is installed (scripts/podman-setup.sh installs podman)"
    fi
fi
command -v "$engine" >/dev/null || die "WEIR_CONTAINER_ENGINE=$engine is not installed"

VERSION=$(awk -F'"' '/^\[workspace\.package\]/ { s = 1; next } /^\[/ { s = 0 } s && /^version *=/ { print $2; exit }' Cargo.toml)
[[ -n $VERSION ]] || die "no version in [workspace.package] of Cargo.toml"
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)

# image name, package, binary, Containerfile, whether it gets /var/lib/weir
images=(
    "broker weir-broker weir-broker broker/Containerfile data"
    "coordinator weir-coordinator weir-coordinator coordinator/Containerfile data"
)
if ((WITH_OPERATOR)) &&
    cargo metadata --no-deps --format-version 1 | grep -q '"name":"weir-operator"'; then
    images+=("operator weir-operator weir-operator operator/Containerfile -")
fi

# --- binaries ----------------------------------------------------------------------------
t0=$SECONDS
if [[ ${WEIR_SKIP_CARGO_BUILD:-0} != 1 ]]; then
    # With scripts/test.sh's wrapper, so this build and the tests' are one and the same.
    export RUSTC_WORKSPACE_WRAPPER=${RUSTC_WORKSPACE_WRAPPER:-clippy-driver}
    log "cargo build --release --workspace --all-targets"
    cargo build --release --workspace --all-targets
fi
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/release

# Copies $1's program interpreter and the shared libraries it needs into the context $2, at the
# absolute paths the dynamic loader looks for them (/lib64/ld-linux-x86-64.so.2,
# /lib/x86_64-linux-gnu/...). A library ldd cannot find would leave a binary that does not
# start, so that fails the build here.
copy_libraries() {
    local bin=$1 ctx=$2 line lib
    [[ -x $bin ]] || die "$bin is missing: cargo build --release --workspace --all-targets"
    while read -r line; do
        case $line in
            *"not found"*) die "$bin: a library is missing on this machine: $line" ;;
            linux-vdso.so.*) continue ;; # the kernel's, not a file
            *" => "*) lib=${line#* => }; lib=${lib%% (*} ;;
            /*) lib=${line%% (*} ;;
            *) die "$bin: unexpected ldd line: $line" ;;
        esac
        mkdir -p "$ctx$(dirname "$lib")"
        cp -L "$lib" "$ctx$lib"
    done < <(ldd "$bin")
}

# --- images ------------------------------------------------------------------------------
build_args=()
if [[ $engine == podman ]]; then
    # No intermediate image per instruction: nothing here is worth caching (the binary's
    # layer changes with every build), and they would pile up untagged.
    build_args+=(--layers=false)
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
for i in "${images[@]}"; do
    read -r name _ bin containerfile data <<<"$i"
    rm -rf "${ctx:?}"/*
    cp "$OUT/$bin" "$ctx/$bin"
    copy_libraries "$OUT/$bin" "$ctx"
    if [[ $data == data ]]; then
        # /var/lib as root's, data/ as the user's /var/lib/weir (see broker/Containerfile).
        mkdir -p "$ctx/var/lib" "$ctx/data"
    fi
    # The image this build replaces, removed below once untagged: each build of a changed
    # binary would otherwise leave one behind (without touching anyone else's images).
    old=$("$engine" image inspect --format '{{.Id}}' "$REGISTRY/$name:$VERSION" 2>/dev/null || true)
    log "$engine build $REGISTRY/$name:$VERSION"
    "$engine" build --quiet "${build_args[@]}" \
        --file "$containerfile" \
        --build-arg "VERSION=$VERSION" \
        --build-arg "REVISION=$REVISION" \
        --tag "$REGISTRY/$name:$VERSION" \
        --tag "$REGISTRY/$name:dev" \
        "$ctx" >/dev/null
    new=$("$engine" image inspect --format '{{.Id}}' "$REGISTRY/$name:$VERSION")
    if [[ -n $old && $old != "$new" ]]; then
        "$engine" rmi "$old" >/dev/null 2>&1 || true
    fi
done

"$engine" images --filter "reference=$REGISTRY/*:$VERSION" \
    --format '{{.Repository}}:{{.Tag}} {{.Size}}' >&2
log "done in $((SECONDS - t0)) s"
