#!/usr/bin/env bash
# Makes a fresh Debian 12 machine able to build, test and demo sluice. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# Packages the tests use: iproute2 (netns/veth topologies), bpftool and llvm-19
# (llvm-objdump-19 reads our ELF objects), clang-19/lld-19 (the C Wasm example).
need=()
for pkg in iproute2 bpftool llvm-19 clang-19 lld-19; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Kernel tests pin under /sys/fs/bpf; bpffs is not always mounted.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi

