//! Masquerade in the node datapath: the SNAT of traffic leaving a local pod and the reverse
//! NAT of its replies, generated from [`MasqPlan`] (the reference decision).
//!
//! Where the SNAT happens: in the from-pod program, at the exit that used to hand the packet
//! to the host stack, and not on the uplink's egress as Cilium does (its `to-netdev`). Why:
//!
//! - the from-pod program already holds everything the decision needs: the parsed tuple and
//!   conntrack's verdict (a reply to a connection opened towards the pod is never SNATed),
//!   which the uplink would have to look up again;
//! - a packet whose source is the node's own address cannot go through the host stack from
//!   a pod's veth (the kernel drops a local source arriving on another device as martian),
//!   so the rewritten packet is routed by `bpf_fib_lookup` and sent with
//!   `bpf_redirect_neigh`, as native routing does. It never passes the uplink's egress, so
//!   a program there would not see it anyway;
//! - one fewer program on the node's devices.
//!
//! The reverse NAT is on the uplink's ingress (`from_netdev`, attached in both routing modes
//! when masquerade is on): a reply to the node's address and a mapped port gets the pod's
//! address and port back and is delivered like any packet for a local pod (its ingress
//! policy, then `bpf_redirect_peer`).
//!
//! Ports: the pod's own port when it is in 32768–65535 and free, otherwise a random one in
//! that range, [`RETRIES`] times at most; each taken port counts a retry, and a packet that
//! finds none is dropped and counted ("no mapping"). A mapping is claimed by inserting its
//! reverse entry with `BPF_NOEXIST`, so two pods can never share a node port towards the
//! same remote address and port. TCP, UDP and ICMP echo (its identifier) are translated;
//! other protocols and other ICMP messages keep the pod's address. Replies and ICMP errors
//! quoting a translated packet are translated back on the uplink. Every translated packet
//! stamps its entry with the time and, for a TCP FIN or RST, the closing state, which the
//! loader's GC (`sluice_loader::nat`) reads to free finished and idle mappings. The layouts are
//! `sluice_bundle::abi::node`'s (`NAT`, `NAT_STATS`, `MASQ_EXCLUDED`) and
//! `spec/datapath.md` ("Masquerade").

use super::super::frame::{CODE, L4_KEY, L4_PROTO, Var};
use super::super::keys::{self, Stage, code};
use super::super::parse::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use super::super::{MapContents, MapScope};
use crate::bpf::{Asm, Cond, Helper, Label, MapDef, MapRef, MapType, Reg, Size};
use crate::masq::MasqPlan;
use crate::node::Routing;
use sluice_bundle::abi::node::*;
use std::net::{IpAddr, Ipv4Addr};

/// Random ports tried after the pod's own (Cilium tries `SNAT_COLLISION_RETRIES`, 32 by
/// default; a range of 32768 ports is rarely so full that 16 fail).
pub const RETRIES: usize = 16;

const ICMP_ECHO_REPLY: i32 = 0;
const ICMP_ECHO: i32 = 8;
const ICMP_DEST_UNREACH: i32 = 3;
/// The TCP flags byte (from the TCP header) and the two a connection's first segment has.
const TCP_FLAGS: i32 = 13;
const TCP_FIN: i32 = 0x01;
const TCP_SYN: i32 = 0x02;
const TCP_RST: i32 = 0x04;
const TCP_ACK: i32 = 0x10;
const ICMP_TIME_EXCEEDED: i32 = 11;
/// Offsets from the frame start: the IPv4 checksum, source and destination.
const IP_CSUM: i32 = 14 + 10;
const IP_SADDR: i32 = 14 + 12;
const IP_DADDR: i32 = 14 + 16;
/// `bpf_l4_csum_replace` flags.
const BPF_F_PSEUDO_HDR: i32 = 1 << 4;
const BPF_F_MARK_MANGLED_0: i32 = 1 << 5;
const BPF_NOEXIST: i32 = 1;
const BPF_ANY: i32 = 0;

