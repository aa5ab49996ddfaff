//! Datapath code generation: the emitters that generated programs are built from, and the
//! artifacts (ELF object plus map contents) the bundle carries to the loader.
//!
//! Each file emits one concern into an [`crate::bpf::Asm`], as bpfilter's `cgen/` does:
//! [`parse`] (headers into registers), [`ct`] (conntrack), [`decide`] (a decision table as
//! compare trees or map lookups, chosen by [`cost`]), [`verdict`] (the common tail), and
//! [`program`] composes them into the per-endpoint programs `from_ep` and `to_ep`. Every
//! stack slot and register role they use comes from one description, [`frame`].

pub mod cost;
pub mod ct;
pub mod decide;
pub mod disasm;
pub mod frame;
pub mod keys;
pub mod parse;
pub mod program;
pub mod verdict;

pub use disasm::emit_asm;
pub use program::{CodegenOptions, EndpointArtifacts, Mode, compile_endpoint, compile_program};

use crate::bpf::MapDef;

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

/// Which of an endpoint's two programs (see `spec/datapath.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// `from_ep`: tcx ingress of the host-side veth; the endpoint's egress policy; the peer
    /// is the destination address.
    FromEp,
    /// `to_ep`: tcx egress of the host-side veth; the endpoint's ingress policy; the peer is
    /// the source address.
    ToEp,
}

impl Side {
    /// The program's name in its object (the same for every endpoint, so identical
    /// programs are byte-identical and deduplicate).
    pub fn program_name(self) -> &'static str {
        match self {
            Side::FromEp => "from_ep",
            Side::ToEp => "to_ep",
        }
    }
}

/// The tcx attach point of a program on the host side of the endpoint's veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attach {
    TcxIngress,
    TcxEgress,
}

/// Who fills a map and who shares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapScope {
    /// Private to this program: the loader creates it with the object and writes `entries`.
    Program,
    /// One map per policy generation, shared by every program of that generation that names
    /// it (the ipcache). `entries` are the same in every artifact of a generation; the loader
    /// creates and fills it once and hands it to each load (aya's `map_pin_path`).
    Generation,
    /// Shared across generations and never written by the loader (conntrack). The object
    /// marks it [`crate::bpf::Pinning::ByName`], so even a plain load shares it by name;
    /// the loader pins it at `/sys/fs/bpf/sluice/ct` (aya's `map_pin_path`). `entries` is
    /// empty.
    Persistent,
}

/// One map of an artifact and what to put in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapContents {
    /// The map's name in the object (always `def.name`).
    pub name: String,
    pub def: MapDef,
    pub scope: MapScope,
    /// Key and value bytes, exactly as `bpf_map_update_elem` takes them, in a deterministic
    /// order.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One generated program: its object file and its maps' contents. Identical inputs give
/// identical bytes, so artifacts deduplicate by sha256 of `elf` and `maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramArtifact {
    /// The program's name in `elf` (`from_ep` or `to_ep`).
    pub name: String,
    pub side: Side,
    pub attach: Attach,
    /// The ELF relocatable object (one program, its maps), see `spec/codegen.md`.
    pub elf: Vec<u8>,
    /// Every map `elf` defines, in the order it defines them.
    pub maps: Vec<MapContents>,
}

/// Errors from generating a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatapathError {
    #[error("assembling {program}: {source}")]
    Asm {
        program: String,
        #[source]
        source: crate::bpf::BpfError,
    },
}
