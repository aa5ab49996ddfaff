//! Artifacts: one generated program, the tcx hook it runs on, and its maps.
//!
//! Two directions meet here and are easy to confuse. The *policy direction*
//! (`sluice_policy::ast::PolicyDirection`) is the endpoint's: ingress is traffic to the pod.
//! The *tcx hook* ([`TcxHook`]) is the host-side veth's: its ingress sees what the pod sends.
//! So the pod's egress policy runs on the host-side ingress hook, and the other way round.

use crate::map::MapContents;
use serde::{Deserialize, Serialize};
use sluice_policy::ast::PolicyDirection;

/// A tcx attach point on the host side of an endpoint's veth. Each runs one program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcxHook {
    /// Host-side ingress: packets leaving the pod. Runs `from_ep`, the endpoint's egress
    /// policy; the peer is the destination address.
    Ingress,
    /// Host-side egress: packets going to the pod. Runs `to_ep`, the endpoint's ingress
    /// policy; the peer is the source address.
    Egress,
}

impl TcxHook {
    /// The endpoint's policy direction this hook enforces.
    pub fn policy_direction(self) -> PolicyDirection {
        match self {
            TcxHook::Ingress => PolicyDirection::Egress,
            TcxHook::Egress => PolicyDirection::Ingress,
        }
    }

    /// The program's name in its object (the same for every endpoint, so identical
    /// programs are byte-identical and deduplicate).
    pub fn program_name(self) -> &'static str {
        match self {
            TcxHook::Ingress => "from_ep",
            TcxHook::Egress => "to_ep",
        }
    }

    /// As the manifest and `sluice status` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            TcxHook::Ingress => "ingress",
            TcxHook::Egress => "egress",
        }
    }
}

/// One generated program: its object file and its maps' contents. Identical inputs give
/// identical bytes, so artifacts deduplicate by sha256 of `elf` and `maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramArtifact {
    /// The program's name in `elf` (`from_ep` or `to_ep`).
    pub name: String,
    pub hook: TcxHook,
    /// The ELF relocatable object (one program, its maps), see `spec/codegen.md`.
    pub elf: Vec<u8>,
    /// Every map `elf` defines, in the order it defines them.
    pub maps: Vec<MapContents>,
}
