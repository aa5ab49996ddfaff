//! Kubernetes `networking.k8s.io/v1` NetworkPolicy (YAML or JSON) → AST [`Policy`] items.
//!
//! Users already have NetworkPolicies; this reader lets sluice enforce them unchanged. It maps
//! the exact Kubernetes semantics onto the AST: the policy's namespace scopes its pod selectors,
//! `policyTypes` (or its documented default) becomes an explicit `isolate`, every ingress/egress
//! rule becomes one allow rule, and empty `from`/`to`/`ports` mean "all". It also applies the
//! API server's validation (protocols, port ranges, peer shapes, field names) so a manifest the
//! cluster would reject is rejected here too, with a position in the file. What the API server
//! accepts but the DSL does not (host bits in a CIDR, overlapping ipBlocks) is read as
//! Kubernetes means it, with a warning ([`super::ipblock`]).
//!
//! Files may hold several documents (`---`) and `kind: List` / `NetworkPolicyList` objects.

use super::ast::*;
use super::ipblock;
use super::yaml::{self, Located, Node, Object, ObjectKind};
use crate::diag::{Diag, Diagnostics};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Reads every NetworkPolicy of a YAML or JSON file. Any other kind of object is an error.
pub fn read(source: SourceId, text: &str) -> Result<Document, Diagnostics> {
    let (doc, diags) = read_with_diags(source, text);
    diags.into_result(doc)
}

/// Like [`read`], but also returns warnings and notes when reading succeeds.
pub fn read_with_diags(source: SourceId, text: &str) -> (Document, Diagnostics) {
    yaml::read_document(source, text, |o, items, diags| match &o.object {
        Object::NetworkPolicy(np) => items.extend(convert(np, &o.node, diags).map(Item::Policy)),
        _ => diags.push(unexpected(o, "a NetworkPolicy")),
    })
}

/// The error for an object a reader does not take.
pub(crate) fn unexpected(o: &Located, wanted: &str) -> Diag {
    let kind = match &o.object {
        Object::Other(k) => k.clone(),
        _ => ObjectKind::of(&o.node),
    };
    let span = o.node.get("kind").map_or(o.node.span, |n| n.span);
    Diag::error(
        "sluice::k8s::unexpected-kind",
        format!("expected {wanted}, found {}", kind.describe()),
    )
    .with_label(span, "not understood by this reader")
}

const SPEC_FIELDS: &[&str] = &["podSelector", "policyTypes", "ingress", "egress"];
const INGRESS_FIELDS: &[&str] = &["from", "ports"];
const EGRESS_FIELDS: &[&str] = &["to", "ports"];
const PEER_FIELDS: &[&str] = &["podSelector", "namespaceSelector", "ipBlock"];
const IPBLOCK_FIELDS: &[&str] = &["cidr", "except"];
const PORT_FIELDS: &[&str] = &["protocol", "port", "endPort"];
const SELECTOR_FIELDS: &[&str] = &["matchLabels", "matchExpressions"];
const EXPR_FIELDS: &[&str] = &["key", "operator", "values"];

