//! The tail every path of a policy program ends in: record the verdict (with rule
//! recording), insert the flow into conntrack (when allowed by policy), and return
//! `TC_ACT_OK` or `TC_ACT_SHOT` from the verdict code in `R7`.
//!
//! Rule recording writes the verdict code into the packet's own metadata, `skb->cb[0]`, which
//! `BPF_PROG_TEST_RUN` hands back in its output context: no map, no helper call, and no way
//! for concurrent real traffic to overwrite what `sluice trace` reads (a per-CPU map slot
//! could be). A packet whose `cb[0]` arrives holding [`keys::TRACE_REQUEST`] is a trace
//! probe: it is decided exactly like any packet but does not insert into conntrack, so a
//! trace leaves the datapath's state as it was. Without rule recording there is no trace
//! code at all: one instruction at entry and three (four with conntrack) in the tail fewer,
//! which `program::tests` checks instruction by instruction.

use super::ct;
use super::frame::{CODE, Var};
use super::keys::{self, Stage, code};
use crate::bpf::{Asm, Cond, Reg, Size};

pub const TC_ACT_OK: i32 = 0;
pub const TC_ACT_SHOT: i32 = 2;

/// The stack slot the context is kept in with rule recording (R6 is reused after parsing).
pub const CTX_SLOT: i16 = Var::Ctx.off();
pub use super::keys::SKB_CB0;

/// With rule recording, the program's first instruction: keep the context for the tail.
pub fn emit_save_ctx(a: &mut Asm, trace: bool) {
    if trace {
        a.stx(Size::DW, Reg::R10, CTX_SLOT, Reg::R1);
    }
}

/// Emits the tail at the current position. `wasm`: the program runs verdict modules, whose
/// allowed flows (stages `WasmVerdict`, `WasmTrap`) are inserted like the table's.
pub fn emit_tail(a: &mut Asm, trace: bool, conntrack: bool, wasm: bool) {
    emit_record(a, trace, conntrack, wasm);
    emit_return(a);
}

/// The tail's first half: the trace record and the conntrack insert, leaving the verdict
/// code in `R7` (the node datapath forwards after it, `super::node`).
pub fn emit_record(a: &mut Asm, trace: bool, conntrack: bool, wasm: bool) {
    use Reg::*;
    let skip_ct = a.label();
    if trace {
        // R2 = what cb[0] held on the way in; cb[0] = the verdict code.
        a.ldx(Size::DW, R1, R10, CTX_SLOT)
            .ldx(Size::W, R2, R1, SKB_CB0)
            .stx(Size::W, R1, SKB_CB0, CODE);
        if conntrack {
            a.jmp(Cond::Eq, R2, keys::TRACE_REQUEST as i32, skip_ct);
        }
    }
    if conntrack {
        // Insert only what policy (stage 0) or a verdict module allowed; conntrack hits
        // are in already.
        let skip = a.label();
        let insert = a.label();
        a.mov64(R1, CODE)
            .and64(R1, (code::STAGE_MASK | code::ALLOW) as i32);
        if wasm {
            for stage in [Stage::WasmVerdict, Stage::WasmTrap] {
                a.jmp(Cond::Eq, R1, keys::stage_code(true, stage) as i32, insert);
            }
        }
        a.jmp(Cond::Ne, R1, code::ALLOW as i32, skip);
        if a.is_targeted(insert) {
            a.bind(insert);
        }
        ct::emit_insert(a);
        a.bind(skip);
    }
    if a.is_targeted(skip_ct) {
        a.bind(skip_ct);
    }
}

/// The tail's second half: return `TC_ACT_OK` or `TC_ACT_SHOT` from the code in `R7`.
pub fn emit_return(a: &mut Asm) {
    use Reg::*;
    // allow → 0 (TC_ACT_OK), deny → 2 (TC_ACT_SHOT), without a branch.
    a.mov64(R0, CODE)
        .and64(R0, code::ALLOW as i32)
        .alu64(crate::bpf::AluOp::Xor, R0, 1)
        .lsh64(R0, 1)
        .exit();
}
