use super::*;
use crate::diag::render_plain;
use crate::source::SourceMap;
use serde_json::json;

fn run(text: &str) -> (SourceMap, Document, Diagnostics) {
    let mut sm = SourceMap::new();
    let id = sm.add("cnp.yaml", text);
    let (doc, diags) = read_with_diags(id, text);
    (sm, doc, diags)
}

fn read_ok(text: &str) -> (SourceMap, Document) {
    let (sm, doc, diags) = run(text);
    assert!(!diags.has_errors(), "{}", render_plain(&diags, &sm));
    (sm, doc)
}

fn read_err(text: &str) -> String {
    let (sm, doc, diags) = run(text);
    assert!(diags.has_errors(), "expected errors, got {doc:?}");
    render_plain(&diags, &sm)
}

const CNP: &str = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: backend
  namespace: shop
spec:
  description: "L3/L4 policy for the backend"
  endpointSelector:
    matchLabels:
      k8s:app: backend
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: frontend
    - matchLabels:
        k8s:io.kubernetes.pod.namespace: monitoring
        any:app: prometheus
    toPorts:
    - ports:
      - port: "8080"
        protocol: TCP
      - port: "9000"
        endPort: 9010
  - fromEntities: [host]
  - icmps:
    - fields:
      - type: 8
        family: IPv4
      - type: EchoReply
  egress:
  - toCIDRSet:
    - cidr: 10.0.0.0/8
      except: [10.96.0.0/12]
    toCIDR: [192.168.1.1/32]
  - toEntities: [world]
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
  egressDeny:
  - toEndpoints:
    - matchLabels: {app: db}
"#;

