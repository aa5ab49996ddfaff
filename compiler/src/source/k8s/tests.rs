use super::*;
use crate::diag::render_plain;
use crate::resolve::InventoryFiles;
use crate::source::SourceMap;
use serde_json::{Value as Json, json};

fn read_ok(text: &str) -> (SourceMap, Document) {
    let mut sm = SourceMap::new();
    let id = sm.add("np.yaml", text);
    match read(id, text) {
        Ok(d) => (sm, d),
        Err(e) => panic!("unexpected errors:\n{}", render_plain(&e, &sm)),
    }
}

fn read_err(text: &str) -> String {
    let mut sm = SourceMap::new();
    let id = sm.add("bad.yaml", text);
    match read(id, text) {
        Ok(d) => panic!("expected an error, got {d:?}"),
        Err(e) => render_plain(&e, &sm),
    }
}

fn json(doc: &Document) -> Json {
    serde_json::to_value(doc).unwrap()
}

fn policy(doc: &Document, i: usize) -> &Policy {
    match &doc.items[i] {
        Item::Policy(p) => p,
        other => panic!("not a policy: {other:?}"),
    }
}

const MULTI: &str = r#"# two policies, as kubectl would apply them
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: api-allow
  namespace: prod
  labels: {team: web}
spec:
  podSelector:
    matchLabels:
      app: api
      tier: backend
    matchExpressions:
    - {key: env, operator: In, values: [prod, staging]}
    - key: canary
      operator: DoesNotExist
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: web}
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: monitoring
    - namespaceSelector: {}
      podSelector:
        matchExpressions:
        - key: role
          operator: NotIn
          values: ["scraper"]
    - ipBlock:
        cidr: 10.0.0.0/8
        except:
        - 10.1.0.0/16
    ports:
    - port: 8080
    - protocol: UDP
      port: 5000
      endPort: 5010
    - port: metrics
    - protocol: SCTP
  egress:
  - {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
spec:
  podSelector: {}
  ingress: []
"#;

#[test]
fn multi_document_exact_ast() {
    let (_, doc) = read_ok(MULTI);
    let expected = json!({"items": [
        {"kind": "policy", "name": "api-allow", "namespace": "prod", "tier": {"tier": "default"},
         "subject": {"pods": {"exprs": [
             {"key": "app", "op": "eq", "values": ["api"]},
             {"key": "tier", "op": "eq", "values": ["backend"]},
             {"key": "env", "op": "in", "values": ["prod", "staging"]},
             {"key": "canary", "op": "does_not_exist"}]}},
         "isolate": ["ingress", "egress"],
         "rules": [
            {"direction": "ingress", "action": "allow",
             "peers": [
                {"peer": "endpoints", "pods": {"exprs": [{"key": "app", "op": "eq", "values": ["web"]}]}},
                {"peer": "endpoints", "namespaces": {"exprs": [
                    {"key": "kubernetes.io/metadata.name", "op": "eq", "values": ["monitoring"]}]}},
                {"peer": "endpoints", "namespaces": {"exprs": []},
                 "pods": {"exprs": [{"key": "role", "op": "not_in", "values": ["scraper"]}]}},
                {"peer": "cidr", "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}],
             "ports": [
                {"protocol": {"name": "tcp"}, "port": {"number": 8080}},
                {"protocol": {"name": "udp"}, "port": {"range": [5000, 5010]}},
                {"protocol": {"name": "tcp"}, "port": {"named": "metrics"}},
                {"protocol": {"name": "sctp"}}]},
            {"direction": "egress", "action": "allow", "peers": [], "ports": []}]},
        {"kind": "policy", "name": "default-deny", "namespace": "default", "tier": {"tier": "default"},
         "subject": {"pods": {"exprs": []}}, "isolate": ["ingress"], "rules": []}
    ]});
    assert_eq!(json(&doc), expected);
    let printed = crate::source::dsl::print(&doc);
    let back = crate::source::dsl::parse(SourceId(1), &printed).expect("printed DSL parses");
    assert_eq!(json(&back), expected, "{printed}");
}

#[test]
fn spans_point_at_names_cidrs_and_ports() {
    let (sm, doc) = read_ok(MULTI);
    let p = policy(&doc, 0);
    assert_eq!(sm.snippet(p.name_span), "api-allow");
    let loc = sm.location(p.name_span).unwrap();
    assert_eq!((loc.line, loc.column), (5, 9));
    let rule = &p.rules[0];
    let Peer::Cidr { span, .. } = &rule.peers[3] else {
        panic!()
    };
    assert_eq!(sm.snippet(*span), "10.0.0.0/8");
    let loc = sm.location(*span).unwrap();
    assert_eq!((loc.line, loc.column), (32, 15));
    assert_eq!(sm.snippet(rule.ports[0].span), "8080");
    assert_eq!(sm.snippet(rule.ports[1].span), "5000\n      endPort: 5010");
    assert_eq!(sm.snippet(rule.ports[2].span), "metrics");
    assert_eq!(sm.snippet(p.subject.pods.exprs[0].span), "app: api");
    let second = policy(&doc, 1);
    assert_eq!(sm.snippet(second.name_span), "default-deny");
    assert!(sm.snippet(second.span).starts_with("apiVersion"));
}

#[test]
fn default_policy_types() {
    // No policyTypes: ingress, plus egress only when egress rules exist.
    let text = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: a, namespace: x}
spec:
  podSelector: {}
  egress:
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: b, namespace: x}
spec:
  podSelector: {}
  egress: []
---
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: c, namespace: x}
spec:
  policyTypes: [Egress]
"#;
    let (_, doc) = read_ok(text);
    assert_eq!(
        policy(&doc, 0).isolate,
        Some(vec![PolicyDirection::Ingress, PolicyDirection::Egress])
    );
    assert_eq!(
        policy(&doc, 1).isolate,
        Some(vec![PolicyDirection::Ingress])
    );
    // Missing podSelector is the empty selector; no rules means nothing is allowed.
    let c = policy(&doc, 2);
    assert_eq!(c.isolate, Some(vec![PolicyDirection::Egress]));
    assert!(c.subject.pods.exprs.is_empty());
    assert!(c.rules.is_empty());
}

