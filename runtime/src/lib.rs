//! The WebAssembly host for policy modules (see spec/wasm-abi.md once it exists).
