//! sluice's own eBPF toolchain: instruction encoding, an assembler with labels and map
//! relocations, a disassembler, and an ELF writer that aya loads.
//!
//! There is no C and no clang anywhere in sluice; every program is emitted through
//! [`Asm`]. The layout follows bpfilter's `cgen/`: one file per concern, jump fixups in
//! [`fixup`], and structured jumps in `jmp` so that emit code reads top to bottom.

mod asm;
pub mod disasm;
pub mod elf;
pub mod fixup;
mod helper;
pub mod insn;
mod jmp;

pub use asm::{Asm, MapRef, MapReloc, Program};
pub use disasm::disasm;
pub use elf::{MapDef, MapType, ObjectBuilder, Pinning, ProgKind};
pub use fixup::Label;
pub use helper::Helper;
pub use insn::{AluOp, Cond, Endian, Insn, Operand, Reg, Size, Width};

/// Errors from assembling a program or writing an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpfError {
    #[error("jump at instruction {at} targets label {label}, which was never bound")]
    UnboundLabel { label: u32, at: usize },
    #[error("label {label} was bound twice")]
    LabelBoundTwice { label: u32 },
    #[error(
        "jump at instruction {at} to {target} needs offset {offset}, beyond the 16-bit range; \
         split the program"
    )]
    JumpOutOfRange {
        at: usize,
        target: usize,
        offset: i64,
    },
    #[error("program `{program}` loads map `{map}`, which the object does not define")]
    UnknownMap { map: String, program: String },
    #[error("`{0}` is not a valid program or map name (1-15 chars of [A-Za-z0-9_])")]
    InvalidName(String),
    #[error("the name `{0}` is used twice in one object")]
    DuplicateName(String),
    #[error("writing ELF: {0}")]
    Elf(String),
}
