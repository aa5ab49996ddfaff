//! The IR's entity references and the data they name.
//!
//! Entities are small `u32` handles (cranelift-entity) into the [`super::Ir`]'s `PrimaryMap`s,
//! so passes can attach facts to them in `SecondaryMap`s and collect them in `EntitySet`s without
//! borrowing the IR. Selectors and port sets are interned: two rules that wrote the same thing
//! (after normalisation) share one id, which makes "same peers / same ports" a cheap compare.

use crate::source::ast::{Action, Cidr, Entity, OnTrap, PolicyDirection, Span};
use cranelift_entity::entity_impl;
use std::collections::BTreeMap;

/// A policy, in declaration order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(u32);
entity_impl!(PolicyId, "policy");

/// A rule, in declaration order across all policies.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(u32);
entity_impl!(RuleId, "rule");

/// A Wasm verdict rule, in declaration order across all policies.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerdictId(u32);
entity_impl!(VerdictId, "verdict");

/// A normalised label selector (interned).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SelectorId(u32);
entity_impl!(SelectorId, "sel");

/// One peer of one rule (not interned: it carries its own span).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(u32);
entity_impl!(PeerId, "peer");

/// A normalised set of protocol/port matches (interned).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSetId(u32);
entity_impl!(PortSetId, "ports");

/// Where a policy sits in evaluation order. The derived `Ord` *is* the evaluation order:
/// admin tiers by ascending priority, then the NetworkPolicy tier, then baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Admin(u32),
    Default,
    Baseline,
}

impl Tier {
    pub fn name(&self) -> String {
        match self {
            Tier::Admin(p) => format!("admin (priority {p})"),
            Tier::Default => "default".into(),
            Tier::Baseline => "baseline".into(),
        }
    }
}

/// Which directions a policy isolates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Isolation {
    pub ingress: bool,
    pub egress: bool,
}

impl Isolation {
    pub fn get(&self, d: PolicyDirection) -> bool {
        match d {
            PolicyDirection::Ingress => self.ingress,
            PolicyDirection::Egress => self.egress,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PolicyData {
    pub name: String,
    /// `Some` for a namespaced policy: it selects only endpoints of that namespace.
    pub namespace: Option<String>,
    pub tier: Tier,
    /// Namespace labels the subject's namespace must have (cluster-scoped policies).
    pub subject_namespaces: Option<SelectorId>,
    pub subject_pods: SelectorId,
    pub isolates: Isolation,
    /// Rules in the order written (the order first-match tiers evaluate them).
    pub rules: Vec<RuleId>,
    /// Verdict rules in the order written (admin tier only).
    pub verdicts: Vec<VerdictId>,
    pub span: Span,
    pub name_span: Span,
    pub subject_span: Span,
}

#[derive(Clone, Debug)]
pub struct RuleData {
    pub name: Option<String>,
    pub direction: PolicyDirection,
    pub action: Action,
    /// Empty = every peer, inside and outside the cluster.
    pub peers: Vec<PeerId>,
    /// The empty port set = every protocol and port.
    pub ports: PortSetId,
    /// Position within its policy (0-based).
    pub index: u32,
    pub span: Span,
    /// Where each named port was written (the interned port set has no spans).
    pub named_port_spans: Vec<(String, Span)>,
}

/// A Wasm verdict rule (`ingress verdict "m.wasm" sha256 "…"`): the module runs on the
/// subject's new flows in `direction` before its decision table (`spec/wasm-verdict.md`).
#[derive(Clone, Debug)]
pub struct VerdictData {
    pub name: Option<String>,
    pub direction: PolicyDirection,
    pub policy: PolicyId,
    /// The module file as written (relative to the file of `span`).
    pub path: String,
    /// The sha256 the rule pins.
    pub sha256: [u8; 32],
    pub on_trap: OnTrap,
    pub span: Span,
    /// The module, read, checked against `sha256` and translated by
    /// [`super::verdict::load`]; `None` until then (code generation refuses it).
    pub module: Option<std::sync::Arc<crate::wasm_verdict::VerdictModule>>,
    /// Where [`super::verdict::load`] read it (the path as written, resolved against its
    /// file's directory); what a bundle's manifest records it under.
    pub file: Option<std::path::PathBuf>,
}

/// Which namespaces an endpoint peer may be in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NamespaceScope {
    /// Exactly this namespace (a namespaced policy's peer that names no namespaces).
    Named(String),
    /// Namespaces whose labels match.
    Selector(SelectorId),
    /// Every namespace (a cluster-scoped policy's peer that names no namespaces).
    All,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// Managed endpoints; `pods: None` = every endpoint of the scoped namespaces.
    Endpoints {
        namespaces: NamespaceScope,
        pods: Option<SelectorId>,
    },
    /// Addresses in `cidr` but in none of `except` (canonical prefixes). Matches by address,
    /// so it also matches endpoints whose IP falls inside (Kubernetes `ipBlock` semantics).
    Cidr {
        cidr: Cidr,
        except: Vec<Cidr>,
    },
    Entity(Entity),
}

#[derive(Clone, Debug)]
pub struct PeerData {
    pub kind: PeerKind,
    pub span: Span,
}

/// One label requirement, normalised: `=`/`!=` become one-value `In`/`NotIn`, values sorted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    pub fn key(&self) -> &str {
        match self {
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k,
        }
    }

