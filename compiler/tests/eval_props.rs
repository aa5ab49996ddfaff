//! Property tests of the reference evaluator on random small NetworkPolicy-shaped policies:
//!
//! 1. it agrees with a brute-force check of Kubernetes NetworkPolicy semantics written
//!    independently here (straight from the conformance README's rules);
//! 2. it agrees with the resolved, identity-based form codegen consumes
//!    (`resolve::policy_for` + `DirectionPolicy::evaluate`), on every flow of the inventory.

use proptest::prelude::*;
use sluice_compiler::eval::{self, Flow, FlowEnd};
use sluice_compiler::ir::{self, L4, L4Match};
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

const EXTERNAL: &[&str] = &["8.8.8.8", "10.0.9.9"];

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
                Just("8.8.8.8/32")
            ],
            prop::bool::ANY
        )
            .prop_map(|(c, ex)| {
                let cidr: Cidr = c.parse().unwrap();
                let except = if ex && cidr.prefix < 24 {
                    vec!["10.0.0.0/24".parse().unwrap()]
                } else if ex && cidr.prefix == 24 {
                    vec!["10.0.0.2/32".parse().unwrap()]
                } else {
                    vec![]
                };
                Peer::Cidr {
                    cidr,
                    except,
                    span: Span::NONE,
                }
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

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port(), 0..3),
    )
        .prop_map(|(direction, peers, ports)| Rule {
            name: None,
            direction,
            action: Action::Allow,
            peers,
            ports,
            span: Span::NONE,
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just("x"), Just("y")],
        selector(),
        prop::option::of(prop_oneof![
            Just(vec![Direction::Ingress]),
            Just(vec![Direction::Egress]),
            Just(vec![Direction::Ingress, Direction::Egress]),
        ]),
        prop::collection::vec(rule(), 0..3),
    )
        .prop_map(|(ns, pods, isolate, rules)| Policy {
            name: "p".into(),
            namespace: Some(ns.into()),
            tier: Tier::Default,
            subject: Subject {
                namespaces: None,
                pods,
                span: Span::NONE,
            },
            isolate,
            rules,
            span: Span::NONE,
            name_span: Span::NONE,
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

fn brute_direction(
    pols: &[Policy],
    inv: &Inventory,
    subject: usize,
    remote: (Option<usize>, IpAddr),
    dir: Direction,
    l4: L4Match,
) -> bool {
    let s = &inv.endpoints[subject];
    let selecting: Vec<&Policy> = pols
        .iter()
        .filter(|p| p.namespace.as_deref() == Some(s.namespace.as_str()))
        .filter(|p| label_match(&p.subject.pods, &s.labels))
        .collect();
    let isolates = |p: &Policy| match &p.isolate {
        Some(d) => d.contains(&dir),
        // The AST's documented default (the k8s reader always writes policyTypes out).
        None => {
            let has = |d| p.rules.iter().any(|r| r.direction == d);
            has(dir) || (dir == Direction::Ingress && p.rules.is_empty())
        }
    };
    if !selecting.iter().any(|p| isolates(p)) {
        return true;
    }
    let dst = match dir {
        Direction::Ingress => Some(subject),
        Direction::Egress => remote.0,
    };
    selecting.iter().any(|p| {
        p.rules.iter().filter(|r| r.direction == dir).any(|r| {
            let peer_ok = r.peers.is_empty()
                || r.peers.iter().any(|peer| match peer {
                    Peer::Endpoints {
                        namespaces, pods, ..
                    } => remote.0.is_some_and(|e| {
                        let ep = &inv.endpoints[e];
                        let ns_ok = match namespaces {
                            None => Some(ep.namespace.as_str()) == p.namespace.as_deref(),
                            Some(sel) => {
                                label_match(sel, inv.namespace_labels(&ep.namespace).unwrap())
                            }
                        };
                        ns_ok && pods.as_ref().is_none_or(|sel| label_match(sel, &ep.labels))
                    }),
                    Peer::Cidr { cidr, except, .. } => {
                        cidr.contains(remote.1) && !except.iter().any(|e| e.contains(remote.1))
                    }
                    Peer::Entity { .. } => unreachable!(),
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
                                    c.name.as_deref() == Some(name)
                                        && c.protocol == p
                                        && c.port == port
                                })
                            }),
                        }
                });
            peer_ok && port_ok
        })
    })
}

fn ends(inv: &Inventory) -> Vec<(Option<usize>, IpAddr)> {
    let mut v: Vec<_> = (0..inv.endpoints.len())
        .map(|i| (Some(i), inv.endpoints[i].ips[0]))
        .collect();
    v.extend(EXTERNAL.iter().map(|s| (None, s.parse().unwrap())));
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn evaluator_matches_brute_force_and_resolved_tables(pols in prop::collection::vec(policy(), 0..4)) {
        let inv = Inventory::parse("inv", INV).unwrap();
        let doc = Document { items: pols.iter().cloned().map(Item::Policy).collect() };
        let (ir, diags) = ir::lower(&[doc]);
        // Overlapping CIDR peers in one rule are rejected by design; skip those inputs.
        prop_assume!(!diags.has_errors());
        let ids = identity::allocate(&inv, &ir);
        let resolved: Vec<_> = (0..inv.endpoints.len())
            .map(|e| resolve::policy_for(&ir, &inv, &ids, e))
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
                    // 1. Brute force.
                    let want = brute_direction(&pols, &inv, s, dst, Direction::Egress, l4)
                        && dst.0.is_none_or(|d| brute_direction(&pols, &inv, d, src, Direction::Ingress, l4));
                    prop_assert_eq!(v.allow, want, "{:?} -> {:?} {:?}\n{:?}", src, dst, l4, v);
                    // 2. Resolved tables.
                    let eg = resolved[s].egress.as_ref().is_none_or(|dp| {
                        dp.evaluate(ids.of_ip(&inv, dst.1, None), ids.cidr_of_ip(dst.1), l4).allow
                    });
                    let ing = dst.0.is_none_or(|d| resolved[d].ingress.as_ref().is_none_or(|dp| {
                        dp.evaluate(ids.of_ip(&inv, src.1, None), ids.cidr_of_ip(src.1), l4).allow
                    }));
                    prop_assert_eq!(v.allow, eg && ing, "resolved: {:?} -> {:?} {:?}", src, dst, l4);
                }
            }
        }
    }
}
