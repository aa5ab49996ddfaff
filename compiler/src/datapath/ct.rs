//! Conntrack: the LRU hash that lets established flows and replies skip policy.
//!
//! Layout and semantics are in `spec/datapath.md`. Per packet, after parsing and before any
//! policy: the flow `t` passes when `(t, own scope)` exists (established; its timestamp is
//! refreshed in place) or, when this direction can deny at all, when `(reverse(t), other
//! scope)` exists (a reply to a flow the other direction allowed). The insert of `(t, own
//! scope)` on an allowed policy verdict is in the tail ([`emit_insert`]). ICMP has no ports:
//! its key holds `type << 8 | code` as the destination port and, for query messages (echo,
//! timestamp, information, address mask), the identifier as the source port, so a new ping
//! is a new flow; a reply type is matched against its request with the same identifier.

use super::frame::{CODE, CT_VALUE, L4_KEY, L4_PROTO, Var};
use super::keys::{self, Stage};
use super::parse::ICMP_REPLIES;
use super::{MapContents, MapScope, TcxHook};
use crate::bpf::{AluOp, Asm, Cond, Helper, Label, MapDef, MapRef, MapType, Reg, Size};

/// Entries the shared table holds (LRU: the oldest flows go first when full).
pub const MAX_ENTRIES: u32 = 131_072;
pub const KEY_SIZE: u32 = 16;
pub const VALUE_SIZE: u32 = 8;

/// `scope` of entries created by an egress decision (`from_ep`) and an ingress one (`to_ep`).
pub const SCOPE_EGRESS: u8 = 1;
pub const SCOPE_INGRESS: u8 = 2;

pub fn scope(hook: TcxHook) -> u8 {
    match hook {
        TcxHook::Ingress => SCOPE_EGRESS,
        TcxHook::Egress => SCOPE_INGRESS,
    }
}

/// The map: pinned by name so both programs of an endpoint, every endpoint, and every
/// generation share one table.
pub fn map() -> MapContents {
    let def = MapDef::new(
        keys::CT,
        MapType::LruHash,
        KEY_SIZE,
        VALUE_SIZE,
        MAX_ENTRIES,
    )
    .pinned_by_name();
    MapContents {
        name: def.name.clone(),
        def,
        scope: MapScope::Persistent,
        entries: Vec::new(),
    }
}

/// A conntrack key in the layout the datapath builds (for tests and tools): addresses in
/// network order, ports in host order, as the parser holds them. For an ICMP query message
/// `sport` is its identifier and `dport` is `type << 8 | code`.
pub fn key(
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport: u16,
    dport: u16,
    proto: u8,
    scope: u8,
) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&saddr);
    k.extend_from_slice(&daddr);
    k.extend_from_slice(&sport.to_le_bytes());
    k.extend_from_slice(&dport.to_le_bytes());
    k.extend_from_slice(&[proto, scope, 0, 0]);
    k
}

/// `*(u64 *)ptr = now` for the map value pointer in `R0` (kept across the call).
fn refresh(a: &mut Asm) {
    a.mov64(CT_VALUE, Reg::R0)
        .call(Helper::KtimeGetNs)
        .stx(Size::DW, CT_VALUE, 0, Reg::R0);
}

fn lookup(a: &mut Asm, key: i16) {
    a.map_lookup_stack(MapRef::new(keys::CT), key);
}

/// The lookups before policy. A hit sets the verdict code and goes to `tail`; a miss falls
/// through. `reverse`: also look for replies (only worth it when the direction can deny).
pub fn emit_lookup(a: &mut Asm, hook: TcxHook, reverse: bool, tail: Label) {
    use Reg::*;
    let f = Var::CtKey.off();
    a.ldx(Size::W, R1, R10, Var::Saddr.off())
        .stx(Size::W, R10, f, R1)
        .ldx(Size::W, R1, R10, Var::Daddr.off())
        .stx(Size::W, R10, f + 4, R1)
        .ldx(Size::H, R1, R10, Var::Sport.off())
        .stx(Size::H, R10, f + 8, R1)
        .stx(Size::H, R10, f + 10, L4_KEY)
        .stx(Size::B, R10, f + 12, L4_PROTO)
        .st(Size::B, R10, f + 13, i32::from(scope(hook)))
        .st(Size::H, R10, f + 14, 0);
    let miss = a.label();
    lookup(a, f);
    a.jmp(Cond::Eq, R0, 0, miss);
    refresh(a);
    a.mov64(CODE, keys::stage_code(true, Stage::Established) as i32)
        .ja(tail)
        .bind(miss);
    if !reverse {
        return;
    }

    let r = Var::CtRevKey.off();
    let done = a.label();
    let ports = a.label();
    let icmp_key = a.label();
    let rev_lookup = a.label();
    let other = match hook {
        TcxHook::Ingress => SCOPE_INGRESS,
        TcxHook::Egress => SCOPE_EGRESS,
    };
    a.ldx(Size::W, R1, R10, f + 4)
        .stx(Size::W, R10, r, R1)
        .ldx(Size::W, R1, R10, f)
        .stx(Size::W, R10, r + 4, R1)
        .stx(Size::B, R10, r + 12, L4_PROTO)
        .st(Size::B, R10, r + 13, i32::from(other))
        .st(Size::H, R10, r + 14, 0)
        .jmp(Cond::Ne, L4_PROTO, super::parse::IPPROTO_ICMP, ports)
        .mov64(R1, L4_KEY)
        .rsh64(R1, 8);
    let reqs: Vec<(Label, u8)> = ICMP_REPLIES
        .iter()
        .map(|&(reply, req)| {
            let l = a.label();
            a.jmp(Cond::Eq, R1, i32::from(reply), l);
            (l, req)
        })
        .collect();
    // Not a reply type: nothing to be a reply to.
    a.ja(done);
    for (l, req) in reqs {
        a.bind(l).mov64(R1, i32::from(req)).ja(icmp_key);
    }
    // The request with the reply's code and identifier (the identifier is not swapped).
    a.bind(icmp_key)
        .lsh64(R1, 8)
        .mov64(R2, L4_KEY)
        .and64(R2, 0xff)
        .alu64(AluOp::Or, R1, R2)
        .ldx(Size::H, R2, R10, f + 8)
        .stx(Size::H, R10, r + 8, R2)
        .stx(Size::H, R10, r + 10, R1)
        .ja(rev_lookup);
    a.bind(ports)
        .ldx(Size::H, R1, R10, f + 10)
        .stx(Size::H, R10, r + 8, R1)
        .ldx(Size::H, R1, R10, f + 8)
        .stx(Size::H, R10, r + 10, R1);
    a.bind(rev_lookup);
    lookup(a, r);
    a.jmp(Cond::Eq, R0, 0, done);
    refresh(a);
    a.mov64(CODE, keys::stage_code(true, Stage::Reply) as i32)
        .ja(tail)
        .bind(done);
}

/// `ct[(t, own scope)] = now`: the flow's key is still at [`Var::CtKey`].
pub fn emit_insert(a: &mut Asm) {
    use Reg::*;
    a.call(Helper::KtimeGetNs)
        .stx(Size::DW, R10, Var::CtNow.off(), R0)
        .map_update_stack(MapRef::new(keys::CT), Var::CtKey.off(), Var::CtNow.off(), 0);
}