/// The NAT table: pinned by name, shared by every program of every generation.
pub fn nat_map() -> MapContents {
    persistent(MapDef::new(
        NAT,
        MapType::LruHash,
        NAT_KEY_SIZE,
        NAT_VALUE_SIZE,
        NAT_MAX_ENTRIES,
    ))
}

/// The counters (`NAT_STAT_*`): pinned like the table, so they count across generations.
pub fn stats_map() -> MapContents {
    persistent(MapDef::new(
        NAT_STATS,
        MapType::PercpuArray,
        4,
        8,
        NAT_STATS_LEN,
    ))
}

fn persistent(def: MapDef) -> MapContents {
    let def = def.pinned_by_name();
    MapContents {
        name: def.name.clone(),
        def,
        scope: MapScope::Persistent,
        entries: Vec::new(),
    }
}

/// The exclusion LPM (generation scope), from the plan's IPv4 exclusions.
pub fn exclusions_contents(plan: &MasqPlan) -> MapContents {
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = plan
        .lpm_keys()
        .iter()
        .map(|k| (k.to_vec(), 1u32.to_le_bytes().to_vec()))
        .collect();
    entries.sort();
    let def = MapDef::new(
        MASQ_EXCLUDED,
        MapType::LpmTrie,
        8,
        4,
        entries.len().max(1) as u32,
    );
    MapContents {
        name: def.name.clone(),
        def,
        scope: MapScope::Generation,
        entries,
    }
}

/// An address as a 32-bit immediate that compares equal to the slot `ldx W` reads.
fn imm(ip: Ipv4Addr) -> i32 {
    u32::from_le_bytes(ip.octets()) as i32
}

/// A prefix as (network, mask) immediates in the same byte order.
fn net_mask(c: &crate::source::ast::Cidr) -> (i32, i32) {
    let IpAddr::V4(a) = c.addr else {
        unreachable!("IPv4 pod CIDRs")
    };
    let mask = if c.prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(c.prefix))
    };
    let m = Ipv4Addr::from(mask);
    let n = Ipv4Addr::from(u32::from(a) & mask);
    (imm(n), imm(m))
}

/// `R0 = lookup(map, R10 + key)`.
fn lookup(a: &mut Asm, map: &str, key: i16) {
    a.map_lookup_stack(MapRef::new(map), key);
}

/// Adds one to counter `index` of [`NAT_STATS`] (per CPU: no atomics needed).
fn count(a: &mut Asm, index: u32) {
    use Reg::*;
    let done = a.label();
    a.st(Size::W, R10, Var::U32Key.off(), index as i32);
    lookup(a, NAT_STATS, Var::U32Key.off());
    a.jmp(Cond::Eq, R0, 0, done)
        .ldx(Size::DW, R1, R0, 0)
        .add64(R1, 1)
        .stx(Size::DW, R0, 0, R1)
        .bind(done);
}

/// What the GC needs from this packet, into [`Var::NatVal`] before the table lookup:
/// `last_seen` (+8) the time, `state` (+6) 0 (a new entry is open), and at +7 (the value's
/// pad, zeroed before a new entry is written) the TCP flags: 0 for other protocols, or
/// when they cannot be read. Clobbers `R0`–`R5`.
fn emit_seen(a: &mut Asm) {
    use Reg::*;
    let v = Var::NatVal.off();
    let done = a.label();
    a.call(Helper::KtimeGetNs)
        .stx(Size::DW, R10, v + 8, R0)
        .st(Size::H, R10, v + 6, 0)
        .jmp(Cond::Ne, L4_PROTO, IPPROTO_TCP, done)
        .ldx(Size::DW, R1, R10, Var::Ctx.off());
    l4_at(a, TCP_FLAGS);
    a.mov64(R3, R10)
        .add64(R3, i32::from(v + 7))
        .mov64(R4, 1)
        .call(Helper::SkbLoadBytes)
        .jmp(Cond::Eq, R0, 0, done)
        .st(Size::B, R10, v + 7, 0)
        .bind(done);
}

