//! The policy document a module returns, with builders.
//!
//! These types mirror the compiler's AST (`compiler/src/source/ast.rs`) in JSON, field for
//! field, without source spans. The SDK cannot use the compiler crate itself: that needs
//! `std` (and miette), and modules are `no_std`. `tests/compat.rs` keeps the two in step.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    #[serde(default)]
    pub items: Vec<Item>,
}

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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Policy(Policy),
    Masquerade(Masquerade),
    Ipam(Ipam),
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

/// Who a policy applies to, which directions it isolates, and its rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    /// `None` = cluster-scoped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub tier: Tier,
    pub subject: Subject,
    /// `None` = the directions it has rules for (ingress when none), as in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate: Option<Vec<Direction>>,
    #[serde(default)]
    pub rules: Vec<Rule>,
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

    pub fn isolate(mut self, directions: &[Direction]) -> Policy {
        self.isolate = Some(directions.to_vec());
        self
    }

    /// Isolates ingress and egress: only what the rules allow gets through.
    pub fn isolate_both(self) -> Policy {
        self.isolate(&[Direction::Ingress, Direction::Egress])
    }

    pub fn rule(mut self, rule: Rule) -> Policy {
        self.rules.push(rule);
        self
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tier", rename_all = "snake_case")]
pub enum Tier {
    /// Evaluated first, lowest priority number first; first match wins.
    Admin { priority: u32 },
    /// Kubernetes NetworkPolicy semantics.
    #[default]
    Default,
    /// Evaluated last.
    Baseline,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Selector>,
    #[serde(default)]
    pub pods: Selector,
}

/// A conjunction of label requirements; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default)]
    pub exprs: Vec<LabelExpr>,
}

impl Selector {
    /// Matches everything.
    pub fn all() -> Selector {
        Selector::default()
    }

    /// `key = value`.
    pub fn label(key: impl Into<String>, value: impl Into<String>) -> Selector {
        Selector::all().eq(key, value)
    }

    /// One `key = value` per entry (a Kubernetes `matchLabels`).
    pub fn labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Selector {
        labels
            .into_iter()
            .fold(Selector::all(), |s, (k, v)| s.eq(k.as_str(), v.as_str()))
    }

    fn push(mut self, key: impl Into<String>, op: LabelOp, values: Vec<String>) -> Selector {
        self.exprs.push(LabelExpr {
            key: key.into(),
            op,
            values,
        });
        self
    }

