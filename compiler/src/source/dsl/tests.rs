//! Parser unit tests for the forms the printer never writes (defaults, long forms, lookahead),
//! which the round-trip property cannot reach.

use super::parse;
use crate::source::ast::*;

fn doc(text: &str) -> Document {
    parse(SourceId(0), text).unwrap_or_else(|d| panic!("{text}: {:?}", d.items))
}

fn policy(body: &str) -> Policy {
    match doc(&format!("policy p {{ {body} }}")).items.remove(0) {
        Item::Policy(p) => p,
        _ => unreachable!(),
    }
}

#[test]
fn port_defaults_to_tcp_and_long_forms() {
    let p = policy("select all ingress allow ports 80, http egress allow to entity world");
    assert_eq!(p.rules[0].ports[0].protocol, Protocol::Tcp);
    assert_eq!(p.rules[0].ports[0].port, Some(PortMatch::Number(80)));
    assert_eq!(
        p.rules[0].ports[1].port,
        Some(PortMatch::Named("http".into()))
    );
    assert!(matches!(
        p.rules[1].peers[0],
        Peer::Entity {
            entity: Entity::World,
            ..
        }
    ));
}

#[test]
fn exists_key_before_in_namespaces() {
    let p = policy("select app in namespaces { team = a }");
    assert_eq!(p.subject.pods.exprs[0].op, LabelOp::Exists);
    assert_eq!(p.subject.namespaces.unwrap().exprs[0].key, "team");
    let p = policy("select tier in (a, b), !legacy");
    assert_eq!(p.subject.pods.exprs[0].op, LabelOp::In);
    assert_eq!(p.subject.pods.exprs[0].values, ["a", "b"]);
}

#[test]
fn except_list_ends_at_next_peer() {
    let p = policy(
        "select all ingress deny from cidr 10.0.0.0/8 except 10.1.0.0/16, 10.2.0.0/16, world, pods",
    );
    let r = &p.rules[0];
    assert_eq!(r.peers.len(), 3);
    assert!(matches!(&r.peers[0], Peer::Cidr { except, .. } if except.len() == 2));
    assert!(matches!(
        r.peers[2],
        Peer::Endpoints {
            namespaces: None,
            pods: None,
            ..
        }
    ));
}

#[test]
fn host_bits_and_overlaps_parse() {
    let p = policy("select all egress allow to cidr 10.1.2.3/8, cidr 10.0.0.0/16");
    assert!(matches!(&p.rules[0].peers[0], Peer::Cidr { cidr, .. } if !cidr.is_canonical()));
}

#[test]
fn spans_point_at_the_text() {
    let text = "policy \"web\" {\n  select app = web\n  ingress allow ports 80/udp\n}\n";
    let Item::Policy(p) = &doc(text).items[0] else {
        unreachable!()
    };
    let at = |s: Span| &text[s.start as usize..s.end as usize];
    assert_eq!(at(p.name_span), "\"web\"");
    assert_eq!(at(p.subject.span), "app = web");
    assert_eq!(at(p.subject.pods.exprs[0].span), "app = web");
    assert_eq!(at(p.rules[0].span), "ingress allow ports 80/udp");
    assert_eq!(at(p.rules[0].ports[0].span), "80/udp");
    assert_eq!(at(p.span), &text[..text.len() - 1]);
}

#[test]
fn keywords_are_labels_where_a_label_is_expected() {
    let p = policy("select tier = pci ingress allow from pods { policy = strict, ingress }");
    assert_eq!(p.subject.pods.exprs[0].key, "tier");
    let Peer::Endpoints { pods: Some(s), .. } = &p.rules[0].peers[0] else {
        panic!()
    };
    assert_eq!(s.exprs[1].key, "ingress");
}

#[test]
fn value_errors_are_all_reported() {
    let err = parse(
        SourceId(0),
        "policy p { select all ingress pass ports 0, 70000, 9-1 }",
    )
    .unwrap_err();
    let codes: Vec<_> = err.items.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        [
            "sluice::syntax::pass-outside-admin",
            "sluice::syntax::port",
            "sluice::syntax::port",
            "sluice::syntax::port"
        ]
    );
}
