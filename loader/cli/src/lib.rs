//! The `sluice` command line, and what only it needs: the conformance engine that runs truth
//! tables in the kernel, the demo, and the topology (a cluster of network namespaces in a box,
//! with real-socket probes).
//!
//! It is the one crate that sees every other: the compiler and the Wasm runtime on one side,
//! the kernel library (`sluice-loader`) on the other. The two sides meet only through the
//! bundle.

#![forbid(unsafe_code)]

pub mod cli;
pub mod conformance;
pub mod topology;
pub mod verdict_verify;
