//! Resolution: the IR against an inventory, giving what codegen consumes.
//!
//! Selectors become sets of numeric identities ([`identity`]), named ports become numbers, and
//! each endpoint gets an [`EndpointPolicy`]: per direction, the rules that apply to it in
//! evaluation order. A packet's decision is then a function of (remote identity, remote
//! address's CIDR identity, protocol, port/ICMP type) only, which is what the datapath can
//! look up. [`DirectionPolicy::evaluate`] states that function; codegen must agree with it.

pub mod identity;
pub mod inventory;

pub use identity::Identities;
pub use inventory::{Inventory, InventoryFiles};

use crate::ir::{Ir, L4, L4Match, PeerKind, PortEntry, RuleId, Tier};
use crate::source::ast::{Action, Cidr, Entity, PolicyDirection};
use std::collections::{BTreeMap, BTreeSet};

/// Everything one endpoint's programs need. `None` for a direction: no rule of any tier
/// applies, so everything passes and no policy code is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Index into `Inventory::endpoints`.
    pub endpoint: usize,
    pub identity: u32,
    pub ingress: Option<DirectionPolicy>,
    pub egress: Option<DirectionPolicy>,
}

/// The rules of one direction, in evaluation order, and how to combine them:
///
/// 1. `Admin` rules in order: the first match decides (`allow`/`audit` allow, `deny`
///    denies), `pass` skips to step 2.
/// 2. `Default` rules: any matching `deny` denies; else any matching `allow`/`audit` allows;
///    else, if `isolated`, deny.
/// 3. `Baseline` rules in order: the first match decides.
/// 4. Allow.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DirectionPolicy {
    pub direction: PolicyDirection,
    /// Some default-tier policy selecting the endpoint isolates this direction.
    pub isolated: bool,
    pub rules: Vec<ResolvedRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolvedRule {
    pub tier: Tier,
    pub action: Action,
    pub peers: ResolvedPeers,
    pub ports: Vec<ResolvedPort>,
    /// The IR rule (for `file:line` in traces). An egress rule with named ports may appear
    /// more than once, once per group of destinations its names resolve alike for.
    pub rule: RuleId,
}

/// Who a rule's peers are. A remote matches when `any`, or its identity is in `identities`,
/// or the local identity of its address's most specific CIDR prefix is in `cidr_identities`
/// (CIDR peers match by address, pod addresses included, as Kubernetes `ipBlock` does), or
/// its (identity, CIDR identity) pair is in `pairs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResolvedPeers {
    pub any: bool,
    pub identities: BTreeSet<u32>,
    pub cidr_identities: BTreeSet<u32>,
    /// Matches only together: pods that an egress rule with named ports reaches through a
    /// CIDR peer (the names resolve on those pods, and only at those addresses).
    pub pairs: BTreeSet<(u32, u32)>,
    /// The blocks behind `cidr_identities` (block, excepts), for LPM-free shapes.
    pub cidrs: Vec<(Cidr, Vec<Cidr>)>,
}

impl ResolvedPeers {
    pub fn matches(&self, identity: u32, cidr_identity: Option<u32>) -> bool {
        self.any
            || self.identities.contains(&identity)
            || cidr_identity.is_some_and(|c| {
                self.cidr_identities.contains(&c) || self.pairs.contains(&(identity, c))
            })
    }
}

/// A port match with names resolved. An empty list in a rule means every port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResolvedPort {
    AnyProtocol,
    Range {
        proto: L4,
        lo: u16,
        hi: u16,
    },
    Icmp {
        icmp_type: Option<u8>,
        code: Option<u8>,
    },
}

impl ResolvedPort {
    pub fn matches(&self, m: L4Match) -> bool {
        match (self, m) {
            (ResolvedPort::AnyProtocol, _) => true,
            (ResolvedPort::Range { proto, lo, hi }, L4Match::Port { proto: p, port }) => {
                *proto == p && *lo <= port && port <= *hi
            }
            (
                ResolvedPort::Icmp { icmp_type, code },
                L4Match::Icmp {
                    icmp_type: t,
                    code: c,
                },
            ) => icmp_type.is_none_or(|x| x == t) && code.is_none_or(|x| x == c),
            _ => false,
        }
    }
}