#[test]
fn cilium_network_policy_exact_ast() {
    let (sm, doc) = read_ok(CNP);
    let got = serde_json::to_value(&doc).unwrap();
    let app = |v: &str| json!({"key": "app", "op": "eq", "values": [v]});
    let expected = json!({"items": [{
    "kind": "policy", "name": "backend", "namespace": "shop", "tier": {"tier": "default"},
    "subject": {"pods": {"exprs": [app("backend")]}},
    "isolate": ["ingress", "egress"],
    "rules": [
        {"direction": "ingress", "action": "allow",
         "peers": [
            {"peer": "endpoints", "pods": {"exprs": [app("frontend")]}},
            {"peer": "endpoints",
             "namespaces": {"exprs": [{"key": "kubernetes.io/metadata.name", "op": "eq", "values": ["monitoring"]}]},
             "pods": {"exprs": [app("prometheus")]}}],
         "ports": [
            {"protocol": {"name": "tcp"}, "port": {"number": 8080}},
            {"protocol": {"name": "any"}, "port": {"range": [9000, 9010]}}]},
        {"direction": "ingress", "action": "allow",
         "peers": [{"peer": "entity", "entity": "host"}], "ports": []},
        {"direction": "ingress", "action": "allow", "peers": [],
         "ports": [{"protocol": {"name": "icmp", "icmp_type": 8}},
                   {"protocol": {"name": "icmp", "icmp_type": 0}}]},
        {"direction": "egress", "action": "allow",
         "peers": [{"peer": "cidr", "cidr": "192.168.1.1/32"},
                   {"peer": "cidr", "cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}],
         "ports": []},
        {"direction": "egress", "action": "allow",
         "peers": [{"peer": "entity", "entity": "world"}],
         "ports": [{"protocol": {"name": "tcp"}, "port": {"number": 443}}]},
        {"direction": "egress", "action": "deny",
         "peers": [{"peer": "endpoints", "pods": {"exprs": [app("db")]}}], "ports": []}
    ]}]});
    assert_eq!(got, expected);
    let Item::Policy(p) = &doc.items[0] else {
        panic!()
    };
    assert_eq!(sm.snippet(p.name_span), "backend");
    assert_eq!(sm.snippet(p.rules[0].ports[0].span), "\"8080\"");
    let Peer::Cidr { span, .. } = &p.rules[3].peers[1] else {
        panic!()
    };
    assert_eq!(sm.location(*span).unwrap().to_string(), "cnp.yaml:32:13");
}

#[test]
fn clusterwide_deny_all_idiom_and_specs() {
    let text = r#"apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: lockdown}
specs:
- endpointSelector:
    matchLabels: {"k8s:io.kubernetes.pod.namespace": payments}
  ingress: [{}]
- endpointSelector: {}
  ingressDeny:
  - fromEntities: [world]
  enableDefaultDeny: {ingress: false}
"#;
    let (_, doc) = read_ok(text);
    assert_eq!(doc.items.len(), 2);
    let Item::Policy(a) = &doc.items[0] else {
        panic!()
    };
    assert_eq!(a.name, "lockdown-1");
    assert_eq!(a.namespace, None);
    // `ingress: [{}]` isolates and allows nothing.
    assert_eq!(a.isolate, Some(vec![PolicyDirection::Ingress]));
    assert!(a.rules.is_empty());
    let ns = a.subject.namespaces.as_ref().unwrap();
    assert_eq!(ns.exprs[0].values, vec!["payments".to_string()]);
    let Item::Policy(b) = &doc.items[1] else {
        panic!()
    };
    // A deny rule with enableDefaultDeny off does not isolate.
    assert_eq!(b.isolate, Some(vec![]));
    assert_eq!(b.rules[0].action, Action::Deny);
}

#[test]
fn json_list_of_cilium_policies() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
   "metadata": {"name": "a"},
   "spec": {"endpointSelector": {}, "egress": [{"toEndpoints": [], "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}]}]}]}}
]}"#;
    let (_, doc) = read_ok(text);
    let Item::Policy(p) = &doc.items[0] else {
        panic!()
    };
    assert_eq!(p.namespace.as_deref(), Some("default"));
    assert_eq!(p.isolate, Some(vec![PolicyDirection::Egress]));
    // An empty peer list is no peer list: the L4-only rule applies to every peer.
    assert!(p.rules[0].peers.is_empty());
    assert_eq!(p.rules[0].ports[0].port, Some(PortMatch::Number(53)));
}

#[test]
fn unsupported_fields_are_named() {
    let text = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns}
spec:
  endpointSelector: {}
  egress:
  - toFQDNs:
    - matchName: example.com
    toPorts:
    - ports: [{port: "443"}]
      rules:
        http: [{method: GET}]
"#;
    let out = read_err(text);
    assert!(out.contains("not supported by sluice: toFQDNs"), "{out}");
    assert!(out.contains("cnp.yaml:7:5"), "{out}");
    assert!(out.contains("not supported by sluice: rules"), "{out}");
}

#[test]
fn other_errors() {
    let base = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec:\n  endpointSelector: {}\n";
    let out = read_err(&format!(
        "{base}  ingress:\n  - fromEntities: [kube-apiserver, wrld]\n"
    ));
    assert!(
        out.contains("not supported by sluice: entity `kube-apiserver`"),
        "{out}"
    );
    assert!(out.contains("unknown entity `wrld`"), "{out}");
    let out = read_err(&format!("{base}  ingress:\n  - fromEndpoint: [{{}}]\n"));
    assert!(out.contains("unknown field `fromEndpoint`"), "{out}");
    assert!(out.contains("did you mean `fromEndpoints`?"), "{out}");
    let out = read_err(&format!(
        "{base}  ingress:\n  - toPorts: [{{ports: [{{port: \"80\", protocol: GRE}}]}}]\n"
    ));
    assert!(out.contains("unknown protocol `GRE`"), "{out}");
    let out = read_err(&format!("{base}  egress:\n  - toCIDR: [10.0.0.1]\n"));
    assert!(out.contains("invalid CIDR `10.0.0.1`"), "{out}");
    let out = read_err(&format!(
        "{base}  ingress:\n  - icmps: [{{fields: [{{type: 128, family: IPv6}}]}}]\n"
    ));
    assert!(
        out.contains("not supported by sluice: ICMP family IPv6"),
        "{out}"
    );
    let out = read_err(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec:\n  ingress: []\n",
    );
    assert!(out.contains("needs an endpointSelector"), "{out}");
}
