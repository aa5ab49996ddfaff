//! Property tests of the reference evaluator on random small policies of every tier (admin
//! with priorities and `pass`, the NetworkPolicy tier with deny and audit, baseline):
//!
//! 1. it agrees with a brute-force check of the tier semantics written independently here
//!    (straight from `ir`'s documented order and the conformance README's NetworkPolicy rules);
//! 2. it agrees with the resolved, identity-based form codegen consumes
//!    (`resolve::policy_for` + `DirectionPolicy::evaluate`), on every flow of the inventory;
//! 3. it agrees with the planned decision tables, each remote address looked up in the
//!    ipcache by longest prefix as the kernel does (`Classes::class_of_ip`).
//!
//! Verdicts and the audit flag are compared.

use proptest::prelude::*;
use sluice_compiler::eval::{self, Flow, FlowEnd};
use sluice_compiler::ir::{self, L4, L4Match};
use sluice_compiler::plan::{Classes, DecisionTable};
use sluice_compiler::resolve::InventoryFiles;
use sluice_compiler::resolve::{self, Inventory, identity};
use sluice_compiler::source::ast::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

const INV: &str = "
namespaces:
- {name: x, labels: {env: prod}}
- {name: y, labels: {env: dev}}
endpoints:
- {name: a, namespace: x, labels: {app: a}, ips: [10.0.0.1], ports: [{name: http, port: 80}]}
- {name: b, namespace: x, labels: {app: b, tier: a}, ips: [10.0.0.2], ports: [{name: http, port: 81}]}
- {name: a, namespace: y, labels: {app: a}, ips: [10.0.1.1], ports: [{name: http, port: 80}, {name: dns, port: 80, protocol: UDP}]}
- {name: c, namespace: y, labels: {}, ips: [10.0.1.2]}
";

/// Addresses of no endpoint: outside the pods' range, inside it, and at both ends of the space.
const EXTERNAL: &[&str] = &["8.8.8.8", "10.0.9.9", "0.0.0.1", "255.255.255.255"];

fn selector() -> impl Strategy<Value = Selector> {
    let expr = (
        prop_oneof![Just("app"), Just("tier"), Just("env")],
        prop_oneof![
            Just(LabelOp::Eq),
            Just(LabelOp::NotEq),
            Just(LabelOp::In),
            Just(LabelOp::Exists),
            Just(LabelOp::DoesNotExist)
        ],
        prop_oneof![Just("a"), Just("b"), Just("prod")],
    )
        .prop_map(|(k, op, v)| LabelExpr {
            key: k.into(),
            op,
            values: match op {
                LabelOp::Exists | LabelOp::DoesNotExist => vec![],
                LabelOp::In => vec![v.into(), "b".into()],
                _ => vec![v.into()],
            },
            span: Span::NONE,
        });
    prop::collection::vec(expr, 0..2).prop_map(|exprs| Selector {
        exprs,
        span: Span::NONE,
    })
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        (prop::option::of(selector()), prop::option::of(selector())).prop_map(|(n, p)| {
            Peer::Endpoints {
                namespaces: n,
                pods: p,
                span: Span::NONE,
            }
        }),
        (
            prop_oneof![
                Just("10.0.0.0/16"),
                Just("10.0.0.0/24"),
                Just("0.0.0.0/0"),
                Just("8.8.8.8/32"),
                // Covers no known address, at the bottom of the space (the ipcache once
                // handed it every unknown address).
                Just("0.0.0.0/31"),
                Just("10.0.0.0/31"),
                Just("10.0.0.1/32"),
            ],
            prop::bool::ANY
        )
            .prop_map(|(c, ex)| {
                let cidr: Cidr = c.parse().unwrap();
                let except = if ex && cidr.prefix < 24 {
                    vec!["10.0.0.0/24".parse().unwrap()]
                } else if ex && cidr.prefix == 24 {
                    vec!["10.0.0.2/32".parse().unwrap()]
                } else if ex && cidr.prefix == 31 {
                    vec![Cidr { prefix: 32, ..cidr }]
                } else {
                    vec![]
                };
                Peer::Cidr {
                    cidr,
                    except,
                    span: Span::NONE,
                }
            }),
        prop_oneof![
            Just(Entity::World),
            Just(Entity::Cluster),
            Just(Entity::All)
        ]
        .prop_map(|entity| Peer::Entity {
            entity,
            span: Span::NONE
        }),
    ]
}

