#!/usr/bin/env bash
# Builds every example policy module in examples/wasm into one directory:
#   rust/*  (the Rust SDK examples)  -> OUT/<name>.wasm
#   c/*.c                           -> OUT/<name>.wasm
#   wat/*.wat are assembled by the tests and `sluice` itself (the `wat` crate), not here.
#
# Usage: examples/wasm/build.sh [--out DIR]     (default: $CARGO_TARGET_DIR or ./target, + /wasm-modules)
#
# Rust route, whichever works on this machine (SLUICE_WASM_ROUTE=rustup|debian forces one):
#   rustup: the wasm32-unknown-unknown target of the rustup toolchain (added if missing);
#   debian: Debian's rustc-web, cargo-web, rust-web-src and lld-19 with -Z build-std=core,alloc
#           (installed with apt-get when missing and we are root).
# C route: clang-19 and wasm-ld-19 (apt packages clang-19, lld-19).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
out="$target/wasm-modules"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
guest_target="$target/wasm-guests"

log() { echo "build.sh: $*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "missing packages: $*; install them (apt-get install $*)"
        return 1
    fi
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 ||
        { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; }
}

have_rustup_target() {
    command -v rustup >/dev/null &&
        { rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown ||
          rustup target add wasm32-unknown-unknown >&2; }
}

build_rust() {
    local route="${SLUICE_WASM_ROUTE:-}"
    if [ -z "$route" ]; then
        if have_rustup_target; then route=rustup; else route=debian; fi
    fi
    local cargo_args=(build --release --target wasm32-unknown-unknown
        --manifest-path "$here/rust/Cargo.toml" --target-dir "$guest_target/$route")
    case "$route" in
        rustup)
            log "Rust modules: rustup wasm32-unknown-unknown"
            # rustup's proxies honour RUSTUP_TOOLCHAIN; make sure a Debian RUSTC doesn't leak in.
            env -u RUSTC -u RUSTC_BOOTSTRAP cargo "${cargo_args[@]}" >&2
            ;;
        debian)
            log "Rust modules: Debian rustc-web + build-std"
            [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] && command -v wasm-ld-19 >/dev/null ||
                apt_install rustc-web cargo-web rust-web-src lld-19
            RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
                CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-19 \
                /usr/bin/cargo "${cargo_args[@]}" -Z build-std=core,alloc >&2
            ;;
        *) log "unknown SLUICE_WASM_ROUTE=$route"; return 1 ;;
    esac
    for crate in "$here"/rust/*/; do
        local name
        name="$(basename "$crate")"
        cp "$guest_target/$route/wasm32-unknown-unknown/release/${name//-/_}.wasm" "$out/$name.wasm"
    done
}

build_c() {
    command -v clang-19 >/dev/null && command -v wasm-ld-19 >/dev/null || apt_install clang-19 lld-19
    for src in "$here"/c/*.c; do
        local name
        name="$(basename "$src" .c)"
        log "C module: $name"
        # clang looks for `wasm-ld`; lld-19 installs it as wasm-ld-19.
        clang-19 --target=wasm32 -O2 -mbulk-memory -nostdlib -fuse-ld="$(command -v wasm-ld-19)" \
            -Wl,--no-entry -Wl,--export-dynamic -Wl,--strip-debug \
            -o "$out/$name.wasm" "$src"
    done
}

build_rust
build_c
log "modules in $out:"
ls "$out" >&2
echo "$out"
