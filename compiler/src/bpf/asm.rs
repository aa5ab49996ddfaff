//! The assembler: what codegen calls to emit a program.
//!
//! It keeps instructions, labels, pending jump fixups and map relocations. Emit methods
//! return `&mut Self` so straight-line code chains, and they never fail: label misuse is
//! recorded and reported once by [`Asm::finish`], which also resolves all jumps through
//! [`super::fixup`]. The result is a [`Program`]: instructions plus the map relocations an
//! object writer turns into ELF relocations.

use super::BpfError;
use super::fixup::{self, Fixup, Label};
use super::helper::Helper;
use super::insn::{AluOp, Cond, Endian, Insn, Operand, Reg, Size, Width};

/// A reference to a map by its name in the object. The object writer resolves it to the
/// map's symbol (and fails if no map of that name is defined).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapRef(pub String);

impl MapRef {
    pub fn new(name: impl Into<String>) -> MapRef {
        MapRef(name.into())
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

/// The `ld_imm64` at instruction `insn` loads the file descriptor of `map`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapReloc {
    pub insn: usize,
    pub map: MapRef,
}

/// A finished program: resolved instructions and their map relocations.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Program {
    pub insns: Vec<Insn>,
    pub relocs: Vec<MapReloc>,
}

impl Program {
    /// The program's bytes as the kernel reads them (relocated slots hold fd 0).
    pub fn bytes(&self) -> Vec<u8> {
        super::insn::encode_all(&self.insns)
    }
}

