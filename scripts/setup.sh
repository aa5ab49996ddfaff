#!/usr/bin/env bash
# Makes a fresh Debian 12 machine able to build, test and demo sluice. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2: netns/veth topologies. bpftool and llvm-19 (llvm-objdump-19): read our ELF objects.
# clang-19/lld-19: the C Wasm example (wasm-ld-19 also links Rust guests on the Debian route).
packages=(iproute2 bpftool llvm-19 clang-19 lld-19)

# Rust Wasm guests: rustup's wasm32 target, or Debian's Rust with build-std when rustup
# cannot fetch the target (examples/wasm/build.sh picks whichever is there).
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown &&
   ! rustup target add wasm32-unknown-unknown; then
  echo "setup: rustup cannot add wasm32-unknown-unknown; using Debian's rustc-web route"
  packages+=(rustc-web cargo-web rust-web-src)
fi

need=()
for pkg in "${packages[@]}"; do
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
