//! eBPF instruction encoding.
//!
//! One [`Insn`] is one 8-byte slot of the wire format described in the kernel's
//! `Documentation/bpf/standardization/instruction-set.rst`: opcode, a register byte (dst in
//! the low nibble, src in the high nibble), a signed 16-bit offset and a signed 32-bit
//! immediate, all little endian. `ld_imm64` takes two slots. The constructors take typed
//! registers and sizes so that codegen cannot build an opcode the kernel does not know.

use std::fmt;

/// Instruction classes (the low three bits of the opcode).
pub mod class {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
}

/// Source bit of ALU and JMP opcodes: immediate (K) or register (X).
pub const SRC_K: u8 = 0x00;
pub const SRC_X: u8 = 0x08;

/// Load/store modes (the top three bits of LD/LDX/ST/STX opcodes).
pub mod mode {
    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;
    pub const ATOMIC: u8 = 0xc0;
}

/// `src` of an `ld_imm64` whose immediate is a map file descriptor (`BPF_PSEUDO_MAP_FD`).
pub const PSEUDO_MAP_FD: u8 = 1;
/// `imm` of an atomic instruction that adds (`BPF_ADD`, no fetch).
pub const ATOMIC_ADD: i32 = 0x00;

/// A register. R10 is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

impl Reg {
    /// The register with this number, if there is one.
    pub fn from_u8(n: u8) -> Option<Reg> {
        use Reg::*;
        [R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10]
            .get(n as usize)
            .copied()
    }
}

/// Width of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    B,
    H,
    W,
    DW,
}

impl Size {
    /// The size bits of a load/store opcode.
    pub fn bits(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::DW => 0x18,
        }
    }

    pub fn from_bits(bits: u8) -> Size {
        match bits & 0x18 {
            0x00 => Size::W,
            0x08 => Size::H,
            0x10 => Size::B,
            _ => Size::DW,
        }
    }

    pub fn bytes(self) -> i32 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }
}

/// ALU operations (the top four bits of an ALU/ALU64 opcode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Or,
    And,
    Lsh,
    Rsh,
    Neg,
    Mod,
    Xor,
    Mov,
    Arsh,
}

impl AluOp {
    pub fn bits(self) -> u8 {
        match self {
            AluOp::Add => 0x00,
            AluOp::Sub => 0x10,
            AluOp::Mul => 0x20,
            AluOp::Div => 0x30,
            AluOp::Or => 0x40,
            AluOp::And => 0x50,
            AluOp::Lsh => 0x60,
            AluOp::Rsh => 0x70,
            AluOp::Neg => 0x80,
            AluOp::Mod => 0x90,
            AluOp::Xor => 0xa0,
            AluOp::Mov => 0xb0,
            AluOp::Arsh => 0xc0,
        }
    }

    pub fn from_bits(bits: u8) -> Option<AluOp> {
        use AluOp::*;
        [
            Add, Sub, Mul, Div, Or, And, Lsh, Rsh, Neg, Mod, Xor, Mov, Arsh,
        ]
        .into_iter()
        .find(|op| op.bits() == bits & 0xf0)
    }
}

/// The `BPF_END` operation (byte swap), top four bits 0xd0.
pub const OP_END: u8 = 0xd0;

/// Conditions of conditional jumps (the top four bits of a JMP/JMP32 opcode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    Eq,
    Gt,
    Ge,
    /// `dst & src != 0`.
    Set,
    Ne,
    Sgt,
    Sge,
    Lt,
    Le,
    Slt,
    Sle,
}

impl Cond {
    pub fn bits(self) -> u8 {
        match self {
            Cond::Eq => 0x10,
            Cond::Gt => 0x20,
            Cond::Ge => 0x30,
            Cond::Set => 0x40,
            Cond::Ne => 0x50,
            Cond::Sgt => 0x60,
            Cond::Sge => 0x70,
            Cond::Lt => 0xa0,
            Cond::Le => 0xb0,
            Cond::Slt => 0xc0,
            Cond::Sle => 0xd0,
        }
    }

    pub fn from_bits(bits: u8) -> Option<Cond> {
        use Cond::*;
        [Eq, Gt, Ge, Set, Ne, Sgt, Sge, Lt, Le, Slt, Sle]
            .into_iter()
            .find(|c| c.bits() == bits & 0xf0)
    }

    /// The condition that holds exactly when `self` does not. `Set` has none in the ISA.
    pub fn negate(self) -> Option<Cond> {
        Some(match self {
            Cond::Eq => Cond::Ne,
            Cond::Ne => Cond::Eq,
            Cond::Gt => Cond::Le,
            Cond::Le => Cond::Gt,
            Cond::Ge => Cond::Lt,
            Cond::Lt => Cond::Ge,
            Cond::Sgt => Cond::Sle,
            Cond::Sle => Cond::Sgt,
            Cond::Sge => Cond::Slt,
            Cond::Slt => Cond::Sge,
            Cond::Set => return None,
        })
    }
}