/// Refreshes the entry `R0` points to from [`emit_seen`]'s scratch: its `last_seen`, and
/// its `state` once a FIN or RST went through it. Clobbers `R1`, `R2`.
fn emit_touch(a: &mut Asm) {
    use Reg::*;
    let v = Var::NatVal.off();
    let open = a.label();
    a.ldx(Size::DW, R1, R10, v + 8)
        .stx(Size::DW, R0, 8, R1)
        .ldx(Size::B, R1, R10, v + 7)
        .and64(R1, TCP_FIN | TCP_RST)
        .jmp(Cond::Eq, R1, 0, open)
        .st(Size::B, R0, 6, i32::from(NAT_CLOSING))
        .bind(open);
}

/// `R2 = L4 offset + off` (an offset into the packet for a helper).
fn l4_at(a: &mut Asm, off: i32) {
    a.ldx(Size::H, Reg::R2, Reg::R10, Var::L4Off.off())
        .add64(Reg::R2, off);
}

/// Which address a rewrite replaces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// SNAT: the source address and port.
    Source,
    /// Reverse NAT: the destination address and port.
    Destination,
}

/// Rewrites the packet: the address (`Side`) to the one at [`Var::NatVal`], the TCP/UDP
/// port on that side (or the ICMP echo identifier) to `R6` (host order), with incremental
/// checksum updates. The old values are the parser's (the port of the destination side is
/// in `L4_KEY`). Any helper failure goes to `drop`.
fn emit_rewrite(a: &mut Asm, side: Side, drop: Label) {
    use Reg::*;
    let (ip_off, old_addr, port_off) = match side {
        Side::Source => (IP_SADDR, Var::Saddr, 0),
        Side::Destination => (IP_DADDR, Var::Daddr, 2),
    };
    let ctx = |a: &mut Asm| {
        a.ldx(Size::DW, R1, R10, Var::Ctx.off());
    };
    // The address, then the IPv4 header checksum.
    ctx(a);
    a.mov64(R2, ip_off)
        .mov64(R3, R10)
        .add64(R3, i32::from(Var::NatVal.off()))
        .mov64(R4, 4)
        .mov64(R5, 0)
        .call(Helper::SkbStoreBytes)
        .jmp(Cond::Ne, R0, 0, drop);
    ctx(a);
    a.mov64(R2, IP_CSUM)
        .ldx(Size::W, R3, R10, old_addr.off())
        .ldx(Size::W, R4, R10, Var::NatVal.off())
        .mov64(R5, 4)
        .call(Helper::L3CsumReplace)
        .jmp(Cond::Ne, R0, 0, drop);
    // The new port, network order, at NatVal + 4.
    a.mov64(R1, R6)
        .be16(R1)
        .stx(Size::H, R10, Var::NatVal.off() + 4, R1);
    let done = a.label();
    // The old port: the source's is the parser's `Sport`, the destination's `L4_KEY`.
    let old_port = match side {
        Side::Source => Some(Var::Sport),
        Side::Destination => None,
    };
    // (protocol, checksum offset, extra flags): UDP's zero checksum stays zero.
    for (proto, csum, extra) in [(IPPROTO_TCP, 16, 0), (IPPROTO_UDP, 6, BPF_F_MARK_MANGLED_0)] {
        let next = a.label();
        a.jmp(Cond::Ne, L4_PROTO, proto, next);
        // The address is in the pseudo header.
        ctx(a);
        l4_at(a, csum);
        a.ldx(Size::W, R3, R10, old_addr.off())
            .ldx(Size::W, R4, R10, Var::NatVal.off())
            .mov64(R5, BPF_F_PSEUDO_HDR | extra | 4)
            .call(Helper::L4CsumReplace)
            .jmp(Cond::Ne, R0, 0, drop);
        emit_port(a, port_off, csum, extra, old_port, drop);
        a.ja(done).bind(next);
    }
    // ICMP echo: the identifier (the parser's `Sport`) either way; no pseudo header.
    emit_port(a, 4, 2, 0, Some(Var::Sport), drop);
    a.bind(done);
}

