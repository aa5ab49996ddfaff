//! A documented subset of `cilium.io/v2` CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy
//! → AST [`Policy`] items.
//!
//! Users moving from Cilium bring their L3/L4 policies along. The subset (spec/readers.md) is
//! what the AST can express exactly: endpoint, CIDR and entity peers, ports and ICMP types, and
//! deny rules. Anything else Cilium has (FQDN rules, L7 rules, services, groups, node
//! selectors...) is rejected by name, never dropped: silently ignoring a rule would change
//! what the policy allows.
//!
//! Cilium semantics kept here: a namespaced policy scopes its endpointSelector and its peer
//! selectors to its namespace unless a selector names one (`k8s:io.kubernetes.pod.namespace`);
//! a direction is isolated when the policy has rules for it; a rule with neither peers nor
//! ports (`ingress: [{}]`) allows nothing; a rule with ports but no peers allows every peer.
//! CIDRs with host bits and overlapping CIDR peers are read as Kubernetes reads ipBlocks, with
//! a warning ([`super::ipblock`]).

use super::ast::*;
use super::ipblock;
use super::yaml::{self, Node, Object};
use crate::diag::{Diag, Diagnostics, Severity};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

/// A CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy, limited to the fields sluice
/// reads; other fields are checked by name on the span tree.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CiliumPolicy {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<Spec>,
    pub specs: Option<Vec<Spec>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub endpoint_selector: Option<LabelSelector>,
    pub ingress: Option<Vec<CiliumRule>>,
    pub ingress_deny: Option<Vec<CiliumRule>>,
    pub egress: Option<Vec<CiliumRule>>,
    pub egress_deny: Option<Vec<CiliumRule>>,
    pub description: Option<String>,
    pub enable_default_deny: Option<DefaultDeny>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct DefaultDeny {
    pub ingress: Option<bool>,
    pub egress: Option<bool>,
}