/// Operation width: 32-bit (`ALU`, `JMP32`, `wN` registers) or 64-bit (`ALU64`, `JMP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    W32,
    W64,
}

/// The second operand of an ALU or jump instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    Reg(Reg),
    Imm(i32),
}

impl From<Reg> for Operand {
    fn from(r: Reg) -> Self {
        Operand::Reg(r)
    }
}

impl From<i32> for Operand {
    fn from(imm: i32) -> Self {
        Operand::Imm(imm)
    }
}

impl Operand {
    fn split(self) -> (u8, Reg, i32) {
        match self {
            Operand::Reg(r) => (SRC_X, r, 0),
            Operand::Imm(i) => (SRC_K, Reg::R0, i),
        }
    }
}

/// Byte order targets of `BPF_END`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Host to big endian (`be16`/`be32`/`be64`): a swap on little-endian hosts.
    Be,
    /// Host to little endian: a truncation on little-endian hosts.
    Le,
}

/// One 8-byte instruction slot. Fields are raw so that the second half of `ld_imm64` and
/// pseudo sources round-trip; build them with the typed constructors.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u8,
    /// Destination register number (low nibble of the register byte).
    pub dst: u8,
    /// Source register number or pseudo source (high nibble).
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn({:#04x} dst={} src={} off={} imm={})",
            self.code, self.dst, self.src, self.off, self.imm
        )
    }
}

impl Insn {
    pub const SIZE: usize = 8;