    /// Kubernetes semantics: `NotIn` and `DoesNotExist` match when the key is absent.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A conjunction of requirements, sorted and deduplicated. Empty = matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SelectorData {
    pub requirements: Vec<Requirement>,
}

impl SelectorData {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// True when every label set this matches, `other` matches too (syntactic: each of
    /// `other`'s requirements appears in `self`, or `other` is empty). Sound, not complete.
    pub fn implies(&self, other: &SelectorData) -> bool {
        other.requirements.iter().all(|r| {
            self.requirements
                .iter()
                .any(|s| s == r || requirement_implies(s, r))
        })
    }
}

fn requirement_implies(a: &Requirement, b: &Requirement) -> bool {
    use Requirement::*;
    match (a, b) {
        (In(k, vs), In(k2, ws)) => k == k2 && vs.iter().all(|v| ws.contains(v)),
        (In(k, _), Exists(k2)) => k == k2,
        (In(k, vs), NotIn(k2, ws)) => k == k2 && vs.iter().all(|v| !ws.contains(v)),
        (NotIn(k, vs), NotIn(k2, ws)) => k == k2 && ws.iter().all(|w| vs.contains(w)),
        (DoesNotExist(k), NotIn(k2, _)) => k == k2,
        _ => false,
    }
}

impl std::fmt::Display for SelectorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::In(k, vs) if vs.len() == 1 => format!("{k}={}", vs[0]),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(", ")),
                Requirement::NotIn(k, vs) if vs.len() == 1 => format!("{k}!={}", vs[0]),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(", ")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        write!(f, "{{{}}}", parts.join(", "))
    }
}

pub use sluice_policy::inventory::L4;

/// One entry of a port set. Ports are inclusive ranges (a single port is `lo == hi`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortEntry {
    /// Every protocol, every port.
    AnyProtocol,
    /// One port-carrying protocol (TCP, UDP, SCTP) and a port range; `0..=65535` = all.
    Range { proto: L4, lo: u16, hi: u16 },
    /// A container port name with its protocol, resolved per destination endpoint.
    Named { proto: L4, name: String },
    /// ICMP, optionally one type and code.
    Icmp {
        icmp_type: Option<u8>,
        code: Option<u8>,
    },
}

/// What a port set is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4Match {
    Port { proto: L4, port: u16 },
    Icmp { icmp_type: u8, code: u8 },
}

impl PortEntry {
    /// Whether the entry matches; `named` resolves a (protocol, name) to the destination's
    /// container port numbers (empty when the destination declares none).
    pub fn matches(&self, m: L4Match, named: &dyn Fn(L4, &str) -> Vec<u16>) -> bool {
        match (self, m) {
            (PortEntry::AnyProtocol, _) => true,
            (PortEntry::Range { proto, lo, hi }, L4Match::Port { proto: p, port }) => {
                *proto == p && *lo <= port && port <= *hi
            }
            (PortEntry::Named { proto, name }, L4Match::Port { proto: p, port }) => {
                *proto == p && named(p, name).contains(&port)
            }
            (
                PortEntry::Icmp { icmp_type, code },
                L4Match::Icmp {
                    icmp_type: t,
                    code: c,
                },
            ) => icmp_type.is_none_or(|x| x == t) && code.is_none_or(|x| x == c),
            _ => false,
        }
    }

