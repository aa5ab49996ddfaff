//! Builders for policy documents: what a Wasm module author writes instead of struct literals
//! (and what tests use). Built nodes carry no spans (`Span::NONE`): they came from no text.

use crate::ast::*;
use crate::inventory::{L4, NAMESPACE_NAME_LABEL};
use alloc::string::String;
use alloc::vec::Vec;

impl Document {
    pub fn new() -> Document {
        Document::default()
    }

    pub fn push(&mut self, item: impl Into<Item>) -> &mut Document {
        self.items.push(item.into());
        self
    }

    pub fn with(mut self, item: impl Into<Item>) -> Document {
        self.items.push(item.into());
        self
    }
}

impl From<Policy> for Item {
    fn from(p: Policy) -> Item {
        Item::Policy(p)
    }
}

impl From<Masquerade> for Item {
    fn from(m: Masquerade) -> Item {
        Item::Masquerade(m)
    }
}

impl From<Ipam> for Item {
    fn from(i: Ipam) -> Item {
        Item::Ipam(i)
    }
}

impl Policy {
    /// A cluster-scoped policy in the default tier that selects every endpoint.
    pub fn new(name: impl Into<String>) -> Policy {
        Policy {
            name: name.into(),
            namespace: None,
            tier: Tier::Default,
            subject: Subject::default(),
            isolate: None,
            rules: Vec::new(),
            verdicts: Vec::new(),
            span: Span::NONE,
            name_span: Span::NONE,
        }
    }

    pub fn namespace(mut self, ns: impl Into<String>) -> Policy {
        self.namespace = Some(ns.into());
        self
    }

    pub fn tier(mut self, tier: Tier) -> Policy {
        self.tier = tier;
        self
    }

    /// The endpoints it applies to, by endpoint labels.
    pub fn pods(mut self, pods: Selector) -> Policy {
        self.subject.pods = pods;
        self
    }

    /// The namespaces it applies to, by namespace labels (cluster-scoped policies).
    pub fn namespaces(mut self, namespaces: Selector) -> Policy {
        self.subject.namespaces = Some(namespaces);
        self
    }

    pub fn isolate(mut self, directions: &[PolicyDirection]) -> Policy {
        self.isolate = Some(directions.to_vec());
        self
    }

    /// Isolates ingress and egress: only what the rules allow gets through.
    pub fn isolate_both(self) -> Policy {
        self.isolate(&[PolicyDirection::Ingress, PolicyDirection::Egress])
    }

    pub fn rule(mut self, rule: Rule) -> Policy {
        self.rules.push(rule);
        self
    }

    /// Attaches a Wasm verdict module (see [`VerdictRule::new`]); it needs an admin tier.
    pub fn verdict(mut self, verdict: VerdictRule) -> Policy {
        self.verdicts.push(verdict);
        self
    }
}

