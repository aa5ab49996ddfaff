//! Property tests of the DSL: printing any valid tree and parsing it back gives the same tree,
//! printing is idempotent, and the parser never panics (on noise or on damaged programs).

use proptest::prelude::*;
use sluice_compiler::diag::render_plain;
use sluice_compiler::source::SourceMap;
use sluice_compiler::source::ast::*;
use sluice_compiler::source::dsl;
use std::net::IpAddr;

const N: Span = Span::NONE;

/// Label keys/values/names: mostly realistic, sometimes keywords or arbitrary text (quoted).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9][a-z0-9._-]{0,8}",
        2 => "([a-z]{1,5}\\.)?[a-z]{1,5}\\.io/[a-z][a-z.-]{0,8}",
        2 => prop::sample::select(vec![
            "all", "pods", "namespaces", "in", "notin", "tier", "select", "ingress", "egress",
            "rule", "world", "cidr", "except", "ports", "proto", "policy", "include", "none",
        ])
        .prop_map(String::from),
        1 => "\\PC{0,6}",
        1 => any::<String>(),
    ]
}

fn label_expr() -> impl Strategy<Value = LabelExpr> {
    let ops = prop_oneof![
        Just(LabelOp::Eq),
        Just(LabelOp::NotEq),
        Just(LabelOp::In),
        Just(LabelOp::NotIn),
        Just(LabelOp::Exists),
        Just(LabelOp::DoesNotExist),
    ];
    (text(), ops, prop::collection::vec(text(), 1..4)).prop_map(|(key, op, mut values)| {
        match op {
            LabelOp::Eq | LabelOp::NotEq => values.truncate(1),
            LabelOp::In | LabelOp::NotIn => {}
            LabelOp::Exists | LabelOp::DoesNotExist => values.clear(),
        }
        LabelExpr {
            key,
            op,
            values,
            span: N,
        }
    })
}

fn selector() -> impl Strategy<Value = Selector> {
    prop::collection::vec(label_expr(), 0..4).prop_map(|exprs| Selector { exprs, span: N })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        any::<[u8; 4]>().prop_map(|a| IpAddr::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped())),
    ]
}

fn cidr() -> impl Strategy<Value = Cidr> {
    (ip(), any::<u8>()).prop_map(|(addr, p)| {
        let max = if addr.is_ipv4() { 33 } else { 129 };
        Cidr {
            addr,
            prefix: p % max,
        }
    })
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        (prop::option::of(selector()), prop::option::of(selector())).prop_map(
            |(namespaces, pods)| Peer::Endpoints {
                namespaces,
                pods,
                span: N
            }
        ),
        (cidr(), prop::collection::vec(cidr(), 0..3)).prop_map(|(cidr, except)| Peer::Cidr {
            cidr,
            except,
            span: N
        }),
        prop_oneof![
            Just(Entity::World),
            Just(Entity::Host),
            Just(Entity::Cluster),
            Just(Entity::All)
        ]
        .prop_map(|entity| Peer::Entity { entity, span: N }),
    ]
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    let port_proto = prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp),
        Just(Protocol::Any)
    ];
    let port = prop_oneof![
        (1u16..=65535).prop_map(PortMatch::Number),
        (1u16..=65535, 1u16..=65535).prop_map(|(a, b)| PortMatch::Range(a.min(b), a.max(b))),
        "[a-z]([a-z0-9-]{0,13}[a-z0-9])?".prop_map(PortMatch::Named),
    ];
    let icmp =
        (prop::option::of(any::<u8>()), any::<Option<u8>>()).prop_map(|(t, c)| Protocol::Icmp {
            icmp_type: t,
            code: t.and(c),
        });
    prop_oneof![
        (port_proto.clone(), port).prop_map(|(protocol, p)| PortSpec {
            protocol,
            port: Some(p),
            span: N
        }),
        prop_oneof![port_proto, icmp].prop_map(|protocol| PortSpec {
            protocol,
            port: None,
            span: N
        }),
    ]
}

fn rule(admin: bool) -> impl Strategy<Value = Rule> {
    let action = if admin {
        prop_oneof![
            Just(Action::Allow),
            Just(Action::Deny),
            Just(Action::Audit),
            Just(Action::Pass)
        ]
        .boxed()
    } else {
        prop_oneof![Just(Action::Allow), Just(Action::Deny), Just(Action::Audit)].boxed()
    };
    (
        prop::option::of(text()),
        prop_oneof![
            Just(PolicyDirection::Ingress),
            Just(PolicyDirection::Egress)
        ],
        action,
        prop::collection::vec(peer(), 0..3),
        prop::collection::vec(port_spec(), 0..4),
    )
        .prop_map(|(name, direction, action, peers, ports)| Rule {
            name,
            direction,
            action,
            peers,
            ports,
            span: N,
        })
}