    pub fn eq(self, key: impl Into<String>, value: impl Into<String>) -> Selector {
        self.push(key, LabelOp::Eq, alloc::vec![value.into()])
    }
    pub fn not_eq(self, key: impl Into<String>, value: impl Into<String>) -> Selector {
        self.push(key, LabelOp::NotEq, alloc::vec![value.into()])
    }
    pub fn is_in<S: Into<String>>(
        self,
        key: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> Selector {
        let values = values.into_iter().map(Into::into).collect();
        self.push(key, LabelOp::In, values)
    }
    pub fn not_in<S: Into<String>>(
        self,
        key: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> Selector {
        let values = values.into_iter().map(Into::into).collect();
        self.push(key, LabelOp::NotIn, values)
    }
    pub fn exists(self, key: impl Into<String>) -> Selector {
        self.push(key, LabelOp::Exists, Vec::new())
    }
    pub fn does_not_exist(self, key: impl Into<String>) -> Selector {
        self.push(key, LabelOp::DoesNotExist, Vec::new())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelExpr {
    pub key: String,
    pub op: LabelOp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelOp {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Deny,
    Audit,
    /// Admin tier only: hand over to the NetworkPolicy tier.
    Pass,
}

/// Traffic in `direction` to/from any of `peers` on any of `ports` gets `action`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub direction: Direction,
    pub action: Action,
    /// Empty = every peer.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Empty = every protocol and port.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

impl Rule {
    /// An ingress `allow` rule for every peer and port, until narrowed.
    pub fn ingress() -> Rule {
        Rule::new(Direction::Ingress)
    }

    /// An egress `allow` rule for every peer and port, until narrowed.
    pub fn egress() -> Rule {
        Rule::new(Direction::Egress)
    }

    fn new(direction: Direction) -> Rule {
        Rule {
            name: None,
            direction,
            action: Action::Allow,
            peers: Vec::new(),
            ports: Vec::new(),
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
    pub fn pass(self) -> Rule {
        self.action(Action::Pass)
    }

    /// Adds a peer (`from` for ingress, `to` for egress: the same list).
    pub fn peer(mut self, peer: Peer) -> Rule {
        self.peers.push(peer);
        self
    }

    pub fn port(mut self, port: PortSpec) -> Rule {
        self.ports.push(port);
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "peer", rename_all = "snake_case")]
pub enum Peer {
    /// `namespaces: None` = the policy's namespace (every namespace if cluster-scoped);
    /// `pods: None` = every pod of those namespaces.
    Endpoints {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespaces: Option<Selector>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pods: Option<Selector>,
    },
    Cidr {
        cidr: Cidr,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        except: Vec<Cidr>,
    },
    Entity {
        entity: Entity,
    },
}

impl Peer {
    /// Pods with these labels, in the policy's namespace.
    pub fn pods(pods: Selector) -> Peer {
        Peer::Endpoints {
            namespaces: None,
            pods: Some(pods),
        }
    }

    /// Every pod of the namespaces with these labels.
    pub fn namespaces(namespaces: Selector) -> Peer {
        Peer::Endpoints {
            namespaces: Some(namespaces),
            pods: None,
        }
    }

    /// Pods with these labels in namespaces with those.
    pub fn endpoints(namespaces: Selector, pods: Selector) -> Peer {
        Peer::Endpoints {
            namespaces: Some(namespaces),
            pods: Some(pods),
        }
    }

    /// Every pod of the namespace called `name`.
    pub fn namespace_named(name: impl Into<String>) -> Peer {
        Peer::namespaces(Selector::label(
            crate::inventory::NAMESPACE_NAME_LABEL,
            name,
        ))
    }

    /// Every pod in the policy's own namespace.
    pub fn same_namespace() -> Peer {
        Peer::pods(Selector::all())
    }

    pub fn cidr(cidr: Cidr) -> Peer {
        Peer::Cidr {
            cidr,
            except: Vec::new(),
        }
    }

    pub fn cidr_except(cidr: Cidr, except: Vec<Cidr>) -> Peer {
        Peer::Cidr { cidr, except }
    }

    pub fn entity(entity: Entity) -> Peer {
        Peer::Entity { entity }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    World,
    Host,
    Cluster,
    All,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortSpec {
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortMatch>,
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
        }
    }
    /// Inclusive range.
    pub fn range(protocol: Protocol, first: u16, last: u16) -> PortSpec {
        PortSpec::new(protocol, PortMatch::Range(first, last))
    }
    /// A container port name, resolved per destination endpoint.
    pub fn named(protocol: Protocol, name: impl Into<String>) -> PortSpec {
        PortSpec::new(protocol, PortMatch::Named(name.into()))
    }
    /// Every port of `protocol`.
    pub fn protocol(protocol: Protocol) -> PortSpec {
        PortSpec {
            protocol,
            port: None,
        }
    }
    pub fn icmp(icmp_type: Option<u8>, code: Option<u8>) -> PortSpec {
        PortSpec::protocol(Protocol::Icmp { icmp_type, code })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        icmp_type: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u8>,
    },
    Any,
}

impl Protocol {
    /// From a Kubernetes protocol name (`TCP`, `udp`, ...); `None` for anything else.
    pub fn from_k8s(name: &str) -> Option<Protocol> {
        match () {
            _ if name.eq_ignore_ascii_case("tcp") => Some(Protocol::Tcp),
            _ if name.eq_ignore_ascii_case("udp") => Some(Protocol::Udp),
            _ if name.eq_ignore_ascii_case("sctp") => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortMatch {
    Number(u16),
    /// Inclusive.
    Range(u16, u16),
    Named(String),
}

/// An IP prefix, written `addr/prefix` in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| alloc::format!("`{s}`: expected an address followed by /prefix"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| alloc::format!("`{addr}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(prefix) if prefix <= max => Ok(Cidr { addr, prefix }),
            _ => Err(alloc::format!(
                "`{s}`: prefix length {prefix} is out of range (0..={max})"
            )),
        }
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where pod traffic leaving the cluster is SNATed to the node address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Masquerade {
    #[serde(default)]
    pub non_masquerade: Vec<Cidr>,
    #[serde(default)]
    pub link_local: bool,
    #[serde(default)]
    pub link_local_v6: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
}

impl Masquerade {
    pub fn new() -> Masquerade {
        Masquerade::default()
    }
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Egress {
    Interface(String),
    Address(IpAddr),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ipam {
    #[serde(default)]
    pub pools: Vec<Pool>,
}

impl Ipam {
    pub fn new() -> Ipam {
        Ipam::default()
    }
    pub fn pool(mut self, name: impl Into<String>, kind: PoolKind) -> Ipam {
        self.pools.push(Pool {
            name: name.into(),
            kind,
        });
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    pub kind: PoolKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PoolKind {
    Cluster {
        cidrs: Vec<Cidr>,
        node_mask: u8,
    },
    Multi {
        cidrs: Vec<Cidr>,
        node_mask: u8,
        #[serde(default)]
        pods: Selector,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespaces: Option<Selector>,
    },
    Lb {
        blocks: Vec<LbBlock>,
        services: Selector,
    },
    HostScope,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbBlock {
    Cidr(Cidr),
    Range(IpAddr, IpAddr),
}

/// Parses a CIDR, for generators reading them from parameters.
pub fn cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
}
