//! The sluice policy compiler.
//!
//! It never touches the kernel: sources go in, a bundle comes out. The modules follow the
//! pipeline in order (see `spec/` and DESIGN.md).

pub mod bpf;
pub mod datapath;
