#!/usr/bin/env bash
# The performance case in one command: builds the benchmarks in release mode, runs them (as
# root: they load programs and build namespaces) and writes bench/RESULTS.md.
#   bench/run.sh            everything (several minutes)
#   bench/run.sh --quick    10, 100 and 2,048 rules only (the swap benchmark runs 10 swaps)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
swaps=40
for a in "$@"; do [ "$a" = --quick ] && swaps=10; done
cargo bench -p sluice-loader --bench datapath -- --out "$PWD/bench/RESULTS.md" "$@"
# Swap latency at 1k endpoints, from "policy file changed" to "all hooks flipped".
cargo bench -p sluice-cli --bench swap -- --swaps "$swaps" | tee -a "$PWD/bench/RESULTS.md"
# Wasm verdict functions against the same decision in the DSL, the empty and the floor program.
cargo bench -p sluice-loader --bench verdict | tee -a "$PWD/bench/RESULTS.md"
# The same swap through `sluice agent` (issue 10): PUT received → all hooks flipped.
cargo bench -p sluice-cli --bench agent_swap -- --swaps "$swaps" | tee -a "$PWD/bench/RESULTS.md"
