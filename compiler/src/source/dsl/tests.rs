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

/// Verdict rules: `on-trap` defaults to deny; `sluice fmt` keeps them where they were written
/// among the rules (with their comments), writes `on-trap` out and wraps the long line; a
/// document without positions prints them first; the JSON form carries them.
#[test]
fn verdict_rules_parse_format_and_serialize() {
    const SHA: &str = "a3d74436c7dd34344cb99790f24940fa603e7d9f90325ccbb73a9df0019c6552";
    let text = format!(
        "policy g {{ tier admin priority 5 select app = web\n  ingress deny from world\n  # guards ssh\n  rule \"ssh\" ingress verdict \"ssh-guard.wasm\" sha256 \"{SHA}\"\n  egress verdict \"e.wasm\" sha256 \"{SHA}\" on-trap pass }}\n"
    );
    let p = match doc(&text).items.remove(0) {
        Item::Policy(p) => p,
        _ => unreachable!(),
    };
    assert_eq!(p.verdicts.len(), 2);
    assert_eq!(p.verdicts[0].name.as_deref(), Some("ssh"));
    assert_eq!(p.verdicts[0].module, "ssh-guard.wasm");
    assert_eq!(p.verdicts[0].on_trap, OnTrap::Deny);
    assert_eq!(p.verdicts[1].direction, PolicyDirection::Egress);
    assert_eq!(p.verdicts[1].on_trap, OnTrap::Pass);

    let formatted = super::format(SourceId(0), &text).unwrap();
    let want = format!(
        "policy \"g\" {{\n  tier admin priority 5\n  select app = web\n  ingress deny from world\n  # guards ssh\n  rule \"ssh\" ingress verdict \"ssh-guard.wasm\"\n      sha256 \"{SHA}\" on-trap deny\n  egress verdict \"e.wasm\" sha256 \"{SHA}\"\n      on-trap pass\n}}\n"
    );
    assert_eq!(formatted, want);
    assert_eq!(super::format(SourceId(0), &formatted).unwrap(), formatted);

    // Without positions: verdict rules first, as they run first.
    let mut bare = doc(&formatted);
    let json = serde_json::to_string(&bare).unwrap();
    assert!(json.contains(&format!(
        r#""verdicts":[{{"name":"ssh","direction":"ingress","module":"ssh-guard.wasm","sha256":"{SHA}","on_trap":"deny"}}"#
    )));
    bare = serde_json::from_str(&json).unwrap();
    let printed = super::print(&bare);
    let verdict_at = printed.find("verdict").unwrap();
    assert!(
        verdict_at < printed.find("ingress deny").unwrap(),
        "{printed}"
    );
    assert_eq!(super::print(&doc(&printed)), printed);
}
