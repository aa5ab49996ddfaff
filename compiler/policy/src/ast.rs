//! The policy document: what every front end produces.
//!
//! The DSL parser, the Kubernetes and Cilium readers, the ip-masq-agent reader and Wasm modules
//! all produce this one tree, so everything after it (lowering, checks, codegen) has a single
//! input. It is also the JSON schema a Wasm module returns (`spec/wasm-abi.md`), which is why it
//! derives serde: spans are skipped in JSON, so a document from a module simply has no spans.
//!
//! The tree keeps what the user wrote (an `=` stays an `=`, a range stays a range) so `sluice
//! fmt` can print it back faithfully. Normalisation happens in lowering (`ir::lower`).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;
use serde::{Deserialize, Serialize};

pub use crate::verdict::OnTrap;

/// Identifies one loaded source file (the compiler's `SourceMap` holds the text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// A byte range in one source file. `Span::NONE` (also the default) marks nodes that came
/// from no text, such as a Wasm module's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub source: SourceId,
    pub start: u32,
    pub end: u32,
}

impl Default for Span {
    fn default() -> Span {
        Span::NONE
    }
}

impl Span {
    pub const NONE: Span = Span {
        source: SourceId(u32::MAX),
        start: 0,
        end: 0,
    };

    pub fn new(source: SourceId, start: usize, end: usize) -> Span {
        Span {
            source,
            start: start as u32,
            end: end as u32,
        }
    }

    pub fn is_none(&self) -> bool {
        self.source == SourceId(u32::MAX)
    }

    /// The smallest span covering both (same file assumed).
    pub fn to(self, other: Span) -> Span {
        if self.is_none() {
            return other;
        }
        Span {
            source: self.source,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// One parsed file (or one module output).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    #[serde(default)]
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Policy(Policy),
    Masquerade(Masquerade),
    Ipam(Ipam),
    Include(Include),
}

/// `include "other.sluice"`: the path is relative to the including file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Include {
    pub path: String,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

/// A policy: who it applies to (`subject`), which directions it isolates, and its rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    /// The namespace a namespaced policy lives in. It scopes the subject and any peer that
    /// names pods without naming namespaces (Kubernetes semantics). `None` = cluster-scoped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub tier: Tier,
    pub subject: Subject,
    /// Directions this policy isolates (Kubernetes `policyTypes`). `None` means: the
    /// directions it has rules for (and ingress when it has none at all), as in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate: Option<Vec<PolicyDirection>>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Wasm verdict modules run on the subject's packets before its decision table
    /// (`spec/language.md`, "Verdict rules").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<VerdictRule>,
    #[serde(skip, default = "none_span")]
    pub span: Span,
    /// Span of the name, for diagnostics that point at "this policy".
    #[serde(skip, default = "none_span")]
    pub name_span: Span,
}

/// Where a policy sits in evaluation order, shaped like AdminNetworkPolicy:
/// admin tiers (lowest priority number first) → NetworkPolicy semantics → baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "tier", rename_all = "snake_case")]
pub enum Tier {
    /// Evaluated first; rules are ordered, first match wins; `pass` hands over to the
    /// NetworkPolicy tier.
    Admin { priority: u32 },
    /// Kubernetes NetworkPolicy semantics: union of allows, deny wins.
    #[default]
    Default,
    /// Evaluated last, only for traffic no policy above decided.
    Baseline,
}

/// The endpoints a policy applies to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// Namespace labels (cluster-scoped policies). `None` = the policy's own namespace, or all
    /// namespaces for a cluster-scoped policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Selector>,
    /// Endpoint labels. An empty selector selects every endpoint in scope.
    #[serde(default)]
    pub pods: Selector,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

/// A conjunction of label requirements. Empty = matches everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default)]
    pub exprs: Vec<LabelExpr>,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelExpr {
    pub key: String,
    pub op: LabelOp,
    /// One value for `Eq`/`NotEq`, one or more for `In`/`NotIn`, none for `Exists`/`DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelOp {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// The direction of a policy rule, from the endpoint's side: ingress is traffic to it. (The
/// tcx hook that enforces it is the opposite one on the host-side veth; see the bundle crate's
/// `TcxHook`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDirection {
    Ingress,
    Egress,
}

impl PolicyDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyDirection::Ingress => "ingress",
            PolicyDirection::Egress => "egress",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    /// Deny wins over allow within a tier.
    Deny,
    /// Allows and records the match (the event stream / `sluice trace` shows it).
    Audit,
    /// Admin tier only: stop evaluating admin policies, fall through to NetworkPolicy.
    Pass,
}

/// One rule: traffic in `direction` to/from any of `peers` on any of `ports` gets `action`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub direction: PolicyDirection,
    pub action: Action,
    /// Empty = every peer, inside and outside the cluster.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Empty = every protocol and port.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

/// `ingress verdict "guard.wasm" sha256 "…" on-trap deny`: a Wasm verdict module
/// (`spec/wasm-verdict.md`) that judges every new flow of the policy's subject in `direction`
/// before the decision table, like an admin-tier rule: allow and deny decide, pass hands the
/// packet on, a trap becomes `on_trap`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub direction: PolicyDirection,
    /// The module file, relative to the directory of the file that names it (as `include`);
    /// in a policy module's output, relative to that module's file.
    pub module: String,
    /// The module's sha256, 64 hex digits: a module with other bytes is refused.
    pub sha256: String,
    #[serde(default)]
    pub on_trap: OnTrap,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "peer", rename_all = "snake_case")]