/// One ingress or egress rule; `from*` and `to*` fields by direction.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CiliumRule {
    pub from_endpoints: Option<Vec<LabelSelector>>,
    pub to_endpoints: Option<Vec<LabelSelector>>,
    #[serde(rename = "fromCIDR")]
    pub from_cidr: Option<Vec<String>>,
    #[serde(rename = "toCIDR")]
    pub to_cidr: Option<Vec<String>>,
    #[serde(rename = "fromCIDRSet")]
    pub from_cidr_set: Option<Vec<CidrRule>>,
    #[serde(rename = "toCIDRSet")]
    pub to_cidr_set: Option<Vec<CidrRule>>,
    pub from_entities: Option<Vec<String>>,
    pub to_entities: Option<Vec<String>>,
    pub to_ports: Option<Vec<PortRule>>,
    pub icmps: Option<Vec<IcmpRule>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CidrRule {
    pub cidr: Option<String>,
    pub except: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PortRule {
    pub ports: Option<Vec<PortProtocol>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortProtocol {
    pub port: Option<IntOrString>,
    pub end_port: Option<i32>,
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct IcmpRule {
    pub fields: Option<Vec<IcmpField>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct IcmpField {
    #[serde(rename = "type")]
    pub icmp_type: IntOrString,
    pub family: Option<String>,
}

/// The namespace label Cilium adds to every endpoint.
const NS_LABEL: &str = "io.kubernetes.pod.namespace";
/// Prefix of the namespace labels Cilium copies onto endpoints.
const NS_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";

// Field names: (supported, known to Cilium but not supported by sluice).
const TOP: (&[&str], &[&str]) = (
    &["apiVersion", "kind", "metadata", "spec", "specs", "status"],
    &[],
);
const SPEC: (&[&str], &[&str]) = (
    &[
        "endpointSelector",
        "ingress",
        "ingressDeny",
        "egress",
        "egressDeny",
        "description",
        "enableDefaultDeny",
        "labels",
    ],
    &["nodeSelector", "log"],
);
const INGRESS: (&[&str], &[&str]) = (
    &[
        "fromEndpoints",
        "fromCIDR",
        "fromCIDRSet",
        "fromEntities",
        "toPorts",
        "icmps",
    ],
    &["fromRequires", "fromGroups", "fromNodes", "authentication"],
);
const EGRESS: (&[&str], &[&str]) = (
    &[
        "toEndpoints",
        "toCIDR",
        "toCIDRSet",
        "toEntities",
        "toPorts",
        "icmps",
    ],
    &[
        "toRequires",
        "toServices",
        "toFQDNs",
        "toGroups",
        "toNodes",
        "authentication",
    ],
);
const PORT_RULE: (&[&str], &[&str]) = (
    &["ports"],
    &[
        "rules",
        "terminatingTLS",
        "originatingTLS",
        "serverNames",
        "listener",
    ],
);
const PORT: (&[&str], &[&str]) = (&["port", "endPort", "protocol"], &[]);
const CIDR_RULE: (&[&str], &[&str]) = (&["cidr", "except"], &["cidrGroupRef", "cidrGroupSelector"]);
const ICMP_RULE: (&[&str], &[&str]) = (&["fields"], &[]);
const ICMP_FIELD: (&[&str], &[&str]) = (&["type", "family"], &[]);
const SELECTOR: (&[&str], &[&str]) = (&["matchLabels", "matchExpressions"], &[]);
const EXPR: (&[&str], &[&str]) = (&["key", "operator", "values"], &[]);
const DEFAULT_DENY: (&[&str], &[&str]) = (&["ingress", "egress"], &[]);

/// Reads every Cilium policy of a YAML or JSON file. Any other kind of object is an error.
pub fn read(source: SourceId, text: &str) -> Result<Document, Diagnostics> {
    let (doc, diags) = read_with_diags(source, text);
    diags.into_result(doc)
}

/// Like [`read`], but also returns warnings and notes when reading succeeds.
pub fn read_with_diags(source: SourceId, text: &str) -> (Document, Diagnostics) {
    yaml::read_document(source, text, |o, items, diags| match &o.object {
        Object::Cilium(p) => items.extend(convert(p, &o.node, diags).into_iter().map(Item::Policy)),
        _ => diags.push(super::k8s::unexpected(o, "a Cilium policy")),
    })
}

/// Converts one deserialized Cilium policy (one AST policy per spec). Problems go to `diags`.
pub fn convert(p: &CiliumPolicy, node: &Node, diags: &mut Diagnostics) -> Vec<Policy> {
    let mut cx = Cx::default();
    check(&mut cx, node, "a Cilium policy", TOP);
    let clusterwide = p.kind.as_deref() == Some("CiliumClusterwideNetworkPolicy");
    let name_node = node.get("metadata").and_then(|m| m.get("name"));
    let (name, name_span) = match (&p.metadata.name, name_node) {
        (Some(n), Some(nn)) if !n.is_empty() => (n.clone(), nn.span),
        _ => {
            cx.err(
                "sluice::cilium::no-name",
                "policy has no metadata.name",
                node.span,
                "name missing",
            );
            (String::new(), node.span)
        }
    };
    let namespace = (!clusterwide).then(|| {
        p.metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into())
    });
    let mut specs: Vec<(&Spec, Option<&Node>, String)> = Vec::new();
    if let Some(s) = &p.spec {
        specs.push((s, node.get("spec"), name.clone()));
    }
    for (i, s) in p.specs.iter().flatten().enumerate() {
        let n = node.get("specs").and_then(|n| n.at(i));
        specs.push((s, n, format!("{name}-{}", i + 1)));
    }
    if specs.is_empty() {
        cx.err(
            "sluice::cilium::no-spec",
            "policy has neither spec nor specs",
            name_span,
            "in this policy",
        );
    }
    let mut out = Vec::new();
    for (spec, snode, pname) in specs {
        if let Some(p) = cx.spec(
            spec,
            snode,
            pname,
            namespace.as_deref(),
            name_span,
            node.span,
        ) {
            out.push(p);
        }
    }
    let failed = cx.diags.iter().any(|d| d.severity == Severity::Error);
    for d in cx.diags {
        diags.push(d);
    }
    if failed { Vec::new() } else { out }
}

/// Checks field names: unsupported Cilium features by name, other unknown names as typos.
fn check(cx: &mut Cx, node: &Node, what: &str, (known, unsupported): (&[&str], &[&str])) {
    for (k, _) in node.entries() {
        let Some(key) = k.as_str() else { continue };
        if unsupported.contains(&key) {
            cx.diags.push(
                Diag::error(
                    "sluice::cilium::unsupported",
                    format!("not supported by sluice: {key}"),
                )
                .with_label(k.span, format!("`{key}` in {what}"))
                .with_help("see spec/readers.md for the Cilium subset sluice reads"),
            );
        }
    }
    let all: Vec<&str> = known.iter().chain(unsupported).copied().collect();
    let mut typos = Vec::new();
    yaml::check_fields(node, what, &all, &mut typos);
    cx.diags.extend(typos);
}

/// A list that is present and non-empty.
fn given<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn children<'a>(node: Option<&'a Node>, key: &str) -> &'a [Node] {
    node.and_then(|n| n.get(key)).map_or(&[], |n| n.items())
}

#[derive(Default)]
struct Cx {
    diags: Vec<Diag>,
}

impl Cx {
    fn err(&mut self, code: &'static str, msg: impl Into<String>, span: Span, label: &str) {
        self.diags
            .push(Diag::error(code, msg).with_label(span, label));
    }

    #[allow(clippy::too_many_arguments)]
    fn spec(
        &mut self,
        spec: &Spec,
        node: Option<&Node>,
        name: String,
        namespace: Option<&str>,
        name_span: Span,
        span: Span,
    ) -> Option<Policy> {
        if let Some(n) = node {
            check(self, n, "a Cilium policy spec", SPEC);
            if let Some(d) = n.get("enableDefaultDeny") {
                check(self, d, "enableDefaultDeny", DEFAULT_DENY);
            }
        }
        let sel_node = node.and_then(|n| n.get("endpointSelector"));
        let sel_span = sel_node.map_or(name_span, |n| n.span);
        let Some(sel) = &spec.endpoint_selector else {
            self.err(
                "sluice::cilium::no-endpoint-selector",
                "a Cilium policy spec needs an endpointSelector",
                node.map_or(name_span, |n| n.span),
                "no endpointSelector",
            );
            return None;
        };
        let (ns, pods) = self.selector(sel, sel_node, sel_span);
        let namespaces = match (namespace, ns) {
            (_, None) => None,
            (None, Some(ns)) => Some(ns),
            (Some(own), Some(ns)) => {
                // A namespaced policy only ever applies in its own namespace.
                let names_own = ns.exprs.len() == 1
                    && ns.exprs[0].op == LabelOp::Eq
                    && ns.exprs[0].key == "kubernetes.io/metadata.name"
                    && ns.exprs[0].values == [own];
                if !names_own {
                    self.err(
                        "sluice::cilium::subject-namespace",
                        format!("the endpointSelector of a policy in namespace `{own}` selects other namespaces"),
                        ns.span,
                        "namespace label here",
                    );
                }
                None
            }
        };
        let subject = Subject {
            namespaces,
            pods,
            span: sel_span,
        };

        let mut rules = Vec::new();
        let dirs = [
            (
                "ingress",
                &spec.ingress,
                PolicyDirection::Ingress,
                Action::Allow,
            ),
            (
                "ingressDeny",
                &spec.ingress_deny,
                PolicyDirection::Ingress,
                Action::Deny,
            ),
            (
                "egress",
                &spec.egress,
                PolicyDirection::Egress,
                Action::Allow,
            ),
            (
                "egressDeny",
                &spec.egress_deny,
                PolicyDirection::Egress,
                Action::Deny,
            ),
        ];
        let mut has = [false, false];
        for (key, list, dir, action) in dirs {
            for (i, r) in list.iter().flatten().enumerate() {
                has[dir as usize] = true;
                let rn = children(node, key).get(i);
                if let Some(rule) = self.rule(r, rn, dir, action, key, span) {
                    rules.extend(ipblock::split_overlaps(rule, &mut self.diags));
                }
            }
        }
        let dd = spec.enable_default_deny.clone().unwrap_or_default();
        let mut isolate = Vec::new();
        if has[0] && dd.ingress != Some(false) {
            isolate.push(PolicyDirection::Ingress);
        }
        if has[1] && dd.egress != Some(false) {
            isolate.push(PolicyDirection::Egress);
        }
        Some(Policy {
            name,
            namespace: namespace.map(str::to_string),
            tier: Tier::Default,
            subject,
            isolate: Some(isolate),
            rules,
            verdicts: Vec::new(),
            span,
            name_span,
        })
    }

    /// A Cilium selector, split into (namespace selector, endpoint selector). Label sources
    /// `k8s:` and `any:` are dropped; the namespace label and namespace-label labels move to
    /// the namespace selector.
    fn selector(
        &mut self,
        sel: &LabelSelector,
        node: Option<&Node>,
        span: Span,
    ) -> (Option<Selector>, Selector) {
        let mut ns = Vec::new();
        let mut pods = Vec::new();
        let mut push = |cx: &mut Cx, key: &str, op: LabelOp, values: Vec<String>, span: Span| {
            let key = match key.split_once(':') {
                Some(("k8s" | "any", rest)) => rest,
                Some((source, _)) => {
                    cx.err(
                        "sluice::cilium::unsupported",
                        format!("not supported by sluice: label source `{source}:`"),
                        span,
                        "only k8s: and any: labels are supported",
                    );
                    return;
                }
                None => key,
            };
            if key == NS_LABEL {
                ns.push(LabelExpr {
                    key: "kubernetes.io/metadata.name".into(),
                    op,
                    values,
                    span,
                });
            } else if let Some(k) = key.strip_prefix(NS_LABELS_PREFIX) {
                ns.push(LabelExpr {
                    key: k.into(),
                    op,
                    values,
                    span,
                });
            } else {
                pods.push(LabelExpr {
                    key: key.into(),
                    op,
                    values,
                    span,
                });
            }
        };
        if let Some(n) = node {
            check(self, n, "a label selector", SELECTOR);
            for e in children(node, "matchExpressions") {
                check(self, e, "a label selector requirement", EXPR);
            }
        }
        if let Some(labels) = &sel.match_labels {
            let entries = node.and_then(|n| n.get("matchLabels")).map(|n| n.entries());
            match entries {
                Some(entries) => {
                    for (k, v) in entries {
                        let Some(key) = k.as_str() else { continue };
                        let value = labels.get(key).cloned().unwrap_or_default();
                        push(self, key, LabelOp::Eq, vec![value], k.span.to(v.span));
                    }
                }
                None => {
                    for (k, v) in labels {
                        push(self, k, LabelOp::Eq, vec![v.clone()], span);
                    }
                }
            }
        }
        for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
            let en = children(node, "matchExpressions").get(i);
            let espan = en.map_or(span, |n| n.span);
            let values = req.values.clone().unwrap_or_default();
            let op = match req.operator.as_str() {
                "In" => LabelOp::In,
                "NotIn" => LabelOp::NotIn,
                "Exists" => LabelOp::Exists,
                "DoesNotExist" => LabelOp::DoesNotExist,
                other => {
                    self.err(
                        "sluice::cilium::selector-operator",
                        format!("unknown label selector operator `{other}`"),
                        en.map_or(espan, |n| n.span_of("operator")),
                        "operators are In, NotIn, Exists and DoesNotExist",
                    );
                    continue;
                }
            };
            let needs_values = matches!(op, LabelOp::In | LabelOp::NotIn);
            if needs_values == values.is_empty() {
                self.err(
                    "sluice::cilium::selector-values",
                    format!(
                        "operator {} {}",
                        req.operator,
                        if needs_values {
                            "needs at least one value"
                        } else {
                            "takes no values"
                        }
                    ),
                    espan,
                    "here",
                );
                continue;
            }
            push(self, &req.key, op, values, espan);
        }
        let sspan = node.map_or(span, |n| n.span);
        let ns = (!ns.is_empty()).then_some(Selector {
            exprs: ns,
            span: sspan,
        });
        (
            ns,
            Selector {
                exprs: pods,
                span: sspan,
            },
        )
    }

    fn rule(
        &mut self,
        r: &CiliumRule,
        node: Option<&Node>,
        direction: PolicyDirection,
        action: Action,
        key: &str,
        fallback: Span,
    ) -> Option<Rule> {
        let span = node.map_or(fallback, |n| n.span);
        let ingress = direction == PolicyDirection::Ingress;
        if let Some(n) = node {
            check(
                self,
                n,
                &format!("an {key} rule"),
                if ingress { INGRESS } else { EGRESS },
            );
        }
        let (eps, cidrs, sets, ents, p) = if ingress {
            (
                &r.from_endpoints,
                &r.from_cidr,
                &r.from_cidr_set,
                &r.from_entities,
                "from",
            )
        } else {
            (
                &r.to_endpoints,
                &r.to_cidr,
                &r.to_cidr_set,
                &r.to_entities,
                "to",
            )
        };
        let field = |f: &str| format!("{p}{f}");
        let mut peers = Vec::new();
        for (i, sel) in eps.iter().flatten().enumerate() {
            let sn = children(node, &field("Endpoints")).get(i);
            let sspan = sn.map_or(span, |n| n.span);
            let (namespaces, pods) = self.selector(sel, sn, sspan);
            peers.push(Peer::Endpoints {
                namespaces,
                pods: Some(pods),
                span: sspan,
            });
        }
        for (i, c) in cidrs.iter().flatten().enumerate() {
            let cspan = children(node, &field("CIDR"))
                .get(i)
                .map_or(span, |n| n.span);
            if let Some(cidr) = self.cidr(c, cspan) {
                peers.push(Peer::Cidr {
                    cidr,
                    except: Vec::new(),
                    span: cspan,
                });
            }
        }
        for (i, set) in sets.iter().flatten().enumerate() {
            let sn = children(node, &field("CIDRSet")).get(i);
            if let Some(n) = sn {
                check(self, n, "a CIDR rule", CIDR_RULE);
            }
            let Some(text) = &set.cidr else {
                // Without cidr the rule names a CIDR group, reported by `check` above.
                if sn.is_some_and(|n| {
                    n.get("cidrGroupRef").is_none() && n.get("cidrGroupSelector").is_none()
                }) {
                    self.err(
                        "sluice::cilium::cidr",
                        "a CIDR rule needs `cidr`",
                        sn.map_or(span, |n| n.span),
                        "no cidr",
                    );
                }
                continue;
            };
            let cspan = sn.map_or(span, |n| n.span_of("cidr"));
            let cidr = self.cidr(text, cspan);
            let mut except = Vec::new();
            for (j, e) in set.except.iter().flatten().enumerate() {
                let espan = sn
                    .and_then(|n| n.get("except"))
                    .and_then(|n| n.at(j))
                    .map_or(cspan, |n| n.span);
                except.extend(self.cidr(e, espan).map(|c| (c, espan)));
            }
            if let Some(cidr) = cidr {
                peers.push(Peer::Cidr {
                    cidr,
                    except: ipblock::excepts(except, &mut self.diags),
                    span: cspan,
                });
            }
        }
        for (i, e) in ents.iter().flatten().enumerate() {
            let espan = children(node, &field("Entities"))
                .get(i)
                .map_or(span, |n| n.span);
            let entity = match e.as_str() {
                "world" => Entity::World,
                "host" => Entity::Host,
                "cluster" => Entity::Cluster,
                "all" => Entity::All,
                other => {
                    let known = [
                        "remote-node",
                        "kube-apiserver",
                        "health",
                        "init",
                        "unmanaged",
                        "ingress",
                        "world-ipv4",
                        "world-ipv6",
                        "none",
                    ];
                    let msg = if known.contains(&other) {
                        format!("not supported by sluice: entity `{other}`")
                    } else {
                        format!("unknown entity `{other}`")
                    };
                    self.diags.push(
                        Diag::error("sluice::cilium::entity", msg)
                            .with_label(espan, "entity")
                            .with_help("sluice supports the entities world, host, cluster and all"),
                    );
                    continue;
                }
            };
            peers.push(Peer::Entity {
                entity,
                span: espan,
            });
        }

        let mut ports = Vec::new();
        for (i, pr) in r.to_ports.iter().flatten().enumerate() {
            let prn = children(node, "toPorts").get(i);
            if let Some(n) = prn {
                check(self, n, "a toPorts rule", PORT_RULE);
            }
            for (j, pp) in pr.ports.iter().flatten().enumerate() {
                let pn = children(prn, "ports").get(j);
                if let Some(n) = pn {
                    check(self, n, "a port", PORT);
                }
                ports.extend(self.port(pp, pn, prn.map_or(span, |n| n.span)));
            }
        }
        if given(&r.icmps) && given(&r.to_ports) {
            self.err(
                "sluice::cilium::icmp-with-ports",
                "a rule cannot have both toPorts and icmps",
                node.map_or(span, |n| n.span_of("icmps")),
                "icmps here",
            );
        }
        for (i, ir) in r.icmps.iter().flatten().enumerate() {
            let irn = children(node, "icmps").get(i);
            if let Some(n) = irn {
                check(self, n, "an icmps rule", ICMP_RULE);
            }
            for (j, f) in ir.fields.iter().flatten().enumerate() {
                let fnode = children(irn, "fields").get(j);
                if let Some(n) = fnode {
                    check(self, n, "an ICMP field", ICMP_FIELD);
                }
                ports.extend(self.icmp(f, fnode, irn.map_or(span, |n| n.span)));
            }
        }
        // Like Cilium, an empty list counts as absent.
        let has_l3 = given(eps) || given(cidrs) || given(sets) || given(ents);
        let has_l4 = given(&r.to_ports) || given(&r.icmps);
        // Cilium: a rule with no peers and no ports selects nothing (`ingress: [{}]` is the
        // deny-all idiom); an L4-only rule applies to every peer.
        if !has_l3 && !has_l4 {
            return None;
        }
        if has_l3 && peers.is_empty() {
            // Every peer was rejected above (the errors are reported); keep no rule.
            return None;
        }
        Some(Rule {
            name: None,
            direction,
            action,
            peers,
            ports,
            span,
        })
    }

    /// A CIDR as Cilium reads it: host bits are masked.
    fn cidr(&mut self, text: &str, span: Span) -> Option<Cidr> {
        match text.trim().parse::<Cidr>() {
            Ok(c) => Some(ipblock::mask(c, span, &mut self.diags)),
            Err(e) => {
                self.diags.push(
                    Diag::error(
                        "sluice::cilium::cidr",
                        format!("invalid CIDR `{text}`: {e}"),
                    )
                    .with_label(span, e.to_string()),
                );
                None
            }
        }
    }

    fn port(&mut self, p: &PortProtocol, node: Option<&Node>, fallback: Span) -> Option<PortSpec> {
        let espan = node.map_or(fallback, |n| n.span);
        let span_of = |k: &str| node.and_then(|n| n.get(k)).map_or(espan, |n| n.span);
        let protocol = match p.protocol.as_deref() {
            None | Some("ANY") => Protocol::Any,
            Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            Some("ICMP") => Protocol::Icmp {
                icmp_type: None,
                code: None,
            },
            Some(other) => {
                self.diags.push(
                    Diag::error(
                        "sluice::cilium::protocol",
                        format!("unknown protocol `{other}`"),
                    )
                    .with_label(span_of("protocol"), "unknown protocol")
                    .with_help("sluice reads the protocols ANY, TCP, UDP, SCTP and ICMP"),
                );
                return None;
            }
        };
        // Cilium writes ports as strings; "0" or none means every port.
        let number = match &p.port {
            None => None,
            Some(IntOrString::Int(n)) => Some(i64::from(*n)),
            Some(IntOrString::String(s)) => match s.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    if p.end_port.is_some() {
                        self.err(
                            "sluice::cilium::end-port",
                            "endPort cannot be used with a named port",
                            span_of("endPort"),
                            "here",
                        );
                        return None;
                    }
                    return Some(PortSpec {
                        protocol,
                        port: Some(PortMatch::Named(s.clone())),
                        span: span_of("port"),
                    });
                }
            },
        };
        let port = match number {
            None | Some(0) => None,
            Some(n) if !(1..=65535).contains(&n) => {
                self.err(
                    "sluice::cilium::port-range",
                    format!("port {n} is out of range"),
                    span_of("port"),
                    "ports are 1 to 65535",
                );
                return None;
            }
            Some(n) => match p.end_port {
                None | Some(0) => Some(PortMatch::Number(n as u16)),
                Some(e) if (n..=65535).contains(&i64::from(e)) => {
                    Some(PortMatch::Range(n as u16, e as u16))
                }
                Some(e) => {
                    self.err(
                        "sluice::cilium::end-port",
                        format!("endPort {e} must be between port {n} and 65535"),
                        span_of("endPort"),
                        "here",
                    );
                    return None;
                }
            },
        };
        if port.is_some() && matches!(protocol, Protocol::Icmp { .. }) {
            self.err(
                "sluice::cilium::icmp-port",
                "ICMP has no ports; use `icmps` for ICMP types",
                span_of("port"),
                "port with ICMP",
            );
            return None;
        }
        let span = match node.and_then(|n| n.get("port")) {
            Some(n) => n.span,
            None => espan,
        };
        Some(PortSpec {
            protocol,
            port,
            span,
        })
    }

    fn icmp(&mut self, f: &IcmpField, node: Option<&Node>, fallback: Span) -> Option<PortSpec> {
        let span = node.map_or(fallback, |n| n.span_of("type"));
        match f.family.as_deref() {
            None | Some("IPv4") => {}
            Some("IPv6") => {
                self.err(
                    "sluice::cilium::unsupported",
                    "not supported by sluice: ICMP family IPv6",
                    node.map_or(span, |n| n.span_of("family")),
                    "ICMPv6",
                );
                return None;
            }
            Some(other) => {
                self.err(
                    "sluice::cilium::icmp-family",
                    format!("unknown ICMP family `{other}`"),
                    node.map_or(span, |n| n.span_of("family")),
                    "family is IPv4 or IPv6",
                );
                return None;
            }
        }
        let t = match &f.icmp_type {
            IntOrString::Int(n) => u8::try_from(*n).ok(),
            IntOrString::String(s) => s.parse::<u8>().ok().or_else(|| icmp_type_by_name(s)),
        };
        let Some(t) = t else {
            self.err(
                "sluice::cilium::icmp-type",
                "ICMP type must be 0 to 255 or a Cilium type name like EchoRequest",
                span,
                "bad ICMP type",
            );
            return None;
        };
        Some(PortSpec {
            protocol: Protocol::Icmp {
                icmp_type: Some(t),
                code: None,
            },
            port: None,
            span,
        })
    }
}

/// The ICMPv4 type names Cilium accepts.
fn icmp_type_by_name(name: &str) -> Option<u8> {
    Some(match name {
        "EchoReply" => 0,
        "DestinationUnreachable" => 3,
        "Redirect" => 5,
        "Echo" | "EchoRequest" => 8,
        "RouterAdvertisement" => 9,
        "RouterSelection" => 10,
        "TimeExceeded" => 11,
        "ParameterProblem" => 12,
        "Timestamp" => 13,
        "TimestampReply" => 14,
        "Photuris" => 40,
        "ExtendedEchoRequest" => 42,
        "ExtendedEchoReply" => 43,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