/// Builds one program.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    bound: Vec<Option<usize>>,
    fixups: Vec<Fixup>,
    relocs: Vec<MapReloc>,
    /// The first label misuse, reported by `finish`.
    error: Option<BpfError>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Number of instruction slots emitted so far (the index of the next one).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// A fresh, unbound label.
    pub fn label(&mut self) -> Label {
        self.bound.push(None);
        Label(self.bound.len() as u32 - 1)
    }

    /// Binds `label` to the next instruction. Binding twice is an error.
    pub fn bind(&mut self, label: Label) -> &mut Self {
        let at = self.insns.len();
        match &mut self.bound[label.0 as usize] {
            slot @ None => *slot = Some(at),
            Some(_) => {
                self.error
                    .get_or_insert(BpfError::LabelBoundTwice { label: label.0 });
            }
        }
        self
    }

    /// Whether some branch emitted so far targets `label`: code that only a jump can reach
    /// is emitted only when one does (the verifier rejects unreachable instructions).
    pub fn is_targeted(&self, label: Label) -> bool {
        self.fixups.iter().any(|f| f.label == label)
    }

    /// The last instruction emitted, unless a label is bound after it: then another path
    /// joins here and what it left in registers is not known. For peepholes.
    pub fn last_on_this_path(&self) -> Option<&Insn> {
        let at = self.insns.len();
        if self.bound.contains(&Some(at)) {
            return None;
        }
        self.insns.last()
    }

    /// A fresh label bound here: the target of a backward jump.
    pub fn here(&mut self) -> Label {
        let l = self.label();
        self.bind(l);
        l
    }

    pub fn emit(&mut self, insn: Insn) -> &mut Self {
        self.insns.push(insn);
        self
    }

    fn emit_branch(&mut self, insn: Insn, target: Label) -> &mut Self {
        self.fixups.push(Fixup {
            at: self.insns.len(),
            label: target,
        });
        self.emit(insn)
    }

    // --- ALU -----------------------------------------------------------------------------

    pub fn mov64(&mut self, dst: Reg, src: impl Into<Operand>) -> &mut Self {
        self.emit(Insn::mov64(dst, src))
    }

    pub fn mov32(&mut self, dst: Reg, src: impl Into<Operand>) -> &mut Self {
        self.emit(Insn::mov32(dst, src))
    }

    pub fn alu64(&mut self, op: AluOp, dst: Reg, src: impl Into<Operand>) -> &mut Self {
        self.emit(Insn::alu64(op, dst, src))
    }

    pub fn alu32(&mut self, op: AluOp, dst: Reg, src: impl Into<Operand>) -> &mut Self {
        self.emit(Insn::alu32(op, dst, src))
    }

    pub fn add64(&mut self, dst: Reg, src: impl Into<Operand>) -> &mut Self {
        self.alu64(AluOp::Add, dst, src)
    }

    pub fn and64(&mut self, dst: Reg, src: impl Into<Operand>) -> &mut Self {
        self.alu64(AluOp::And, dst, src)
    }

    pub fn lsh64(&mut self, dst: Reg, src: impl Into<Operand>) -> &mut Self {
        self.alu64(AluOp::Lsh, dst, src)
    }

    pub fn rsh64(&mut self, dst: Reg, src: impl Into<Operand>) -> &mut Self {
        self.alu64(AluOp::Rsh, dst, src)
    }

    pub fn neg64(&mut self, dst: Reg) -> &mut Self {
        self.emit(Insn::neg(Width::W64, dst))
    }

    /// Network (big-endian) 16-bit value to host order, or back: the low 16 bits swapped,
    /// the rest cleared.
    pub fn be16(&mut self, dst: Reg) -> &mut Self {
        self.emit(Insn::endian(Endian::Be, 16, dst))
    }

    pub fn be32(&mut self, dst: Reg) -> &mut Self {
        self.emit(Insn::endian(Endian::Be, 32, dst))
    }

    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        for i in Insn::ld_imm64(dst, imm) {
            self.emit(i);
        }
        self
    }

    /// `dst = map` as an `ld_imm64` with a relocation against the map.
    pub fn ld_map(&mut self, dst: Reg, map: MapRef) -> &mut Self {
        self.relocs.push(MapReloc {
            insn: self.insns.len(),
            map,
        });
        for i in Insn::ld_map_fd(dst, 0) {
            self.emit(i);
        }
        self
    }

    /// `R0 = bpf_map_lookup_elem(map, R10 + key)`, with the key in a stack slot. Clobbers
    /// R1–R5, as every helper call does.
    pub fn map_lookup_stack(&mut self, map: MapRef, key: i16) -> &mut Self {
        self.ld_map(Reg::R1, map)
            .mov64(Reg::R2, Reg::R10)
            .add64(Reg::R2, i32::from(key))
            .call(Helper::MapLookupElem)
    }

    /// `R0 = bpf_map_update_elem(map, R10 + key, R10 + value, flags)`, with the key and the
    /// value in stack slots. Clobbers R1–R5.
    pub fn map_update_stack(&mut self, map: MapRef, key: i16, value: i16, flags: i32) -> &mut Self {
        self.ld_map(Reg::R1, map)
            .mov64(Reg::R2, Reg::R10)
            .add64(Reg::R2, i32::from(key))
            .mov64(Reg::R3, Reg::R10)
            .add64(Reg::R3, i32::from(value))
            .mov64(Reg::R4, flags)
            .call(Helper::MapUpdateElem)
    }

    // --- memory --------------------------------------------------------------------------

    pub fn ldx(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.emit(Insn::ldx(size, dst, src, off))
    }

    pub fn stx(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.emit(Insn::stx(size, dst, off, src))
    }

    pub fn st(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.emit(Insn::st(size, dst, off, imm))
    }

    pub fn atomic_add(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.emit(Insn::atomic_add(size, dst, off, src))
    }

    /// Bounds-checked packet load, the pattern the verifier accepts:
    ///
    /// ```text
    /// dst = data; dst += off + size; if dst > data_end goto on_short
    /// dst = *(size *)(data + off)
    /// ```
    ///
    /// `data` may be any packet pointer (the start of the frame or of a header). `dst`
    /// doubles as the scratch register, so it must differ from `data` and `data_end`.
    pub fn load_packet(
        &mut self,
        dst: Reg,
        data: Reg,
        data_end: Reg,
        off: i16,
        size: Size,
        on_short: Label,
    ) -> &mut Self {
        debug_assert!(dst != data && dst != data_end, "load_packet scratch clash");
        self.check_packet(dst, data, data_end, off as i32 + size.bytes(), on_short)
            .ldx(size, dst, data, off)
    }

    /// `scratch = data + len; if scratch > data_end goto on_short`: proves `len` bytes
    /// from `data` are in the packet, for several loads at once.
    pub fn check_packet(
        &mut self,
        scratch: Reg,
        data: Reg,
        data_end: Reg,
        len: i32,
        on_short: Label,
    ) -> &mut Self {
        self.mov64(scratch, data)
            .add64(scratch, len)
            .jmp(Cond::Gt, scratch, data_end, on_short)
    }

    // --- control flow --------------------------------------------------------------------

    /// `if dst cond src goto target` (64-bit compare).
    pub fn jmp(
        &mut self,
        cond: Cond,
        dst: Reg,
        src: impl Into<Operand>,
        target: Label,
    ) -> &mut Self {
        self.emit_branch(Insn::jmp(Width::W64, cond, dst, src, 0), target)
    }

    /// `if wdst cond src goto target` (32-bit compare).
    pub fn jmp32(
        &mut self,
        cond: Cond,
        dst: Reg,
        src: impl Into<Operand>,
        target: Label,
    ) -> &mut Self {
        self.emit_branch(Insn::jmp(Width::W32, cond, dst, src, 0), target)
    }

    /// `goto target`.
    pub fn ja(&mut self, target: Label) -> &mut Self {
        self.emit_branch(Insn::ja(0), target)
    }

    pub fn call(&mut self, helper: Helper) -> &mut Self {
        self.emit(Insn::call(helper.id()))
    }

    pub fn exit(&mut self) -> &mut Self {
        self.emit(Insn::exit())
    }

    /// `r0 = code; exit`.
    pub fn ret(&mut self, code: i32) -> &mut Self {
        self.mov64(Reg::R0, code).exit()
    }

    /// Resolves every jump and returns the program.
    pub fn finish(mut self) -> Result<Program, BpfError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        fixup::resolve(&mut self.insns, &self.fixups, &self.bound)?;
        Ok(Program {
            insns: self.insns,
            relocs: self.relocs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reg::*;

    #[test]
    fn forward_and_backward_jumps_resolve() {
        let mut a = Asm::new();
        let top = a.here();
        let out = a.label();
        a.jmp(Cond::Eq, R1, 0, out) // 0 -> 3: +2
            .add64(R1, -1) // 1
            .ja(top) // 2 -> 0: -3
            .bind(out)
            .ret(0); // 3, 4
        let p = a.finish().unwrap();
        assert_eq!(p.insns[0].off, 2);
        assert_eq!(p.insns[2].off, -3);
        assert_eq!(p.insns.len(), 5);
    }

    #[test]
    fn ld_imm64_counts_two_slots_in_offsets() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l).ld_imm64(R1, 1).bind(l).exit();
        let p = a.finish().unwrap();
        assert_eq!(p.insns[0].off, 2);
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l).exit();
        assert!(matches!(
            a.finish(),
            Err(BpfError::UnboundLabel { label: 0, at: 0 })
        ));
    }

    #[test]
    fn double_bind_is_an_error() {
        let mut a = Asm::new();
        let l = a.here();
        a.exit().bind(l);
        assert!(matches!(
            a.finish(),
            Err(BpfError::LabelBoundTwice { label: 0 })
        ));
    }

    #[test]
    fn jump_offset_overflow_is_an_error() {
        // Exactly i16::MAX forward is fine; one more is not.
        for (pad, ok) in [(i16::MAX as usize, true), (i16::MAX as usize + 1, false)] {
            let mut a = Asm::new();
            let l = a.label();
            a.ja(l);
            for _ in 0..pad {
                a.mov64(R0, 0);
            }
            a.bind(l).exit();
            match a.finish() {
                Ok(p) => {
                    assert!(ok);
                    assert_eq!(p.insns[0].off, i16::MAX);
                }
                Err(BpfError::JumpOutOfRange { at, offset, .. }) => {
                    assert!(!ok);
                    assert_eq!(at, 0);
                    assert_eq!(offset, i16::MAX as i64 + 1);
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        // Backward too.
        let mut a = Asm::new();
        let top = a.here();
        for _ in 0..(i16::MAX as usize + 1) {
            a.mov64(R0, 0);
        }
        a.ja(top);
        assert!(matches!(
            a.finish(),
            Err(BpfError::JumpOutOfRange { offset, .. }) if offset == -(i16::MAX as i64) - 2
        ));
    }

    #[test]
    fn ld_map_records_a_relocation() {
        let mut a = Asm::new();
        a.mov64(R2, R10)
            .ld_map(R1, MapRef::new("ipcache"))
            .call(Helper::MapLookupElem)
            .exit();
        let p = a.finish().unwrap();
        assert_eq!(
            p.relocs,
            vec![MapReloc {
                insn: 1,
                map: MapRef::new("ipcache")
            }]
        );
        assert!(p.insns[1].is_ld_imm64());
        assert_eq!(p.insns[1].src, crate::bpf::insn::PSEUDO_MAP_FD);
        assert_eq!(p.insns[3], Insn::call(1));
    }

    #[test]
    fn load_packet_emits_the_bounds_check() {
        let mut a = Asm::new();
        let short = a.label();
        a.load_packet(R4, R2, R3, 12, Size::H, short)
            .exit()
            .bind(short)
            .exit();
        let p = a.finish().unwrap();
        assert_eq!(
            p.insns[..4],
            [
                Insn::mov64(R4, R2),
                Insn::alu64(AluOp::Add, R4, 14),
                Insn::jmp(Width::W64, Cond::Gt, R4, R3, 2),
                Insn::ldx(Size::H, R4, R2, 12),
            ]
        );
    }
}
