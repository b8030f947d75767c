#!/usr/bin/env bash
# Builds Weir's container images: static binaries, then one FROM-scratch image each.
#
#   scripts/build-images.sh [--no-operator]
#
# Images (VERSION is the workspace version in Cargo.toml), each also tagged :dev:
#   localhost/weir/broker:VERSION        broker/Containerfile
#   localhost/weir/coordinator:VERSION   coordinator/Containerfile
#   localhost/weir/operator:VERSION      operator/Containerfile, only when the workspace has
#                                        the weir-operator package (and not --no-operator)
#
# The binaries are linked statically against glibc (crt-static) for
# x86_64-unknown-linux-gnu. The explicit --target puts them in
# target/x86_64-unknown-linux-gnu/release, so they do not invalidate the ordinary release
# build in target/release (RUSTFLAGS with --target reach only the target's crates, not build
# scripts and proc macros). Each image is built from a temporary context holding just its
# binary and an empty data directory, not the repository.
#
# Engine: $WEIR_CONTAINER_ENGINE (podman or docker), else podman, else docker. As root on
# this machine kind podman needs scripts/podman-setup.sh first (for running containers; a
# FROM-scratch build with only COPY steps runs none).
#
# Environment: WEIR_CONTAINER_ENGINE, CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TRIPLE=x86_64-unknown-linux-gnu
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

# --- static binaries ---------------------------------------------------------------------
packages=()
for i in "${images[@]}"; do
    read -r _ package _ _ _ <<<"$i"
    packages+=(-p "$package")
done
log "cargo build --release --target $TRIPLE ${packages[*]} (static)"
t0=$SECONDS
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --target "$TRIPLE" "${packages[@]}" --bins
log "static binaries built in $((SECONDS - t0)) s"
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/$TRIPLE/release

# A binary with a program interpreter or NEEDED libraries would not start in an empty image.
for i in "${images[@]}"; do
    read -r _ _ bin _ _ <<<"$i"
    if readelf --program-headers --dynamic "$OUT/$bin" | grep -Eq 'INTERP|\(NEEDED\)'; then
        die "$OUT/$bin is not static: $(readelf --dynamic "$OUT/$bin" | grep NEEDED | tr -s ' ')"
    fi
done

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
