//! The SDK's builders and ABI glue over the shared policy types (`sluice-policy`): every shape a
//! builder makes survives the JSON wire both ways, builders mean what the DSL means, and the
//! input reader is lenient about fields it does not know.

use sluice_policy::ast;
use sluice_wasm_sdk::abi::{Input, run_json};
use sluice_wasm_sdk::prelude::*;

fn every_shape() -> Document {
    let c = |s: &str| cidr(s).unwrap();
    Document::new()
        .with(
            Policy::new("pci")
                .namespace("payments")
                .pods(Selector::label("app", "api").exists("team"))
                .isolate_both()
                .rule(
                    Rule::ingress()
                        .named("same-ns")
                        .peer(Peer::same_namespace()),
                )
                .rule(
                    Rule::egress()
                        .peer(Peer::cidr_except(c("10.0.0.0/8"), vec![c("10.1.0.0/16")]))
                        .peer(Peer::cidr(c("fd00::/64")))
                        .port(PortSpec::tcp(443))
                        .port(PortSpec::range(Protocol::Udp, 1000, 2000))
                        .port(PortSpec::named(Protocol::Tcp, "metrics"))
                        .port(PortSpec::icmp(Some(8), None))
                        .port(PortSpec::protocol(Protocol::Any)),
                )
                .rule(Rule::egress().deny().peer(Peer::entity(Entity::World))),
        )
        .with(
            Policy::new("admin")
                .tier(Tier::Admin { priority: 10 })
                .namespaces(
                    Selector::all()
                        .is_in("env", ["prod", "stage"])
                        .not_in("x", ["y"]),
                )
                .pods(Selector::all().not_eq("a", "b").does_not_exist("debug"))
                .isolate(&[PolicyDirection::Egress])
                .rule(
                    Rule::egress()
                        .pass()
                        .peer(Peer::endpoints(Selector::all(), Selector::label("k", "v")))
                        .peer(Peer::namespace_named("kube-system"))
                        .port(PortSpec::sctp(9)),
                )
                .rule(Rule::ingress().audit().peer(Peer::entity(Entity::Host))),
        )
        .with(Policy::new("baseline").tier(Tier::Baseline))
        .with(
            Masquerade::new()
                .keep_source_to(c("10.0.0.0/8"))
                .link_local(true)
                .egress(Egress::Interface("eth0".into())),
        )
        .with(Masquerade::new().egress(Egress::Address("192.0.2.1".parse().unwrap())))
        .with(
            Ipam::new()
                .pool(
                    "default",
                    PoolKind::Cluster {
                        cidrs: vec![c("10.244.0.0/16")],
                        node_mask: 24,
                    },
                )
                .pool(
                    "gpu",
                    PoolKind::Multi {
                        cidrs: vec![c("10.250.0.0/16")],
                        node_mask: 26,
                        pods: Selector::label("gpu", "true"),
                        namespaces: Some(Selector::all()),
                    },
                )
                .pool(
                    "lb",
                    PoolKind::Lb {
                        blocks: vec![
                            LbBlock::Cidr(c("192.0.2.0/28")),
                            LbBlock::Range(
                                "192.0.2.100".parse().unwrap(),
                                "192.0.2.120".parse().unwrap(),
                            ),
                        ],
                        services: Selector::all(),
                    },
                )
                .pool("node", PoolKind::HostScope),
        )
}

#[test]
fn every_shape_survives_the_wire() {
    let json = serde_json::to_string(&every_shape()).unwrap();
    let back: ast::Document = serde_json::from_str(&json).unwrap();
    assert_eq!(back.items.len(), 6);
    assert_eq!(back, every_shape());
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}

#[test]
fn builder_meaning_matches_the_ast() {
    let json = serde_json::to_string(
        &Document::new().with(Policy::new("p").rule(Rule::egress().peer(Peer::same_namespace()))),
    )
    .unwrap();
    let doc: ast::Document = serde_json::from_str(&json).unwrap();
    let ast::Item::Policy(p) = &doc.items[0] else {
        panic!("{doc:?}")
    };
    assert_eq!(p.tier, ast::Tier::Default);
    assert!(p.isolate.is_none() && p.namespace.is_none());
    let r = &p.rules[0];
    assert_eq!(
        (r.direction, r.action),
        (ast::PolicyDirection::Egress, ast::Action::Allow)
    );
    assert!(matches!(
        &r.peers[0],
        ast::Peer::Endpoints { namespaces: None, pods: Some(s), .. } if s.exprs.is_empty()
    ));
}

#[test]
fn cidr_parsing_rejects_nonsense() {
    assert!(cidr("10.0.0.0/33").is_err());
    assert!(cidr("10.0.0.0").is_err());
    assert!(cidr("nope/8").is_err());
    assert_eq!(cidr("fd00::/8").unwrap().to_string(), "fd00::/8");
}

fn one_policy_per_namespace(input: &Input) -> Result<Document, String> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Params {
        prefix: String,
    }
    let params: Params = input.params()?;
    let mut doc = Document::new();
    for ns in &input.inventory.namespaces {
        doc.push(Policy::new(format!("{}{}", params.prefix, ns.name)).namespace(&ns.name));
    }
    if doc.items.is_empty() {
        return Err("no namespaces".into());
    }
    Ok(doc)
}

#[test]
fn run_json_wraps_the_generator() {
    let out = run_json(
        br#"{"abi":1,"inventory":{"namespaces":[{"name":"a","labels":{}}],"extra":1},"params":{"prefix":"x-"}}"#,
        one_policy_per_namespace,
    );
    let doc: ast::Document = serde_json::from_slice(&out).unwrap();
    assert!(matches!(&doc.items[0], ast::Item::Policy(p) if p.name == "x-a"));
    // Errors become {"error": ...}, which the host reports as the module's own error.
    let out = run_json(br#"{"abi":1,"inventory":{}}"#, one_policy_per_namespace);
    assert_eq!(out, br#"{"error":"no namespaces"}"#);
    let out = run_json(br#"{"abi":2}"#, one_policy_per_namespace);
    assert!(String::from_utf8(out).unwrap().contains("ABI version 2"));
    let out = run_json(
        br#"{"abi":1,"params":{"prefix":7}}"#,
        one_policy_per_namespace,
    );
    assert!(String::from_utf8(out).unwrap().contains("invalid params"));
}
