//! A disassembler that prints programs the way bpftool and llvm-objdump do.
//!
//! `sluice compile --emit asm` and the golden tests use it, so its text is a contract: one
//! instruction per line, `index: text`, with map loads named by relocation
//! (`r1 = map[sluice_ipcache] ll`) and helpers by name (`call bpf_map_lookup_elem#1`).

use std::collections::HashMap;
use std::fmt::Write;

use super::asm::{MapReloc, Program};
use super::helper::Helper;
use super::insn::{AluOp, Cond, Insn, OP_END, PSEUDO_MAP_FD, Size, class, mode};

/// Disassembles a finished program.
pub fn disasm(prog: &Program) -> String {
    disasm_insns(&prog.insns, &prog.relocs)
}

/// Disassembles raw instructions; `relocs` names the maps of `ld_imm64` slots.
pub fn disasm_insns(insns: &[Insn], relocs: &[MapReloc]) -> String {
    let maps: HashMap<usize, &str> = relocs.iter().map(|r| (r.insn, r.map.name())).collect();
    let mut out = String::new();
    let mut i = 0;
    while i < insns.len() {
        let insn = insns[i];
        let text = if insn.is_ld_imm64() {
            let hi = insns.get(i + 1).map_or(0, |n| n.imm as u32 as u64);
            let imm = (hi << 32) | insn.imm as u32 as u64;
            let text = match (maps.get(&i), insn.src) {
                (Some(name), _) => format!("r{} = map[{name}] ll", insn.dst),
                (None, PSEUDO_MAP_FD) => format!("r{} = map[fd:{}] ll", insn.dst, insn.imm),
                (None, _) => format!("r{} = {imm:#x} ll", insn.dst),
            };
            let _ = writeln!(out, "{i:>4}: {text}");
            i += 2;
            continue;
        } else {
            one(insn)
        };
        let _ = writeln!(out, "{i:>4}: {text}");
        i += 1;
    }
    out
}

fn size_name(size: Size) -> &'static str {
    match size {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

fn mem(size: Size, reg: u8, off: i16) -> String {
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "*({} *)(r{reg} {sign} {})",
        size_name(size),
        (off as i32).unsigned_abs()
    )
}

fn alu_sym(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div => "/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Neg => "= -",
        AluOp::Mod => "%=",
        AluOp::Xor => "^=",
        AluOp::Mov => "=",
        AluOp::Arsh => "s>>=",
    }
}

fn cond_sym(c: Cond) -> &'static str {
    match c {
        Cond::Eq => "==",
        Cond::Gt => ">",
        Cond::Ge => ">=",
        Cond::Set => "&",
        Cond::Ne => "!=",
        Cond::Sgt => "s>",
        Cond::Sge => "s>=",
        Cond::Lt => "<",
        Cond::Le => "<=",
        Cond::Slt => "s<",
        Cond::Sle => "s<=",
    }
}

fn rel(off: i32) -> String {
    if off < 0 {
        format!("{off}")
    } else {
        format!("+{off}")
    }
}

