#!/usr/bin/env bash
# The checks (CI runs them through scripts/test.sh): formatting, the crates' structure, and
# every rustc and clippy lint of the workspace's crates with warnings as errors. Changes no
# source file.
#
# Clippy runs inside the release build (RUSTC_WORKSPACE_WRAPPER=clippy-driver, the mechanism
# `cargo clippy` itself uses, but for a full build instead of a check-only one), and
# scripts/test.sh builds with the same wrapper. So here the build is already done: Cargo replays
# the warnings it recorded for each crate, and the checks cost seconds instead of a second,
# check-mode compile of every dependency (docs/ci.md). Run alone, this builds what is missing.
#
# scripts/check-structure.py then checks what the compilers do not: no import circle inside a
# crate, and no function over 80 lines.
#
# Warnings of the vendored kafka-protocol (a path dependency outside the workspace, not ours
# to lint) are not counted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo fmt --all -- --check
python3 scripts/check-structure.py --self-test

export RUSTC_WORKSPACE_WRAPPER=${RUSTC_WORKSPACE_WRAPPER:-clippy-driver}
members=$(cargo metadata --no-deps --format-version 1)
cargo build --release --workspace --all-targets --message-format=json |
    python3 -c '
import json, sys
members = {p["id"] for p in json.loads(sys.argv[1])["packages"]}
found = 0
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    msg = json.loads(line)
    if msg.get("reason") != "compiler-message" or msg.get("package_id") not in members:
        continue
    diagnostic = msg["message"]
    if diagnostic["level"] in ("warning", "error") and diagnostic["rendered"]:
        found += 1
        sys.stderr.write(diagnostic["rendered"])
if found:
    sys.exit(f"check.sh: {found} warnings or errors (rustc and clippy lints, denied)")
print("check.sh: no warnings", file=sys.stderr)
' "$members"