fn verdict() -> impl Strategy<Value = VerdictRule> {
    (
        prop::option::of(text()),
        prop_oneof![
            Just(PolicyDirection::Ingress),
            Just(PolicyDirection::Egress)
        ],
        text(),
        "[0-9a-f]{64}",
        prop_oneof![Just(OnTrap::Deny), Just(OnTrap::Allow), Just(OnTrap::Pass)],
    )
        .prop_map(|(name, direction, module, sha256, on_trap)| VerdictRule {
            name,
            direction,
            module,
            sha256,
            on_trap,
            span: N,
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    let tier = prop_oneof![
        any::<u32>().prop_map(|priority| Tier::Admin { priority }),
        Just(Tier::Default),
        Just(Tier::Baseline),
    ];
    let isolate = prop::option::of(prop::sample::select(vec![
        vec![],
        vec![PolicyDirection::Ingress],
        vec![PolicyDirection::Egress],
        vec![PolicyDirection::Ingress, PolicyDirection::Egress],
        vec![PolicyDirection::Egress, PolicyDirection::Ingress],
    ]));
    (
        tier,
        text(),
        prop::option::of(text()),
        prop::option::of(selector()),
        selector(),
        isolate,
    )
        .prop_flat_map(|(tier, name, namespace, ns_sel, pods, isolate)| {
            let admin = matches!(tier, Tier::Admin { .. });
            (
                prop::collection::vec(rule(admin), 0..4),
                prop::collection::vec(verdict(), 0..3),
            )
                .prop_map(move |(rules, verdicts)| Policy {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    tier,
                    subject: Subject {
                        namespaces: ns_sel.clone(),
                        pods: pods.clone(),
                        span: N,
                    },
                    isolate: isolate.clone(),
                    rules,
                    verdicts,
                    span: N,
                    name_span: N,
                })
        })
}

fn masquerade() -> impl Strategy<Value = Masquerade> {
    let egress = prop::option::of(prop_oneof![
        text().prop_map(Egress::Interface),
        ip().prop_map(Egress::Address)
    ]);
    (
        prop::collection::vec(cidr(), 0..14),
        any::<bool>(),
        any::<bool>(),
        egress,
    )
        .prop_map(
            |(non_masquerade, link_local, link_local_v6, egress)| Masquerade {
                non_masquerade,
                link_local,
                link_local_v6,
                egress,
                span: N,
            },
        )
}

fn lb_block() -> impl Strategy<Value = LbBlock> {
    prop_oneof![
        cidr().prop_map(LbBlock::Cidr),
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(a, b)| {
            let (a, b) = (IpAddr::from(a), IpAddr::from(b));
            LbBlock::Range(a.min(b), a.max(b))
        }),
        (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(a, b)| {
            let (a, b) = (IpAddr::from(a), IpAddr::from(b));
            LbBlock::Range(a.min(b), a.max(b))
        }),
    ]
}

fn pool() -> impl Strategy<Value = Pool> {
    let cidrs = || prop::collection::vec(cidr(), 1..3);
    let kind = prop_oneof![
        (cidrs(), 0u8..=128).prop_map(|(cidrs, node_mask)| PoolKind::Cluster { cidrs, node_mask }),
        (cidrs(), 0u8..=128, selector(), prop::option::of(selector())).prop_map(
            |(cidrs, node_mask, pods, namespaces)| PoolKind::Multi {
                cidrs,
                node_mask,
                pods,
                namespaces
            }
        ),
        (prop::collection::vec(lb_block(), 1..3), selector())
            .prop_map(|(blocks, services)| PoolKind::Lb { blocks, services }),
        Just(PoolKind::HostScope),
    ];
    (text(), kind).prop_map(|(name, kind)| Pool {
        name,
        kind,
        span: N,
    })
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => policy().prop_map(Item::Policy),
        1 => masquerade().prop_map(Item::Masquerade),
        1 => prop::collection::vec(pool(), 0..4).prop_map(|pools| Item::Ipam(Ipam { pools, span: N })),
        1 => text().prop_map(|path| Item::Include(Include { path, span: N })),
    ]
}

fn document() -> impl Strategy<Value = Document> {
    prop::collection::vec(item(), 0..5).prop_map(|items| Document { items })
}

fn parse_or_panic(text: &str) -> Document {
    let mut sources = SourceMap::new();
    let id = sources.add("gen.sluice", text.to_string());
    match dsl::parse(id, text) {
        Ok(doc) => doc,
        Err(d) => panic!(
            "printed text does not parse:\n{text}\n{}",
            render_plain(&d, &sources)
        ),
    }
}

