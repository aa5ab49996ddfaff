#!/usr/bin/env bash
# The performance case in one command: builds the benchmark in release mode, runs it (as
# root: it loads programs and builds namespaces) and writes bench/RESULTS.md.
#   bench/run.sh            everything (several minutes)
#   bench/run.sh --quick    10, 100 and 2,048 rules only
set -euo pipefail
cd "$(dirname "$0")/.."
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
exec cargo bench -p sluice-loader --bench datapath -- --out "$PWD/bench/RESULTS.md" "$@"