fn port() -> impl Strategy<Value = PortSpec> {
    (
        prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)],
        prop_oneof![
            Just(None),
            Just(Some(PortMatch::Number(80))),
            Just(Some(PortMatch::Range(80, 81))),
            Just(Some(PortMatch::Named("http".into()))),
            Just(Some(PortMatch::Named("dns".into()))),
        ],
    )
        .prop_map(|(protocol, port)| PortSpec {
            protocol,
            port,
            span: Span::NONE,
        })
}

/// A tier: admin (priorities 0-2), the NetworkPolicy tier (twice as likely), baseline.
fn tier() -> impl Strategy<Value = Tier> {
    prop_oneof![
        (0u32..3).prop_map(|priority| Tier::Admin { priority }),
        Just(Tier::Default),
        Just(Tier::Default),
        Just(Tier::Baseline),
    ]
}

fn rule(tier: Tier) -> impl Strategy<Value = Rule> {
    let mut actions = vec![Action::Allow, Action::Deny, Action::Audit];
    if matches!(tier, Tier::Admin { .. }) {
        actions.push(Action::Pass);
    }
    (
        prop_oneof![
            Just(PolicyDirection::Ingress),
            Just(PolicyDirection::Egress)
        ],
        prop::sample::select(actions),
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port(), 0..3),
    )
        .prop_map(|(direction, action, peers, ports)| Rule {
            name: None,
            direction,
            action,
            peers,
            ports,
            span: Span::NONE,
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    tier().prop_flat_map(|tier| {
        // Admin and baseline policies are often cluster-scoped, sometimes by namespace labels.
        let namespace = if tier == Tier::Default {
            prop_oneof![Just(Some("x")), Just(Some("y"))].boxed()
        } else {
            prop_oneof![Just(Some("x")), Just(Some("y")), Just(None), Just(None)].boxed()
        };
        (
            namespace,
            selector(),
            prop::option::of(selector()),
            prop::option::of(prop_oneof![
                Just(vec![PolicyDirection::Ingress]),
                Just(vec![PolicyDirection::Egress]),
                Just(vec![PolicyDirection::Ingress, PolicyDirection::Egress]),
            ]),
            prop::collection::vec(rule(tier), 0..3),
        )
            .prop_map(move |(ns, pods, ns_sel, isolate, rules)| Policy {
                name: "p".into(),
                namespace: ns.map(str::to_string),
                tier,
                subject: Subject {
                    namespaces: if ns.is_none() { ns_sel } else { None },
                    pods,
                    span: Span::NONE,
                },
                isolate,
                rules,
                verdicts: Vec::new(),
                span: Span::NONE,
                name_span: Span::NONE,
            })
    })
}

fn l4s() -> Vec<L4Match> {
    let mut v = Vec::new();
    for proto in [L4::Tcp, L4::Udp] {
        for port in [80, 81, 82] {
            v.push(L4Match::Port { proto, port });
        }
    }
    v
}

// ---- Brute-force NetworkPolicy semantics, independent of the IR. ----

fn label_match(sel: &Selector, labels: &BTreeMap<String, String>) -> bool {
    sel.exprs.iter().all(|e| {
        let v = labels.get(&e.key);
        match e.op {
            LabelOp::Eq | LabelOp::In => v.is_some_and(|v| e.values.contains(v)),
            LabelOp::NotEq | LabelOp::NotIn => v.is_none_or(|v| !e.values.contains(v)),
            LabelOp::Exists => v.is_some(),
            LabelOp::DoesNotExist => v.is_none(),
        }
    })
}

/// Whether `r` (of policy `p`) matches a flow of `subject` in `dir` with `remote`.
fn brute_rule(
    p: &Policy,
    r: &Rule,
    inv: &Inventory,
    subject: usize,
    remote: (Option<usize>, IpAddr),
    dir: PolicyDirection,
    l4: L4Match,
) -> bool {
    let dst = match dir {
        PolicyDirection::Ingress => Some(subject),
        PolicyDirection::Egress => remote.0,
    };
    let peer_ok = r.peers.is_empty()
        || r.peers.iter().any(|peer| match peer {
            Peer::Endpoints {
                namespaces, pods, ..
            } => remote.0.is_some_and(|e| {
                let ep = &inv.endpoints[e];
                let ns_ok = match (namespaces, &p.namespace) {
                    (None, Some(own)) => ep.namespace == *own,
                    (None, None) => true,
                    (Some(sel), _) => {
                        label_match(sel, inv.namespace_labels(&ep.namespace).unwrap())
                    }
                };
                ns_ok && pods.as_ref().is_none_or(|sel| label_match(sel, &ep.labels))
            }),
            Peer::Cidr { cidr, except, .. } => {
                cidr.contains(remote.1) && !except.iter().any(|e| e.contains(remote.1))
            }
            // The inventory has no nodes: the cluster is its endpoints, the world the rest.
            Peer::Entity { entity, .. } => match entity {
                Entity::All => true,
                Entity::World => remote.0.is_none(),
                Entity::Cluster => remote.0.is_some(),
                Entity::Host => false,
            },
        });
    let L4Match::Port { proto, port } = l4 else {
        unreachable!()
    };
    let port_ok = r.ports.is_empty()
        || r.ports.iter().any(|ps| {
            let p = match ps.protocol {
                Protocol::Tcp => L4::Tcp,
                Protocol::Udp => L4::Udp,
                _ => unreachable!(),
            };
            p == proto
                && match &ps.port {
                    None => true,
                    Some(PortMatch::Number(n)) => *n == port,
                    Some(PortMatch::Range(a, b)) => *a <= port && port <= *b,
                    Some(PortMatch::Named(name)) => dst.is_some_and(|d| {
                        inv.endpoints[d].ports.iter().any(|c| {
                            c.name.as_deref() == Some(name) && c.protocol == p && c.port == port
                        })
                    }),
                }
        });
    peer_ok && port_ok
}

/// (allowed, audited) for `subject`'s policy in `dir`:
/// 1. admin policies by priority, then declaration; rules in order; the first match decides,
///    `pass` goes to step 2;
/// 2. the NetworkPolicy tier: a matching deny denies; else a matching allow or audit allows
///    (audited if any audit matched); else a direction some policy isolates denies;
/// 3. baseline policies in declaration order, first match decides;
/// 4. allow.
fn brute_direction(
    pols: &[Policy],
    inv: &Inventory,
    subject: usize,
    remote: (Option<usize>, IpAddr),
    dir: PolicyDirection,
    l4: L4Match,
) -> (bool, bool) {
    let s = &inv.endpoints[subject];
    let ns_labels = inv.namespace_labels(&s.namespace).unwrap();
    let selecting: Vec<&Policy> = pols
        .iter()
        .filter(|p| p.namespace.as_ref().is_none_or(|n| *n == s.namespace))
        .filter(|p| {
            p.subject
                .namespaces
                .as_ref()
                .is_none_or(|sel| label_match(sel, ns_labels))
        })
        .filter(|p| label_match(&p.subject.pods, &s.labels))
        .collect();
    let hits = |p: &Policy, r: &Rule| {
        r.direction == dir && brute_rule(p, r, inv, subject, remote, dir, l4)
    };
    let decide = |a: Action| (a != Action::Deny, a == Action::Audit);
    let mut admin: Vec<&Policy> = selecting
        .iter()
        .copied()
        .filter(|p| matches!(p.tier, Tier::Admin { .. }))
        .collect();
    // Stable: equal priorities keep declaration order.
    admin.sort_by_key(|p| match p.tier {
        Tier::Admin { priority } => priority,
        _ => unreachable!(),
    });
    let first_admin = admin
        .iter()
        .flat_map(|p| p.rules.iter().map(move |r| (*p, r)))
        .find(|(p, r)| hits(p, r));
    if let Some((_, r)) = first_admin
        && r.action != Action::Pass
    {
        return decide(r.action);
    }
    let default: Vec<&Policy> = selecting
        .iter()
        .copied()
        .filter(|p| p.tier == Tier::Default)
        .collect();
    let matched: Vec<Action> = default
        .iter()
        .flat_map(|p| p.rules.iter().filter(|r| hits(p, r)).map(|r| r.action))
        .collect();
    if matched.contains(&Action::Deny) {
        return (false, false);
    }
    if !matched.is_empty() {
        return (true, matched.contains(&Action::Audit));
    }
    let isolates = |p: &Policy| match &p.isolate {
        Some(d) => d.contains(&dir),
        // The AST's documented default (the k8s reader always writes policyTypes out).
        None => {
            let has = |d| p.rules.iter().any(|r| r.direction == d);
            has(dir) || (dir == PolicyDirection::Ingress && p.rules.is_empty())
        }
    };
    if default.iter().any(|p| isolates(p)) {
        return (false, false);
    }
    selecting
        .iter()
        .filter(|p| p.tier == Tier::Baseline)
        .flat_map(|p| p.rules.iter().map(move |r| (*p, r)))
        .find(|(p, r)| hits(p, r))
        .map_or((true, false), |(_, r)| decide(r.action))
}

fn ends(inv: &Inventory) -> Vec<(Option<usize>, IpAddr)> {
    let mut v: Vec<_> = (0..inv.endpoints.len())
        .map(|i| (Some(i), inv.endpoints[i].ips[0]))
        .collect();
    v.extend(EXTERNAL.iter().map(|s| (None, s.parse().unwrap())));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn evaluator_matches_brute_force_resolved_and_planned_tables(pols in prop::collection::vec(policy(), 0..5)) {
        let inv = Inventory::parse("inv", INV).unwrap();
        let doc = Document { items: pols.iter().cloned().map(Item::Policy).collect() };
        let (ir, diags) = ir::lower(&[doc]);
        // Overlapping CIDR peers in one rule are rejected by design; skip those inputs.
        prop_assume!(!diags.has_errors());
        let ids = identity::allocate(&inv, &ir);
        let classes = Classes::build(&inv, &ids, None);
        let resolved: Vec<_> = (0..inv.endpoints.len())
            .map(|e| resolve::policy_for(&ir, &inv, &ids, e))
            .collect();
        let tables: Vec<_> = resolved
            .iter()
            .map(|p| {
                let build = |d: &Option<resolve::DirectionPolicy>| {
                    d.as_ref().map(|d| DecisionTable::build(d, &classes))
                };
                (build(&p.egress), build(&p.ingress))
            })
            .collect();
        for src in ends(&inv) {
            let Some(s) = src.0 else { continue };
            for dst in ends(&inv) {
                for l4 in l4s() {
                    let flow = Flow {
                        src: FlowEnd::Endpoint(s),
                        dst: match dst.0 { Some(d) => FlowEnd::Endpoint(d), None => FlowEnd::Ip(dst.1) },
                        l4,
                    };
                    let v = eval::evaluate(&ir, &inv, &flow).unwrap();
                    let ctx = format!("{src:?} -> {dst:?} {l4:?}\n{v:?}");
                    // 1. Brute force.
                    let eg = brute_direction(&pols, &inv, s, dst, PolicyDirection::Egress, l4);
                    let ing = dst.0.map_or((true, false), |d| {
                        brute_direction(&pols, &inv, d, src, PolicyDirection::Ingress, l4)
                    });
                    prop_assert_eq!((v.allow, v.audited), (eg.0 && ing.0, eg.1 || ing.1), "brute force: {}", ctx);
                    // 2. Resolved tables.
                    let decide = |dp: &Option<resolve::DirectionPolicy>, ip: IpAddr| {
                        dp.as_ref().map_or((true, false), |dp| {
                            let d = dp.evaluate(ids.of_ip(&inv, ip, None), ids.cidr_of_ip(ip), l4);
                            (d.allow, d.audited)
                        })
                    };
                    let eg = decide(&resolved[s].egress, dst.1);
                    let ing = dst.0.map_or((true, false), |d| decide(&resolved[d].ingress, src.1));
                    prop_assert_eq!((v.allow, v.audited), (eg.0 && ing.0, eg.1 || ing.1), "resolved: {}", ctx);
                    // 3. Planned tables, through the ipcache.
                    let lookup = |t: &Option<DecisionTable>, ip: IpAddr| {
                        t.as_ref().map_or((true, false), |t| {
                            let class = classes.class_of_ip(ip).expect("the ipcache has 0.0.0.0/0");
                            let v = t.lookup(class, l4);
                            (v.allow, v.audited)
                        })
                    };
                    let eg = lookup(&tables[s].0, dst.1);
                    let ing = dst.0.map_or((true, false), |d| lookup(&tables[d].1, src.1));
                    prop_assert_eq!((v.allow, v.audited), (eg.0 && ing.0, eg.1 || ing.1), "planned: {}", ctx);
                }
            }
        }
    }
}
