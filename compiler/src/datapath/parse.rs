//! The packet parser every datapath program starts with.
//!
//! It reads Ethernet → IPv4 (options-aware) → TCP/UDP/SCTP/ICMP once and leaves the fields
//! policy needs where later emitters find them without touching the packet again. As in
//! bpfilter, the protocols live in registers; they are callee-saved registers, so they
//! survive helper calls such as map lookups. The remaining fields go to fixed stack slots.
//!
//! After [`emit_parse`]:
//!
//! | where | what |
//! | --- | --- |
//! | `R6` | the context (`R1` on entry) |
//! | `R7` | L3 protocol: the EtherType in host order (0x0800 for IPv4) |
//! | `R8` | L4 protocol: the IPv4 protocol number, 0 if the packet is not IPv4 |
//! | `R9` | the L4 key: destination port (host order) for TCP/UDP/SCTP, `type << 8 \| code` for ICMP, else 0 |
//! | [`slot::SADDR`], [`slot::DADDR`] | IPv4 addresses, u32 in network byte order (as in the packet) |
//! | [`slot::SPORT`] | source port, u16 host order (0 when there is none) |
//! | [`slot::L4_OFF`] | offset of the L4 header from the start of the frame, u16 (0 when not IPv4) |
//! | [`slot::ICMP_TYPE`], [`slot::ICMP_CODE`] | u8 each, 0 unless ICMP |
//!
//! Non-first IPv4 fragments carry no L4 header: for them `R8` is still the protocol, but
//! the ports, the ICMP fields and `R9` stay 0. A packet too short for a header that it
//! claims to carry, or an IPv4 header with IHL < 5, jumps to the caller's `malformed`
//! label. Anything else (ARP, IPv6, other L4 protocols) falls through with what was found.

use super::Hook;
use crate::bpf::{AluOp, Asm, Cond, Label, Reg, Size};

/// Registers the parser leaves its results in.
pub const CTX: Reg = Reg::R6;
pub const L3_PROTO: Reg = Reg::R7;
pub const L4_PROTO: Reg = Reg::R8;
pub const L4_KEY: Reg = Reg::R9;

/// Stack slots (offsets from `R10`) the parser fills. Everything below [`slot::FRAME`]
/// is free for later emitters.
pub mod slot {
    pub const SADDR: i16 = -4;
    pub const DADDR: i16 = -8;
    pub const SPORT: i16 = -10;
    pub const L4_OFF: i16 = -12;
    pub const ICMP_TYPE: i16 = -13;
    pub const ICMP_CODE: i16 = -14;
    /// Bytes of stack the parser owns.
    pub const FRAME: i16 = -16;
}

pub const ETH_HLEN: i32 = 14;
pub const ETH_P_IP: i32 = 0x0800;
pub const IPPROTO_ICMP: i32 = 1;
pub const IPPROTO_TCP: i32 = 6;
pub const IPPROTO_UDP: i32 = 17;
pub const IPPROTO_SCTP: i32 = 132;