/// The verdict of [`DirectionPolicy::evaluate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub audited: bool,
    /// The deciding rule; `None` for the implicit outcomes (isolated with no match; nothing
    /// applied).
    pub rule: Option<RuleId>,
}

impl ResolvedRule {
    pub fn matches(&self, identity: u32, cidr_identity: Option<u32>, m: L4Match) -> bool {
        self.peers.matches(identity, cidr_identity)
            && (self.ports.is_empty() || self.ports.iter().any(|p| p.matches(m)))
    }
}

impl DirectionPolicy {
    /// The decision for one packet, by the rules in the type's documentation.
    pub fn evaluate(&self, identity: u32, cidr_identity: Option<u32>, m: L4Match) -> Decision {
        let hit = |r: &ResolvedRule| r.matches(identity, cidr_identity, m);
        let decide = |r: &ResolvedRule| Decision {
            allow: r.action != Action::Deny,
            audited: r.action == Action::Audit,
            rule: Some(r.rule),
        };
        for r in self
            .rules
            .iter()
            .filter(|r| matches!(r.tier, Tier::Admin(_)))
        {
            if hit(r) {
                if r.action == Action::Pass {
                    break;
                }
                return decide(r);
            }
        }
        let default: Vec<&ResolvedRule> = self
            .rules
            .iter()
            .filter(|r| r.tier == Tier::Default && hit(r))
            .collect();
        if let Some(r) = default.iter().find(|r| r.action == Action::Deny) {
            return decide(r);
        }
        if let Some(r) = default.first() {
            let audited = default.iter().any(|r| r.action == Action::Audit);
            return Decision {
                audited,
                ..decide(r)
            };
        }
        if self.isolated {
            return Decision {
                allow: false,
                audited: false,
                rule: None,
            };
        }
        for r in self.rules.iter().filter(|r| r.tier == Tier::Baseline) {
            if hit(r) {
                return decide(r);
            }
        }
        Decision {
            allow: true,
            audited: false,
            rule: None,
        }
    }
}

/// The resolved policy of endpoint `endpoint` (an index into `inv.endpoints`).
pub fn policy_for(ir: &Ir, inv: &Inventory, ids: &Identities, endpoint: usize) -> EndpointPolicy {
    EndpointPolicy {
        endpoint,
        identity: ids.of_endpoint[endpoint],
        ingress: direction_policy(ir, inv, ids, endpoint, PolicyDirection::Ingress),
        egress: direction_policy(ir, inv, ids, endpoint, PolicyDirection::Egress),
    }
}

fn direction_policy(
    ir: &Ir,
    inv: &Inventory,
    ids: &Identities,
    endpoint: usize,
    direction: PolicyDirection,
) -> Option<DirectionPolicy> {
    let view = inv.view(endpoint);
    let selecting: Vec<_> = ir
        .evaluation_order()
        .into_iter()
        .filter(|p| ir.selects(*p, &view))
        .collect();
    let isolated = selecting.iter().any(|p| {
        let p = &ir.policies[*p];
        p.tier == Tier::Default && p.isolates.get(direction)
    });
    let mut rules = Vec::new();
    for p in &selecting {
        for r in &ir.policies[*p].rules {
            if ir.rules[*r].direction == direction {
                resolve_rule(ir, inv, ids, endpoint, *r, &mut rules);
            }
        }
    }
    (isolated || !rules.is_empty()).then_some(DirectionPolicy {
        direction,
        isolated,
        rules,
    })
}

