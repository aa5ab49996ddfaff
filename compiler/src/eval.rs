//! The reference evaluator: the verdict for one flow, straight from the IR's semantics.
//!
//! It is written for clarity, not speed, and deliberately does not use the resolved identity
//! tables of [`crate::resolve`]: it matches labels, addresses and container ports directly, so
//! it is an independent oracle for code generation and for `sluice trace`. The tier order is
//! the one documented in [`crate::ir`].
//!
//! Wasm verdict rules run first in each direction (`spec/language.md`, "Verdict rules"). The
//! evaluator judges flows, not packets, so it does not run modules itself: the caller of
//! [`evaluate_with`] says what each module answers for the flow's packet (the tests run it
//! with the runtime's wasmtime runner, which the compiler may not depend on). [`evaluate`]
//! refuses a flow that a verdict rule judges instead of guessing.

use crate::ir::{EndpointView, Ir, L4Match, PeerKind, PolicyId, RuleId, Tier, VerdictId};
use crate::resolve::Inventory;
use crate::source::ast::{Action, Entity, PolicyDirection};
use sluice_policy::verdict::VerdictOutcome;
use std::net::IpAddr;

/// One end of a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowEnd {
    /// A managed endpoint, by index into `Inventory::endpoints`; its first IP is the address.
    Endpoint(usize),
    /// An address. If it belongs to an endpoint, that endpoint is the end.
    Ip(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: FlowEnd,
    pub dst: FlowEnd,
    /// Protocol and destination port, or ICMP type and code.
    pub l4: L4Match,
}

/// Why a direction came out the way it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No policy of any tier had a say: traffic is allowed.
    Unrestricted,
    /// First-match rule in an admin tier (`deciding` holds it).
    Admin,
    /// Default tier: a deny rule matched (deny wins; `deciding` holds every matching deny).
    DefaultDeny,
    /// Default tier: allow/audit rules matched (`deciding` holds all of them).
    DefaultAllow,
    /// Default tier: the endpoint is isolated in this direction and no rule allowed it
    /// (`deciding` is empty; `isolated_by` names the policies).
    Isolated,
    /// First-match rule in the baseline tier.
    Baseline,
    /// A Wasm verdict rule answered allow or deny, or trapped and its `on-trap` decided
    /// (`DirectionVerdict::verdict` holds it).
    Verdict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionVerdict {
    pub direction: PolicyDirection,
    pub allow: bool,
    pub audited: bool,
    pub reason: Reason,
    pub deciding: Vec<RuleId>,
    /// Default-tier policies isolating the endpoint in this direction.
    pub isolated_by: Vec<PolicyId>,
    /// An admin `pass` rule that handed the flow to the default tier.
    pub passed_by: Option<RuleId>,
    /// The verdict rule that decided and what its module answered (a trap included).
    pub verdict: Option<(VerdictId, VerdictOutcome)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Egress of the source (`None` when the source is not a managed endpoint).
    pub egress: Option<DirectionVerdict>,
    /// Ingress of the destination (`None` when the destination is not a managed endpoint).
    pub ingress: Option<DirectionVerdict>,
    pub allow: bool,
    pub audited: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("no endpoint with index {0}")]
    NoSuchEndpoint(usize),
    #[error("a Wasm verdict rule ({0}) judges this flow: evaluate it with the module's answer")]
    NeedsVerdict(VerdictId),
}

/// A flow end with everything matching needs.
#[derive(Clone, Copy)]
struct End {
    endpoint: Option<usize>,
    addr: Option<IpAddr>,
}

/// Evaluates a flow: the source's egress, the destination's ingress, both must allow.
/// A flow some verdict rule judges is `EvalError::NeedsVerdict` (see [`evaluate_with`]).
pub fn evaluate(ir: &Ir, inv: &Inventory, flow: &Flow) -> Result<Verdict, EvalError> {
    let mut needed = None;
    let v = evaluate_with(ir, inv, flow, &mut |v| {
        needed.get_or_insert(v);
        VerdictOutcome::Pass
    })?;
    match needed {
        Some(v) => Err(EvalError::NeedsVerdict(v)),
        None => Ok(v),
    }
}

/// [`evaluate`], with `module(v)` saying what verdict rule `v`'s module answers for the
/// flow's packet. It is asked only for the rules that run, in the order they run.
pub fn evaluate_with(
    ir: &Ir,
    inv: &Inventory,
    flow: &Flow,
    module: &mut dyn FnMut(VerdictId) -> VerdictOutcome,
) -> Result<Verdict, EvalError> {
    let src = end(inv, &flow.src)?;
    let dst = end(inv, &flow.dst)?;
    let egress = src
        .endpoint
        .map(|s| direction(ir, inv, s, dst, PolicyDirection::Egress, flow.l4, module));
    let ingress = dst
        .endpoint
        .map(|d| direction(ir, inv, d, src, PolicyDirection::Ingress, flow.l4, module));
    let all = [&egress, &ingress];
    let allow = all.iter().all(|v| v.as_ref().is_none_or(|v| v.allow));
    let audited = all.iter().any(|v| v.as_ref().is_some_and(|v| v.audited));
    Ok(Verdict {
        egress,
        ingress,
        allow,
        audited,
    })
}

