//! Datapath code generation: the emitters that generated programs are built from.
//!
//! Each file emits one concern into an [`crate::bpf::Asm`] (parsing, and later policy
//! matching, conntrack, NAT); the per-hook programs compose them.

pub mod parse;

/// Where a hook's context keeps the packet pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// tc/tcx: `struct __sk_buff`, `data` at 76 and `data_end` at 80.
    Tc,
    /// XDP: `struct xdp_md`, `data` at 0 and `data_end` at 4.
    Xdp,
}

impl Hook {
    /// Offset of the u32 `data` field in the context.
    pub fn data_off(self) -> i16 {
        match self {
            Hook::Tc => 76,
            Hook::Xdp => 0,
        }
    }

    /// Offset of the u32 `data_end` field in the context.
    pub fn data_end_off(self) -> i16 {
        match self {
            Hook::Tc => 80,
            Hook::Xdp => 4,
        }
    }
}
