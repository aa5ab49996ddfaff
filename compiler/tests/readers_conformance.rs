//! Every NetworkPolicy of the external conformance corpus (`shared/conformance/netpol`, from the
//! Kubernetes e2e suite) must read without error, with the semantics spot-checked on a few.

use serde_norway::Value;
use sluice_compiler::diag::render_plain;
use sluice_compiler::source::SourceMap;
use sluice_compiler::source::ast::*;
use sluice_compiler::source::{dsl, k8s};
use std::path::PathBuf;

/// `shared/conformance/netpol` beside the repository (or beside a parent, for git worktrees);
/// `SLUICE_CONFORMANCE_DIR` overrides. Missing corpus fails the test: it is not optional.
fn corpus() -> PathBuf {
    sluice_compiler::conformance::corpus_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("shared/conformance/netpol not found beside the repository (set SLUICE_CONFORMANCE_DIR)")
}

/// Reads the `policies` of one case through the NetworkPolicy reader, one document each.
fn read_case(name: &str) -> Vec<Policy> {
    let path = corpus().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let case: Value = serde_norway::from_str(&text).unwrap();
    let policies = case["policies"].as_sequence().cloned().unwrap_or_default();
    let yaml: Vec<String> = policies
        .iter()
        .map(|p| serde_norway::to_string(p).unwrap())
        .collect();
    let joined = yaml.join("---\n");
    let mut sm = SourceMap::new();
    let id = sm.add(name, joined.as_str());
    let doc =
        k8s::read(id, &joined).unwrap_or_else(|d| panic!("{name}:\n{}", render_plain(&d, &sm)));
    assert_eq!(doc.items.len(), policies.len(), "{name}");
    doc.items
        .into_iter()
        .map(|i| match i {
            Item::Policy(p) => p,
            other => panic!("{name}: {other:?}"),
        })
        .collect()
}

#[test]
fn every_conformance_policy_reads() {
    let mut names: Vec<String> = std::fs::read_dir(corpus())
        .expect("conformance corpus readable")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("case-") && n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 58, "found only {} cases", names.len());
    let mut total = 0;
    for n in &names {
        let policies = read_case(n);
        for p in &policies {
            assert!(!p.name.is_empty() && p.namespace.is_some(), "{n}");
            assert!(p.isolate.as_ref().is_some_and(|i| !i.is_empty()), "{n}");
            total += 1;
        }
        // `sluice convert` output must mean the same: printing and parsing back gives the
        // same tree (spans aside, which JSON leaves out).
        let doc = Document {
            items: policies.into_iter().map(Item::Policy).collect(),
        };
        let printed = dsl::print(&doc);
        let back = dsl::parse(SourceId(0), &printed)
            .unwrap_or_else(|d| panic!("{n}: printed DSL does not parse: {d:?}\n{printed}"));
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&doc).unwrap(),
            "{n}:\n{printed}"
        );
    }
    assert!(total >= 58, "only {total} policies");
}

#[test]
fn conformance_semantics_spot_checks() {
    // Updated to an empty ingress list: isolated for ingress, nothing allowed.
    let p = &read_case("case-022-enforce-updated-policy-step2.yaml")[0];
    assert_eq!(p.isolate, Some(vec![PolicyDirection::Ingress]));
    assert!(p.rules.is_empty());

    // ipBlock with except, egress only.
    let p = &read_case("case-043-enforce-except-clause-while-egress-access-to-server-in.yaml")[0];
    assert_eq!(p.isolate, Some(vec![PolicyDirection::Egress]));
    let Peer::Cidr { cidr, except, .. } = &p.rules[0].peers[0] else {
        panic!("{p:?}")
    };
    assert_eq!(cidr.to_string(), "0.0.0.0/4");
    assert_eq!(except[0].to_string(), "10.244.0.11/32");

    // Named port, namespace selector only.
    let p = &read_case("case-019-allow-ingress-access-from-namespace-on-one-named-port.yaml")[0];
    let r = &p.rules[0];
    assert_eq!(
        r.ports[0].port,
        Some(PortMatch::Named("serve-80-tcp".into()))
    );
    assert!(matches!(
        &r.peers[0],
        Peer::Endpoints {
            namespaces: Some(_),
            pods: None,
            ..
        }
    ));
    assert_eq!(p.namespace.as_deref(), Some("x"));
}
