//! The policy IR: every front end's document lowered into one normalised, typed form.
//!
//! Lowering ([`lower::lower`]) validates and normalises the AST (canonical CIDRs, `=` as `In`,
//! ports as ranges, interned selectors and port sets, isolation made explicit); checks
//! ([`check::check`]) then find shadowed rules, conflicts and the like. Both are passes in the
//! cranelift style: they take the IR and hand it back, attaching facts in `SecondaryMap`s.
//!
//! Evaluation order is explicit in the data: [`Tier`]'s `Ord` is the order tiers run in, and
//! [`Ir::evaluation_order`] gives the policies in that order.
//!
//! - admin tiers, by priority ascending, then declaration order; rules in order; first
//!   match decides; `pass` skips the remaining admin rules;
//! - the default tier (NetworkPolicy semantics): a direction is isolated when any selecting
//!   policy isolates it; a matching deny wins; else a matching allow/audit allows; else an
//!   isolated direction denies;
//! - baseline, in declaration order, first match decides; nothing matched = allow.

pub mod check;
pub mod entities;
pub mod lower;
pub mod verdict;

pub use entities::*;
pub use lower::lower;

use crate::source::ast::{PolicyDirection, Span};
use cranelift_entity::packed_option::PackedOption;
use cranelift_entity::{EntityRef, PrimaryMap, SecondaryMap};
use std::collections::HashMap;

/// The lowered policy of one compilation.
#[derive(Clone, Debug, Default)]
pub struct Ir {
    pub policies: PrimaryMap<PolicyId, PolicyData>,
    pub rules: PrimaryMap<RuleId, RuleData>,
    pub verdicts: PrimaryMap<VerdictId, VerdictData>,
    pub selectors: PrimaryMap<SelectorId, SelectorData>,
    pub peers: PrimaryMap<PeerId, PeerData>,
    pub port_sets: PrimaryMap<PortSetId, PortSet>,
    /// The policy each rule belongs to.
    pub rule_policy: SecondaryMap<RuleId, PackedOption<PolicyId>>,
    /// Filled by [`check::check`]: the earlier or broader rule that makes this one dead.
    pub shadowed_by: SecondaryMap<RuleId, PackedOption<RuleId>>,
    pub masquerade: Option<MasqueradeConfig>,
    pub pools: Vec<PoolConfig>,
    selector_index: HashMap<SelectorData, SelectorId>,
    port_set_index: HashMap<PortSet, PortSetId>,
}

impl Ir {
    /// Interns a selector: the same normalised selector always gets the same id.
    pub fn intern_selector(&mut self, s: SelectorData) -> SelectorId {
        if let Some(id) = self.selector_index.get(&s) {
            return *id;
        }
        let id = self.selectors.push(s.clone());
        self.selector_index.insert(s, id);
        id
    }

    pub fn intern_port_set(&mut self, p: PortSet) -> PortSetId {
        if let Some(id) = self.port_set_index.get(&p) {
            return *id;
        }
        let id = self.port_sets.push(p.clone());
        self.port_set_index.insert(p, id);
        id
    }

    pub fn policy_of(&self, rule: RuleId) -> PolicyId {
        self.rule_policy[rule]
            .expand()
            .expect("every rule belongs to a policy")
    }

    /// Policies in evaluation order: by tier (admin priority ascending), then declaration.
    pub fn evaluation_order(&self) -> Vec<PolicyId> {
        let mut ids: Vec<PolicyId> = self.policies.keys().collect();
        ids.sort_by_key(|p| (self.policies[*p].tier, *p));
        ids
    }

    /// Rules of one direction in evaluation order (tiers, priorities, policies, rule order).
    pub fn rules_in_order(&self, direction: PolicyDirection) -> Vec<RuleId> {
        self.evaluation_order()
            .into_iter()
            .flat_map(|p| self.policies[p].rules.iter().copied())
            .filter(|r| self.rules[*r].direction == direction)
            .collect()
    }

    /// The verdict rules that judge `ep`'s traffic in `direction`, in the order they run:
    /// the selecting policies in evaluation order, each policy's in the order written.
    pub fn verdicts_for(
        &self,
        ep: &EndpointView<'_>,
        direction: PolicyDirection,
    ) -> Vec<VerdictId> {
        // Most compilations have none; skip sorting the policies for every endpoint.
        if self.verdicts.is_empty() {
            return Vec::new();
        }
        self.evaluation_order()
            .into_iter()
            .filter(|p| self.selects(*p, ep))
            .flat_map(|p| self.policies[p].verdicts.iter().copied())
            .filter(|v| self.verdicts[*v].direction == direction)
            .collect()
    }

    /// The rule number a verdict rule records in the verdict code (`spec/datapath.md`): it
    /// follows the rules' numbers (`RuleId` index + 1), so one table names both.
    pub fn verdict_rule_number(&self, v: VerdictId) -> u32 {
        (self.rules.len() + v.index() + 1) as u32
    }

    /// "verdict rule `ssh-guard` of policy `guard`" (or its position), for messages.
    pub fn describe_verdict(&self, v: VerdictId) -> String {
        let d = &self.verdicts[v];
        let p = &self.policies[d.policy];
        match &d.name {
            Some(n) => format!("verdict rule `{n}` of policy `{}`", p.name),
            None => {
                let n = p.verdicts.iter().position(|x| *x == v).unwrap_or(0) + 1;
                format!("verdict rule {n} of policy `{}`", p.name)
            }
        }
    }

    /// Whether a policy applies to an endpoint (its subject selects it).
    pub fn selects(&self, policy: PolicyId, ep: &EndpointView<'_>) -> bool {
        let p = &self.policies[policy];
        if let Some(ns) = &p.namespace
            && ns != ep.namespace
        {
            return false;
        }
        if let Some(sel) = p.subject_namespaces
            && !self.selectors[sel].matches(ep.namespace_labels)
        {
            return false;
        }
        self.selectors[p.subject_pods].matches(ep.labels)
    }

    /// Whether an endpoint peer names this endpoint (by labels; CIDR and entity peers are
    /// matched by address and kind by the caller).
    pub fn endpoint_peer_matches(
        &self,
        namespaces: &NamespaceScope,
        pods: Option<SelectorId>,
        ep: &EndpointView<'_>,
    ) -> bool {
        let ns_ok = match namespaces {
            NamespaceScope::Named(n) => n == ep.namespace,
            NamespaceScope::Selector(s) => self.selectors[*s].matches(ep.namespace_labels),
            NamespaceScope::All => true,
        };
        ns_ok && pods.is_none_or(|s| self.selectors[s].matches(ep.labels))
    }

    /// The span to point at for a rule (falls back to its policy's).
    pub fn rule_span(&self, rule: RuleId) -> Span {
        let s = self.rules[rule].span;
        if s.is_none() {
            self.policies[self.policy_of(rule)].span
        } else {
            s
        }
    }

    /// "rule 2 of policy `web`" (or its name), for messages.
    pub fn describe_rule(&self, rule: RuleId) -> String {
        let r = &self.rules[rule];
        let p = &self.policies[self.policy_of(rule)];
        match &r.name {
            Some(n) => format!("rule `{n}` of policy `{}`", p.name),
            None => format!("rule {} of policy `{}`", r.index + 1, p.name),
        }
    }
}

pub use sluice_policy::inventory::EndpointView;