/// Emits the parser. Expects the context in `R1`; clobbers `R0`–`R5`.
pub fn emit_parse(a: &mut Asm, hook: Hook, malformed: Label) {
    use Reg::*;
    let (data, end) = (R2, R3);
    let done = a.label();
    let ports = a.label();
    let icmp = a.label();

    // Everything the parser promises starts at 0, so every slot is initialized.
    a.mov64(CTX, R1)
        .st(Size::DW, R10, -8, 0)
        .st(Size::DW, R10, -16, 0)
        .mov64(L3_PROTO, 0)
        .mov64(L4_PROTO, 0)
        .mov64(L4_KEY, 0)
        .ldx(Size::W, data, CTX, hook.data_off())
        .ldx(Size::W, end, CTX, hook.data_end_off());

    // Ethernet.
    a.load_packet(L3_PROTO, data, end, 12, Size::H, malformed)
        .be16(L3_PROTO)
        .jmp(Cond::Ne, L3_PROTO, ETH_P_IP, done);

    // IPv4: the fixed 20 bytes, then the header length from IHL.
    a.check_packet(R4, data, end, ETH_HLEN + 20, malformed)
        .ldx(Size::B, R4, data, 14)
        .and64(R4, 0x0f)
        .jmp(Cond::Lt, R4, 5, malformed)
        .lsh64(R4, 2)
        .ldx(Size::B, L4_PROTO, data, 23)
        .ldx(Size::W, R5, data, 26)
        .stx(Size::W, R10, slot::SADDR, R5)
        .ldx(Size::W, R5, data, 30)
        .stx(Size::W, R10, slot::DADDR, R5)
        // Non-first fragments have no L4 header.
        .ldx(Size::H, R5, data, 20)
        .be16(R5)
        .and64(R5, 0x1fff)
        .jmp(Cond::Ne, R5, 0, done)
        .add64(R4, ETH_HLEN)
        .stx(Size::H, R10, slot::L4_OFF, R4)
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
        .stx(Size::H, R10, slot::SPORT, R5)
        .ldx(Size::H, L4_KEY, data, 2)
        .be16(L4_KEY)
        .ja(done);

    // ICMP: type and code.
    a.bind(icmp)
        .check_packet(R4, data, end, 2, malformed)
        .ldx(Size::B, R4, data, 0)
        .stx(Size::B, R10, slot::ICMP_TYPE, R4)
        .ldx(Size::B, R5, data, 1)
        .stx(Size::B, R10, slot::ICMP_CODE, R5)
        .mov64(L4_KEY, R4)
        .lsh64(L4_KEY, 8)
        .alu64(AluOp::Or, L4_KEY, R5);

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
        emit_parse(&mut a, Hook::Tc, bad);
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
  10: if r7 > r3 goto +48
  11: r7 = *(u16 *)(r2 + 12)
  12: r7 = be16 r7
  13: if r7 != 2048 goto +43
  14: r4 = r2
  15: r4 += 34
  16: if r4 > r3 goto +42
  17: r4 = *(u8 *)(r2 + 14)
  18: r4 &= 15
  19: if r4 < 5 goto +39
  20: r4 <<= 2
  21: r8 = *(u8 *)(r2 + 23)
  22: r5 = *(u32 *)(r2 + 26)
  23: *(u32 *)(r10 - 4) = r5
  24: r5 = *(u32 *)(r2 + 30)
  25: *(u32 *)(r10 - 8) = r5
  26: r5 = *(u16 *)(r2 + 20)
  27: r5 = be16 r5
  28: r5 &= 8191
  29: if r5 != 0 goto +27
  30: r4 += 14
  31: *(u16 *)(r10 - 12) = r4
  32: r2 += r4
  33: if r8 == 6 goto +4
  34: if r8 == 17 goto +3
  35: if r8 == 132 goto +2
  36: if r8 == 1 goto +10
  37: goto +19
  38: r4 = r2
  39: r4 += 4
  40: if r4 > r3 goto +18
  41: r5 = *(u16 *)(r2 + 0)
  42: r5 = be16 r5
  43: *(u16 *)(r10 - 10) = r5
  44: r9 = *(u16 *)(r2 + 2)
  45: r9 = be16 r9
  46: goto +10
  47: r4 = r2
  48: r4 += 2
  49: if r4 > r3 goto +9
  50: r4 = *(u8 *)(r2 + 0)
  51: *(u8 *)(r10 - 13) = r4
  52: r5 = *(u8 *)(r2 + 1)
  53: *(u8 *)(r10 - 14) = r5
  54: r9 = r4
  55: r9 <<= 8
  56: r9 |= r5
  57: r0 = r9
  58: exit
  59: r0 = -1
  60: exit
";
        assert_eq!(text, want);
    }

    #[test]
    fn xdp_parser_reads_xdp_md() {
        let mut a = Asm::new();
        let bad = a.label();
        emit_parse(&mut a, Hook::Xdp, bad);
        a.exit().bind(bad).exit();
        let p = a.finish().unwrap();
        let text = disasm(&p);
        assert!(text.contains("   6: r2 = *(u32 *)(r6 + 0)\n   7: r3 = *(u32 *)(r6 + 4)\n"));
    }
}
