#!/usr/bin/env bash
# Builds every example policy module in examples/wasm into one directory:
#   rust/*  (the Rust SDK examples)  -> OUT/<name>.wasm
#   verdict/rust/* (Rust verdict functions, for wasm32v1-none) -> OUT/<name>.wasm
#   c/*.c                           -> OUT/<name>.wasm
#   wat/*.wat are assembled by the tests and `sluice` itself (the `wat` crate), not here.
#
# Usage: examples/wasm/build.sh [--out DIR]     (default: $CARGO_TARGET_DIR or ./target, + /wasm-modules)
#
# Rust route, whichever works on this machine (SLUICE_WASM_ROUTE=rustup|debian forces one):
#   rustup: the wasm32-unknown-unknown / wasm32v1-none targets of the rustup toolchain (added
#           if missing);
#   debian: Debian's rustc-web, cargo-web, rust-web-src and lld-19 with -Z build-std
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

# rustup can add (or already has) the target $1.
have_rustup_target() {
    command -v rustup >/dev/null &&
        { rustup target list --installed 2>/dev/null | grep -qx "$1" ||
          rustup target add "$1" >&2; }
}

# build_rust WORKSPACE TARGET BUILD_STD [immediate-abort]: builds the Cargo workspace
# WORKSPACE for TARGET and copies each member's <name>.wasm to $out. BUILD_STD is what the
# Debian route compiles (-Z build-std=...).
#
# immediate-abort (verdict functions): core is rebuilt with -C panic=immediate-abort on both
# routes, so a panic compiles to the `unreachable` instruction right where it happens. With
# the prebuilt core a panic calls core::panicking::panic_fmt, which builds its arguments in
# linear memory and is a call: outside the v1 subset, so the translator would refuse the module.
build_rust() {
    local workspace="$1" triple="$2" build_std="$3" mode="${4:-}"
    local route="${SLUICE_WASM_ROUTE:-}"
    if [ -z "$route" ]; then
        if have_rustup_target "$triple" &&
            { [ -z "$mode" ] || rustup component list --installed 2>/dev/null | grep -q '^rust-src' ||
              rustup component add rust-src >&2; }; then
            route=rustup
        else
            route=debian
        fi
    fi
    local cargo_args=(build --release --target "$triple"
        --manifest-path "$workspace/Cargo.toml" --target-dir "$guest_target/$route")
    local triple_var
    triple_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')"
    local extra_env=()
    if [ "$mode" = immediate-abort ]; then
        extra_env=(RUSTC_BOOTSTRAP=1 "${triple_var}_RUSTFLAGS=-Zunstable-options -Cpanic=immediate-abort")
        cargo_args+=(-Z build-std="$build_std")
    fi
    case "$route" in
        rustup)
            log "Rust modules in $workspace: rustup $triple $mode"
            # rustup's proxies honour RUSTUP_TOOLCHAIN; make sure a Debian RUSTC doesn't leak in.
            env -u RUSTC -u RUSTC_BOOTSTRAP "${extra_env[@]}" cargo "${cargo_args[@]}" >&2
            ;;
        debian)
            log "Rust modules in $workspace: Debian rustc-web + build-std, $triple $mode"
            [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ] && command -v wasm-ld-19 >/dev/null ||
                apt_install rustc-web cargo-web rust-web-src lld-19
            [ "$mode" = immediate-abort ] || cargo_args+=(-Z build-std="$build_std")
            env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 "${triple_var}_LINKER=wasm-ld-19" "${extra_env[@]}" \
                /usr/bin/cargo "${cargo_args[@]}" >&2
            ;;
        *) log "unknown SLUICE_WASM_ROUTE=$route"; return 1 ;;
    esac
    for crate in "$workspace"/*/; do
        local name
        name="$(basename "$crate")"
        cp "$guest_target/$route/$triple/release/${name//-/_}.wasm" "$out/$name.wasm"
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

build_rust "$here/rust" wasm32-unknown-unknown core,alloc
# Verdict functions: wasm32v1-none (plain Wasm 1.0, no shadow stack); they need only core.
build_rust "$here/verdict/rust" wasm32v1-none core immediate-abort
build_c
log "modules in $out:"
ls "$out" >&2
echo "$out"