/// Stores the port at `NatVal + 4` at L4 offset `port_off` and updates the checksum at
/// `csum` from the old port (host order: in `old`, or `L4_KEY` when `None`).
fn emit_port(a: &mut Asm, port_off: i32, csum: i32, extra: i32, old: Option<Var>, drop: Label) {
    use Reg::*;
    a.ldx(Size::DW, R1, R10, Var::Ctx.off());
    l4_at(a, port_off);
    a.mov64(R3, R10)
        .add64(R3, i32::from(Var::NatVal.off() + 4))
        .mov64(R4, 2)
        .mov64(R5, 0)
        .call(Helper::SkbStoreBytes)
        .jmp(Cond::Ne, R0, 0, drop);
    match old {
        Some(v) => a.ldx(Size::H, R3, R10, v.off()),
        None => a.mov64(R3, L4_KEY),
    };
    a.be16(R3).ldx(Size::DW, R1, R10, Var::Ctx.off());
    l4_at(a, csum);
    a.ldx(Size::H, R4, R10, Var::NatVal.off() + 4)
        .mov64(R5, extra | 2)
        .call(Helper::L4CsumReplace)
        .jmp(Cond::Ne, R0, 0, drop);
}

/// The SNAT at the from-pod program's exit towards the outside (`R7` the verdict code,
/// `R8` the protocol, `R9` the destination port): the decision in `MasqPlan::decide`'s
/// order (`keep`: the host stack with the pod's address), the mapping, the rewrite, then
/// `out` (routing by the FIB, with [`Var::Saddr`] the node's address).
pub fn emit_snat(a: &mut Asm, plan: &MasqPlan, keep: Label, drop: Label, out: Label) {
    use Reg::*;
    if !plan.enabled {
        a.ja(keep);
        return;
    }
    // 2. Only this node's pods.
    let (n, m) = net_mask(&plan.local_pods);
    a.ldx(Size::W, R1, R10, Var::Saddr.off())
        .and64(R1, m)
        .jmp32(Cond::Ne, R1, n, keep);
    // 3. Never a reply.
    a.mov64(R1, CODE).and64(R1, code::STAGE_MASK as i32).jmp(
        Cond::Eq,
        R1,
        keys::stage_code(false, Stage::Reply) as i32,
        keep,
    );
    // 4. Pods, 5. this node.
    a.ldx(Size::W, R1, R10, Var::Daddr.off());
    for c in &plan.cluster_pods {
        let (n, m) = net_mask(c);
        a.mov64(R2, R1).and64(R2, m).jmp32(Cond::Eq, R2, n, keep);
    }
    a.jmp32(Cond::Eq, R1, imm(plan.node_ip), keep);
    // 6. The exclusions.
    let k = Var::NatKey.off();
    a.st(Size::W, R10, k, 32).stx(Size::W, R10, k + 4, R1);
    lookup(a, MASQ_EXCLUDED, k);
    a.jmp(Cond::Ne, R0, 0, keep);
    // 7. Other nodes under native routing.
    if plan.routing == Routing::Native {
        a.ldx(Size::W, R1, R10, Var::Daddr.off());
        for p in &plan.peer_ips {
            a.jmp32(Cond::Eq, R1, imm(*p), keep);
        }
    }

    // What is translated: TCP, UDP (remote port: the destination's), ICMP echo (none).
    let ports = a.label();
    let remote = a.label();
    a.jmp(Cond::Eq, L4_PROTO, IPPROTO_TCP, ports)
        .jmp(Cond::Eq, L4_PROTO, IPPROTO_UDP, ports)
        .jmp(Cond::Ne, L4_PROTO, IPPROTO_ICMP, keep)
        .ldx(Size::B, R1, R10, Var::IcmpType.off())
        .jmp(Cond::Ne, R1, ICMP_ECHO, keep)
        .mov64(R6, 0)
        .ja(remote)
        .bind(ports)
        .mov64(R6, L4_KEY)
        .bind(remote);

    // The flow's forward entry: its mapping when it has one.
    a.ldx(Size::W, R1, R10, Var::Saddr.off())
        .stx(Size::W, R10, k, R1)
        .ldx(Size::W, R1, R10, Var::Daddr.off())
        .stx(Size::W, R10, k + 4, R1)
        .ldx(Size::H, R1, R10, Var::Sport.off())
        .stx(Size::H, R10, k + 8, R1)
        .stx(Size::H, R10, k + 10, R6)
        .stx(Size::B, R10, k + 12, L4_PROTO)
        .st(Size::B, R10, k + 13, i32::from(NAT_FORWARD))
        .st(Size::H, R10, k + 14, 0);
    emit_seen(a);
    lookup(a, NAT, k);
    let alloc = a.label();
    let rewrite = a.label();
    a.jmp(Cond::Eq, R0, 0, alloc);
    emit_touch(a);
    // A SYN reopens a mapping a closed flow left (the pod reusing its port towards the same
    // remote port): both entries are open again, or the GC would free it 10 s after its
    // last packet. The reverse key: (remote, node address, remote port `R6`, node port).
    let v = Var::NatVal.off();
    let same = a.label();
    a.ldx(Size::B, R1, R10, v + 7)
        .and64(R1, TCP_SYN | TCP_ACK)
        .jmp(Cond::Ne, R1, TCP_SYN, same)
        .jmp(Cond::Ne, L4_PROTO, IPPROTO_TCP, same)
        .st(Size::B, R0, 6, 0)
        .ldx(Size::W, R1, R10, Var::Daddr.off())
        .stx(Size::W, R10, k, R1)
        .ldx(Size::W, R1, R0, 0)
        .stx(Size::W, R10, k + 4, R1)
        .stx(Size::H, R10, k + 8, R6)
        .ldx(Size::H, R6, R0, 4)
        .stx(Size::H, R10, k + 10, R6)
        .st(Size::B, R10, k + 13, i32::from(NAT_REVERSE));
    lookup(a, NAT, k);
    a.jmp(Cond::Eq, R0, 0, rewrite)
        .st(Size::B, R0, 6, 0)
        .ja(rewrite)
        .bind(same)
        .ldx(Size::H, R6, R0, 4)
        .ja(rewrite);

    // A new mapping. TCP takes one only for a SYN: any other segment without a mapping
    // belongs to a connection the pod did not open (its answer to an inbound connection,
    // which conntrack calls a reply only when the pod's programs track) and keeps its
    // address.
    let opens = a.label();
    a.bind(alloc)
        .jmp(Cond::Ne, L4_PROTO, IPPROTO_TCP, opens)
        .ldx(Size::B, R1, R10, v + 7)
        .and64(R1, TCP_SYN | TCP_ACK)
        .jmp(Cond::Ne, R1, TCP_SYN, keep)
        .bind(opens);
    // Claim the reverse entry (remote → node:port) → the pod, open, seen now (+8).
    a.ldx(Size::W, R1, R10, Var::Saddr.off())
        .stx(Size::W, R10, v, R1)
        .ldx(Size::H, R1, R10, Var::Sport.off())
        .stx(Size::H, R10, v + 4, R1)
        .st(Size::H, R10, v + 6, 0)
        .ldx(Size::W, R1, R10, Var::Daddr.off())
        .stx(Size::W, R10, k, R1)
        .st(Size::W, R10, k + 4, imm(plan.snat_ip))
        .stx(Size::H, R10, k + 8, R6)
        .st(Size::B, R10, k + 13, i32::from(NAT_REVERSE));
    let got = a.label();
    for attempt in 0..=RETRIES {
        let try_it = a.label();
        if attempt == 0 {
            // The pod's own port, when it is in the range.
            a.ldx(Size::H, R1, R10, Var::Sport.off()).jmp(
                Cond::Ge,
                R1,
                i32::from(NAT_PORT_MIN),
                try_it,
            );
        }
        a.call(Helper::GetPrandomU32)
            .and64(R0, 0x7fff)
            .add64(R0, i32::from(NAT_PORT_MIN))
            .mov64(R1, R0)
            .bind(try_it)
            .stx(Size::H, R10, k + 10, R1)
            .map_update_stack(MapRef::new(NAT), k, v, BPF_NOEXIST)
            .jmp(Cond::Eq, R0, 0, got);
        count(a, NAT_STAT_RETRIES);
    }
    count(a, NAT_STAT_NO_MAPPING);
    a.ja(drop);

    // The forward entry: the pod's tuple → the node's address and the port claimed.
    a.bind(got)
        .ldx(Size::H, R6, R10, k + 10)
        .ldx(Size::H, R2, R10, k + 8)
        .ldx(Size::W, R1, R10, Var::Saddr.off())
        .stx(Size::W, R10, k, R1)
        .ldx(Size::W, R1, R10, Var::Daddr.off())
        .stx(Size::W, R10, k + 4, R1)
        .ldx(Size::H, R1, R10, Var::Sport.off())
        .stx(Size::H, R10, k + 8, R1)
        .stx(Size::H, R10, k + 10, R2)
        .st(Size::B, R10, k + 13, i32::from(NAT_FORWARD))
        .st(Size::W, R10, v, imm(plan.snat_ip))
        .stx(Size::H, R10, v + 4, R6)
        .map_update_stack(MapRef::new(NAT), k, v, BPF_ANY);
    count(a, NAT_STAT_MAPPED);

    a.bind(rewrite).st(Size::W, R10, v, imm(plan.snat_ip));
    emit_rewrite(a, Side::Source, drop);
    a.st(Size::W, R10, Var::Saddr.off(), imm(plan.snat_ip))
        .ja(out);
}

