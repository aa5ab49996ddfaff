//! The ABI the generated programs share with the loader: map names, the verdict code, and
//! what `sluice trace` reads back from `skb->cb[0]`. Every layout is documented in
//! `spec/datapath.md`; the compiler's emitters build the same values in registers.

/// Conntrack (LRU hash, shared across generations).
pub const CT: &str = "sluice_ct";
/// Its pin file under the loader's root (a persistent `sluice_x` is pinned as `x`).
pub const CT_PIN: &str = "ct";
/// Address → peer class (LPM trie, shared within a generation).
pub const IPCACHE: &str = "sluice_ipcache";
/// Class → profile (array, per program; specialized mode).
pub const PROFILE: &str = "sluice_profile";
/// (profile, protocol, port prefix) → verdict code (LPM trie, per program; specialized mode).
pub const PORTS: &str = "sluice_ports";
/// (class, protocol, port prefix) → verdict code (LPM trie, per program; generic mode).
pub const POLICY: &str = "sluice_policy";

/// The verdict code: one u32 that leaves of compare trees load as an immediate and map
/// lookups return, so every shape ends in the same tail.
///
/// ```text
/// bit 0      allow
/// bit 1      audited
/// bits 4..8  stage (what decided: policy, conntrack, ...)
/// bits 8..32 deciding rule: RuleId index + 1, 0 for an implicit verdict
/// ```
pub mod code {
    pub const ALLOW: u32 = 1;
    pub const AUDITED: u32 = 2;
    pub const STAGE_SHIFT: u32 = 4;
    pub const STAGE_MASK: u32 = 0xf0;
    pub const RULE_SHIFT: u32 = 8;
    /// Rule numbers must fit in the 24 bits above `RULE_SHIFT`.
    pub const MAX_RULE: u32 = (1 << 24) - 2;
}

/// What decided a packet (the stage bits of the verdict code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The decision table (or the absence of policy).
    Policy = 0,
    /// Conntrack: the flow was allowed in this direction before.
    Established = 1,
    /// Conntrack: a reply to a flow the other direction allowed.
    Reply = 2,
    /// A malformed header (`spec/datapath.md`): dropped where the direction is enforced.
    Malformed = 3,
    /// Not IPv4: ARP passes; anything else is dropped where the direction is enforced.
    NotIpv4 = 4,
    /// A Wasm verdict module answered allow or deny (the rule is its verdict rule).
    WasmVerdict = 5,
    /// A Wasm verdict module trapped and its rule's `on-trap` decided.
    WasmTrap = 6,
}

impl Stage {
    pub fn from_bits(bits: u32) -> Option<Stage> {
        Some(match bits {
            0 => Stage::Policy,
            1 => Stage::Established,
            2 => Stage::Reply,
            3 => Stage::Malformed,
            4 => Stage::NotIpv4,
            5 => Stage::WasmVerdict,
            6 => Stage::WasmTrap,
            _ => return None,
        })
    }
}

/// The code of an outcome decided outside the table.
pub fn stage_code(allow: bool, stage: Stage) -> u32 {
    ((stage as u32) << code::STAGE_SHIFT) | if allow { code::ALLOW } else { 0 }
}

/// The code of an outcome decided outside the table by a numbered rule (a verdict rule).
pub fn rule_stage_code(allow: bool, stage: Stage, rule: u32) -> u32 {
    assert!(
        rule <= code::MAX_RULE + 1,
        "rule {rule} beyond the verdict code"
    );
    stage_code(allow, stage) | (rule << code::RULE_SHIFT)
}

/// A verdict code taken apart (what `sluice trace` shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub allow: bool,
    pub audited: bool,
    pub stage: Option<Stage>,
    /// RuleId index + 1; 0 when implicit.
    pub rule: u32,
}

pub fn decode(c: u32) -> Decoded {
    Decoded {
        allow: c & code::ALLOW != 0,
        audited: c & code::AUDITED != 0,
        stage: Stage::from_bits((c & code::STAGE_MASK) >> code::STAGE_SHIFT),
        rule: c >> code::RULE_SHIFT,
    }
}

/// What `sluice trace` puts in `skb->cb[0]` of its probe packet. A program with rule
/// recording overwrites it with the verdict code and, seeing it, skips the conntrack insert.
/// It is never a verdict code (its stage bits, 12, name no stage), so `cb[0]` still holding
/// it after a run means the program recorded nothing.
pub const TRACE_REQUEST: u32 = 0x51ce_7ace;

/// The recorded verdict from `cb[0]` after a traced run; `None` when nothing was recorded.
pub fn decode_trace(cb0: u32) -> Option<Decoded> {
    (cb0 != TRACE_REQUEST)
        .then(|| decode(cb0))
        .filter(|d| d.stage.is_some())
}

/// Offset of `cb[0]` in `struct __sk_buff`: where a traced run records its verdict code.
pub const SKB_CB0: i16 = 48;
