//! Jump fixups: the one place where branch offsets are computed.
//!
//! The assembler records every branch to a label as a [`Fixup`]. When the program is
//! finished, [`resolve`] patches each branch's 16-bit offset. A branch farther than `i16`
//! can reach is an error, not a silent wrap: the codegen must split such a program (for
//! example with tail calls), as the verifier would reject it anyway.

use super::BpfError;
use super::insn::Insn;

/// A label: a position in the program that branches can target before it is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(pub(crate) u32);

/// A branch at instruction `at` whose offset must point at `label`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fixup {
    pub at: usize,
    pub label: Label,
}

/// Patches the offset of every fixup. `bound[l]` is the instruction index label `l` was
/// bound to.
pub(crate) fn resolve(
    insns: &mut [Insn],
    fixups: &[Fixup],
    bound: &[Option<usize>],
) -> Result<(), BpfError> {
    for f in fixups {
        let target =
            bound
                .get(f.label.0 as usize)
                .copied()
                .flatten()
                .ok_or(BpfError::UnboundLabel {
                    label: f.label.0,
                    at: f.at,
                })?;
        // The offset counts from the instruction after the branch.
        let delta = target as i64 - (f.at as i64 + 1);
        let off = i16::try_from(delta).map_err(|_| BpfError::JumpOutOfRange {
            at: f.at,
            target,
            offset: delta,
        })?;
        let insn = &mut insns[f.at];
        debug_assert!(insn.is_branch(), "fixup on a non-branch {insn:?}");
        insn.off = off;
    }
    Ok(())
}