    /// True when every packet this entry matches, `other` matches too (named ports only cover
    /// the same name).
    pub fn covers(&self, other: &PortEntry) -> bool {
        match (self, other) {
            (PortEntry::AnyProtocol, _) => true,
            (
                PortEntry::Range { proto, lo, hi },
                PortEntry::Range {
                    proto: p2,
                    lo: l2,
                    hi: h2,
                },
            ) => proto == p2 && lo <= l2 && h2 <= hi,
            (
                PortEntry::Range {
                    proto,
                    lo: 0,
                    hi: 65535,
                },
                PortEntry::Named { proto: p2, .. },
            ) => proto == p2,
            (a @ PortEntry::Named { .. }, b @ PortEntry::Named { .. }) => a == b,
            (
                PortEntry::Icmp { icmp_type, code },
                PortEntry::Icmp {
                    icmp_type: t2,
                    code: c2,
                },
            ) => (icmp_type.is_none() || icmp_type == t2) && (code.is_none() || code == c2),
            _ => false,
        }
    }
}

impl std::fmt::Display for PortEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortEntry::AnyProtocol => f.write_str("any"),
            PortEntry::Range {
                proto,
                lo: 0,
                hi: 65535,
            } => write!(f, "{proto}"),
            PortEntry::Range { proto, lo, hi } if lo == hi => write!(f, "{proto}/{lo}"),
            PortEntry::Range { proto, lo, hi } => write!(f, "{proto}/{lo}-{hi}"),
            PortEntry::Named { proto, name } => write!(f, "{proto}/{name}"),
            PortEntry::Icmp { icmp_type, code } => {
                f.write_str("ICMP")?;
                if let Some(t) = icmp_type {
                    write!(f, " type {t}")?;
                }
                if let Some(c) = code {
                    write!(f, " code {c}")?;
                }
                Ok(())
            }
        }
    }
}

/// A normalised set of port entries (sorted, deduplicated). Empty = every protocol and port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortSet {
    pub entries: Vec<PortEntry>,
}

impl PortSet {
    pub fn is_any(&self) -> bool {
        self.entries.is_empty() || self.entries.contains(&PortEntry::AnyProtocol)
    }

    pub fn matches(&self, m: L4Match, named: &dyn Fn(L4, &str) -> Vec<u16>) -> bool {
        self.is_any() || self.entries.iter().any(|e| e.matches(m, named))
    }

    /// True when every packet `other` matches, `self` matches too.
    pub fn covers(&self, other: &PortSet) -> bool {
        self.is_any()
            || (!other.is_any()
                && other
                    .entries
                    .iter()
                    .all(|o| self.entries.iter().any(|s| s.covers(o))))
    }

    /// True when some packet could match both (named ports are assumed to possibly overlap
    /// with any range of their protocol).
    pub fn overlaps(&self, other: &PortSet) -> bool {
        if self.is_any() || other.is_any() {
            return true;
        }
        self.entries
            .iter()
            .any(|a| other.entries.iter().any(|b| entries_overlap(a, b)))
    }

    pub fn has_named(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, PortEntry::Named { .. }))
    }
}

fn entries_overlap(a: &PortEntry, b: &PortEntry) -> bool {
    use PortEntry::*;
    match (a, b) {
        (AnyProtocol, _) | (_, AnyProtocol) => true,
        (
            Range { proto, lo, hi },
            Range {
                proto: p,
                lo: l,
                hi: h,
            },
        ) => proto == p && lo <= h && l <= hi,
        (Range { proto, .. }, Named { proto: p, .. })
        | (Named { proto: p, .. }, Range { proto, .. }) => proto == p,
        (Named { proto, name }, Named { proto: p, name: n }) => proto == p && name == n,
        (
            Icmp { icmp_type, code },
            Icmp {
                icmp_type: t,
                code: c,
            },
        ) => {
            (icmp_type.is_none() || t.is_none() || icmp_type == t)
                && (code.is_none() || c.is_none() || code == c)
        }
        _ => false,
    }
}

impl std::fmt::Display for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_any() {
            return f.write_str("any");
        }
        let parts: Vec<String> = self.entries.iter().map(|e| e.to_string()).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Lowered `masquerade { ... }`.
#[derive(Clone, Debug)]
pub struct MasqueradeConfig {
    /// Canonical, non-overlapping.
    pub non_masquerade: Vec<Cidr>,
    pub link_local: bool,
    pub link_local_v6: bool,
    pub egress: Option<crate::source::ast::Egress>,
    pub span: Span,
}

/// Lowered IPAM pool.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub name: String,
    pub kind: PoolKindConfig,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum PoolKindConfig {
    Cluster {
        cidrs: Vec<Cidr>,
        node_mask: u8,
    },
    Multi {
        cidrs: Vec<Cidr>,
        node_mask: u8,
        pods: SelectorId,
        namespaces: Option<SelectorId>,
    },
    Lb {
        blocks: Vec<crate::source::ast::LbBlock>,
        services: SelectorId,
    },
    HostScope,
}