pub enum Peer {
    /// Endpoints by labels. `namespaces: None` means the policy's namespace (or every namespace
    /// for a cluster-scoped policy); `pods: None` means every pod of the matching namespaces.
    Endpoints {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespaces: Option<Selector>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pods: Option<Selector>,
        #[serde(skip, default = "none_span")]
        span: Span,
    },
    Cidr {
        cidr: Cidr,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        except: Vec<Cidr>,
        #[serde(skip, default = "none_span")]
        span: Span,
    },
    Entity {
        entity: Entity,
        #[serde(skip, default = "none_span")]
        span: Span,
    },
}

impl Peer {
    pub fn span(&self) -> Span {
        match self {
            Peer::Endpoints { span, .. } | Peer::Cidr { span, .. } | Peer::Entity { span, .. } => {
                *span
            }
        }
    }
}

/// Well-known peers, as in Cilium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// Everything outside the cluster.
    World,
    /// The local node.
    Host,
    /// Every endpoint in the cluster (and the nodes).
    Cluster,
    /// World and cluster.
    All,
}

/// A protocol with an optional port (or ICMP type/code).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortSpec {
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortMatch>,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Every protocol; a port then applies to TCP, UDP and SCTP.
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortMatch {
    Number(u16),
    /// Inclusive.
    Range(u16, u16),
    /// A container port name, resolved per destination endpoint.
    Named(String),
}

/// An IP prefix exactly as written: host bits may be set (lowering rejects that with the
/// canonical form as help).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn max_prefix(&self) -> u8 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// The same prefix with host bits cleared.
    pub fn canonical(&self) -> Cidr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                Cidr {
                    addr: IpAddr::V4((u32::from(a) & mask).into()),
                    prefix: self.prefix,
                }
            }
            IpAddr::V6(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                Cidr {
                    addr: IpAddr::V6((u128::from(a) & mask).into()),
                    prefix: self.prefix,
                }
            }
        }
    }

    pub fn is_canonical(&self) -> bool {
        *self == self.canonical()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let c = self.canonical();
        match (c.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if c.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - c.prefix)
                };
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if c.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - c.prefix)
                };
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }

    /// True when every address of `other` is in `self`.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.canonical().addr)
    }

    /// True when the two prefixes share an address (one covers the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("expected an address followed by /prefix")]
    MissingPrefix,
    #[error("`{0}` is not an IP address")]
    BadAddress(String),
    #[error("prefix length {prefix} is out of range (0..={max})")]
    BadPrefix { prefix: String, max: u8 },
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = s.split_once('/').ok_or(CidrError::MissingPrefix)?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(addr.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => {
                return Err(CidrError::BadPrefix {
                    prefix: prefix.to_string(),
                    max,
                });
            }
        };
        Ok(Cidr { addr, prefix })
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

/// `masquerade { ... }`: where pod traffic leaving the cluster is SNATed to the node address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Masquerade {
    /// Destinations that keep the pod's source address (ip-masq-agent `nonMasqueradeCIDRs`).
    #[serde(default)]
    pub non_masquerade: Vec<Cidr>,
    /// Masquerade traffic to 169.254.0.0/16 too (ip-masq-agent `masqLinkLocal`).
    #[serde(default)]
    pub link_local: bool,
    /// Masquerade traffic to fe80::/10 too (ip-masq-agent `masqLinkLocalIPv6`).
    #[serde(default)]
    pub link_local_v6: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

/// What the masqueraded source becomes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Egress {
    /// The primary address of this interface.
    Interface(String),
    Address(IpAddr),
}

/// `ipam { ... }`: address pools.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ipam {
    #[serde(default)]
    pub pools: Vec<Pool>,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    pub kind: PoolKind,
    #[serde(skip, default = "none_span")]
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PoolKind {
    /// Cluster CIDRs cut into per-node blocks of `/node_mask`.
    Cluster { cidrs: Vec<Cidr>, node_mask: u8 },
    /// A named pool chosen by pod selector (and optionally namespace selector).
    Multi {
        cidrs: Vec<Cidr>,
        node_mask: u8,
        #[serde(default)]
        pods: Selector,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespaces: Option<Selector>,
    },
    /// External addresses for LoadBalancer services.
    Lb {
        blocks: Vec<LbBlock>,
        services: Selector,
    },
    /// The node's Kubernetes `podCIDR`.
    HostScope,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbBlock {
    Cidr(Cidr),
    /// Inclusive start..=stop.
    Range(IpAddr, IpAddr),
}

fn none_span() -> Span {
    Span::NONE
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn cidr_canonical_and_contains() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert!(!c.is_canonical());
        assert_eq!(c.canonical().to_string(), "10.0.0.0/8");
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.covers(&c));
        assert!(!c.covers(&all));
        assert_eq!("10.0.0.0".parse::<Cidr>(), Err(CidrError::MissingPrefix));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::BadPrefix { .. })
        ));
        let v6: Cidr = "fd00::1/64".parse().unwrap();
        assert_eq!(v6.canonical().to_string(), "fd00::/64");
    }

    #[test]
    fn json_has_no_spans() {
        let doc = Document {
            items: vec![Item::Include(Include {
                path: "a.sluice".into(),
                span: Span::new(SourceId(0), 1, 2),
            })],
        };
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(json, r#"{"items":[{"kind":"include","path":"a.sluice"}]}"#);
        let back: Document = serde_json::from_str(&json).unwrap();
        assert!(matches!(&back.items[0], Item::Include(i) if i.span.is_none()));
    }
}
