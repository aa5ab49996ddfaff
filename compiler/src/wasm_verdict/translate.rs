//! The second stage: `verdict`'s operators onto the assembler.
use super::VerdictError;
use super::validate::ModuleInfo;
use crate::bpf::{Asm, Label};

/// Where translated code leaves to: one label per outcome, one per trap kind (indexed by
/// `TrapKind as usize`).
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // until the translator body lands
pub(crate) struct Exits {
    pub pass: Label,
    pub allow: Label,
    pub deny: Label,
    pub trap: [Label; 3],
}

pub(crate) fn emit(
    _m: &ModuleInfo,
    _a: &mut Asm,
    _ctx_slot: i16,
    _scratch: std::ops::Range<i16>,
    _ip_offset: u32,
    _exits: &Exits,
) -> Result<(), VerdictError> {
    todo!("translation")
}
