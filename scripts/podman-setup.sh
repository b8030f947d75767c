#!/usr/bin/env bash
# Makes podman usable as root on a Debian 12 machine like CI's, for the container images
# (scripts/build-images.sh) and the cluster-of-containers test (e2e/tests/containers.rs).
# Idempotent: a second run installs nothing and leaves the configuration as it is.
#
#   scripts/podman-setup.sh
#
# What it does:
#   apt (only what is missing): podman; runc (the OCI runtime); netavark and aardvark-dns (the
#       network backend, and the DNS server that lets containers on one network find each
#       other by name).
#   /etc/containers/containers.conf: sets these keys, keeping every other setting there:
#       [containers] default_ulimits = []
#           podman asks runc for nofile=1048576 by default, above this machine's hard limit
#           (20000), and runc then fails with "error setting rlimit type 7: operation not
#           permitted". An empty list lets containers inherit podman's own limits.
#       [engine] cgroup_manager = "cgroupfs"
#           PID 1 is not systemd here, so there is no systemd to create cgroups through.
#       [engine] runtime = "runc"
#           the runtime installed above (crun would be Debian's default when present).
#       [network] network_backend = "netavark"
#           the backend with DNS between containers (aardvark-dns); the CNI backend is not
#           installed (its plugins are a separate package).
set -euo pipefail

CONF=/etc/containers/containers.conf

log() { echo "podman-setup: $*" >&2; }
die() { log "error: $*"; exit 1; }

sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null || die "need root or sudo"
    sudo=(sudo)
fi

# --- apt ---------------------------------------------------------------------------------
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
for p in netavark aardvark-dns; do
    # Both live in /usr/lib/podman, off the PATH: ask dpkg.
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
fi

# --- containers.conf ---------------------------------------------------------------------
# set_key FILE SECTION KEY VALUE: KEY = VALUE in [SECTION] of the TOML file FILE, replacing
# the key's current value (a multi-line array included) or adding it under the section
# header, and the section at the end when there is none. Other lines are kept as they are.
set_key() {
    local file=$1 section=$2 key=$3 value=$4 tmp
    tmp=$(mktemp)
    awk -v section="[$section]" -v key="$key" -v value="$value" '
        function header(line) { sub(/^[ \t]+/, "", line); sub(/[ \t]*(#.*)?$/, "", line); return line }
        BEGIN { in_section = 0; done = 0; skipping = 0 }
        skipping {
            # The rest of a multi-line array being replaced.
            if ($0 ~ /\]/) skipping = 0
            next
        }
        /^[ \t]*\[/ {
            if (in_section && !done) { print key " = " value; done = 1 }
            in_section = (header($0) == section)
            print
            next
        }
        in_section && !done && $0 ~ "^[ \t]*" key "[ \t]*=" {
            print key " = " value
            done = 1
            rest = $0
            sub(/^[^=]*=[ \t]*/, "", rest)
            if (rest ~ /^\[/ && rest !~ /\]/) skipping = 1
            next
        }
        { print }
        END {
            if (in_section && !done) { print key " = " value; done = 1 }
            if (!done) { print ""; print section; print key " = " value }
        }
    ' "$file" >"$tmp"
    if cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
    else
        log "$file: [$section] $key = $value"
        "${sudo[@]}" cp "$tmp" "$file"
        rm -f "$tmp"
    fi
}

if [[ ! -f $CONF ]]; then
    "${sudo[@]}" mkdir -p "$(dirname "$CONF")"
    printf '# Written by weir scripts/podman-setup.sh; see that script for why each key is set.\n' |
        "${sudo[@]}" tee "$CONF" >/dev/null
fi
set_key "$CONF" containers default_ulimits '[]'
set_key "$CONF" engine cgroup_manager '"cgroupfs"'
set_key "$CONF" engine runtime '"runc"'
set_key "$CONF" network network_backend '"netavark"'

log "$(podman --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null), network backend $(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null)"
