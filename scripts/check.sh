#!/usr/bin/env bash
# Read-only checks (CI runs them through scripts/test.sh): formatting and lints, warnings as
# errors. Changes nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