#[test]
fn empty_from_means_all_peers_and_empty_ingress_means_none() {
    let text = r#"
kind: NetworkPolicy
apiVersion: networking.k8s.io/v1
metadata: {name: allow-all}
spec:
  podSelector: {}
  ingress:
  - from: []
  - ports: [{port: 80}]
"#;
    let (_, doc) = read_ok(text);
    let p = policy(&doc, 0);
    assert_eq!(p.rules.len(), 2);
    assert!(p.rules[0].peers.is_empty() && p.rules[0].ports.is_empty());
    assert!(p.rules[1].peers.is_empty());
    assert_eq!(p.rules[1].ports[0].port, Some(PortMatch::Number(80)));
}

#[test]
fn lists_and_json() {
    let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: one, namespace: a}
  spec: {podSelector: {}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: two, namespace: b}
  spec: {podSelector: {matchLabels: {x: y}}, policyTypes: [Egress]}
"#;
    let (sm, doc) = read_ok(list);
    assert_eq!(doc.items.len(), 2);
    assert_eq!(policy(&doc, 1).namespace.as_deref(), Some("b"));
    assert_eq!(sm.snippet(policy(&doc, 1).name_span), "two");

    // kubectl get networkpolicies -o json: items without apiVersion/kind.
    let json_text = r#"{
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicyList",
    "items": [
        {
            "metadata": {"name": "web", "namespace": "shop", "uid": "1234", "creationTimestamp": "2024-01-02T03:04:05Z"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
                "policyTypes": ["Ingress"]
            }
        }
    ],
    "metadata": {"resourceVersion": "99"}
}"#;
    let (sm, doc) = read_ok(json_text);
    let p = policy(&doc, 0);
    assert_eq!(p.name, "web");
    assert_eq!(sm.snippet(p.name_span), "\"web\"");
    assert_eq!(sm.snippet(p.rules[0].ports[0].span), "443");
    assert_eq!(
        json(&doc)["items"][0]["rules"][0]["ports"],
        json!([{"protocol": {"name": "tcp"}, "port": {"number": 443}}])
    );
}

#[test]
fn other_kinds_are_rejected() {
    let out = read_err("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n");
    assert!(
        out.contains("expected a NetworkPolicy, found kind `Service`"),
        "{out}"
    );
    assert!(out.contains("bad.yaml:2:7"), "{out}");
}

#[test]
fn bad_yaml_has_position() {
    let out = read_err("kind: NetworkPolicy\nmetadata:\n  name: [a\nspec: {}\n");
    assert!(out.contains("sluice::yaml::invalid"), "{out}");
    assert!(out.contains("bad.yaml:"), "{out}");
}

