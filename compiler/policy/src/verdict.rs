//! The verdict ABI, v1 (`spec/wasm-verdict.md`): the names a per-packet verdict module
//! imports and exports, and the outcomes of one run.
//!
//! It lives here, in the no_std crate every side shares, so that the translator (compiler),
//! the wasmtime reference runner (runtime) and the SDK's `#[verdict]` helper cannot disagree
//! on a name or a code: both engines report a run as a [`VerdictOutcome`], and the kernel
//! program hands back exactly [`VerdictOutcome::code`] in `skb->cb[0]`.

use serde::{Deserialize, Serialize};

/// The module every import of a verdict module comes from.
pub const IMPORT_MODULE: &str = "sluice";
/// The exported function: `verdict(len: i32) -> i32`.
pub const EXPORT_VERDICT: &str = "verdict";
/// `pkt_len() -> i32`: the packet's length from the start of the IP header.
pub const IMPORT_PKT_LEN: &str = "pkt_len";
/// `pkt_u8(offset: i32) -> i32`: one byte at `offset` from the IP header.
pub const IMPORT_PKT_U8: &str = "pkt_u8";
/// `pkt_u16(offset: i32) -> i32`: a big-endian u16.
pub const IMPORT_PKT_U16: &str = "pkt_u16";
/// `pkt_u32(offset: i32) -> i32`: a big-endian u32 (as i32 bits).
pub const IMPORT_PKT_U32: &str = "pkt_u32";

/// Return values of `verdict`; any other value is [`TrapKind::BadVerdict`].
pub const RET_PASS: i32 = 0;
pub const RET_ALLOW: i32 = 1;
pub const RET_DENY: i32 = 2;

/// The import functions of ABI v1: name and the size of the load (0 for `pkt_len`).
pub const IMPORTS: [(&str, u32); 4] = [
    (IMPORT_PKT_LEN, 0),
    (IMPORT_PKT_U8, 1),
    (IMPORT_PKT_U16, 2),
    (IMPORT_PKT_U32, 4),
];

/// Why a run trapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapKind {
    /// `unreachable` (a Rust panic ends in it).
    Unreachable,
    /// A `pkt_*` load with `offset < 0` or `offset + size > len`.
    PacketOutOfBounds,
    /// `verdict` returned something other than 0, 1 or 2.
    BadVerdict,
}

/// What one run of a verdict function ends in. Both engines produce exactly this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictOutcome {
    /// 0: the normal policy decides.
    Pass,
    /// 1: allowed.
    Allow,
    /// 2: denied.
    Deny,
    Trap(TrapKind),
}

impl VerdictOutcome {
    /// Every outcome, in code order.
    pub const ALL: [VerdictOutcome; 6] = [
        VerdictOutcome::Pass,
        VerdictOutcome::Allow,
        VerdictOutcome::Deny,
        VerdictOutcome::Trap(TrapKind::Unreachable),
        VerdictOutcome::Trap(TrapKind::PacketOutOfBounds),
        VerdictOutcome::Trap(TrapKind::BadVerdict),
    ];

    /// The outcome's number: what the kernel program stores in `skb->cb[0]`.
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

    pub fn from_code(code: u32) -> Option<VerdictOutcome> {
        VerdictOutcome::ALL.into_iter().find(|o| o.code() == code)
    }

    /// What `verdict` returning `ret` means.
    pub fn from_return(ret: i32) -> VerdictOutcome {
        match ret {
            RET_PASS => VerdictOutcome::Pass,
            RET_ALLOW => VerdictOutcome::Allow,
            RET_DENY => VerdictOutcome::Deny,
            _ => VerdictOutcome::Trap(TrapKind::BadVerdict),
        }
    }
}

impl core::fmt::Display for VerdictOutcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            VerdictOutcome::Pass => "pass",
            VerdictOutcome::Allow => "allow",
            VerdictOutcome::Deny => "deny",
            VerdictOutcome::Trap(TrapKind::Unreachable) => "trap (unreachable)",
            VerdictOutcome::Trap(TrapKind::PacketOutOfBounds) => "trap (packet out of bounds)",
            VerdictOutcome::Trap(TrapKind::BadVerdict) => "trap (bad verdict)",
        })
    }
}

/// What a trap turns into in the datapath (fail closed: [`OnTrap::Deny`] by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTrap {
    #[default]
    Deny,
    Allow,
    Pass,
}

impl OnTrap {
    /// The outcome a trap is treated as.
    pub fn outcome(self) -> VerdictOutcome {
        match self {
            OnTrap::Deny => VerdictOutcome::Deny,
            OnTrap::Allow => VerdictOutcome::Allow,
            OnTrap::Pass => VerdictOutcome::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for o in VerdictOutcome::ALL {
            assert_eq!(VerdictOutcome::from_code(o.code()), Some(o));
        }
        assert_eq!(VerdictOutcome::from_code(3), None);
        assert_eq!(VerdictOutcome::from_code(0x13), None);
        assert_eq!(VerdictOutcome::from_return(1), VerdictOutcome::Allow);
        assert_eq!(
            VerdictOutcome::from_return(-1),
            VerdictOutcome::Trap(TrapKind::BadVerdict)
        );
    }
}
