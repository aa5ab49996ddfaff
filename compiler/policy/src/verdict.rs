//! The Wasm verdict ABI v1 (spec/wasm-verdict.md): the names a verdict module imports and
//! exports, and what one run ends in. Shared by the translator (compiler), the reference
//! runner (runtime) and the SDK, so the engines cannot disagree on the codes.

use serde::{Deserialize, Serialize};

/// The only import namespace: `pkt_len`, `pkt_u8`, `pkt_u16`, `pkt_u32`.
pub const IMPORT_MODULE: &str = "sluice";
/// `verdict(len: i32) -> i32`.
pub const EXPORT_VERDICT: &str = "verdict";

/// What one run of a verdict function ends in. Both engines produce exactly this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerdictOutcome {
    Pass,
    Allow,
    Deny,
    Trap(TrapKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrapKind {
    Unreachable,
    PacketOutOfBounds,
    /// The return value was not 0, 1 or 2.
    BadVerdict,
}

impl VerdictOutcome {
    pub fn code(self) -> u32 {
        match self {
            VerdictOutcome::Pass => 0,
            VerdictOutcome::Allow => 1,
            VerdictOutcome::Deny => 2,
            VerdictOutcome::Trap(TrapKind::Unreachable) => 0x10,
            VerdictOutcome::Trap(TrapKind::PacketOutOfBounds) => 0x11,
            VerdictOutcome::Trap(TrapKind::BadVerdict) => 0x12,
        }
    }

    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => VerdictOutcome::Pass,
            1 => VerdictOutcome::Allow,
            2 => VerdictOutcome::Deny,
            0x10 => VerdictOutcome::Trap(TrapKind::Unreachable),
            0x11 => VerdictOutcome::Trap(TrapKind::PacketOutOfBounds),
            0x12 => VerdictOutcome::Trap(TrapKind::BadVerdict),
            _ => return None,
        })
    }
}

/// What a trap turns into in the datapath (fail closed: Deny by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OnTrap {
    #[default]
    Deny,
    Allow,
    Pass,
}
