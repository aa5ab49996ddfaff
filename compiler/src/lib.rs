//! The sluice policy compiler.
//!
//! It never touches the kernel: sources go in, a bundle comes out. The modules follow the
//! pipeline in order:
//!
//! 1. [`source`]: front ends (DSL, Kubernetes, Cilium, ip-masq-agent) → one AST.
//! 2. [`ir`]: lowering to the typed IR (cranelift-entity) and the semantic checks.
//! 3. [`resolve`]: the inventory, identities, and per-endpoint resolved policy (what codegen
//!    consumes).
//! 4. [`eval`]: the reference evaluator, straight from IR semantics (the oracle for codegen).
//! 5. [`plan`]: peer classes, the ipcache, and per-endpoint decision tables.
//! 6. [`bpf`]: the eBPF instruction set, assembler, disassembler and ELF writer.
//! 7. [`datapath`]: the programs, one emitter per part (parse, ...).
//! 8. [`bundle`]: the directory the loader reads (manifest, objects, map entries).
//!
//! [`wasm_verdict`] translates per-packet Wasm verdict functions into eBPF.
//!
//! [`conformance`] reads the NetworkPolicy truth tables every engine is checked against.
//!
//! [`diag`] is what every stage reports, rendered with miette at the edge; [`digest`] names
//! content by sha256.

#![forbid(unsafe_code)]

pub mod bpf;
pub use sluice_bundle as bundle;
pub mod compile;
pub mod conformance;
pub mod datapath;
pub mod diag;
pub use sluice_policy::digest;
pub mod eval;
pub mod ir;
pub mod masq;
pub mod node;
pub mod plan;
pub mod resolve;
pub mod source;
pub mod trace_info;
pub mod wasm_verdict;