fn end(inv: &Inventory, e: &FlowEnd) -> Result<End, EvalError> {
    Ok(match e {
        FlowEnd::Endpoint(i) => {
            let ep = inv.endpoints.get(*i).ok_or(EvalError::NoSuchEndpoint(*i))?;
            End {
                endpoint: Some(*i),
                addr: ep.ips.first().copied(),
            }
        }
        FlowEnd::Ip(ip) => End {
            endpoint: inv.endpoint_by_ip(*ip),
            addr: Some(*ip),
        },
    })
}

/// The verdict of `subject`'s policy in `dir` for traffic with `remote`.
fn direction(
    ir: &Ir,
    inv: &Inventory,
    subject: usize,
    remote: End,
    dir: PolicyDirection,
    l4: L4Match,
    module: &mut dyn FnMut(VerdictId) -> VerdictOutcome,
) -> DirectionVerdict {
    let view = inv.view(subject);
    let selecting: Vec<PolicyId> = ir
        .evaluation_order()
        .into_iter()
        .filter(|p| ir.selects(*p, &view))
        .collect();
    let in_tier = |pred: &dyn Fn(Tier) -> bool| -> Vec<RuleId> {
        selecting
            .iter()
            .filter(|p| pred(ir.policies[**p].tier))
            .flat_map(|p| ir.policies[*p].rules.iter().copied())
            .filter(|r| ir.rules[*r].direction == dir)
            .filter(|r| rule_matches(ir, inv, *r, subject, remote, dir, l4))
            .collect()
    };
    let mut v = DirectionVerdict {
        direction: dir,
        allow: true,
        audited: false,
        reason: Reason::Unrestricted,
        deciding: Vec::new(),
        isolated_by: selecting
            .iter()
            .copied()
            .filter(|p| {
                let p = &ir.policies[*p];
                p.tier == Tier::Default && p.isolates.get(dir)
            })
            .collect(),
        passed_by: None,
        verdict: None,
    };

    // 0. Verdict rules, before every rule: allow and deny decide, pass goes on; a trap is
    //    what the rule's `on-trap` says.
    for vid in ir.verdicts_for(&view, dir) {
        let answer = module(vid);
        let effective = match answer {
            VerdictOutcome::Trap(_) => ir.verdicts[vid].on_trap.outcome(),
            other => other,
        };
        if effective != VerdictOutcome::Pass {
            v.reason = Reason::Verdict;
            v.allow = effective == VerdictOutcome::Allow;
            v.verdict = Some((vid, answer));
            return v;
        }
    }

    // 1. Admin tiers: first match decides; `pass` goes on to the default tier.
    if let Some(first) = in_tier(&|t| matches!(t, Tier::Admin(_))).first() {
        match ir.rules[*first].action {
            Action::Pass => v.passed_by = Some(*first),
            action => return decided(v, Reason::Admin, action, vec![*first]),
        }
    }

    // 2. Default tier: deny wins, then allows union, then isolation denies.
    let hits = in_tier(&|t| t == Tier::Default);
    let denies: Vec<RuleId> = hits
        .iter()
        .copied()
        .filter(|r| ir.rules[*r].action == Action::Deny)
        .collect();
    if !denies.is_empty() {
        return decided(v, Reason::DefaultDeny, Action::Deny, denies);
    }
    if !hits.is_empty() {
        let audited = hits.iter().any(|r| ir.rules[*r].action == Action::Audit);
        let mut v = decided(v, Reason::DefaultAllow, Action::Allow, hits);
        v.audited = audited;
        return v;
    }
    if !v.isolated_by.is_empty() {
        v.allow = false;
        v.reason = Reason::Isolated;
        return v;
    }

    // 3. Baseline: first match decides. 4. Otherwise allowed.
    if let Some(first) = in_tier(&|t| t == Tier::Baseline).first() {
        return decided(v, Reason::Baseline, ir.rules[*first].action, vec![*first]);
    }
    v
}

fn decided(
    mut v: DirectionVerdict,
    reason: Reason,
    action: Action,
    rules: Vec<RuleId>,
) -> DirectionVerdict {
    v.reason = reason;
    v.allow = action != Action::Deny;
    v.audited = action == Action::Audit;
    v.deciding = rules;
    v
}

