//! From a pod, after its egress policy: where the packet goes.
//!
//! Emitted after the policy tail's record half (trace, conntrack insert) of the pod's
//! from-pod program, with the verdict code in `R7`:
//!
//! 1. denied: `TC_ACT_SHOT`; allowed but not judged as IPv4 (ARP, or a frame the direction
//!    does not enforce): the host stack;
//! 2. a destination in `sluice_eps`: [`super::deliver`] (its ingress policy, then
//!    `bpf_redirect_peer`);
//! 3. a destination the ipcache gives a tunnel endpoint (a pod on another node): in VXLAN
//!    mode `bpf_skb_set_tunnel_key` (remote = that node, VNI = the source's wire identity,
//!    outer UDP checksum zero) and `bpf_redirect` to the VXLAN device (a packet too big
//!    for the tunnel with DF set goes to the host stack instead, for path-MTU discovery);
//!    in native mode
//!    `bpf_fib_lookup` and `bpf_redirect_neigh`;
//! 4. anything else: the masquerade decision ([`super::nat::emit_snat`]); what keeps the
//!    pod's address goes to the host stack, what is SNATed is routed by the FIB as under
//!    native routing (a packet from a pod's veth with the node's own address as source
//!    would be dropped by the stack as martian). No route for it: the host stack, which
//!    drops it.

use super::super::CtxLayout;
use super::super::frame::{CODE, L4_PROTO, Var};
use super::super::keys::{self, Stage, code};
use super::super::verdict::{TC_ACT_OK, TC_ACT_SHOT};
use super::deliver;
use super::wire::MAX_WIRE_IDENTITY;
use crate::bpf::{Asm, Cond, Helper, MapRef, Reg, Size};
use crate::masq::MasqPlan;
use crate::resolve::identity::WORLD;
use sluice_bundle::abi::node::*;

/// `BPF_F_ZERO_CSUM_TX`: `bpf_skb_set_tunnel_key` otherwise asks for an outer UDP checksum
/// (calico#3145: checksum offload on the tunnel device cost 63-second delays).
pub const BPF_F_ZERO_CSUM_TX: i32 = 1 << 1;
/// `BPF_FIB_LKUP_RET_SUCCESS` and `BPF_FIB_LKUP_RET_NO_NEIGH`: a route exists.
const FIB_SUCCESS: i32 = 0;
const FIB_NO_NEIGH: i32 = 7;
/// `BPF_MTU_CHK_SEGS`: check a GSO packet's segments, not its whole length (which may
/// exceed the MTU and still fit once segmented).
const BPF_MTU_CHK_SEGS: i32 = 1;
/// `struct __sk_buff.ifindex`.
const SKB_IFINDEX: i16 = 40;
/// The IPv4 flags and fragment offset, from the frame start; DF as the u16 loads it from
/// the packet (network order, read little endian).
const IPV4_FRAG_OFF: i16 = 14 + 6;
const IPV4_DF_BE: i32 = 0x0040;
/// TTL of the outer header.
const TUNNEL_TTL: i32 = 64;

/// `R0 = lookup(map, R10 + key)`.
fn lookup(a: &mut Asm, map: &str, key: i16) {
    a.map_lookup_stack(MapRef::new(map), key);
}

/// `Var::Class = class of the address at R10 + addr` (the ipcache; `fail` on a miss).
pub fn emit_class_of(a: &mut Asm, addr: i16, fail: crate::bpf::Label) {
    use Reg::*;
    let k = Var::IpcacheKey.off();
    a.st(Size::W, R10, k, 32)
        .ldx(Size::W, R1, R10, addr)
        .stx(Size::W, R10, k + 4, R1);
    lookup(a, keys::IPCACHE, k);
    a.jmp(Cond::Eq, R0, 0, fail)
        .ldx(Size::W, R1, R0, 0)
        .stx(Size::W, R10, Var::Class.off(), R1);
}

