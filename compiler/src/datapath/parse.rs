//! The packet parser every datapath program starts with.
//!
//! It reads Ethernet → IPv4 (options-aware) → TCP/UDP/SCTP/ICMP once and leaves the fields
//! policy needs where later emitters find them without touching the packet again. As in
//! bpfilter, the protocols live in registers; they are callee-saved registers, so they
//! survive helper calls such as map lookups. The remaining fields go to stack slots of the
//! one frame ([`super::frame`]).
//!
//! After [`emit_parse`]:
//!
//! | where | what |
//! | --- | --- |
//! | [`CTX`] (`R6`) | the context (`R1` on entry) |
//! | [`L3_PROTO`] (`R7`) | L3 protocol: the EtherType in host order (0x0800 for IPv4) |
//! | [`L4_PROTO`] (`R8`) | L4 protocol: the IPv4 protocol number, 0 if the packet is not IPv4 |
//! | [`L4_KEY`] (`R9`) | destination port (host order) for TCP/UDP/SCTP, `type << 8 \| code` for ICMP, else 0 |
//! | [`Var::Saddr`], [`Var::Daddr`] | IPv4 addresses, u32 in network byte order (as in the packet) |
//! | [`Var::Sport`] | source port, or the identifier of an ICMP query message, u16 host order (0 when there is none) |
//! | [`Var::L4Off`] | offset of the L4 header from the start of the frame, u16 (0 when not IPv4) |
//! | [`Var::IcmpType`], [`Var::IcmpCode`] | u8 each, 0 unless ICMP |
//!
//! Non-first IPv4 fragments carry no L4 header: for them `R8` is still the protocol, but
//! the ports, the ICMP fields and `R9` stay 0. These jump to the caller's `malformed` label:
//! a frame shorter than its Ethernet header, an IPv4 header that is cut short, has IHL < 5
//! or a version other than 4, and an L4 header cut short before a field the parser reads
//! (the ports; ICMP type and code; the identifier of an ICMP query message). Anything else
//! (ARP, IPv6, other L4 protocols) falls through with what was found.

pub use super::frame::{CTX, L3_PROTO, L4_KEY, L4_PROTO};

use super::CtxLayout;
use super::frame::{PARSE_FRAME, Var};
use crate::bpf::{AluOp, Asm, Cond, Label, Reg, Size};

pub const ETH_HLEN: i32 = 14;
pub const ETH_P_IP: i32 = 0x0800;
pub const ETH_P_ARP: i32 = 0x0806;
pub const IPPROTO_ICMP: i32 = 1;
pub const IPPROTO_TCP: i32 = 6;
pub const IPPROTO_UDP: i32 = 17;
pub const IPPROTO_SCTP: i32 = 132;

/// ICMP query replies and the request each answers (RFC 792, 950): echo, timestamp,
/// information, address mask. Each of these messages carries an identifier at offset 4.
pub const ICMP_REPLIES: [(u8, u8); 4] = [(0, 8), (14, 13), (16, 15), (18, 17)];

/// Bit `t` is set for every ICMP query type `t` (requests and replies).
pub const ICMP_QUERY_MASK: u32 = {
    let mut m = 0u32;
    let mut i = 0;
    while i < ICMP_REPLIES.len() {
        m |= 1 << ICMP_REPLIES[i].0 | 1 << ICMP_REPLIES[i].1;
        i += 1;
    }
    m
};

/// The highest ICMP query type (the mask's top bit).
const ICMP_QUERY_MAX: i32 = 31 - ICMP_QUERY_MASK.leading_zeros() as i32;

