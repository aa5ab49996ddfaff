//! sluice's policy types: what every front end produces and every consumer reads.
//!
//! - [`ast`]: the policy document. The DSL parser, the Kubernetes and Cilium readers and Wasm
//!   modules all produce it; it is also the JSON a module returns (`spec/wasm-abi.md`).
//! - [`inventory`]: what exists in the cluster (endpoints, namespaces, nodes, services).
//! - [`node`]: one node's configuration (address, pod CIDR, routing mode, peers, masquerade).
//! - [`digest`]: sha256 names of content (bundle artifacts, modules, inputs).
//! - [`build`]: builders for documents, for module authors and tests.
//! - [`verdict`]: the per-packet verdict ABI (names, outcome codes) the translator, the
//!   reference runner and the SDK share.
//!
//! It is `no_std` + `alloc` so the Wasm SDK shares these types instead of mirroring them: the
//! compiler, the runtime and the SDK cannot disagree on the wire format.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ast;
pub mod build;
pub mod digest;
pub mod inventory;
pub mod node;
pub mod verdict;

pub use digest::Digest;
