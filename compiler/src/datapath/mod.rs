//! Datapath code generation: the emitters that generated programs are built from, and the
//! artifacts (ELF object plus map contents) the bundle carries to the loader.
//!
//! Each file emits one concern into an [`crate::bpf::Asm`], as bpfilter's `cgen/` does:
//! [`parse`] (headers into registers), [`ct`] (conntrack), [`decide`] (a decision table as
//! compare trees or map lookups, chosen by [`cost`]), [`verdict`] (the common tail), and
//! [`wasm`] (inlined Wasm verdict modules), and
//! [`program`] composes them into the per-endpoint programs `from_ep` and `to_ep`. Every
//! stack slot and register role they use comes from one description, [`frame`].

pub mod cost;
pub mod ct;
pub mod decide;
pub mod disasm;
pub mod frame;
pub mod keys;
pub mod node;
pub mod parse;
pub mod program;
pub mod verdict;
pub mod wasm;

pub use disasm::emit_asm;
pub use program::{
    CodegenOptions, EndpointArtifacts, Mode, compile_endpoint, compile_endpoint_with,
    compile_program, compile_program_with,
};
pub use wasm::InlineVerdict;

/// Where a program type's context keeps the packet pointers (not a tcx hook: see
/// [`TcxHook`] for those).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtxLayout {
    /// tc/tcx: `struct __sk_buff`, `data` at 76 and `data_end` at 80.
    Tc,
    /// XDP: `struct xdp_md`, `data` at 0 and `data_end` at 4.
    Xdp,
}

impl CtxLayout {
    /// Offset of the u32 `data` field in the context.
    pub fn data_off(self) -> i16 {
        match self {
            CtxLayout::Tc => 76,
            CtxLayout::Xdp => 0,
        }
    }

    /// Offset of the u32 `data_end` field in the context.
    pub fn data_end_off(self) -> i16 {
        match self {
            CtxLayout::Tc => 80,
            CtxLayout::Xdp => 4,
        }
    }
}

pub use sluice_bundle::artifact::{ProgramArtifact, TcxHook};
pub use sluice_bundle::map::{MapContents, MapScope};

/// Errors from generating a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatapathError {
    #[error("assembling {program}: {source}")]
    Asm {
        program: String,
        #[source]
        source: crate::bpf::BpfError,
    },
    #[error("inlining a verdict module into {program}: {source}")]
    Verdict {
        program: String,
        #[source]
        source: Box<crate::wasm_verdict::VerdictError>,
    },
}