/// Converts one deserialized NetworkPolicy; `node` is its span tree. Problems go to `diags`;
/// `None` when there were errors.
pub fn convert(np: &NetworkPolicy, node: &Node, diags: &mut Diagnostics) -> Option<Policy> {
    let mut cx = Cx { diags: Vec::new() };
    let meta = node.get("metadata");
    let name_node = meta.and_then(|m| m.get("name"));
    let name = match (&np.metadata.name, name_node) {
        (Some(n), Some(nn)) if !n.is_empty() => (n.clone(), nn.span),
        _ => {
            cx.err(
                "sluice::k8s::no-name",
                "NetworkPolicy has no metadata.name",
                meta.unwrap_or(node).span,
                "name missing here",
            );
            (String::new(), node.span)
        }
    };
    let spec = np.spec.clone().unwrap_or_default();
    let empty = Node {
        span: name.1,
        value: yaml::Value::Map(Vec::new()),
    };
    let spec_node = node.get("spec").unwrap_or(&empty);
    let mut unknown = Vec::new();
    check_spec_fields(spec_node, &mut unknown);
    cx.diags.extend(unknown);

    let pod_sel_node = spec_node.get("podSelector");
    let pods = cx.selector(
        spec.pod_selector.as_ref(),
        pod_sel_node,
        pod_sel_node.map_or(name.1, |n| n.span),
    );
    let subject = Subject {
        namespaces: None,
        span: pods.span,
        pods,
    };

    let isolate = match &spec.policy_types {
        Some(types) => {
            let mut out = Vec::new();
            for (i, t) in types.iter().enumerate() {
                let span = spec_node
                    .get("policyTypes")
                    .and_then(|n| n.at(i))
                    .map_or(spec_node.span, |n| n.span);
                let dir = match t.as_str() {
                    "Ingress" => PolicyDirection::Ingress,
                    "Egress" => PolicyDirection::Egress,
                    other => {
                        cx.diags.push(
                            Diag::error(
                                "sluice::k8s::policy-type",
                                format!("unknown policy type `{other}`"),
                            )
                            .with_label(span, "not a policy type")
                            .with_help("policyTypes takes `Ingress` and `Egress`"),
                        );
                        continue;
                    }
                };
                if !out.contains(&dir) {
                    out.push(dir);
                }
            }
            out
        }
        // Kubernetes' documented default: ingress always, egress when there are egress rules.
        None => {
            let mut out = vec![PolicyDirection::Ingress];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                out.push(PolicyDirection::Egress);
            }
            out
        }
    };

    let mut rules = Vec::new();
    for (i, r) in spec.ingress.iter().flatten().enumerate() {
        let rn = spec_node.get("ingress").and_then(|n| n.at(i));
        let rule = cx.rule(
            PolicyDirection::Ingress,
            r.from.as_deref(),
            r.ports.as_deref(),
            rn,
            "from",
            spec_node.span,
        );
        rules.extend(ipblock::split_overlaps(rule, &mut cx.diags));
    }
    for (i, r) in spec.egress.iter().flatten().enumerate() {
        let rn = spec_node.get("egress").and_then(|n| n.at(i));
        let rule = cx.rule(
            PolicyDirection::Egress,
            r.to.as_deref(),
            r.ports.as_deref(),
            rn,
            "to",
            spec_node.span,
        );
        rules.extend(ipblock::split_overlaps(rule, &mut cx.diags));
    }

    let failed = cx
        .diags
        .iter()
        .any(|d| d.severity == crate::diag::Severity::Error);
    for d in cx.diags {
        diags.push(d);
    }
    if failed {
        return None;
    }
    Some(Policy {
        name: name.0,
        namespace: Some(
            np.metadata
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_string()),
        ),
        tier: Tier::Default,
        subject,
        isolate: Some(isolate),
        rules,
        verdicts: Vec::new(),
        span: node.span,
        name_span: name.1,
    })
}

fn check_spec_fields(spec: &Node, out: &mut Vec<Diag>) {
    yaml::check_fields(spec, "NetworkPolicy spec", SPEC_FIELDS, out);
    if let Some(s) = spec.get("podSelector") {
        check_selector_fields(s, out);
    }
    for (key, rule_fields, peer_key) in [
        ("ingress", INGRESS_FIELDS, "from"),
        ("egress", EGRESS_FIELDS, "to"),
    ] {
        for rule in spec.get(key).map_or(&[][..], |n| n.items()) {
            yaml::check_fields(rule, &format!("an {key} rule"), rule_fields, out);
            for peer in rule.get(peer_key).map_or(&[][..], |n| n.items()) {
                yaml::check_fields(peer, "a peer", PEER_FIELDS, out);
                for sel in ["podSelector", "namespaceSelector"] {
                    if let Some(s) = peer.get(sel) {
                        check_selector_fields(s, out);
                    }
                }
                if let Some(b) = peer.get("ipBlock") {
                    yaml::check_fields(b, "an ipBlock", IPBLOCK_FIELDS, out);
                }
            }
            for port in rule.get("ports").map_or(&[][..], |n| n.items()) {
                yaml::check_fields(port, "a port", PORT_FIELDS, out);
            }
        }
    }
}

fn check_selector_fields(sel: &Node, out: &mut Vec<Diag>) {
    yaml::check_fields(sel, "a label selector", SELECTOR_FIELDS, out);
    for e in sel.get("matchExpressions").map_or(&[][..], |n| n.items()) {
        yaml::check_fields(e, "a label selector requirement", EXPR_FIELDS, out);
    }
}

struct Cx {
    diags: Vec<Diag>,
}

impl Cx {
    fn err(&mut self, code: &'static str, msg: impl Into<String>, span: Span, label: &str) {
        self.diags
            .push(Diag::error(code, msg).with_label(span, label));
    }