fn rule_matches(
    ir: &Ir,
    inv: &Inventory,
    rule: RuleId,
    subject: usize,
    remote: End,
    dir: PolicyDirection,
    l4: L4Match,
) -> bool {
    let r = &ir.rules[rule];
    let peer_ok = r.peers.is_empty()
        || r.peers
            .iter()
            .any(|p| peer_matches(ir, inv, &ir.peers[*p].kind, subject, remote));
    if !peer_ok {
        return false;
    }
    // Named ports name the destination's container ports.
    let dst = match dir {
        PolicyDirection::Ingress => Some(subject),
        PolicyDirection::Egress => remote.endpoint,
    };
    let named = |proto, name: &str| -> Vec<u16> {
        dst.map(|d| inv.endpoints[d].named_port(proto, name))
            .unwrap_or_default()
    };
    ir.port_sets[r.ports].matches(l4, &named)
}

fn peer_matches(ir: &Ir, inv: &Inventory, peer: &PeerKind, subject: usize, remote: End) -> bool {
    let remote_node = remote.addr.and_then(|a| inv.node_by_ip(a));
    match peer {
        PeerKind::Endpoints { namespaces, pods } => remote.endpoint.is_some_and(|e| {
            let view: EndpointView<'_> = inv.view(e);
            ir.endpoint_peer_matches(namespaces, *pods, &view)
        }),
        PeerKind::Cidr { cidr, except } => remote
            .addr
            .is_some_and(|a| cidr.contains(a) && !except.iter().any(|e| e.contains(a))),
        PeerKind::Entity(Entity::All) => true,
        PeerKind::Entity(Entity::World) => remote.endpoint.is_none() && remote_node.is_none(),
        PeerKind::Entity(Entity::Cluster) => remote.endpoint.is_some() || remote_node.is_some(),
        PeerKind::Entity(Entity::Host) => remote_node.is_some_and(|n| {
            inv.endpoints[subject]
                .node
                .as_ref()
                .is_none_or(|own| *own == n.name)
        }),
    }
}

impl Verdict {
    /// The rules that decided the combined verdict: the denying direction's rules when
    /// denied, else every direction's.
    pub fn deciding_rules(&self) -> Vec<RuleId> {
        let dirs = [&self.egress, &self.ingress];
        let denying: Vec<RuleId> = dirs
            .iter()
            .flat_map(|d| d.iter())
            .filter(|d| !d.allow)
            .flat_map(|d| d.deciding.iter().copied())
            .collect();
        if !self.allow {
            return denying;
        }
        dirs.iter()
            .flat_map(|d| d.iter())
            .flat_map(|d| d.deciding.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::L4;
    use crate::resolve::InventoryFiles;
    use crate::source::ast::Document;
    use cranelift_entity::EntityRef;

    const INV: &str = "
nodes:
- {name: n1, ips: [192.168.0.1]}
endpoints:
- {name: a, namespace: x, labels: {app: a}, ips: [10.0.0.1], node: n1}
- {name: b, namespace: x, labels: {app: b}, ips: [10.0.0.2], node: n1}
";

    fn setup(json: &str) -> (Ir, Inventory) {
        let doc: Document = serde_json::from_str(json).unwrap();
        let (ir, d) = crate::ir::lower(&[doc]);
        assert!(!d.has_errors(), "{d:?}");
        (ir, Inventory::parse("inv", INV).unwrap())
    }

    fn tcp(p: u16) -> L4Match {
        L4Match::Port {
            proto: L4::Tcp,
            port: p,
        }
    }

    fn flow(src: FlowEnd, dst: FlowEnd, l4: L4Match) -> Flow {
        Flow { src, dst, l4 }
    }

    #[test]
    fn admin_first_match_then_pass_then_default_deny_wins() {
        let (ir, inv) = setup(
            r#"{"items":[
            {"kind":"policy","name":"adm","tier":{"tier":"admin","priority":10},"subject":{},
             "rules":[{"direction":"ingress","action":"pass","ports":[{"protocol":{"name":"tcp"},"port":{"number":80}}]},
                      {"direction":"ingress","action":"deny"}]},
            {"kind":"policy","name":"np","namespace":"x","subject":{},
             "rules":[{"direction":"ingress","action":"allow"},
                      {"direction":"ingress","action":"deny","peers":[{"peer":"endpoints","pods":{"exprs":[{"key":"app","op":"eq","values":["a"]}]}}]}]}
            ]}"#,
        );
        let ev = |src, port| {
            evaluate(
                &ir,
                &inv,
                &flow(FlowEnd::Endpoint(src), FlowEnd::Endpoint(1), tcp(port)),
            )
            .unwrap()
        };
        // Port 81: the admin deny decides.
        let v = ev(0, 81);
        assert!(!v.allow);
        assert_eq!(v.ingress.as_ref().unwrap().reason, Reason::Admin);
        // Port 80 from a: passed, then the default tier's deny wins over its allow.
        let v = ev(0, 80);
        assert!(!v.allow);
        let ing = v.ingress.unwrap();
        assert_eq!(ing.reason, Reason::DefaultDeny);
        assert!(ing.passed_by.is_some());
        // Port 80 from b (itself): allowed by the default tier.
        assert!(ev(1, 80).allow);
    }

