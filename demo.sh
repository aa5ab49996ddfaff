#!/usr/bin/env bash
# The README's demo command: set the machine up, then run `sluice demo` on the built-in defaults.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
exec cargo run --quiet -p sluice-cli --bin sluice -- demo "$@"