#[test]
fn wrong_type_for_port() {
    let text = "kind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  ingress:\n  - ports:\n    - port: [80]\n";
    let out = read_err(text);
    assert!(
        out.contains("spec.ingress[0].ports[0].port: invalid type: sequence"),
        "{out}"
    );
    assert!(out.contains("bad.yaml:6:13"), "{out}");
}

#[test]
fn unknown_protocol() {
    let text = "kind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  ingress:\n  - ports:\n    - {protocol: tcp, port: 80}\n";
    let out = read_err(text);
    assert!(out.contains("unknown protocol `tcp`"), "{out}");
    assert!(out.contains("bad.yaml:6:18"), "{out}");
    assert!(out.contains("protocols are upper case: `TCP`"), "{out}");
}

#[test]
fn bad_cidr() {
    let text = "kind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/40\n        except: [10.0.0.300/32]\n";
    let out = read_err(text);
    assert!(out.contains("invalid CIDR `10.0.0.0/40`"), "{out}");
    assert!(out.contains("bad.yaml:7:15"), "{out}");
    // Every error is reported, not just the first.
    assert!(out.contains("invalid CIDR `10.0.0.300/32`"), "{out}");
}

#[test]
fn typo_in_field_name() {
    let text =
        "kind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  podSelecter: {}\n  ingress: []\n";
    let out = read_err(text);
    assert!(
        out.contains("unknown field `podSelecter` in NetworkPolicy spec"),
        "{out}"
    );
    assert!(out.contains("did you mean `podSelector`?"), "{out}");
    assert!(out.contains("bad.yaml:4:3"), "{out}");
}

#[test]
fn missing_name_and_bad_ports() {
    let out = read_err("kind: NetworkPolicy\nspec: {}\n");
    assert!(out.contains("NetworkPolicy has no metadata.name"), "{out}");
    let text = "kind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  ingress:\n  - ports:\n    - {port: 90, endPort: 80}\n    - {port: 0}\n    - {port: \"80\"}\n    - {port: web, endPort: 90}\n";
    let out = read_err(text);
    assert!(out.contains("endPort 80 is below port 90"), "{out}");
    assert!(out.contains("port 0 is out of range"), "{out}");
    assert!(
        out.contains("a port number is written without quotes"),
        "{out}"
    );
    assert!(
        out.contains("endPort cannot be used with a named port"),
        "{out}"
    );
}

#[test]
fn bad_peers_and_selectors() {
    let text = r#"kind: NetworkPolicy
metadata: {name: a}
spec:
  podSelector:
    matchExpressions: [{key: a, operator: Equals, values: [b]}, {key: c, operator: In}]
  ingress:
  - from:
    - {}
    - ipBlock: {cidr: 10.0.0.0/8}
      podSelector: {}
  policyTypes: [Ingress, Sideways]
"#;
    let out = read_err(text);
    assert!(
        out.contains("unknown label selector operator `Equals`"),
        "{out}"
    );
    assert!(
        out.contains("operator In needs at least one value"),
        "{out}"
    );
    assert!(
        out.contains("a peer must have podSelector, namespaceSelector or ipBlock"),
        "{out}"
    );
    assert!(out.contains("cannot also have podSelector"), "{out}");
    assert!(out.contains("unknown policy type `Sideways`"), "{out}");
}

/// What the API server accepts and the DSL rejects (host bits, a duplicate ipBlock, one with an
/// except beside one without, nested excepts, overlapping blocks) reads with warnings, lowers
/// without errors, and is enforced as Kubernetes means it: the union of the ipBlocks, masked.
#[test]
fn ipblocks_the_api_server_accepts_are_enforced_as_kubernetes_means_them() {
    use crate::diag::Severity;
    use crate::eval::{Flow, FlowEnd, evaluate};
    use crate::ir::{L4, L4Match};
    let text = "kind: NetworkPolicy
metadata: {name: a, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress, Ingress]
  egress:
  - to:
    - ipBlock: {cidr: 192.168.242.213/24}
    - ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.0/25, 203.0.113.64/26]}
    - ipBlock: {cidr: 203.0.113.0/24}
    - ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.128/26]}
    - ipBlock: {cidr: 198.51.100.128/25}
    ports: [{port: 443}]
  ingress:
  - from:
    - ipBlock: {cidr: 10.244.0.11/24, except: [10.244.0.99/31]}
    - ipBlock: {cidr: 10.244.0.0/24, except: [10.244.0.11/32]}
