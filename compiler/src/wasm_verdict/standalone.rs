//! The standalone tcx program around a translated verdict: what `sluice module translate`
//! prints and `--verify` runs through `BPF_PROG_TEST_RUN`.
//!
//! It saves the context, runs the verdict on the frame (IP header at byte 14), writes the
//! exact outcome code into `skb->cb[0]` (which the test run hands back) and returns a tcx
//! code: `TC_ACT_OK` for pass and allow, `TC_ACT_SHOT` for deny, and for a trap what
//! [`OnTrap`] says. tcx return codes are only ever 0 or 2.

use super::translate::{self, Exits, trap_index};
use super::{OnTrap, PacketLoads, TrapKind, VerdictError, VerdictModule, VerdictOutcome};
use crate::bpf::{Asm, Label, ObjectBuilder, ProgKind, Reg, Size};
use crate::datapath::frame::STACK_MAX;
use crate::datapath::verdict::{SKB_CB0, TC_ACT_OK, TC_ACT_SHOT};
use crate::datapath::{ProgramArtifact, TcxHook};

/// The program's name in its object.
pub const PROGRAM_NAME: &str = "verdict";

/// Where the standalone program keeps the context.
const CTX_SLOT: i16 = -8;
/// The Ethernet header in front of the IP header.
pub const ETH_HLEN: u32 = 14;

/// The tcx code an outcome returns.
fn tc_code(o: VerdictOutcome, on_trap: OnTrap) -> i32 {
    match o {
        VerdictOutcome::Pass | VerdictOutcome::Allow => TC_ACT_OK,
        VerdictOutcome::Deny => TC_ACT_SHOT,
        VerdictOutcome::Trap(_) => tc_code(on_trap.outcome(), on_trap),
    }
}

/// A standalone tcx program (the thing `module translate` prints and `--verify` loads): runs
/// the verdict on the frame, stores `VerdictOutcome::code()` into `skb->cb[0]` (so
/// BPF_PROG_TEST_RUN hands the exact outcome back in its ctx_out), and returns TC_ACT_OK (0)
/// for Pass/Allow or TC_ACT_SHOT (2) for Deny, and for a trap whatever `on_trap` says.
pub fn standalone_program(
    m: &VerdictModule,
    on_trap: OnTrap,
) -> Result<ProgramArtifact, VerdictError> {
    standalone_program_with(m, on_trap, PacketLoads::Direct)
}

/// [`standalone_program`] reading the packet as `loads` says.
pub fn standalone_program_with(
    m: &VerdictModule,
    on_trap: OnTrap,
    loads: PacketLoads,
) -> Result<ProgramArtifact, VerdictError> {
    let mut a = Asm::new();
    let exits = Exits {
        pass: a.label(),
        allow: a.label(),
        deny: a.label(),
        trap: [a.label(), a.label(), a.label()],
    };
    a.stx(Size::DW, Reg::R10, CTX_SLOT, Reg::R1);
    translate::emit(
        &m.info,
        &mut a,
        CTX_SLOT,
        -STACK_MAX..CTX_SLOT,
        ETH_HLEN,
        &exits,
        loads,
    )?;
    let kinds = [
        TrapKind::Unreachable,
        TrapKind::PacketOutOfBounds,
        TrapKind::BadVerdict,
    ];
    let outcomes: Vec<(Label, VerdictOutcome)> = [
        (exits.pass, VerdictOutcome::Pass),
        (exits.allow, VerdictOutcome::Allow),
        (exits.deny, VerdictOutcome::Deny),
    ]
    .into_iter()
    .chain(
        kinds
            .into_iter()
            .map(|k| (exits.trap[trap_index(k)], VerdictOutcome::Trap(k))),
    )
    .collect();
    for (label, outcome) in outcomes {
        // An exit the verdict never takes would be unreachable code.
        if !a.is_targeted(label) {
            continue;
        }
        a.bind(label)
            .ldx(Size::DW, Reg::R1, Reg::R10, CTX_SLOT)
            .mov64(Reg::R2, outcome.code() as i32)
            .stx(Size::W, Reg::R1, SKB_CB0, Reg::R2)
            .ret(tc_code(outcome, on_trap));
    }
    let prog = a.finish()?;
    let mut obj = ObjectBuilder::new();
    obj.program(PROGRAM_NAME, ProgKind::Classifier, prog)?;
    Ok(ProgramArtifact {
        name: PROGRAM_NAME.to_string(),
        hook: TcxHook::Ingress,
        elf: obj.write()?,
        maps: Vec::new(),
    })
}
