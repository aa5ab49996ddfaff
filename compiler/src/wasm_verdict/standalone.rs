//! The standalone tcx program around a translated verdict.
use super::{OnTrap, VerdictError, VerdictModule};
use crate::datapath::ProgramArtifact;

/// The program's name in its object.
pub const PROGRAM_NAME: &str = "verdict";

/// A standalone tcx program (the thing `module translate` prints and `--verify` loads): runs
/// the verdict on the frame, stores `VerdictOutcome::code()` into `skb->cb[0]` (so
/// BPF_PROG_TEST_RUN hands the exact outcome back in its ctx_out), and returns TC_ACT_OK (0)
/// for Pass/Allow or TC_ACT_SHOT (2) for Deny, and for a trap whatever `on_trap` says.
pub fn standalone_program(
    _m: &VerdictModule,
    _on_trap: OnTrap,
) -> Result<ProgramArtifact, VerdictError> {
    todo!("standalone program")
}