    fn raw(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst: dst as u8,
            src: src as u8,
            off,
            imm,
        }
    }

    /// `dst op= src` with the given width (`Mov`, `Add`, ...). Use [`Insn::neg`] for `Neg`.
    pub fn alu(width: Width, op: AluOp, dst: Reg, src: impl Into<Operand>) -> Insn {
        let class = match width {
            Width::W32 => class::ALU,
            Width::W64 => class::ALU64,
        };
        let (s, sreg, imm) = src.into().split();
        Insn::raw(op.bits() | s | class, dst, sreg, 0, imm)
    }

    pub fn alu64(op: AluOp, dst: Reg, src: impl Into<Operand>) -> Insn {
        Insn::alu(Width::W64, op, dst, src)
    }

    pub fn alu32(op: AluOp, dst: Reg, src: impl Into<Operand>) -> Insn {
        Insn::alu(Width::W32, op, dst, src)
    }

    pub fn mov64(dst: Reg, src: impl Into<Operand>) -> Insn {
        Insn::alu64(AluOp::Mov, dst, src)
    }

    pub fn mov32(dst: Reg, src: impl Into<Operand>) -> Insn {
        Insn::alu32(AluOp::Mov, dst, src)
    }

    /// `dst = -dst`.
    pub fn neg(width: Width, dst: Reg) -> Insn {
        Insn::alu(width, AluOp::Neg, dst, 0)
    }

    /// `dst = be16/be32/be64 dst` (or `le..`). `bits` is 16, 32 or 64.
    pub fn endian(to: Endian, bits: u8, dst: Reg) -> Insn {
        debug_assert!(matches!(bits, 16 | 32 | 64), "endian width {bits}");
        let s = match to {
            Endian::Le => SRC_K,
            Endian::Be => SRC_X,
        };
        Insn::raw(OP_END | s | class::ALU, dst, Reg::R0, 0, bits as i32)
    }

    /// `if dst cond src goto +off`.
    pub fn jmp(width: Width, cond: Cond, dst: Reg, src: impl Into<Operand>, off: i16) -> Insn {
        let class = match width {
            Width::W32 => class::JMP32,
            Width::W64 => class::JMP,
        };
        let (s, sreg, imm) = src.into().split();
        Insn::raw(cond.bits() | s | class, dst, sreg, off, imm)
    }

    /// `goto +off`.
    pub fn ja(off: i16) -> Insn {
        Insn::raw(class::JMP, Reg::R0, Reg::R0, off, 0)
    }

    /// Call helper number `id`.
    pub fn call(id: i32) -> Insn {
        Insn::raw(0x80 | class::JMP, Reg::R0, Reg::R0, 0, id)
    }

    pub fn exit() -> Insn {
        Insn::raw(0x90 | class::JMP, Reg::R0, Reg::R0, 0, 0)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn ldx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::raw(mode::MEM | size.bits() | class::LDX, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::raw(mode::MEM | size.bits() | class::STX, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn st(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
        Insn::raw(mode::MEM | size.bits() | class::ST, dst, Reg::R0, off, imm)
    }

    /// `lock *(size *)(dst + off) += src`. Only `W` and `DW` exist.
    pub fn atomic_add(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
        debug_assert!(matches!(size, Size::W | Size::DW), "atomic size {size:?}");
        Insn::raw(
            mode::ATOMIC | size.bits() | class::STX,
            dst,
            src,
            off,
            ATOMIC_ADD,
        )
    }

    /// `dst = imm64`: two slots.
    pub fn ld_imm64(dst: Reg, imm: u64) -> [Insn; 2] {
        Insn::ld_imm64_src(dst, 0, imm)
    }

    /// `dst = map fd` (`BPF_PSEUDO_MAP_FD`): two slots. In an object file `fd` is 0 and a
    /// relocation names the map.
    pub fn ld_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
        Insn::ld_imm64_src(dst, PSEUDO_MAP_FD, fd as u32 as u64)
    }

    fn ld_imm64_src(dst: Reg, src: u8, imm: u64) -> [Insn; 2] {
        [
            Insn {
                code: mode::IMM | Size::DW.bits() | class::LD,
                dst: dst as u8,
                src,
                off: 0,
                imm: imm as u32 as i32,
            },
            Insn {
                code: 0,
                dst: 0,
                src: 0,
                off: 0,
                imm: (imm >> 32) as u32 as i32,
            },
        ]
    }

    pub fn class(&self) -> u8 {
        self.code & 0x07
    }

    /// True for the first slot of `ld_imm64`.
    pub fn is_ld_imm64(&self) -> bool {
        self.code == mode::IMM | Size::DW.bits() | class::LD
    }

    /// True for jumps whose `off` is a branch target (not call/exit).
    pub fn is_branch(&self) -> bool {
        let op = self.code & 0xf0;
        match self.class() {
            class::JMP => op != 0x80 && op != 0x90,
            class::JMP32 => op != 0x00 && op != 0x80 && op != 0x90,
            _ => false,
        }
    }

    /// The 8-byte little-endian wire form.
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    pub fn decode(b: [u8; 8]) -> Insn {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Concatenates the wire form of `insns`.
pub fn encode_all(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.encode()).collect()
}

/// Splits bytes into instructions; `None` if the length is not a multiple of 8.
pub fn decode_all(bytes: &[u8]) -> Option<Vec<Insn>> {
    if !bytes.len().is_multiple_of(Insn::SIZE) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(Insn::SIZE)
            .map(|c| Insn::decode(c.try_into().expect("chunk of 8")))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reg::*;

    fn hex(i: Insn) -> String {
        i.encode().iter().map(|b| format!("{b:02x}")).collect()
    }

    // Expected bytes follow the instruction-set document: opcode, regs (src<<4|dst),
    // off (LE i16), imm (LE i32). The same bytes were cross-checked with llvm-objdump-19.
    #[test]
    fn alu_encodings() {
        assert_eq!(hex(Insn::mov64(R0, 2)), "b700000002000000");
        assert_eq!(hex(Insn::mov64(R1, R6)), "bf61000000000000");
        assert_eq!(hex(Insn::mov32(R2, -1)), "b4020000ffffffff");
        assert_eq!(hex(Insn::alu64(AluOp::Add, R2, 14)), "070200000e000000");
        assert_eq!(hex(Insn::alu64(AluOp::Add, R2, R3)), "0f32000000000000");
        assert_eq!(hex(Insn::alu32(AluOp::Sub, R1, R2)), "1c21000000000000");
        assert_eq!(hex(Insn::alu64(AluOp::Mul, R1, 3)), "2701000003000000");
        assert_eq!(hex(Insn::alu64(AluOp::Div, R1, R2)), "3f21000000000000");
        assert_eq!(hex(Insn::alu64(AluOp::Or, R1, 1)), "4701000001000000");
        assert_eq!(hex(Insn::alu64(AluOp::And, R1, 0x0f)), "570100000f000000");
        assert_eq!(hex(Insn::alu64(AluOp::Lsh, R1, 2)), "6701000002000000");
        assert_eq!(hex(Insn::alu32(AluOp::Rsh, R1, 4)), "7401000004000000");
        assert_eq!(hex(Insn::neg(Width::W64, R1)), "8701000000000000");
        assert_eq!(hex(Insn::alu64(AluOp::Mod, R1, R2)), "9f21000000000000");
        assert_eq!(hex(Insn::alu64(AluOp::Xor, R1, R1)), "af11000000000000");
        assert_eq!(hex(Insn::alu64(AluOp::Arsh, R1, 3)), "c701000003000000");
    }

    #[test]
    fn endian_encodings() {
        assert_eq!(hex(Insn::endian(Endian::Be, 16, R1)), "dc01000010000000");
        assert_eq!(hex(Insn::endian(Endian::Be, 32, R2)), "dc02000020000000");
        assert_eq!(hex(Insn::endian(Endian::Le, 64, R3)), "d403000040000000");
    }

    #[test]
    fn jump_encodings() {
        assert_eq!(hex(Insn::ja(3)), "0500030000000000");
        assert_eq!(hex(Insn::ja(-1)), "0500ffff00000000");
        let w = Width::W64;
        assert_eq!(hex(Insn::jmp(w, Cond::Eq, R1, 6, 2)), "1501020006000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Gt, R2, R3, 5)), "2d32050000000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Ge, R2, 1, 1)), "3502010001000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Set, R2, 4, 1)), "4502010004000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Ne, R2, R1, 1)), "5d12010000000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Sgt, R2, 0, 1)), "6502010000000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Sge, R2, 0, 1)), "7502010000000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Lt, R2, R3, 1)), "ad32010000000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Le, R2, 9, 1)), "b502010009000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Slt, R2, 0, 1)), "c502010000000000");
        assert_eq!(hex(Insn::jmp(w, Cond::Sle, R2, R3, 1)), "dd32010000000000");
        assert_eq!(
            hex(Insn::jmp(Width::W32, Cond::Eq, R1, 5, 2)),
            "1601020005000000"
        );
        assert_eq!(
            hex(Insn::jmp(Width::W32, Cond::Ne, R1, R2, -2)),
            "5e21feff00000000"
        );
        assert_eq!(hex(Insn::call(1)), "8500000001000000");
        assert_eq!(hex(Insn::exit()), "9500000000000000");
    }

    #[test]
    fn memory_encodings() {
        assert_eq!(hex(Insn::ldx(Size::W, R2, R1, 76)), "61124c0000000000");
        assert_eq!(hex(Insn::ldx(Size::H, R3, R2, 12)), "69230c0000000000");
        assert_eq!(hex(Insn::ldx(Size::B, R3, R2, 23)), "7123170000000000");
        assert_eq!(hex(Insn::ldx(Size::DW, R0, R10, -8)), "79a0f8ff00000000");
        assert_eq!(hex(Insn::stx(Size::W, R10, -4, R1)), "631afcff00000000");
        assert_eq!(hex(Insn::stx(Size::H, R10, -2, R1)), "6b1afeff00000000");
        assert_eq!(hex(Insn::stx(Size::B, R10, -1, R1)), "731affff00000000");
        assert_eq!(hex(Insn::stx(Size::DW, R10, -16, R1)), "7b1af0ff00000000");
        assert_eq!(hex(Insn::st(Size::W, R10, -4, 7)), "620afcff07000000");
        assert_eq!(hex(Insn::st(Size::DW, R10, -8, 0)), "7a0af8ff00000000");
        assert_eq!(
            hex(Insn::atomic_add(Size::DW, R0, 0, R1)),
            "db10000000000000"
        );
        assert_eq!(
            hex(Insn::atomic_add(Size::W, R0, 4, R1)),
            "c310040000000000"
        );
    }

    #[test]
    fn ld_imm64_encodings() {
        let [a, b] = Insn::ld_imm64(R1, 0x1122_3344_5566_7788);
        assert_eq!(hex(a), "1801000088776655");
        assert_eq!(hex(b), "0000000044332211");
        let [a, b] = Insn::ld_map_fd(R1, 0);
        assert_eq!(hex(a), "1811000000000000");
        assert_eq!(hex(b), "0000000000000000");
        assert!(a.is_ld_imm64());
    }

    #[test]
    fn decode_round_trips() {
        let insns = [
            Insn::ldx(Size::DW, R0, R10, -8),
            Insn::jmp(Width::W32, Cond::Sle, R9, -7, -300),
            Insn::ld_imm64(R5, u64::MAX)[0],
            Insn::ld_imm64(R5, u64::MAX)[1],
        ];
        let bytes = encode_all(&insns);
        assert_eq!(bytes.len(), 32);
        assert_eq!(decode_all(&bytes).unwrap(), insns);
        assert!(decode_all(&bytes[..7]).is_none());
    }

    #[test]
    fn cond_negation_is_an_involution() {
        use Cond::*;
        for c in [Eq, Gt, Ge, Ne, Sgt, Sge, Lt, Le, Slt, Sle] {
            assert_eq!(c.negate().unwrap().negate(), Some(c));
            assert_ne!(c.negate(), Some(c));
        }
        assert_eq!(Set.negate(), None);
    }

    #[test]
    fn branch_classification() {
        assert!(Insn::ja(1).is_branch());
        assert!(Insn::jmp(Width::W32, Cond::Eq, R1, 1, 1).is_branch());
        assert!(!Insn::call(1).is_branch());
        assert!(!Insn::exit().is_branch());
        assert!(!Insn::mov64(R0, 1).is_branch());
    }
}
