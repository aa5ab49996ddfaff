//! The sluice policy compiler.
//!
//! It never touches the kernel: sources go in, a bundle comes out. The modules follow the
//! pipeline in order:
//!
//! 1. [`source`]: front ends (DSL, Kubernetes, Cilium, ip-masq-agent) → one AST.
//! 2. [`diag`]: what every stage reports, rendered with miette at the edge.
//! 3. [`bpf`]: the eBPF instruction set, assembler, disassembler and ELF writer.

pub mod bpf;
pub mod diag;
pub mod source;
