//! Wasm verdict modules inlined into a policy program (`spec/language.md`, "Verdict rules").
//!
//! A direction's verdict rules run after the conntrack lookups (established flows and
//! replies never reach them) and before its decision table, in the order
//! `Ir::verdicts_for` gives. Each module's translated code (`VerdictModule::emit_inline`)
//! becomes part of the program's own bytes, so the bundle's sha256, dedup and the atomic swap
//! cover it like any other code. Allow and deny set the verdict code (stage `WasmVerdict`,
//! the verdict rule's number) and go to the tail, which records allowed flows in conntrack
//! as for any allowed packet; a trap does what the rule's `on-trap` says (stage `WasmTrap`);
//! pass goes on to the next module, then to the table.

use super::DatapathError;
use super::frame::{CODE, Var};
use super::keys::{Stage, rule_stage_code};
use super::verdict::CTX_SLOT;
use crate::bpf::{Asm, Label};
use crate::source::ast::OnTrap;
use crate::wasm_verdict::{InlineEnv, VerdictModule};
use std::sync::Arc;

/// Where the IP header starts in a tc frame (behind Ethernet).
const IP_OFFSET: u32 = 14;

/// One verdict rule as a program runs it.
#[derive(Clone, Debug)]
pub struct InlineVerdict {
    pub module: Arc<VerdictModule>,
    pub on_trap: OnTrap,
    /// The number the verdict code names (`Ir::verdict_rule_number`).
    pub rule: u32,
}

impl PartialEq for InlineVerdict {
    fn eq(&self, other: &Self) -> bool {
        self.module.digest() == other.module.digest()
            && self.on_trap == other.on_trap
            && self.rule == other.rule
    }
}

impl Eq for InlineVerdict {}

impl std::hash::Hash for InlineVerdict {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.module.digest().hash(state);
        self.on_trap.hash(state);
        self.rule.hash(state);
    }
}

/// Emits the verdict rules at the current position. Returns false when no path goes on past
/// them (every module always decides), so the caller emits no unreachable decision.
pub fn emit_verdicts(
    a: &mut Asm,
    program: &str,
    verdicts: &[InlineVerdict],
    tail: Label,
) -> Result<bool, DatapathError> {
    let scratch = Var::WasmScratch.slot();
    for v in verdicts {
        let [pass, allow, deny, trap] = [a.label(), a.label(), a.label(), a.label()];
        let env = InlineEnv {
            ctx_slot: CTX_SLOT,
            scratch: scratch.off..scratch.off + scratch.size,
            ip_offset: IP_OFFSET,
            on_pass: pass,
            on_allow: allow,
            on_deny: deny,
            on_trap: trap,
        };
        v.module
            .emit_inline(a, &env)
            .map_err(|source| DatapathError::Verdict {
                program: program.to_string(),
                source: Box::new(source),
            })?;
        let decide = |a: &mut Asm, label: Label, allow: bool, stage: Stage| {
            if a.is_targeted(label) {
                a.bind(label)
                    .mov64(CODE, rule_stage_code(allow, stage, v.rule) as i32)
                    .ja(tail);
            }
        };
        decide(a, allow, true, Stage::WasmVerdict);
        decide(a, deny, false, Stage::WasmVerdict);
        match v.on_trap {
            OnTrap::Deny => decide(a, trap, false, Stage::WasmTrap),
            OnTrap::Allow => decide(a, trap, true, Stage::WasmTrap),
            OnTrap::Pass if a.is_targeted(trap) => {
                a.bind(trap).ja(pass);
            }
            OnTrap::Pass => {}
        }
        if !a.is_targeted(pass) {
            return Ok(false);
        }
        a.bind(pass);
    }
    Ok(true)
}
