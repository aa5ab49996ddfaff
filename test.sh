#!/usr/bin/env bash
# The README's test command: set the machine up, then format, lint and test everything,
# kernel tests included (they need root, as CI has).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
