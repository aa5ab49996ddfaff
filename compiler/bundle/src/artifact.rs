//! Artifacts: one generated program, the hook it runs on, and its maps.

use crate::map::MapContents;

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