/// One instruction (not `ld_imm64`) as text.
fn one(insn: Insn) -> String {
    let invalid = || format!("invalid {:02x?}", insn.encode());
    let x = insn.code & 0x08 != 0;
    match insn.class() {
        class::ALU | class::ALU64 => {
            let r = if insn.class() == class::ALU64 {
                'r'
            } else {
                'w'
            };
            let d = insn.dst;
            if insn.code & 0xf0 == OP_END {
                let kind = if x { "be" } else { "le" };
                return format!("r{d} = {kind}{} r{d}", insn.imm);
            }
            let Some(op) = AluOp::from_bits(insn.code) else {
                return invalid();
            };
            if op == AluOp::Neg {
                return format!("{r}{d} = -{r}{d}");
            }
            let src = if x {
                format!("{r}{}", insn.src)
            } else {
                format!("{}", insn.imm)
            };
            format!("{r}{d} {} {src}", alu_sym(op))
        }
        class::JMP | class::JMP32 => {
            let r = if insn.class() == class::JMP { 'r' } else { 'w' };
            match insn.code & 0xf0 {
                0x00 if insn.class() == class::JMP => format!("goto {}", rel(insn.off as i32)),
                0x00 => format!("gotol {}", rel(insn.imm)),
                0x80 => match Helper::from_id(insn.imm) {
                    Some(h) => format!("call bpf_{}#{}", h.name(), insn.imm),
                    None => format!("call #{}", insn.imm),
                },
                0x90 => "exit".to_string(),
                _ => {
                    let Some(c) = Cond::from_bits(insn.code) else {
                        return invalid();
                    };
                    let src = if x {
                        format!("{r}{}", insn.src)
                    } else {
                        format!("{}", insn.imm)
                    };
                    format!(
                        "if {r}{} {} {src} goto {}",
                        insn.dst,
                        cond_sym(c),
                        rel(insn.off as i32)
                    )
                }
            }
        }
        class::LDX if insn.code & 0xe0 == mode::MEM => {
            let size = Size::from_bits(insn.code);
            format!("r{} = {}", insn.dst, mem(size, insn.src, insn.off))
        }
        class::STX if insn.code & 0xe0 == mode::MEM => {
            let size = Size::from_bits(insn.code);
            format!("{} = r{}", mem(size, insn.dst, insn.off), insn.src)
        }
        class::STX if insn.code & 0xe0 == mode::ATOMIC && insn.imm == 0 => {
            let size = Size::from_bits(insn.code);
            format!("lock {} += r{}", mem(size, insn.dst, insn.off), insn.src)
        }
        class::ST if insn.code & 0xe0 == mode::MEM => {
            let size = Size::from_bits(insn.code);
            format!("{} = {}", mem(size, insn.dst, insn.off), insn.imm)
        }
        _ => invalid(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::insn::{Endian, Reg::*, Width};
    use crate::bpf::{Asm, MapRef};

    fn d(i: Insn) -> String {
        one(i)
    }

    #[test]
    fn each_class_prints() {
        assert_eq!(d(Insn::ldx(Size::W, R0, R1, 76)), "r0 = *(u32 *)(r1 + 76)");
        assert_eq!(d(Insn::ldx(Size::B, R3, R2, 23)), "r3 = *(u8 *)(r2 + 23)");
        assert_eq!(
            d(Insn::stx(Size::DW, R10, -8, R1)),
            "*(u64 *)(r10 - 8) = r1"
        );
        assert_eq!(d(Insn::st(Size::H, R10, -2, 7)), "*(u16 *)(r10 - 2) = 7");
        assert_eq!(
            d(Insn::atomic_add(Size::DW, R1, 0, R2)),
            "lock *(u64 *)(r1 + 0) += r2"
        );
        assert_eq!(d(Insn::mov64(R1, R6)), "r1 = r6");
        assert_eq!(d(Insn::mov32(R1, -1)), "w1 = -1");
        assert_eq!(d(Insn::alu64(AluOp::Arsh, R1, 3)), "r1 s>>= 3");
        assert_eq!(d(Insn::alu32(AluOp::Lsh, R1, R2)), "w1 <<= w2");
        assert_eq!(d(Insn::neg(Width::W64, R4)), "r4 = -r4");
        assert_eq!(d(Insn::endian(Endian::Be, 16, R1)), "r1 = be16 r1");
        assert_eq!(d(Insn::endian(Endian::Be, 32, R1)), "r1 = be32 r1");
        assert_eq!(
            d(Insn::jmp(Width::W64, Cond::Gt, R2, R3, 5)),
            "if r2 > r3 goto +5"
        );
        assert_eq!(
            d(Insn::jmp(Width::W32, Cond::Slt, R2, -1, -3)),
            "if w2 s< -1 goto -3"
        );
        assert_eq!(
            d(Insn::jmp(Width::W64, Cond::Set, R1, 4, 0)),
            "if r1 & 4 goto +0"
        );
        assert_eq!(d(Insn::ja(-1)), "goto -1");
        assert_eq!(d(Insn::call(1)), "call bpf_map_lookup_elem#1");
        assert_eq!(d(Insn::call(4)), "call #4");
        assert_eq!(d(Insn::exit()), "exit");
        assert!(d(Insn::decode([0xff; 8])).starts_with("invalid"));
    }

    #[test]
    fn golden_map_lookup_program() {
        let mut a = Asm::new();
        let miss = a.label();
        a.st(Size::W, R10, -4, 7)
            .mov64(R2, R10)
            .add64(R2, -4)
            .ld_map(R1, MapRef::new("sluice_ipcache"))
            .call(Helper::MapLookupElem)
            .jmp(Cond::Eq, R0, 0, miss)
            .ldx(Size::W, R0, R0, 0)
            .exit()
            .bind(miss)
            .ret(-1);
        let text = disasm(&a.finish().unwrap());
        assert_eq!(
            text,
            "   0: *(u32 *)(r10 - 4) = 7
   1: r2 = r10
   2: r2 += -4
   3: r1 = map[sluice_ipcache] ll
   5: call bpf_map_lookup_elem#1
   6: if r0 == 0 goto +2
   7: r0 = *(u32 *)(r0 + 0)
   8: exit
   9: r0 = -1
  10: exit
"
        );
    }

    #[test]
    fn golden_packet_parse_program() {
        let mut a = Asm::new();
        let pass = a.label();
        a.ldx(Size::W, R2, R1, 76)
            .ldx(Size::W, R3, R1, 80)
            .load_packet(R4, R2, R3, 12, Size::H, pass)
            .be16(R4)
            .if_then(Cond::Eq, R4, 0x0800, |a| {
                a.ret(2);
            })
            .bind(pass)
            .ret(0)
            .ld_imm64(R5, 0xdead_beef_0000_0001);
        let text = disasm(&a.finish().unwrap());
        assert_eq!(
            text,
            "   0: r2 = *(u32 *)(r1 + 76)
   1: r3 = *(u32 *)(r1 + 80)
   2: r4 = r2
   3: r4 += 14
   4: if r4 > r3 goto +5
   5: r4 = *(u16 *)(r2 + 12)
   6: r4 = be16 r4
   7: if r4 != 2048 goto +2
   8: r0 = 2
   9: exit
  10: r0 = 0
  11: exit
  12: r5 = 0xdeadbeef00000001 ll
"
        );
    }

    #[test]
    fn unrelocated_map_fd_prints_the_fd() {
        let insns = Insn::ld_map_fd(R1, 5);
        assert_eq!(disasm_insns(&insns, &[]), "   0: r1 = map[fd:5] ll\n");
    }
}
