//! Delivery to a local pod: the destination's ingress policy, then `bpf_redirect_peer`.
//!
//! `bpf_redirect_peer` hands the packet straight to the pod's `eth0` inside its namespace,
//! so it never passes the host-side veth's egress, where `to_ep` runs. The destination's
//! ingress therefore has to be decided before the redirect, in whatever program redirects
//! (from-pod, from-overlay, the uplink). It is decided *per node*, not by a tail call into
//! the destination's own program: one generic lookup in `sluice_node_in` keyed by the
//! destination's table, the source's class, the protocol and the port. Why:
//!
//! - the source's class is an input here (from the VNI for the overlay), while `to_ep`
//!   computes it from the source address, often as an inline compare tree with no class at
//!   all; a tail call would need a second variant of every `to_ep`;
//! - the generic shape is the differential oracle, held to the reference evaluator by the
//!   kernel differential tests, and `sluice_node_in` holds exactly its entries;
//! - no program array to fill with program fds, so the loader's swap stays what it is.
//!
//! Conntrack works as in `to_ep` (`spec/datapath.md`): the flow in the ingress scope is
//! established, the reverse flow in the egress scope is a reply (when the ingress can deny),
//! and a flow policy allowed is inserted, each only for an endpoint whose flags say its
//! programs track flows (and never for a `sluice trace` probe).
//!
//! In: the destination's `sluice_eps` value pointer at [`Var::EpPtr`], the source's
//! class at [`Var::Class`], the parser's registers and slots, the context at
//! [`Var::Ctx`]. Out: the program returns.

use super::super::TcxHook;
use super::super::ct;
use super::super::frame::{CODE, L4_KEY, L4_PROTO, Var};
use super::super::keys::{self, Stage, code};
use super::super::verdict::{TC_ACT_OK, TC_ACT_SHOT};
use crate::bpf::{Asm, Cond, Helper, MapRef, Reg, Size};
use sluice_bundle::abi::node::*;

/// At entry (context in `R1`): keep what `cb[0]` holds in [`Var::Probe`] when the program
/// records rules (a `sluice trace` probe carries `TRACE_REQUEST` there and must leave
/// conntrack as it was), else 0.
pub fn emit_save_probe(a: &mut Asm, trace: bool) {
    if trace {
        a.ldx(Size::W, Reg::R2, Reg::R1, keys::SKB_CB0).stx(
            Size::W,
            Reg::R10,
            Var::Probe.off(),
            Reg::R2,
        );
    } else {
        a.st(Size::W, Reg::R10, Var::Probe.off(), 0);
    }
}

/// Emits the delivery; every path returns.
pub fn emit(a: &mut Asm) {
    use Reg::*;
    let not_here = a.label();
    let track = a.label();
    let reverse = a.label();
    let policy = a.label();
    let enforced = a.label();
    let decided = a.label();
    let insert = a.label();
    let ct_hit = a.label();
    let drop = a.label();
    let ep = Var::EpPtr.off();
    a.ldx(Size::DW, R1, R10, ep)
        .ldx(Size::W, R2, R1, EP_IFINDEX as i16)
        .jmp(Cond::Eq, R2, 0, not_here)
        .ldx(Size::W, R2, R1, EP_FLAGS as i16)
        .jmp(Cond::Set, R2, EP_CONNTRACK as i32, track)
        .ja(policy);

    // Conntrack in the ingress scope; replies only where the ingress can deny.
    a.bind(track)
        .jmp(Cond::Set, R2, EP_CAN_DENY as i32, reverse);
    ct::emit_lookup(a, TcxHook::Egress, false, ct_hit);
    a.ja(policy).bind(reverse);
    ct::emit_lookup(a, TcxHook::Egress, true, ct_hit);

    // Policy: not enforced allows; else the generic lookup (table, class, protocol, port).
    a.bind(policy)
        .ldx(Size::DW, R1, R10, ep)
        .ldx(Size::W, R2, R1, EP_FLAGS as i16)
        .jmp(Cond::Set, R2, EP_ENFORCED as i32, enforced)
        .mov64(CODE, keys::stage_code(true, Stage::Policy) as i32)
        .ja(decided);
    let k = Var::NodeKey.off();
    a.bind(enforced)
        .st(Size::W, R10, k, (NODE_INGRESS_KEY_SIZE * 8 - 32) as i32)
        .ldx(Size::W, R2, R1, EP_TABLE as i16)
        .stx(Size::W, R10, k + 4, R2)
        .ldx(Size::W, R2, R10, Var::Class.off())
        .stx(Size::W, R10, k + 8, R2)
        .stx(Size::B, R10, k + 12, L4_PROTO)
        .st(Size::B, R10, k + 13, 0)
        .mov64(R2, L4_KEY)
        .be16(R2)
        .stx(Size::H, R10, k + 14, R2)
        .map_lookup_stack(MapRef::new(NODE_INGRESS), k)
        // A table that cannot miss did: fail closed.
        .mov64(CODE, keys::stage_code(false, Stage::Policy) as i32)
        .jmp(Cond::Eq, R0, 0, decided)
        .ldx(Size::W, CODE, R0, 0);

    // Insert what policy allowed, for an endpoint that tracks.
    a.bind(decided)
        .mov64(R1, CODE)
        .and64(R1, (code::STAGE_MASK | code::ALLOW) as i32)
        .jmp(Cond::Ne, R1, code::ALLOW as i32, ct_hit)
        .ldx(Size::W, R1, R10, Var::Probe.off())
        .jmp(Cond::Eq, R1, keys::TRACE_REQUEST as i32, ct_hit)
        .ldx(Size::DW, R1, R10, ep)
        .ldx(Size::W, R2, R1, EP_FLAGS as i16)
        .jmp(Cond::Set, R2, EP_CONNTRACK as i32, insert)
        .ja(ct_hit)
        .bind(insert);
    ct::emit_insert(a);

    // Allowed: the pod's MAC as destination, its gateway's as source, then into the pod.
    a.bind(ct_hit)
        .mov64(R1, CODE)
        .and64(R1, code::ALLOW as i32)
        .jmp(Cond::Eq, R1, 0, drop)
        .ldx(Size::DW, R1, R10, Var::Ctx.off())
        .mov64(R2, 0)
        .ldx(Size::DW, R3, R10, ep)
        .add64(R3, EP_POD_MAC as i32)
        .mov64(R4, 12)
        .mov64(R5, 0)
        .call(Helper::SkbStoreBytes)
        .jmp(Cond::Ne, R0, 0, drop)
        .ldx(Size::DW, R1, R10, ep)
        .ldx(Size::W, R1, R1, EP_IFINDEX as i16)
        .mov64(R2, 0)
        .call(Helper::RedirectPeer)
        .exit();
    a.bind(drop).ret(TC_ACT_SHOT);
    // Not attached on this node (no ifindex): the host stack routes it.
    a.bind(not_here).ret(TC_ACT_OK);
}