";
    let mut sm = SourceMap::new();
    let id = sm.add("np.yaml", text);
    let (doc, diags) = read_with_diags(id, text);
    let out = render_plain(&diags, &sm);
    assert!(!diags.has_errors(), "{out}");
    let codes: Vec<_> = diags
        .items
        .iter()
        .map(|d| {
            let at = d.primary_span().and_then(|s| sm.location(s));
            (d.severity, d.code, at.map(|l| l.to_string()))
        })
        .collect();
    let at = |line: usize, col: usize| Some(format!("np.yaml:{line}:{col}"));
    let w = Severity::Warning;
    assert_eq!(
        codes,
        [
            // Ingress rules are read first.
            (w, "sluice::cidr::host-bits", at(16, 23)),
            (w, "sluice::cidr::host-bits", at(16, 48)),
            (w, "sluice::cidr::overlap", at(17, 23)),
            (w, "sluice::cidr::host-bits", at(8, 23)),
            (w, "sluice::cidr::overlap", at(9, 64)),
            (w, "sluice::cidr::overlap", at(9, 23)),
            (w, "sluice::cidr::overlap", at(12, 23)),
        ],
        "{out}"
    );
    // The pairs that overlap without either covering the other become two rules each.
    let p = policy(&doc, 0);
    let peers = |r: usize| -> Vec<String> {
        p.rules[r]
            .peers
            .iter()
            .map(|peer| match peer {
                Peer::Cidr { cidr, except, .. } => {
                    let ex: Vec<String> = except.iter().map(|e| e.to_string()).collect();
                    format!("{cidr} except {ex:?}")
                }
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(p.rules.len(), 4, "{:?}", p.rules);
    assert_eq!(peers(0), ["10.244.0.0/24 except [\"10.244.0.98/31\"]"]);
    assert_eq!(peers(1), ["10.244.0.0/24 except [\"10.244.0.11/32\"]"]);
    assert_eq!(
        peers(2),
        [
            "192.168.242.0/24 except []",
            "203.0.113.0/24 except []",
            "198.51.100.0/24 except [\"198.51.100.128/26\"]"
        ]
    );
    assert_eq!(peers(3), ["198.51.100.128/25 except []"]);
    assert_eq!(p.rules[2].ports, p.rules[3].ports);

    let (ir, mut lower_diags) = crate::ir::lower(&[doc]);
    let ir = crate::ir::check::check(ir, None, &mut lower_diags);
    assert!(!lower_diags.has_errors(), "{lower_diags:?}");
    let inv = crate::resolve::Inventory::parse(
        "inv",
        "endpoints:\n- {name: a, namespace: x, ips: [10.244.0.10]}\n",
    )
    .unwrap();
    let tcp = |port| L4Match::Port {
        proto: L4::Tcp,
        port,
    };
    let egress = |ip: &str, port| {
        let flow = Flow {
            src: FlowEnd::Endpoint(0),
            dst: FlowEnd::Ip(ip.parse().unwrap()),
            l4: tcp(port),
        };
        evaluate(&ir, &inv, &flow).unwrap().allow
    };
    let ingress = |ip: &str| {
        let flow = Flow {
            src: FlowEnd::Ip(ip.parse().unwrap()),
            dst: FlowEnd::Endpoint(0),
            l4: tcp(80),
        };
        evaluate(&ir, &inv, &flow).unwrap().allow
    };
    // Kubernetes: the union of the ipBlocks, each masked, on 443 only.
    for (ip, want) in [
        ("192.168.242.1", true),
        ("192.168.243.1", false),
        ("203.0.113.5", true),
        ("203.0.113.70", true),
        ("198.51.100.5", true),
        ("198.51.100.130", true),
        ("198.51.100.200", true),
        ("198.51.101.1", false),
        ("8.8.8.8", false),
    ] {
        assert_eq!(egress(ip, 443), want, "egress to {ip}");
        assert!(!egress(ip, 80), "egress to {ip}:80");
    }
    // The union of two blocks whose excepts differ: only addresses in both excepts are out.
    for (ip, want) in [
        ("10.244.0.11", true),
        ("10.244.0.98", true),
        ("10.244.0.99", true),
        ("10.244.0.12", true),
        ("10.244.1.1", false),
    ] {
        assert_eq!(ingress(ip), want, "ingress from {ip}");
    }
}