impl VerdictRule {
    /// The module at `module` (relative to the policy module's file), pinned by its sha256
    /// (64 hex digits), judging `direction`; a trap denies.
    pub fn new(
        direction: PolicyDirection,
        module: impl Into<String>,
        sha256: impl Into<String>,
    ) -> VerdictRule {
        VerdictRule {
            name: None,
            direction,
            module: module.into(),
            sha256: sha256.into(),
            on_trap: OnTrap::Deny,
            span: Span::NONE,
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> VerdictRule {
        self.name = Some(name.into());
        self
    }

    /// What a trap turns into.
    pub fn on_trap(mut self, on_trap: OnTrap) -> VerdictRule {
        self.on_trap = on_trap;
        self
    }
}

impl Selector {
    /// Matches everything.
    pub fn all() -> Selector {
        Selector::default()
    }

    /// `key=value`.
    pub fn label(key: impl Into<String>, value: impl Into<String>) -> Selector {
        Selector::all().eq(key, value)
    }

    /// Every `key=value` of a label map (what a Service's selector means).
    pub fn labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Selector {
        labels
            .into_iter()
            .fold(Selector::all(), |s, (k, v)| s.eq(k.as_str(), v.as_str()))
    }

    fn require(mut self, key: impl Into<String>, op: LabelOp, values: Vec<String>) -> Selector {
        self.exprs.push(LabelExpr {
            key: key.into(),
            op,
            values,
            span: Span::NONE,
        });
        self
    }

    #[allow(clippy::should_implement_trait)] // a label requirement, not equality
    pub fn eq(self, key: impl Into<String>, value: impl Into<String>) -> Selector {
        self.require(key, LabelOp::Eq, alloc::vec![value.into()])
    }

    pub fn not_eq(self, key: impl Into<String>, value: impl Into<String>) -> Selector {
        self.require(key, LabelOp::NotEq, alloc::vec![value.into()])
    }

    pub fn is_in<S: Into<String>>(
        self,
        key: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> Selector {
        let values = values.into_iter().map(Into::into).collect();
        self.require(key, LabelOp::In, values)
    }

    pub fn not_in<S: Into<String>>(
        self,
        key: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> Selector {
        let values = values.into_iter().map(Into::into).collect();
        self.require(key, LabelOp::NotIn, values)
    }

    pub fn exists(self, key: impl Into<String>) -> Selector {
        self.require(key, LabelOp::Exists, Vec::new())
    }

    pub fn does_not_exist(self, key: impl Into<String>) -> Selector {
        self.require(key, LabelOp::DoesNotExist, Vec::new())
    }
}

impl Rule {
    /// An ingress allow rule with no peers and no ports yet (everything, until narrowed).
    pub fn ingress() -> Rule {
        Rule::towards(PolicyDirection::Ingress)
    }

    /// An egress allow rule with no peers and no ports yet.
    pub fn egress() -> Rule {
        Rule::towards(PolicyDirection::Egress)
    }

    fn towards(direction: PolicyDirection) -> Rule {
        Rule {
            name: None,
            direction,
            action: Action::Allow,
            peers: Vec::new(),
            ports: Vec::new(),
            span: Span::NONE,
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> Rule {
        self.name = Some(name.into());
        self
    }

    pub fn action(mut self, action: Action) -> Rule {
        self.action = action;
        self
    }

    pub fn deny(self) -> Rule {
        self.action(Action::Deny)
    }

    pub fn audit(self) -> Rule {
        self.action(Action::Audit)
    }

    /// Admin tier only: hand the decision to the NetworkPolicy tier.
    pub fn pass(self) -> Rule {
        self.action(Action::Pass)
    }

    pub fn peer(mut self, peer: Peer) -> Rule {
        self.peers.push(peer);
        self
    }

    pub fn port(mut self, port: PortSpec) -> Rule {
        self.ports.push(port);
        self
    }
}

impl Peer {
    /// Pods by labels, in the policy's namespace.
    pub fn pods(pods: Selector) -> Peer {
        Peer::Endpoints {
            namespaces: None,
            pods: Some(pods),
            span: Span::NONE,
        }
    }

    /// Every pod of the namespaces with these labels.
    pub fn namespaces(namespaces: Selector) -> Peer {
        Peer::Endpoints {
            namespaces: Some(namespaces),
            pods: None,
            span: Span::NONE,
        }
    }

    /// Pods by labels, in the namespaces with these labels.
    pub fn endpoints(namespaces: Selector, pods: Selector) -> Peer {
        Peer::Endpoints {
            namespaces: Some(namespaces),
            pods: Some(pods),
            span: Span::NONE,
        }
    }

    /// Every pod of one namespace, by name.
    pub fn namespace_named(name: impl Into<String>) -> Peer {
        Peer::namespaces(Selector::label(NAMESPACE_NAME_LABEL, name))
    }

    /// Every pod of the policy's own namespace.
    pub fn same_namespace() -> Peer {
        Peer::pods(Selector::all())
    }

    pub fn cidr(cidr: Cidr) -> Peer {
        Peer::cidr_except(cidr, Vec::new())
    }

    pub fn cidr_except(cidr: Cidr, except: Vec<Cidr>) -> Peer {
        Peer::Cidr {
            cidr,
            except,
            span: Span::NONE,
        }
    }

    pub fn entity(entity: Entity) -> Peer {
        Peer::Entity {
            entity,
            span: Span::NONE,
        }
    }
}

impl PortSpec {
    pub fn tcp(port: u16) -> PortSpec {
        PortSpec::new(Protocol::Tcp, PortMatch::Number(port))
    }

    pub fn udp(port: u16) -> PortSpec {
        PortSpec::new(Protocol::Udp, PortMatch::Number(port))
    }

    pub fn sctp(port: u16) -> PortSpec {
        PortSpec::new(Protocol::Sctp, PortMatch::Number(port))
    }

    pub fn new(protocol: Protocol, port: PortMatch) -> PortSpec {
        PortSpec {
            protocol,
            port: Some(port),
            span: Span::NONE,
        }
    }

    /// An inclusive port range.
    pub fn range(protocol: Protocol, first: u16, last: u16) -> PortSpec {
        PortSpec::new(protocol, PortMatch::Range(first, last))
    }

    /// A container port name, resolved per destination endpoint.
    pub fn named(protocol: Protocol, name: impl Into<String>) -> PortSpec {
        PortSpec::new(protocol, PortMatch::Named(name.into()))
    }

    /// Every port of a protocol.
    pub fn protocol(protocol: Protocol) -> PortSpec {
        PortSpec {
            protocol,
            port: None,
            span: Span::NONE,
        }
    }

    pub fn icmp(icmp_type: Option<u8>, code: Option<u8>) -> PortSpec {
        PortSpec::protocol(Protocol::Icmp { icmp_type, code })
    }
}

impl Protocol {
    /// Kubernetes spelling (`TCP`, `udp`, ...): the port-carrying protocols only.
    pub fn from_k8s(name: &str) -> Option<Protocol> {
        L4::parse(name)
            .filter(|l4| *l4 != L4::Icmp)
            .map(Protocol::from)
    }
}

impl From<L4> for Protocol {
    fn from(l4: L4) -> Protocol {
        match l4 {
            L4::Tcp => Protocol::Tcp,
            L4::Udp => Protocol::Udp,
            L4::Sctp => Protocol::Sctp,
            L4::Icmp => Protocol::Icmp {
                icmp_type: None,
                code: None,
            },
        }
    }
}

impl Masquerade {
    /// Masquerade everything leaving the cluster, to the node address.
    pub fn new() -> Masquerade {
        Masquerade {
            non_masquerade: Vec::new(),
            link_local: false,
            link_local_v6: false,
            egress: None,
            span: Span::NONE,
        }
    }

    /// Traffic to `cidr` keeps the pod's source address.
    pub fn keep_source_to(mut self, cidr: Cidr) -> Masquerade {
        self.non_masquerade.push(cidr);
        self
    }

    pub fn link_local(mut self, on: bool) -> Masquerade {
        self.link_local = on;
        self
    }

    pub fn egress(mut self, egress: Egress) -> Masquerade {
        self.egress = Some(egress);
        self
    }
}

impl Default for Masquerade {
    fn default() -> Masquerade {
        Masquerade::new()
    }
}

impl Ipam {
    pub fn new() -> Ipam {
        Ipam::default()
    }

    pub fn pool(mut self, name: impl Into<String>, kind: PoolKind) -> Ipam {
        self.pools.push(Pool {
            name: name.into(),
            kind,
            span: Span::NONE,
        });
        self
    }
}

/// Parses `10.0.0.0/8`; the error says what is wrong with it.
pub fn cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
        .map_err(|e: CidrError| alloc::format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_nodes_serialize_without_spans() {
        let doc = Document::new().with(
            Policy::new("p").namespace("x").rule(
                Rule::egress()
                    .peer(Peer::cidr(cidr("10.0.0.0/8").unwrap()))
                    .port(PortSpec::tcp(443)),
            ),
        );
        let json = serde_json::to_string(&doc).unwrap();
        let back: Document = serde_json::from_str(&json).unwrap();
        assert_eq!(back, doc);
        assert!(!json.contains("span"), "{json}");
        assert_eq!(
            cidr("10.0.0.0").unwrap_err(),
            "`10.0.0.0`: expected an address followed by /prefix"
        );
        assert_eq!(Protocol::from_k8s("Udp"), Some(Protocol::Udp));
        assert_eq!(Protocol::from_k8s("icmp"), None);
    }

    /// What a policy module writes to attach a verdict module (`spec/wasm-abi.md`).
    #[test]
    fn verdict_rules_build_the_documented_json() {
        let p = Policy::new("guard")
            .tier(Tier::Admin { priority: 5 })
            .verdict(
                VerdictRule::new(PolicyDirection::Ingress, "ssh.wasm", "ab")
                    .named("ssh")
                    .on_trap(OnTrap::Pass),
            );
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            json.ends_with(
                r#""rules":[],"verdicts":[{"name":"ssh","direction":"ingress","module":"ssh.wasm","sha256":"ab","on_trap":"pass"}]}"#
            ),
            "{json}"
        );
        // `on_trap` may be left out: fail closed.
        let v: VerdictRule =
            serde_json::from_str(r#"{"direction":"egress","module":"m.wasm","sha256":"ab"}"#)
                .unwrap();
        assert_eq!(v.on_trap, OnTrap::Deny);
        // A policy without verdict rules serializes as before.
        assert!(
            !serde_json::to_string(&Policy::new("p"))
                .unwrap()
                .contains("verdicts")
        );
    }
}