    #[test]
    fn isolation_world_and_host_entities() {
        let (ir, inv) = setup(
            r#"{"items":[
            {"kind":"policy","name":"np","namespace":"x","subject":{"pods":{"exprs":[{"key":"app","op":"eq","values":["a"]}]}},
             "rules":[{"direction":"egress","action":"audit","peers":[{"peer":"entity","entity":"world"}]},
                      {"direction":"egress","action":"allow","peers":[{"peer":"entity","entity":"host"}]}]}
            ]}"#,
        );
        let ev = |dst: &str| {
            evaluate(
                &ir,
                &inv,
                &flow(
                    FlowEnd::Endpoint(0),
                    FlowEnd::Ip(dst.parse().unwrap()),
                    tcp(443),
                ),
            )
            .unwrap()
        };
        let v = ev("8.8.8.8");
        assert!(v.allow && v.audited);
        assert!(ev("192.168.0.1").allow);
        let v = ev("10.0.0.2");
        assert!(!v.allow);
        assert_eq!(v.egress.unwrap().reason, Reason::Isolated);
        // b is not selected: unrestricted.
        let v = evaluate(
            &ir,
            &inv,
            &flow(
                FlowEnd::Endpoint(1),
                FlowEnd::Ip("8.8.8.8".parse().unwrap()),
                tcp(1),
            ),
        )
        .unwrap();
        assert_eq!(v.egress.unwrap().reason, Reason::Unrestricted);
    }

    /// Verdict rules run before every rule, in priority order; pass hands on, a trap is the
    /// rule's `on-trap`, and `evaluate` refuses to guess a module's answer.
    #[test]
    fn verdict_rules_run_first_in_priority_order() {
        const SHA: &str = "a3d74436c7dd34344cb99790f24940fa603e7d9f90325ccbb73a9df0019c6552";
        let (ir, inv) = setup(&format!(
            r#"{{"items":[
            {{"kind":"policy","name":"late","tier":{{"tier":"admin","priority":20}},"subject":{{}},
             "verdicts":[{{"direction":"ingress","module":"b.wasm","sha256":"{SHA}","on_trap":"pass"}}]}},
            {{"kind":"policy","name":"early","tier":{{"tier":"admin","priority":1}},"subject":{{}},
             "rules":[{{"direction":"ingress","action":"deny"}}],
             "verdicts":[{{"direction":"ingress","module":"a.wasm","sha256":"{SHA}"}}]}}
            ]}}"#
        ));
        let late = crate::ir::VerdictId::new(0);
        let early = crate::ir::VerdictId::new(1);
        let flow = flow(FlowEnd::Endpoint(0), FlowEnd::Endpoint(1), tcp(22));
        let run = |a: VerdictOutcome, b: VerdictOutcome| {
            let mut asked = Vec::new();
            let v = evaluate_with(&ir, &inv, &flow, &mut |v| {
                asked.push(v);
                if v == early { a } else { b }
            })
            .unwrap();
            (v.ingress.unwrap(), asked)
        };
        use crate::wasm_verdict::TrapKind;
        // The priority-1 policy's module runs first and decides.
        let (d, asked) = run(VerdictOutcome::Allow, VerdictOutcome::Deny);
        assert!(d.allow && d.reason == Reason::Verdict);
        assert_eq!(asked, [early]);
        assert_eq!(d.verdict, Some((early, VerdictOutcome::Allow)));
        // A trap with the default on-trap denies.
        let trap = VerdictOutcome::Trap(TrapKind::Unreachable);
        let (d, _) = run(trap, VerdictOutcome::Allow);
        assert!(!d.allow && d.verdict == Some((early, trap)));
        // Pass goes on to the next module; there a trap with on-trap pass goes on to the
        // rules, where the admin deny decides.
        let (d, asked) = run(VerdictOutcome::Pass, trap);
        assert_eq!(asked, [early, late]);
        assert!(!d.allow && d.reason == Reason::Admin && d.verdict.is_none());
        let (d, _) = run(VerdictOutcome::Pass, VerdictOutcome::Allow);
        assert!(d.allow && d.verdict == Some((late, VerdictOutcome::Allow)));
        // Egress has no verdict rule: `evaluate` answers; ingress needs the module.
        assert_eq!(
            evaluate(&ir, &inv, &flow),
            Err(EvalError::NeedsVerdict(early))
        );
        assert!(
            ir.verdicts_for(&inv.view(0), PolicyDirection::Egress)
                .is_empty()
        );
    }
}