/// The reverse NAT on the uplink's ingress, before the "for a local pod?" lookup: a reply
/// whose tuple has a reverse entry gets the pod's address and port, and [`Var::Daddr`],
/// `L4_KEY` (TCP, UDP) or [`Var::Sport`] (ICMP echo reply) are updated so the delivery
/// that follows sees the pod's flow. Anything else falls through unchanged.
pub fn emit_reverse(a: &mut Asm, drop: Label) {
    use Reg::*;
    let skip = a.label();
    let ports = a.label();
    let keyed = a.label();
    let k = Var::NatKey.off();
    let error = a.label();
    a.jmp(Cond::Eq, L4_PROTO, IPPROTO_TCP, ports)
        .jmp(Cond::Eq, L4_PROTO, IPPROTO_UDP, ports)
        .jmp(Cond::Ne, L4_PROTO, IPPROTO_ICMP, skip)
        .ldx(Size::B, R1, R10, Var::IcmpType.off())
        .jmp(Cond::Eq, R1, ICMP_DEST_UNREACH, error)
        .jmp(Cond::Eq, R1, ICMP_TIME_EXCEEDED, error)
        .jmp(Cond::Ne, R1, ICMP_ECHO_REPLY, skip)
        .st(Size::H, R10, k + 8, 0)
        .ldx(Size::H, R1, R10, Var::Sport.off())
        .stx(Size::H, R10, k + 10, R1)
        .ja(keyed)
        .bind(ports)
        .ldx(Size::H, R1, R10, Var::Sport.off())
        .stx(Size::H, R10, k + 8, R1)
        .stx(Size::H, R10, k + 10, L4_KEY)
        .bind(keyed)
        .ldx(Size::W, R1, R10, Var::Saddr.off())
        .stx(Size::W, R10, k, R1)
        .ldx(Size::W, R1, R10, Var::Daddr.off())
        .stx(Size::W, R10, k + 4, R1)
        .stx(Size::B, R10, k + 12, L4_PROTO)
        .st(Size::B, R10, k + 13, i32::from(NAT_REVERSE))
        .st(Size::H, R10, k + 14, 0);
    emit_seen(a);
    lookup(a, NAT, k);
    // Copied out: the LRU may evict the entry while this packet is rewritten.
    let v = Var::NatVal.off();
    a.jmp(Cond::Eq, R0, 0, skip);
    emit_touch(a);
    a.ldx(Size::W, R1, R0, 0)
        .stx(Size::W, R10, v, R1)
        .ldx(Size::H, R6, R0, 4);
    emit_rewrite(a, Side::Destination, drop);
    let icmp = a.label();
    let done = a.label();
    a.jmp(Cond::Eq, L4_PROTO, IPPROTO_ICMP, icmp)
        .mov64(L4_KEY, R6)
        .ja(done)
        .bind(icmp)
        .stx(Size::H, R10, Var::Sport.off(), R6)
        .bind(done);
    let translated = a.label();
    a.bind(translated)
        .ldx(Size::W, R1, R10, v)
        .stx(Size::W, R10, Var::Daddr.off(), R1);
    count(a, NAT_STAT_REVERSED);
    let out = a.label();
    a.ja(out);
    emit_icmp_error(a, error, skip, translated, drop);
    a.bind(skip).bind(out);
}