/// Emits the parser. Expects the context in `R1`; clobbers `R0`–`R5`.
pub fn emit_parse(a: &mut Asm, hook: CtxLayout, malformed: Label) {
    use Reg::*;
    let (data, end) = (R2, R3);
    let done = a.label();
    let ports = a.label();
    let icmp = a.label();

    // Everything the parser promises starts at 0, so every slot is initialized.
    a.mov64(CTX, R1);
    let mut off = -8;
    while off >= PARSE_FRAME {
        a.st(Size::DW, R10, off, 0);
        off -= 8;
    }
    a.mov64(L3_PROTO, 0)
        .mov64(L4_PROTO, 0)
        .mov64(L4_KEY, 0)
        .ldx(Size::W, data, CTX, hook.data_off())
        .ldx(Size::W, end, CTX, hook.data_end_off());

    // Ethernet.
    a.load_packet(L3_PROTO, data, end, 12, Size::H, malformed)
        .be16(L3_PROTO)
        .jmp(Cond::Ne, L3_PROTO, ETH_P_IP, done);

    // IPv4: the fixed 20 bytes, version 4, then the header length from IHL.
    a.check_packet(R4, data, end, ETH_HLEN + 20, malformed)
        .ldx(Size::B, R4, data, 14)
        .mov64(R5, R4)
        .rsh64(R5, 4)
        .jmp(Cond::Ne, R5, 4, malformed)
        .and64(R4, 0x0f)
        .jmp(Cond::Lt, R4, 5, malformed)
        .lsh64(R4, 2)
        .ldx(Size::B, L4_PROTO, data, 23)
        .ldx(Size::W, R5, data, 26)
        .stx(Size::W, R10, Var::Saddr.off(), R5)
        .ldx(Size::W, R5, data, 30)
        .stx(Size::W, R10, Var::Daddr.off(), R5)
        // Non-first fragments have no L4 header.
        .ldx(Size::H, R5, data, 20)
        .be16(R5)
        .and64(R5, 0x1fff)
        .jmp(Cond::Ne, R5, 0, done)
        .add64(R4, ETH_HLEN)
        .stx(Size::H, R10, Var::L4Off.off(), R4)
        // From here `data` points at the L4 header (IHL bounds R4 to 14..=74).
        .add64(data, R4)
        .jmp(Cond::Eq, L4_PROTO, IPPROTO_TCP, ports)
        .jmp(Cond::Eq, L4_PROTO, IPPROTO_UDP, ports)
        .jmp(Cond::Eq, L4_PROTO, IPPROTO_SCTP, ports)
        .jmp(Cond::Eq, L4_PROTO, IPPROTO_ICMP, icmp)
        .ja(done);

    // TCP, UDP and SCTP all start with source and destination port.
    a.bind(ports)
        .check_packet(R4, data, end, 4, malformed)
        .ldx(Size::H, R5, data, 0)
        .be16(R5)
        .stx(Size::H, R10, Var::Sport.off(), R5)
        .ldx(Size::H, L4_KEY, data, 2)
        .be16(L4_KEY)
        .ja(done);

    // ICMP: type and code; a query message's identifier stands in for the source port, so
    // that conntrack tells two pings apart (as Cilium does).
    a.bind(icmp)
        .check_packet(R4, data, end, 2, malformed)
        .ldx(Size::B, R4, data, 0)
        .stx(Size::B, R10, Var::IcmpType.off(), R4)
        .ldx(Size::B, R5, data, 1)
        .stx(Size::B, R10, Var::IcmpCode.off(), R5)
        .mov64(L4_KEY, R4)
        .lsh64(L4_KEY, 8)
        .alu64(AluOp::Or, L4_KEY, R5)
        .jmp(Cond::Gt, R4, ICMP_QUERY_MAX, done)
        .mov64(R5, ICMP_QUERY_MASK as i32)
        .rsh64(R5, R4)
        .and64(R5, 1)
        .jmp(Cond::Eq, R5, 0, done)
        .load_packet(R5, data, end, 4, Size::H, malformed)
        .be16(R5)
        .stx(Size::H, R10, Var::Sport.off(), R5);

    a.bind(done);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::disasm;

    #[test]
    fn golden_tc_parser() {
        let mut a = Asm::new();
        let bad = a.label();
        emit_parse(&mut a, CtxLayout::Tc, bad);
        a.mov64(Reg::R0, L4_KEY).exit().bind(bad).ret(-1);
        let text = disasm(&a.finish().unwrap());
        let want = "   0: r6 = r1
   1: *(u64 *)(r10 - 8) = 0
   2: *(u64 *)(r10 - 16) = 0
   3: r7 = 0
   4: r8 = 0
   5: r9 = 0
   6: r2 = *(u32 *)(r6 + 76)
   7: r3 = *(u32 *)(r6 + 80)
   8: r7 = r2
   9: r7 += 14
  10: if r7 > r3 goto +62
  11: r7 = *(u16 *)(r2 + 12)
  12: r7 = be16 r7
  13: if r7 != 2048 goto +57
  14: r4 = r2
  15: r4 += 34
  16: if r4 > r3 goto +56
  17: r4 = *(u8 *)(r2 + 14)
  18: r5 = r4
  19: r5 >>= 4
  20: if r5 != 4 goto +52
  21: r4 &= 15
  22: if r4 < 5 goto +50
  23: r4 <<= 2
  24: r8 = *(u8 *)(r2 + 23)
  25: r5 = *(u32 *)(r2 + 26)
  26: *(u32 *)(r10 - 4) = r5
  27: r5 = *(u32 *)(r2 + 30)
  28: *(u32 *)(r10 - 8) = r5
  29: r5 = *(u16 *)(r2 + 20)
  30: r5 = be16 r5
  31: r5 &= 8191
  32: if r5 != 0 goto +38
  33: r4 += 14
  34: *(u16 *)(r10 - 12) = r4
  35: r2 += r4
  36: if r8 == 6 goto +4
  37: if r8 == 17 goto +3
  38: if r8 == 132 goto +2
  39: if r8 == 1 goto +10
  40: goto +30
  41: r4 = r2
  42: r4 += 4
  43: if r4 > r3 goto +29
  44: r5 = *(u16 *)(r2 + 0)
  45: r5 = be16 r5
  46: *(u16 *)(r10 - 10) = r5
  47: r9 = *(u16 *)(r2 + 2)
  48: r9 = be16 r9
  49: goto +21
  50: r4 = r2
  51: r4 += 2
  52: if r4 > r3 goto +20
  53: r4 = *(u8 *)(r2 + 0)
  54: *(u8 *)(r10 - 13) = r4
  55: r5 = *(u8 *)(r2 + 1)
  56: *(u8 *)(r10 - 14) = r5
  57: r9 = r4
  58: r9 <<= 8
  59: r9 |= r5
  60: if r4 > 18 goto +10
  61: r5 = 516353
  62: r5 >>= r4
  63: r5 &= 1
  64: if r5 == 0 goto +6
  65: r5 = r2
  66: r5 += 6
  67: if r5 > r3 goto +5
  68: r5 = *(u16 *)(r2 + 4)
  69: r5 = be16 r5
  70: *(u16 *)(r10 - 10) = r5
  71: r0 = r9
  72: exit
  73: r0 = -1
  74: exit
";
        assert_eq!(text, want);
    }

    #[test]
    fn xdp_parser_reads_xdp_md() {
        let mut a = Asm::new();
        let bad = a.label();
        emit_parse(&mut a, CtxLayout::Xdp, bad);
        a.exit().bind(bad).exit();
        let p = a.finish().unwrap();
        let text = disasm(&p);
        assert!(text.contains("   6: r2 = *(u32 *)(r6 + 0)\n   7: r3 = *(u32 *)(r6 + 4)\n"));
    }
}