fn resolve_rule(
    ir: &Ir,
    inv: &Inventory,
    ids: &Identities,
    endpoint: usize,
    rule: RuleId,
    out: &mut Vec<ResolvedRule>,
) {
    let r = &ir.rules[rule];
    let tier = ir.policies[ir.policy_of(rule)].tier;
    let peers = resolve_peers(ir, ids, &r.peers);
    let set = &ir.port_sets[r.ports];
    let mut fixed = Vec::new();
    let mut named = Vec::new();
    for e in &set.entries {
        match e {
            PortEntry::AnyProtocol => fixed.push(ResolvedPort::AnyProtocol),
            PortEntry::Range { proto, lo, hi } => fixed.push(ResolvedPort::Range {
                proto: *proto,
                lo: *lo,
                hi: *hi,
            }),
            PortEntry::Icmp { icmp_type, code } => fixed.push(ResolvedPort::Icmp {
                icmp_type: *icmp_type,
                code: *code,
            }),
            PortEntry::Named { proto, name } => named.push((*proto, name.as_str())),
        }
    }
    let push = |out: &mut Vec<ResolvedRule>, peers: ResolvedPeers, ports: Vec<ResolvedPort>| {
        out.push(ResolvedRule {
            tier,
            action: r.action,
            peers,
            ports,
            rule,
        })
    };
    if named.is_empty() {
        push(out, peers, fixed);
        return;
    }
    // Named ports name the *destination's* container ports.
    let resolve_named = |eps: &mut dyn Iterator<Item = usize>| -> BTreeSet<ResolvedPort> {
        let mut s = BTreeSet::new();
        for ep in eps {
            for (proto, name) in &named {
                for port in inv.endpoints[ep].named_port(*proto, name) {
                    s.insert(ResolvedPort::Range {
                        proto: *proto,
                        lo: port,
                        hi: port,
                    });
                }
            }
        }
        s
    };
    match r.direction {
        PolicyDirection::Ingress => {
            let mut ports = fixed;
            ports.extend(resolve_named(&mut std::iter::once(endpoint)));
            if !ports.is_empty() {
                push(out, peers, ports);
            }
        }
        PolicyDirection::Egress => {
            // Group destinations by what the names resolve to on their endpoints. Endpoints
            // named by identity (or reached through `any`) group by identity; endpoints
            // reached only through a CIDR peer group by (identity, CIDR identity), so the
            // names apply to them at the addresses the CIDR covers and nowhere else. Addresses
            // that are no endpoint never match a name: they keep only the fixed ports.
            type Group = (BTreeSet<u32>, BTreeSet<(u32, u32)>);
            let mut groups: BTreeMap<BTreeSet<ResolvedPort>, Group> = BTreeMap::new();
            let candidates: BTreeSet<u32> = if peers.any {
                ids.endpoints.iter().map(|e| e.id).collect()
            } else {
                peers.identities.clone()
            };
            for &id in &candidates {
                let mut eps = (0..inv.endpoints.len()).filter(|e| ids.of_endpoint[*e] == id);
                let resolved = resolve_named(&mut eps);
                if !resolved.is_empty() {
                    groups.entry(resolved).or_default().0.insert(id);
                }
            }
            if !peers.cidr_identities.is_empty() {
                let mut by_pair: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
                for (e, ep) in inv.endpoints.iter().enumerate() {
                    let id = ids.of_endpoint[e];
                    if candidates.contains(&id) {
                        continue;
                    }
                    for ip in &ep.ips {
                        if let Some(c) = ids.cidr_of_ip(*ip)
                            && peers.cidr_identities.contains(&c)
                        {
                            by_pair.entry((id, c)).or_default().push(e);
                        }
                    }
                }
                for (pair, eps) in by_pair {
                    let resolved = resolve_named(&mut eps.into_iter());
                    if !resolved.is_empty() {
                        groups.entry(resolved).or_default().1.insert(pair);
                    }
                }
            }
            for (resolved, (identities, pairs)) in groups {
                let mut ports = fixed.clone();
                ports.extend(resolved);
                push(
                    out,
                    ResolvedPeers {
                        any: false,
                        identities,
                        pairs,
                        ..Default::default()
                    },
                    ports,
                );
            }
            if !fixed.is_empty() {
                push(out, peers, fixed);
            }
        }
    }
}

/// The prefixes of `all` that `cidr` covers. Only keys whose address lies inside `cidr` can
/// be covered, so a range scan finds them: a policy with 100k CIDR peers stays O(n log n)
/// instead of O(n²).
fn covered_prefixes<'a>(
    all: &'a BTreeMap<Cidr, u32>,
    cidr: &'a Cidr,
) -> impl Iterator<Item = (&'a Cidr, &'a u32)> + 'a {
    let c = cidr.canonical();
    let last = match c.addr {
        std::net::IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(c.prefix)).unwrap_or(0);
            std::net::IpAddr::V4((u32::from(a) | host).into())
        }
        std::net::IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(c.prefix)).unwrap_or(0);
            std::net::IpAddr::V6((u128::from(a) | host).into())
        }
    };
    let lo = Cidr {
        addr: c.addr,
        prefix: 0,
    };
    let hi = Cidr {
        addr: last,
        prefix: u8::MAX,
    };
    all.range(lo..=hi).filter(move |(p, _)| cidr.covers(p))
}