/// Every node with a span got a real one, inside the text.
fn check_spans(doc: &Document, len: usize) {
    let mut spans = Vec::new();
    let sel = |s: &Selector, spans: &mut Vec<Span>| {
        spans.push(s.span);
        spans.extend(s.exprs.iter().map(|e| e.span));
    };
    for item in &doc.items {
        match item {
            Item::Include(i) => spans.push(i.span),
            Item::Policy(p) => {
                spans.extend([p.span, p.name_span, p.subject.span]);
                sel(&p.subject.pods, &mut spans);
                if let Some(n) = &p.subject.namespaces {
                    sel(n, &mut spans);
                }
                for r in &p.rules {
                    spans.push(r.span);
                    for peer in &r.peers {
                        spans.push(peer.span());
                        if let Peer::Endpoints {
                            namespaces, pods, ..
                        } = peer
                        {
                            for s in [namespaces, pods].into_iter().flatten() {
                                sel(s, &mut spans);
                            }
                        }
                    }
                    spans.extend(r.ports.iter().map(|p| p.span));
                }
            }
            Item::Masquerade(m) => spans.push(m.span),
            Item::Ipam(i) => {
                spans.push(i.span);
                for p in &i.pools {
                    spans.push(p.span);
                }
            }
        }
    }
    for s in spans {
        assert!(
            !s.is_none() && s.start <= s.end && s.end as usize <= len,
            "bad span {s:?}"
        );
    }
}

fn json(doc: &Document) -> serde_json::Value {
    serde_json::to_value(doc).unwrap()
}

/// A valid program to damage.
fn damage_base() -> impl Strategy<Value = String> {
    let demo = include_str!("../../policies/demo.sluice").to_string();
    prop_oneof![Just(demo), document().prop_map(|d| dsl::print(&d))]
}

fn check_no_panic(text: &str) {
    let mut sources = SourceMap::new();
    let id = sources.add("x.sluice", text.to_string());
    match dsl::parse(id, text) {
        Ok(doc) => {
            // Whatever parses must print to something that parses to the same tree.
            let printed = dsl::print(&doc);
            assert_eq!(json(&parse_or_panic(&printed)), json(&doc));
            let formatted = dsl::format(id, text).expect("parsed once, formats");
            assert_eq!(
                json(&parse_or_panic(&formatted)),
                json(&doc),
                "format:\n{formatted}"
            );
        }
        Err(d) => {
            assert!(d.has_errors());
            for diag in &d.items {
                for l in &diag.labels {
                    assert!(l.span.start <= l.span.end && l.span.end as usize <= text.len());
                    assert!(text.is_char_boundary(l.span.start as usize));
                    assert!(text.is_char_boundary(l.span.end as usize));
                }
            }
            let _ = render_plain(&d, &sources);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn print_parse_round_trip(doc in document()) {
        let printed = dsl::print(&doc);
        let parsed = parse_or_panic(&printed);
        prop_assert_eq!(json(&parsed), json(&doc), "printed:\n{}", printed);
        check_spans(&parsed, printed.len());
        // Idempotent, and `format` (comment-keeping) agrees on comment-free text.
        prop_assert_eq!(dsl::print(&parsed), printed.clone());
        prop_assert_eq!(dsl::format(SourceId(0), &printed).unwrap(), printed);
    }

    #[test]
    fn never_panics_on_strings(s in "\\PC*") {
        check_no_panic(&s);
    }

    #[test]
    fn never_panics_on_bytes(b in prop::collection::vec(any::<u8>(), 0..200)) {
        check_no_panic(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn never_panics_on_damaged_programs(
        base in damage_base(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>(), prop::sample::select(vec![
            "{", "}", "(", ")", ",", "\"", "/", "-", "!", "=", "#", "/*", "\n", " ", "0", "99999",
            "in", "ports", "from", "tcp", ":", "policy", "x",
        ])), 1..6),
    ) {
        let mut text = base;
        for (at, insert, piece) in edits {
            let mut pos = at.index(text.len() + 1);
            while !text.is_char_boundary(pos) {
                pos -= 1;
            }
            if insert {
                text.insert_str(pos, piece);
            } else if pos < text.len() {
                let end = (pos + 1..=text.len()).find(|e| text.is_char_boundary(*e)).unwrap();
                text.replace_range(pos..end, "");
            }
        }
        check_no_panic(&text);
    }
}

/// Comments and blank lines survive `format`, and formatting is idempotent.
#[test]
fn format_keeps_comments() {
    let text = "# top\n\npolicy \"a\" {   # trailing head\n  select all\n\n\n  // group\n  ingress allow # why\n  /* block */ egress deny\n  # last\n}\n# end\n";
    let once = dsl::format(SourceId(0), text).unwrap();
    assert_eq!(
        once,
        "# top\n\npolicy \"a\" { # trailing head\n  select all\n\n  // group\n  ingress allow # why\n  /* block */\n  egress deny\n  # last\n}\n# end\n"
    );
    assert_eq!(dsl::format(SourceId(0), &once).unwrap(), once);
}
