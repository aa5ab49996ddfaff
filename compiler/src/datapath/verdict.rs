//! The tail every path of a policy program ends in: record the verdict (with rule
//! recording), insert the flow into conntrack (when allowed by policy), and return
//! `TC_ACT_OK` or `TC_ACT_SHOT` from the verdict code in `R7`.
//!
//! Without rule recording there is no trace map and no trace code at all.

use super::ct;
use super::decide::CODE;
use super::keys::{self, code};
use super::{MapContents, MapScope};
use crate::bpf::{Asm, Cond, Helper, MapDef, MapRef, MapType, Reg, Size};

pub const TC_ACT_OK: i32 = 0;
pub const TC_ACT_SHOT: i32 = 2;

/// The stack slot of the trace map's key (u32 0).
pub const TRACE_KEY: i16 = -88;

/// The trace map: one per-CPU slot of `rule u32 | verdict u32` (see [`keys::decode_trace`]).
pub fn trace_map() -> MapContents {
    let def = MapDef::new(keys::TRACE, MapType::PercpuArray, 4, 8, 1);
    MapContents {
        name: def.name.clone(),
        def,
        scope: MapScope::Program,
        entries: Vec::new(),
    }
}

/// Emits the tail at the current position.
pub fn emit_tail(a: &mut Asm, trace: bool, conntrack: bool) {
    use Reg::*;
    if trace {
        let skip = a.label();
        a.st(Size::W, R10, TRACE_KEY, 0)
            .ld_map(R1, MapRef::new(keys::TRACE))
            .mov64(R2, R10)
            .add64(R2, i32::from(TRACE_KEY))
            .call(Helper::MapLookupElem)
            .jmp(Cond::Eq, R0, 0, skip)
            .mov64(R1, CODE)
            .rsh64(R1, code::RULE_SHIFT as i32)
            .stx(Size::W, R0, 0, R1)
            .mov64(R1, CODE)
            .and64(R1, 0xff)
            .alu64(crate::bpf::AluOp::Or, R1, keys::TRACE_WRITTEN as i32)
            .stx(Size::W, R0, 4, R1)
            .bind(skip);
    }
    if conntrack {
        // Insert only what policy allowed (stage 0); conntrack hits are in already.
        let skip = a.label();
        a.mov64(R1, CODE)
            .and64(R1, (code::STAGE_MASK | code::ALLOW) as i32)
            .jmp(Cond::Ne, R1, code::ALLOW as i32, skip);
        ct::emit_insert(a);
        a.bind(skip);
    }
    // allow → 0 (TC_ACT_OK), deny → 2 (TC_ACT_SHOT), without a branch.
    a.mov64(R0, CODE)
        .and64(R0, code::ALLOW as i32)
        .alu64(crate::bpf::AluOp::Xor, R0, 1)
        .lsh64(R0, 1)
        .exit();
}