    /// A Kubernetes label selector. A missing selector is the empty one (matches all).
    fn selector(
        &mut self,
        sel: Option<&LabelSelector>,
        node: Option<&Node>,
        span: Span,
    ) -> Selector {
        let mut exprs = Vec::new();
        let Some(sel) = sel else {
            return Selector { exprs, span };
        };
        if let Some(labels) = &sel.match_labels {
            let entries = node.and_then(|n| n.get("matchLabels")).map(|n| n.entries());
            match entries {
                // Source order, so printing back keeps what the user wrote.
                Some(entries) => {
                    for (k, v) in entries {
                        let Some(key) = k.as_str() else { continue };
                        let value = labels.get(key).cloned().unwrap_or_default();
                        exprs.push(LabelExpr {
                            key: key.to_string(),
                            op: LabelOp::Eq,
                            values: vec![value],
                            span: k.span.to(v.span),
                        });
                    }
                }
                None => {
                    for (k, v) in labels {
                        exprs.push(LabelExpr {
                            key: k.clone(),
                            op: LabelOp::Eq,
                            values: vec![v.clone()],
                            span,
                        });
                    }
                }
            }
        }
        for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
            let en = node
                .and_then(|n| n.get("matchExpressions"))
                .and_then(|n| n.at(i));
            let espan = en.map_or(span, |n| n.span);
            let op_span = en.map_or(espan, |n| n.span_of("operator"));
            let values = req.values.clone().unwrap_or_default();
            let op = match req.operator.as_str() {
                "In" => LabelOp::In,
                "NotIn" => LabelOp::NotIn,
                "Exists" => LabelOp::Exists,
                "DoesNotExist" => LabelOp::DoesNotExist,
                other => {
                    self.diags.push(
                        Diag::error(
                            "sluice::k8s::selector-operator",
                            format!("unknown label selector operator `{other}`"),
                        )
                        .with_label(op_span, "not an operator")
                        .with_help("operators are In, NotIn, Exists and DoesNotExist"),
                    );
                    continue;
                }
            };
            let needs_values = matches!(op, LabelOp::In | LabelOp::NotIn);
            if needs_values && values.is_empty() {
                self.err(
                    "sluice::k8s::selector-values",
                    format!("operator {} needs at least one value", req.operator),
                    espan,
                    "no values",
                );
                continue;
            }
            if !needs_values && !values.is_empty() {
                let vspan = en.map_or(espan, |n| n.span_of("values"));
                self.err(
                    "sluice::k8s::selector-values",
                    format!("operator {} takes no values", req.operator),
                    vspan,
                    "values not allowed here",
                );
                continue;
            }
            exprs.push(LabelExpr {
                key: req.key.clone(),
                op,
                values,
                span: espan,
            });
        }
        Selector {
            exprs,
            span: node.map_or(span, |n| n.span),
        }
    }

    fn rule(
        &mut self,
        direction: PolicyDirection,
        peers: Option<&[NetworkPolicyPeer]>,
        ports: Option<&[NetworkPolicyPort]>,
        node: Option<&Node>,
        peer_key: &str,
        fallback: Span,
    ) -> Rule {
        let span = node.map_or(fallback, |n| n.span);
        let peer_nodes = node.and_then(|n| n.get(peer_key));
        let port_nodes = node.and_then(|n| n.get("ports"));
        let peers = peers
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.peer(p, peer_nodes.and_then(|n| n.at(i)), span))
            .collect();
        let ports = ports
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.port(p, port_nodes.and_then(|n| n.at(i)), span))
            .collect();
        Rule {
            name: None,
            direction,
            action: Action::Allow,
            peers,
            ports,
            span,
        }
    }

    fn peer(&mut self, p: &NetworkPolicyPeer, node: Option<&Node>, fallback: Span) -> Option<Peer> {
        let span = node.map_or(fallback, |n| n.span);
        if let Some(block) = &p.ip_block {
            if p.pod_selector.is_some() || p.namespace_selector.is_some() {
                self.diags.push(
                    Diag::error(
                        "sluice::k8s::peer-shape",
                        "a peer with ipBlock cannot also have podSelector or namespaceSelector",
                    )
                    .with_label(span, "ipBlock combined with a selector")
                    .with_help("write them as two separate peers"),
                );
                return None;
            }
            return self.ip_block(block, node.and_then(|n| n.get("ipBlock")), span);
        }
        if p.pod_selector.is_none() && p.namespace_selector.is_none() {
            self.err(
                "sluice::k8s::peer-shape",
                "a peer must have podSelector, namespaceSelector or ipBlock",
                span,
                "empty peer",
            );
            return None;
        }
        let pods_node = node.and_then(|n| n.get("podSelector"));
        let ns_node = node.and_then(|n| n.get("namespaceSelector"));
        let pods = p
            .pod_selector
            .as_ref()
            .map(|s| self.selector(Some(s), pods_node, pods_node.map_or(span, |n| n.span)));
        let namespaces = p
            .namespace_selector
            .as_ref()
            .map(|s| self.selector(Some(s), ns_node, ns_node.map_or(span, |n| n.span)));
        Some(Peer::Endpoints {
            namespaces,
            pods,
            span,
        })
    }

    fn ip_block(&mut self, b: &IPBlock, node: Option<&Node>, fallback: Span) -> Option<Peer> {
        let cidr_span = node.map_or(fallback, |n| n.span_of("cidr"));
        let cidr = self.cidr(&b.cidr, cidr_span);
        let mut except = Vec::new();
        let mut ok = cidr.is_some();
        for (i, e) in b.except.iter().flatten().enumerate() {
            let espan = node
                .and_then(|n| n.get("except"))
                .and_then(|n| n.at(i))
                .map_or(cidr_span, |n| n.span);
            match self.cidr(e, espan) {
                Some(c) => except.push((c, espan)),
                None => ok = false,
            }
        }
        // The peer's span is the CIDR text, so later checks (except outside) point at it.
        let cidr = cidr.filter(|_| ok)?;
        Some(Peer::Cidr {
            cidr,
            except: ipblock::excepts(except, &mut self.diags),
            span: cidr_span,
        })
    }

    /// A CIDR as the API server and Go's `net.ParseCIDR` read it: host bits are masked.
    fn cidr(&mut self, text: &str, span: Span) -> Option<Cidr> {
        match text.trim().parse::<Cidr>() {
            Ok(c) => Some(ipblock::mask(c, span, &mut self.diags)),
            Err(e) => {
                self.diags.push(
                    Diag::error("sluice::k8s::cidr", format!("invalid CIDR `{text}`: {e}"))
                        .with_label(span, e.to_string())
                        .with_help("write an address and a prefix length, like 10.0.0.0/8"),
                );
                None
            }
        }
    }

    fn port(
        &mut self,
        p: &NetworkPolicyPort,
        node: Option<&Node>,
        fallback: Span,
    ) -> Option<PortSpec> {
        let entry_span = node.map_or(fallback, |n| n.span);
        let span_of = |k: &str| node.and_then(|n| n.get(k)).map(|n| n.span);
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            Some(other) => {
                let help = if ["tcp", "udp", "sctp"].contains(&other.to_lowercase().as_str()) {
                    format!("protocols are upper case: `{}`", other.to_uppercase())
                } else {
                    "NetworkPolicy ports take TCP, UDP or SCTP".to_string()
                };
                self.diags.push(
                    Diag::error(
                        "sluice::k8s::protocol",
                        format!("unknown protocol `{other}`"),
                    )
                    .with_label(
                        span_of("protocol").unwrap_or(entry_span),
                        "unknown protocol",
                    )
                    .with_help(help),
                );
                return None;
            }
        };
        let port_span = span_of("port").unwrap_or(entry_span);
        let end_span = span_of("endPort").unwrap_or(entry_span);
        let port = match &p.port {
            None => {
                if p.end_port.is_some() {
                    self.err(
                        "sluice::k8s::end-port",
                        "endPort needs a numeric port",
                        end_span,
                        "endPort without port",
                    );
                    return None;
                }
                None
            }
            Some(IntOrString::Int(n)) => {
                let start = self.port_number(i64::from(*n), port_span)?;
                match p.end_port {
                    None => Some(PortMatch::Number(start)),
                    Some(e) => {
                        let end = self.port_number(i64::from(e), end_span)?;
                        if end < start {
                            self.diags.push(
                                Diag::error(
                                    "sluice::k8s::end-port",
                                    format!("endPort {end} is below port {start}"),
                                )
                                .with_label(end_span, "endPort must be at least port")
                                .with_label(port_span, "port"),
                            );
                            return None;
                        }
                        Some(PortMatch::Range(start, end))
                    }
                }
            }
            Some(IntOrString::String(name)) => {
                if p.end_port.is_some() {
                    self.err(
                        "sluice::k8s::end-port",
                        "endPort cannot be used with a named port",
                        end_span,
                        "endPort with a named port",
                    );
                    return None;
                }
                if let Err(why) = check_port_name(name) {
                    let mut d = Diag::error(
                        "sluice::k8s::port-name",
                        format!("invalid port name `{name}`: {why}"),
                    )
                    .with_label(port_span, why);
                    if name.parse::<u16>().is_ok() {
                        d = d.with_help(format!(
                            "a port number is written without quotes: `port: {name}`"
                        ));
                    }
                    self.diags.push(d);
                    return None;
                }
                Some(PortMatch::Named(name.clone()))
            }
        };
        let span = match (span_of("port"), span_of("endPort")) {
            (Some(a), Some(b)) => a.to(b),
            (Some(a), None) => a,
            _ => entry_span,
        };
        Some(PortSpec {
            protocol,
            port,
            span,
        })
    }

    fn port_number(&mut self, n: i64, span: Span) -> Option<u16> {
        match u16::try_from(n) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.err(
                    "sluice::k8s::port-range",
                    format!("port {n} is out of range"),
                    span,
                    "ports are 1 to 65535",
                );
                None
            }
        }
    }
}

/// Kubernetes' IANA_SVC_NAME rule for container port names.
fn check_port_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 15 {
        return Err("a port name has 1 to 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("a port name has only lower-case letters, digits and `-`");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("a port name has at least one letter");
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err("a port name has no leading, trailing or doubled `-`");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
