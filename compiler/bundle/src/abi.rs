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

/// The node datapath's maps (`spec/datapath.md`, "Nodes"): their names, and where in each
/// entry the fields are that only the node knows when it loads, which the loader completes
/// ([`crate::map::MapScope::Node`]). Integers are little endian unless they say otherwise.
pub mod node {
    /// Local endpoints: IPv4 address (network order) → [`EP_VALUE_SIZE`] bytes.
    pub const ENDPOINTS: &str = "sluice_eps";
    pub const EP_VALUE_SIZE: u32 = 28;
    /// u32: the host-side veth's ifindex in the node netns. The bundle carries the
    /// endpoint's *slot* here (its position, from 1, among the bundle's attached endpoints
    /// sorted by namespace then name; 0: not attached); the loader replaces it.
    pub const EP_IFINDEX: usize = 0;
    /// u32: the endpoint's identity (what its packets carry in the VNI).
    pub const EP_IDENTITY: usize = 4;
    /// u32: its ingress decision in [`NODE_INGRESS`] (0: no ingress policy).
    pub const EP_TABLE: usize = 8;
    /// u32: [`EP_ENFORCED`] | [`EP_CONNTRACK`] | [`EP_CAN_DENY`].
    pub const EP_FLAGS: usize = 12;
    /// 6 bytes: the pod's own MAC (its `eth0`); completed by the loader.
    pub const EP_POD_MAC: usize = 16;
    /// 6 bytes: the host-side veth's MAC (the pod's gateway); completed by the loader.
    pub const EP_HOST_MAC: usize = 22;
    /// Its ingress is enforced (isolated, or a rule can deny).
    pub const EP_ENFORCED: u32 = 1;
    /// Its programs track flows (either direction can deny).
    pub const EP_CONNTRACK: u32 = 2;
    /// Its ingress can deny a packet (replies are looked up).
    pub const EP_CAN_DENY: u32 = 4;

    /// The node: key 0 (u32) → [`NODE_VALUE_SIZE`] bytes.
    pub const NODE: &str = "sluice_node";
    pub const NODE_VALUE_SIZE: u32 = 16;
    /// u32: the VXLAN device's ifindex; completed by the loader.
    pub const NODE_VXLAN_IFINDEX: usize = 0;
    /// u32: the uplink's ifindex; completed by the loader.
    pub const NODE_UPLINK_IFINDEX: usize = 4;
    /// u32: [`MODE_VXLAN`] or [`MODE_NATIVE`].
    pub const NODE_MODE: usize = 8;
    /// u32, network order: the node's own address.
    pub const NODE_IP: usize = 12;
    pub const MODE_VXLAN: u32 = 0;
    pub const MODE_NATIVE: u32 = 1;

    /// Every local endpoint's ingress decision, generic shape: LPM key
    /// `prefixlen u32 | table u32 | class u32 | proto u8 | 0 u8 | port u16 (network order)`
    /// → verdict code.
    pub const NODE_INGRESS: &str = "sluice_node_in";
    pub const NODE_INGRESS_KEY_SIZE: u32 = 16;

    /// `(VNI identity u32, class u32) → class u32` (hash).
    pub const WIRE: &str = "sluice_wire";

    /// Masquerade's NAT table (LRU hash, pinned and shared across generations like
    /// conntrack): key [`NAT_KEY_SIZE`] bytes `saddr u32 | daddr u32 | sport u16 | dport u16 |
    /// proto u8 | dir u8 | pad u16` (addresses network order, ports host order; for ICMP
    /// echo the identifier is the local port and the remote port is 0) → value
    /// `addr u32 (network order) | port u16 (host order) | state u8 | pad u8 | last_seen u64`
    /// (`bpf_ktime_get_ns` of the entry's last packet; `state`: [`NAT_CLOSING`] once a FIN
    /// or RST went through it). The GC (`sluice_loader::nat`) frees a mapping's two entries
    /// together.
    pub const NAT: &str = "sluice_nat";
    pub const NAT_KEY_SIZE: u32 = 16;
    pub const NAT_VALUE_SIZE: u32 = 16;
    /// `state` of an entry that translated a TCP FIN or RST.
    pub const NAT_CLOSING: u8 = 1;
    pub const NAT_MAX_ENTRIES: u32 = 131_072;
    /// `dir` of a forward entry: the pod's tuple → the node's address and port.
    pub const NAT_FORWARD: u8 = 0;
    /// `dir` of a reverse entry: the tuple a reply arrives with (remote → node) → the pod's
    /// address and port.
    pub const NAT_REVERSE: u8 = 1;
    /// The NAT counters: a per-CPU array of u64, pinned and shared like [`NAT`].
    pub const NAT_STATS: &str = "sluice_nat_cnt";
    /// New mappings made.
    pub const NAT_STAT_MAPPED: u32 = 0;
    /// Ports tried and found taken.
    pub const NAT_STAT_RETRIES: u32 = 1;
    /// Packets dropped because no port was free after the retries ("no mapping").
    pub const NAT_STAT_NO_MAPPING: u32 = 2;
    /// Replies whose destination was rewritten back to a pod.
    pub const NAT_STAT_REVERSED: u32 = 3;
    pub const NAT_STATS_LEN: u32 = 4;
    /// The masquerade exclusions: an LPM trie, key `prefixlen u32 (host order) | addr u32
    /// (network order)`, value u32 (unused: a hit means "keep the pod's address").
    pub const MASQ_EXCLUDED: &str = "sluice_nat_excl";
    /// The SNAT port range.
    pub const NAT_PORT_MIN: u16 = 32768;

    /// The node's own devices are attachments too, whose endpoint has this (empty, so never
    /// a Kubernetes namespace) namespace and the device's role as its name.
    pub const DEVICE_NAMESPACE: &str = "";
    /// The role of the VXLAN device (`from_overlay` on its tcx ingress).
    pub const VXLAN_DEVICE: &str = "vxlan";
    /// The role of the uplink (`from_netdev` on its tcx ingress, native routing).
    pub const UPLINK_DEVICE: &str = "uplink";

    /// The VXLAN device's name in the node namespace (what `sluice lab` creates and
    /// `from_overlay` attaches to). Its port and the MTU overhead are the node
    /// configuration's (`sluice_policy::node`).
    pub const VXLAN_IFNAME: &str = "sluice_vxlan";
}