fn resolve_peers(ir: &Ir, ids: &Identities, peers: &[crate::ir::PeerId]) -> ResolvedPeers {
    let mut out = ResolvedPeers {
        any: peers.is_empty(),
        ..Default::default()
    };
    let all_endpoints = || ids.endpoints.iter().map(|e| e.id);
    for p in peers {
        match &ir.peers[*p].kind {
            PeerKind::Endpoints { namespaces, pods } => {
                for info in &ids.endpoints {
                    let view = crate::ir::EndpointView {
                        namespace: &info.namespace,
                        namespace_labels: &info.namespace_labels,
                        labels: &info.pod_labels,
                    };
                    if ir.endpoint_peer_matches(namespaces, *pods, &view) {
                        out.identities.insert(info.id);
                    }
                }
            }
            PeerKind::Cidr { cidr, except } => {
                for (prefix, id) in covered_prefixes(&ids.cidrs, cidr) {
                    if !except.iter().any(|e| e.covers(prefix)) {
                        out.cidr_identities.insert(*id);
                    }
                }
                out.cidrs.push((*cidr, except.clone()));
            }
            PeerKind::Entity(Entity::World) => {
                out.identities.extend([
                    identity::WORLD,
                    identity::WORLD_IPV4,
                    identity::WORLD_IPV6,
                ]);
            }
            PeerKind::Entity(Entity::Host) => {
                out.identities.insert(identity::HOST);
            }
            PeerKind::Entity(Entity::Cluster) => {
                out.identities.extend(all_endpoints());
                out.identities.extend([
                    identity::HOST,
                    identity::REMOTE_NODE,
                    identity::HEALTH,
                    identity::INIT,
                    identity::UNMANAGED,
                    identity::KUBE_APISERVER,
                    identity::INGRESS,
                ]);
            }
            PeerKind::Entity(Entity::All) => out.any = true,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ast::Document;

    const INV: &str = "
namespaces:
- {name: x, labels: {team: a}}
endpoints:
- {name: web2, namespace: x, labels: {app: web}, ips: [10.0.0.3], ports: [{name: http, port: 8080}]}
- {name: web1, namespace: x, labels: {app: web}, ips: [10.0.0.2], ports: [{name: http, port: 8080}]}
- {name: db, namespace: x, labels: {app: db}, ips: [10.0.0.1], ports: [{name: http, port: 9090}]}
- {name: other, namespace: y, labels: {app: web}, ips: [10.1.0.1]}
";

    fn setup(policy: &str) -> (Ir, Inventory, Identities) {
        let doc: Document = serde_json::from_str(policy).unwrap();
        let (ir, diags) = crate::ir::lower(&[doc]);
        assert!(!diags.has_errors(), "{diags:?}");
        let inv = Inventory::parse("inv", INV).unwrap();
        let ids = identity::allocate(&inv, &ir);
        (ir, inv, ids)
    }

    #[test]
    fn identities_are_per_label_set_and_deterministic() {
        let (ir, inv, ids) = setup(r#"{"items":[]}"#);
        // web1 and web2 share labels: one identity. Sorted label sets number from 256.
        assert_eq!(ids.of_endpoint[0], ids.of_endpoint[1]);
        assert_eq!(ids.endpoints.len(), 3);
        assert_eq!(
            ids.endpoints.iter().map(|e| e.id).collect::<Vec<_>>(),
            [256, 257, 258]
        );
        let db = &ids.endpoints[0];
        assert_eq!(db.labels["k8s:app"], "db");
        assert_eq!(db.labels[identity::POD_NAMESPACE_LABEL], "x");
        assert_eq!(db.labels["k8s:io.cilium.k8s.namespace.labels.team"], "a");
        let mut shuffled = inv.clone();
        shuffled.endpoints.reverse();
        let again = identity::allocate(&shuffled, &ir);
        assert_eq!(again.endpoints, ids.endpoints);
        assert_eq!(
            ids.of_ip(&inv, "8.8.8.8".parse().unwrap(), None),
            identity::WORLD
        );
    }

    #[test]
    fn cidr_identities_follow_longest_prefix() {
        let (ir, inv, ids) = setup(
            r#"{"items":[{"kind":"policy","name":"p","namespace":"x","subject":{},
            "rules":[{"direction":"egress","action":"allow","peers":[
              {"peer":"cidr","cidr":"10.0.0.0/8","except":["10.0.0.0/24"]}]}]}]}"#,
        );
        let web1 = inv.endpoint_index("x", "web1").unwrap();
        let pol = policy_for(&ir, &inv, &ids, web1);
        assert!(pol.ingress.is_none());
        let eg = pol.egress.unwrap();
        assert!(eg.isolated);
        let tcp80 = L4Match::Port {
            proto: L4::Tcp,
            port: 80,
        };
        let ev = |ip: &str| {
            let ip = ip.parse().unwrap();
            eg.evaluate(ids.of_ip(&inv, ip, None), ids.cidr_of_ip(ip), tcp80)
                .allow
        };
        assert!(ev("10.1.0.1"), "pod inside the block");
        assert!(!ev("10.0.0.1"), "pod inside the except");
        assert!(ev("10.200.0.1"));
        assert!(!ev("11.0.0.1"));
    }

    #[test]
    fn egress_named_ports_resolve_per_destination() {
        let (ir, inv, ids) = setup(
            r#"{"items":[{"kind":"policy","name":"p","namespace":"x","subject":{},
            "rules":[{"direction":"egress","action":"allow",
              "ports":[{"protocol":{"name":"tcp"},"port":{"named":"http"}}]}]}]}"#,
        );
        let db = inv.endpoint_index("x", "db").unwrap();
        let eg = policy_for(&ir, &inv, &ids, db).egress.unwrap();
        // Two groups: web (8080) and db (9090); `other` declares no port named http.
        assert_eq!(eg.rules.len(), 2);
        let web = ids.of_endpoint[inv.endpoint_index("x", "web1").unwrap()];
        let port = |p| L4Match::Port {
            proto: L4::Tcp,
            port: p,
        };
        assert!(eg.evaluate(web, None, port(8080)).allow);
        assert!(!eg.evaluate(web, None, port(9090)).allow);
        assert!(eg.evaluate(ids.of_endpoint[db], None, port(9090)).allow);
    }

    #[test]
    fn egress_named_ports_through_a_cidr_peer_resolve_at_the_covered_addresses_only() {
        // web1 and web2 share an identity; the block covers web1's address only.
        let (ir, inv, ids) = setup(
            r#"{"items":[{"kind":"policy","name":"p","namespace":"x","subject":{},
            "rules":[{"direction":"egress","action":"allow","peers":[
              {"peer":"cidr","cidr":"10.0.0.2/32"},{"peer":"cidr","cidr":"192.168.0.0/16"}],
              "ports":[{"protocol":{"name":"tcp"},"port":{"named":"http"}}]}]}]}"#,
        );
        let db = inv.endpoint_index("x", "db").unwrap();
        let eg = policy_for(&ir, &inv, &ids, db).egress.unwrap();
        let ev = |ip: &str, port| {
            let ip = ip.parse().unwrap();
            let m = L4Match::Port {
                proto: L4::Tcp,
                port,
            };
            eg.evaluate(ids.of_ip(&inv, ip, None), ids.cidr_of_ip(ip), m)
                .allow
        };
        assert!(ev("10.0.0.2", 8080), "web1: inside the block, http is 8080");
        assert!(!ev("10.0.0.2", 9090));
        assert!(
            !ev("10.0.0.3", 8080),
            "web2: same identity, outside the block"
        );
        assert!(
            !ev("192.168.1.1", 8080),
            "not an endpoint: names never match"
        );
        assert_eq!(eg.rules.len(), 1);
        assert!(eg.rules[0].peers.identities.is_empty() && eg.rules[0].peers.pairs.len() == 1);
    }
}