/// An ICMP error (destination unreachable, time exceeded) about a packet this node SNATed:
/// the embedded header is the translated packet (node → remote), so its reverse entry is
/// keyed by the embedded destination and source. The outer destination, the embedded
/// source address and port (or echo identifier) get the pod's back; the embedded IPv4
/// checksum follows its source, so the outer ICMP checksum changes by the port only. The
/// embedded TCP/UDP checksum is left as it is (nothing checks a quoted one). Entered at
/// `at`; goes on to `translated` (with [`Var::NatVal`] the pod's address) or `skip`.
fn emit_icmp_error(a: &mut Asm, at: Label, skip: Label, translated: Label, drop: Label) {
    use Reg::*;
    // The embedded IPv4 header and 8 bytes of its L4, copied to the (here unused) FIB slot.
    let e = Var::FibParams.off();
    let k = Var::NatKey.off();
    let v = Var::NatVal.off();
    const INNER: i32 = 8;
    a.bind(at).ldx(Size::DW, R1, R10, Var::Ctx.off());
    l4_at(a, INNER);
    a.mov64(R3, R10)
        .add64(R3, i32::from(e))
        .mov64(R4, 28)
        .call(Helper::SkbLoadBytes)
        .jmp(Cond::Ne, R0, 0, skip)
        // IPv4 without options only.
        .ldx(Size::B, R1, R10, e)
        .jmp(Cond::Ne, R1, 0x45, skip)
        .ldx(Size::B, R1, R10, e + 9)
        .stx(Size::B, R10, k + 12, R1)
        .ldx(Size::W, R2, R10, e + 16)
        .stx(Size::W, R10, k, R2)
        .ldx(Size::W, R2, R10, e + 12)
        .stx(Size::W, R10, k + 4, R2)
        .st(Size::B, R10, k + 13, i32::from(NAT_REVERSE))
        .st(Size::H, R10, k + 14, 0);
    // Embedded TCP/UDP: (its destination port, its source port); echo: (0, identifier).
    let ports = a.label();
    let keyed = a.label();
    a.jmp(Cond::Eq, R1, IPPROTO_TCP, ports)
        .jmp(Cond::Eq, R1, IPPROTO_UDP, ports)
        .jmp(Cond::Ne, R1, IPPROTO_ICMP, skip)
        .ldx(Size::B, R2, R10, e + 20)
        .jmp(Cond::Ne, R2, ICMP_ECHO, skip)
        .st(Size::H, R10, k + 8, 0)
        .ldx(Size::H, R2, R10, e + 24)
        .be16(R2)
        .stx(Size::H, R10, k + 10, R2)
        .ja(keyed)
        .bind(ports)
        .ldx(Size::H, R2, R10, e + 22)
        .be16(R2)
        .stx(Size::H, R10, k + 8, R2)
        .ldx(Size::H, R2, R10, e + 20)
        .be16(R2)
        .stx(Size::H, R10, k + 10, R2)
        .bind(keyed);
    lookup(a, NAT, k);
    a.jmp(Cond::Eq, R0, 0, skip)
        .ldx(Size::W, R1, R0, 0)
        .stx(Size::W, R10, v, R1)
        .ldx(Size::H, R1, R0, 4)
        .be16(R1)
        .stx(Size::H, R10, v + 4, R1);
    let ctx = |a: &mut Asm| {
        a.ldx(Size::DW, R1, R10, Var::Ctx.off());
    };
    // Outer destination and the outer IPv4 checksum.
    ctx(a);
    a.mov64(R2, IP_DADDR)
        .mov64(R3, R10)
        .add64(R3, i32::from(v))
        .mov64(R4, 4)
        .mov64(R5, 0)
        .call(Helper::SkbStoreBytes)
        .jmp(Cond::Ne, R0, 0, drop);
    ctx(a);
    a.mov64(R2, IP_CSUM)
        .ldx(Size::W, R3, R10, Var::Daddr.off())
        .ldx(Size::W, R4, R10, v)
        .mov64(R5, 4)
        .call(Helper::L3CsumReplace)
        .jmp(Cond::Ne, R0, 0, drop);
    // Embedded source and the embedded IPv4 checksum.
    ctx(a);
    l4_at(a, INNER + 12);
    a.mov64(R3, R10)
        .add64(R3, i32::from(v))
        .mov64(R4, 4)
        .mov64(R5, 0)
        .call(Helper::SkbStoreBytes)
        .jmp(Cond::Ne, R0, 0, drop);
    ctx(a);
    l4_at(a, INNER + 10);
    a.ldx(Size::W, R3, R10, e + 12)
        .ldx(Size::W, R4, R10, v)
        .mov64(R5, 4)
        .call(Helper::L3CsumReplace)
        .jmp(Cond::Ne, R0, 0, drop);
    // Embedded source port (TCP/UDP at +20) or echo identifier (+24), and the outer ICMP
    // checksum for it.
    let echo = a.label();
    let port_at = a.label();
    a.ldx(Size::B, R1, R10, k + 12)
        .jmp(Cond::Eq, R1, IPPROTO_ICMP, echo)
        .mov64(R6, INNER + 20)
        .ldx(Size::H, R7, R10, e + 20)
        .ja(port_at)
        .bind(echo)
        .mov64(R6, INNER + 24)
        .ldx(Size::H, R7, R10, e + 24)
        .bind(port_at);
    ctx(a);
    a.ldx(Size::H, R2, R10, Var::L4Off.off())
        .add64(R2, R6)
        .mov64(R3, R10)
        .add64(R3, i32::from(v + 4))
        .mov64(R4, 2)
        .mov64(R5, 0)
        .call(Helper::SkbStoreBytes)
        .jmp(Cond::Ne, R0, 0, drop);
    ctx(a);
    l4_at(a, 2);
    a.mov64(R3, R7)
        .ldx(Size::H, R4, R10, v + 4)
        .mov64(R5, 2)
        .call(Helper::L4CsumReplace)
        .jmp(Cond::Ne, R0, 0, drop)
        .ja(translated);
}
