#!/usr/bin/env bash
# Makes a fresh Debian 12 machine able to build, test and demo sluice. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2: netns/veth topologies. bpftool and llvm-19 (llvm-objdump-19): read our ELF objects.
# clang-19/lld-19: the C Wasm example (wasm-ld-19 also links Rust guests on the Debian route).
packages=(iproute2 bpftool llvm-19 clang-19 lld-19)

# Rust Wasm guests: rustup's wasm32 targets (policy generators: wasm32-unknown-unknown;
# verdict functions: wasm32v1-none, plus rust-src because their core is rebuilt with
# -C panic=immediate-abort), or Debian's Rust with build-std when rustup cannot fetch them
# (examples/wasm/build.sh picks whichever is there).
rustup_has() {
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown &&
    rustup target list --installed 2>/dev/null | grep -qx wasm32v1-none &&
    rustup component list --installed 2>/dev/null | grep -q '^rust-src'
}
if ! rustup_has &&
   ! { rustup target add wasm32-unknown-unknown wasm32v1-none && rustup component add rust-src; }; then
  echo "setup: rustup cannot add the wasm32 targets and rust-src; using Debian's rustc-web route"
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
