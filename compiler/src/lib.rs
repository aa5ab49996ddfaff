//! The sluice policy compiler.
//!
//! It never touches the kernel: sources go in, a bundle comes out. The modules follow the
//! pipeline in order:
//!
//! 1. [`source`]: front ends (DSL, Kubernetes, Cilium, ip-masq-agent) → one AST.
//! 2. [`bpf`]: the eBPF instruction set, assembler, disassembler and ELF writer.
//! 3. [`datapath`]: the programs, one emitter per part (parse, ...).
//!
//! [`diag`] is what every stage reports, rendered with miette at the edge.

pub mod bpf;
pub mod datapath;
pub mod diag;
pub mod source;