/// Emits steps 1–4 (`masq`: the SNAT's plan); every path returns.
pub fn emit(a: &mut Asm, masq: &MasqPlan) {
    use Reg::*;
    let drop = a.label();
    let stack = a.label();
    let outside = a.label();
    let remote = a.label();
    let native = a.label();
    a.mov64(R1, CODE)
        .and64(R1, code::ALLOW as i32)
        .jmp(Cond::Eq, R1, 0, drop)
        .mov64(R1, CODE)
        .and64(R1, code::STAGE_MASK as i32)
        .jmp(
            Cond::Gt,
            R1,
            keys::stage_code(false, Stage::Reply) as i32,
            stack,
        );

    // A local destination: its ingress policy, then into the pod.
    lookup(a, ENDPOINTS, Var::Daddr.off());
    a.jmp(Cond::Eq, R0, 0, remote)
        .stx(Size::DW, R10, Var::EpPtr.off(), R0);
    emit_class_of(a, Var::Saddr.off(), drop);
    deliver::emit(a);

    // A pod on another node?
    a.bind(remote)
        .st(Size::W, R10, Var::IpcacheKey.off(), 32)
        .ldx(Size::W, R1, R10, Var::Daddr.off())
        .stx(Size::W, R10, Var::IpcacheKey.off() + 4, R1);
    lookup(a, keys::IPCACHE, Var::IpcacheKey.off());
    a.jmp(Cond::Eq, R0, 0, outside)
        .ldx(Size::W, R6, R0, 4)
        .jmp(Cond::Eq, R6, 0, outside)
        .st(Size::W, R10, Var::U32Key.off(), 0);
    lookup(a, NODE, Var::U32Key.off());
    a.jmp(Cond::Eq, R0, 0, stack)
        .ldx(Size::W, R1, R0, NODE_MODE as i16)
        .jmp(Cond::Eq, R1, MODE_NATIVE as i32, native)
        .ldx(Size::W, R7, R0, NODE_VXLAN_IFINDEX as i16)
        .jmp(Cond::Eq, R7, 0, stack);

    // Too big for the tunnel with DF set: the host stack, whose route through the tunnel
    // has its MTU, answers "fragmentation needed" and the pod learns the path MTU. (The
    // VXLAN device itself sends nothing back for a redirected packet.) Without DF the
    // tunnel takes it and the outer header is fragmented.
    let fits = a.label();
    a.st(Size::W, R10, Var::U32Key.off(), 0)
        .ldx(Size::DW, R1, R10, Var::Ctx.off())
        .mov64(R2, R7)
        .mov64(R3, R10)
        .add64(R3, i32::from(Var::U32Key.off()))
        .mov64(R4, 0)
        .mov64(R5, BPF_MTU_CHK_SEGS)
        .call(Helper::CheckMtu)
        .jmp(Cond::Eq, R0, 0, fits)
        .ldx(Size::DW, R1, R10, Var::Ctx.off())
        .ldx(Size::W, R2, R1, CtxLayout::Tc.data_off())
        .ldx(Size::W, R3, R1, CtxLayout::Tc.data_end_off());
    a.load_packet(R4, R2, R3, IPV4_FRAG_OFF, Size::H, fits)
        .and64(R4, IPV4_DF_BE)
        .jmp(Cond::Ne, R4, 0, stack)
        .bind(fits);

    // VXLAN: the source's identity (world for an address no local pod has) in the VNI.
    let t = Var::TunnelKey.off();
    let known = a.label();
    let keyed = a.label();
    a.st(Size::DW, R10, t, 0)
        .st(Size::DW, R10, t + 8, 0)
        .st(Size::DW, R10, t + 16, 0);
    lookup(a, ENDPOINTS, Var::Saddr.off());
    a.mov64(R1, WORLD as i32)
        .jmp(Cond::Eq, R0, 0, keyed)
        .ldx(Size::W, R1, R0, EP_IDENTITY as i16)
        .jmp(Cond::Le, R1, MAX_WIRE_IDENTITY as i32, known)
        .mov64(R1, WORLD as i32)
        .bind(known)
        .bind(keyed)
        .stx(Size::W, R10, t, R1)
        // remote_ipv4 is in host order; the ipcache holds it in network order.
        .mov64(R1, R6)
        .be32(R1)
        .stx(Size::W, R10, t + 4, R1)
        .st(Size::B, R10, t + 21, TUNNEL_TTL)
        .ldx(Size::DW, R1, R10, Var::Ctx.off())
        .mov64(R2, R10)
        .add64(R2, i32::from(t))
        .mov64(R3, 24)
        .mov64(R4, BPF_F_ZERO_CSUM_TX)
        .call(Helper::SkbSetTunnelKey)
        .jmp(Cond::Ne, R0, 0, drop)
        .mov64(R1, R7)
        .mov64(R2, 0)
        .call(Helper::Redirect)
        .exit();

    // Native routing: the FIB says where, the neighbour code finds the MAC.
    let f = Var::FibParams.off();
    a.bind(native);
    for i in 0..8 {
        a.st(Size::DW, R10, f + i * 8, 0);
    }
    a.st(Size::B, R10, f, 2) // AF_INET
        .stx(Size::B, R10, f + 1, L4_PROTO)
        .ldx(Size::DW, R1, R10, Var::Ctx.off())
        .ldx(Size::W, R2, R1, SKB_IFINDEX)
        .stx(Size::W, R10, f + 8, R2)
        .ldx(Size::W, R2, R10, Var::Saddr.off())
        .stx(Size::W, R10, f + 16, R2)
        .ldx(Size::W, R2, R10, Var::Daddr.off())
        .stx(Size::W, R10, f + 32, R2)
        .mov64(R2, R10)
        .add64(R2, i32::from(f))
        .mov64(R3, 64)
        .mov64(R4, 0)
        .call(Helper::FibLookup);
    let routed = a.label();
    a.jmp(Cond::Eq, R0, FIB_SUCCESS, routed)
        .jmp(Cond::Eq, R0, FIB_NO_NEIGH, routed)
        .ja(stack)
        .bind(routed)
        .ldx(Size::W, R1, R10, f + 8)
        .mov64(R2, 0)
        .mov64(R3, 0)
        .mov64(R4, 0)
        .call(Helper::RedirectNeigh)
        .exit();

    a.bind(outside);
    super::nat::emit_snat(a, masq, stack, drop, native);

    a.bind(drop).ret(TC_ACT_SHOT);
    a.bind(stack).ret(TC_ACT_OK);
}
