//! Semantic checks over the whole IR: findings that need more than one rule to see.
//!
//! - an explicitly empty selector that matches everything (note);
//! - a rule shadowed by an earlier or broader one, so it can never decide anything (warning);
//! - an allow and a deny over overlapping traffic (note: which wins and why);
//! - a named port no endpoint of the inventory declares (warning, when there is an inventory);
//! - an IPv6 CIDR peer: the datapath does not enforce IPv6 yet (warning).
//!
//! Coverage and overlap are judged syntactically (selectors by implication, CIDRs by
//! containment), so a finding is always real; some real cases go unreported. It is a pass:
//! it takes the IR, records `shadowed_by`, and hands it back.
//!
//! Shadowing and conflicts are questions about pairs of rules; [`PairIndex`] narrows the pairs
//! to those that can compete, so 10k rules check in tens of milliseconds, not seconds.

use super::*;
use crate::diag::{Diag, Diagnostics};
use crate::source::ast::{Action, Cidr, Entity, PolicyDirection};
use std::collections::HashMap;

/// Runs every check. `named_ports` lists the (protocol, name) pairs the inventory declares,
/// when there is an inventory.
pub fn check(mut ir: Ir, named_ports: Option<&[(L4, String)]>, diags: &mut Diagnostics) -> Ir {
    empty_selectors(&ir, diags);
    ipv6_peers(&ir, diags);
    shadowed_and_conflicting(&mut ir, diags, false);
    if let Some(known) = named_ports {
        unknown_named_ports(&ir, known, diags);
    }
    ir
}

fn empty_selectors(ir: &Ir, diags: &mut Diagnostics) {
    for (_, p) in ir.policies.iter() {
        if ir.selectors[p.subject_pods].is_empty()
            && p.subject_namespaces
                .is_none_or(|s| ir.selectors[s].is_empty())
            && !p.subject_span.is_none()
        {
            let scope = match &p.namespace {
                Some(ns) => format!("every endpoint in namespace `{ns}`"),
                None => "every endpoint in the cluster".into(),
            };
            diags.push(
                Diag::note(
                    "sluice::selector::empty",
                    format!("policy `{}` applies to {scope}", p.name),
                )
                .with_label(p.subject_span, "this selector is empty"),
            );
        }
        for r in &p.rules {
            for peer in &ir.rules[*r].peers {
                let peer = &ir.peers[*peer];
                if let PeerKind::Endpoints { namespaces, pods } = &peer.kind {
                    let ns_all = match namespaces {
                        NamespaceScope::Selector(s) => ir.selectors[*s].is_empty(),
                        _ => false,
                    };
                    let pods_all = pods.is_some_and(|s| ir.selectors[s].is_empty());
                    let what = match (ns_all, pods_all || pods.is_none(), namespaces) {
                        (true, true, _) => "every endpoint in every namespace".to_string(),
                        (true, false, _) => "matching endpoints in every namespace".into(),
                        (false, true, NamespaceScope::Named(ns)) if pods_all => {
                            format!("every endpoint in namespace `{ns}`")
                        }
                        (false, true, NamespaceScope::All) if pods_all => {
                            "every endpoint in the cluster".into()
                        }
                        _ => continue,
                    };
                    diags.push(
                        Diag::note(
                            "sluice::selector::empty",
                            format!("this peer matches {what}"),
                        )
                        .with_label(peer.span, "empty selector"),
                    );
                }
            }
        }
    }
}

/// Whether every remote `b` matches is matched by `a`.
fn peers_cover(ir: &Ir, a: &[PeerId], b: &[PeerId]) -> bool {
    let a_any = a.is_empty()
        || a.iter()
            .any(|p| ir.peers[*p].kind == PeerKind::Entity(Entity::All));
    if a_any {
        return true;
    }
    !b.is_empty()
        && b.iter().all(|pb| {
            a.iter()
                .any(|pa| peer_covers(ir, &ir.peers[*pa].kind, &ir.peers[*pb].kind))
        })
}

fn peer_covers(ir: &Ir, a: &PeerKind, b: &PeerKind) -> bool {
    use PeerKind::*;
    match (a, b) {
        (Entity(crate::source::ast::Entity::All), _) => true,
        (Entity(x), Entity(y)) if x == y => true,
        (Entity(crate::source::ast::Entity::Cluster), Entity(crate::source::ast::Entity::Host))
        | (Entity(crate::source::ast::Entity::Cluster), Endpoints { .. }) => true,
        (
            Endpoints {
                namespaces: na,
                pods: pa,
            },
            Endpoints {
                namespaces: nb,
                pods: pb,
            },
        ) => {
            let ns = match (na, nb) {
                (NamespaceScope::All, _) => true,
                (NamespaceScope::Selector(s), _) if ir.selectors[*s].is_empty() => true,
                (NamespaceScope::Named(x), NamespaceScope::Named(y)) => x == y,
                (NamespaceScope::Selector(x), NamespaceScope::Selector(y)) => {
                    ir.selectors[*y].implies(&ir.selectors[*x])
                }
                _ => false,
            };
            let pods = match (pa, pb) {
                (None, _) => true,
                (Some(x), _) if ir.selectors[*x].is_empty() => true,
                (Some(x), Some(y)) => ir.selectors[*y].implies(&ir.selectors[*x]),
                (Some(_), None) => false,
            };
            ns && pods
        }
        (
            Cidr {
                cidr: ca,
                except: ea,
            },
            Cidr {
                cidr: cb,
                except: eb,
            },
        ) => crate::source::ipblock::covers(ca, ea, cb, eb),
        _ => false,
    }
}

fn overlap(a: &Cidr, b: &Cidr) -> bool {
    a.covers(b) || b.covers(a)
}

/// Whether some remote could match both (conservative: only overlaps we can see).
fn peers_overlap(ir: &Ir, a: &[PeerId], b: &[PeerId]) -> bool {
    if a.is_empty() || b.is_empty() {
        return true;
    }
    a.iter().any(|pa| {
        b.iter()
            .any(|pb| peer_overlaps(ir, &ir.peers[*pa].kind, &ir.peers[*pb].kind))
    })
}

fn peer_overlaps(ir: &Ir, a: &PeerKind, b: &PeerKind) -> bool {
    use PeerKind::*;
    if peer_covers(ir, a, b) || peer_covers(ir, b, a) {
        return true;
    }
    match (a, b) {
        (
            Endpoints {
                namespaces: na,
                pods: pa,
            },
            Endpoints {
                namespaces: nb,
                pods: pb,
            },
        ) => {
            let ns_disjoint = match (na, nb) {
                (NamespaceScope::Named(x), NamespaceScope::Named(y)) => x != y,
                (NamespaceScope::Selector(x), NamespaceScope::Selector(y)) => {
                    disjoint(&ir.selectors[*x], &ir.selectors[*y])
                }
                _ => false,
            };
            let pods_disjoint = match (pa, pb) {
                (Some(x), Some(y)) => disjoint(&ir.selectors[*x], &ir.selectors[*y]),
                _ => false,
            };
            !ns_disjoint && !pods_disjoint
        }
        (
            Cidr {
                cidr: ca,
                except: ea,
            },
            Cidr {
                cidr: cb,
                except: eb,
            },
        ) => {
            overlap(ca, cb) && !ea.iter().any(|e| e.covers(cb)) && !eb.iter().any(|e| e.covers(ca))
        }
        (Entity(crate::source::ast::Entity::World), Cidr { .. })
        | (Cidr { .. }, Entity(crate::source::ast::Entity::World)) => true,
        _ => false,
    }
}

/// Two selectors no label set can satisfy together (a key required with disjoint values, or
/// required and forbidden).
fn disjoint(a: &SelectorData, b: &SelectorData) -> bool {
    a.requirements.iter().any(|x| {
        b.requirements.iter().any(|y| match (x, y) {
            (Requirement::In(k, vs), Requirement::In(k2, ws)) => {
                k == k2 && !vs.iter().any(|v| ws.contains(v))
            }
            (Requirement::In(k, vs), Requirement::NotIn(k2, ws))
            | (Requirement::NotIn(k2, ws), Requirement::In(k, vs)) => {
                k == k2 && vs.iter().all(|v| ws.contains(v))
            }
            (Requirement::In(k, _) | Requirement::Exists(k), Requirement::DoesNotExist(k2))
            | (Requirement::DoesNotExist(k2), Requirement::In(k, _) | Requirement::Exists(k)) => {
                k == k2
            }
            _ => false,
        })
    })
}

/// Policies whose subjects are the same (so their rules compete for the same endpoints).
fn same_subject(a: &PolicyData, b: &PolicyData) -> bool {
    a.namespace == b.namespace
        && a.subject_namespaces == b.subject_namespaces
        && a.subject_pods == b.subject_pods
}

/// Policies whose subjects may share an endpoint.
fn subjects_overlap(ir: &Ir, a: &PolicyData, b: &PolicyData) -> bool {
    if let (Some(x), Some(y)) = (&a.namespace, &b.namespace)
        && x != y
    {
        return false;
    }
    let ns_disjoint = match (a.subject_namespaces, b.subject_namespaces) {
        (Some(x), Some(y)) => disjoint(&ir.selectors[x], &ir.selectors[y]),
        _ => false,
    };
    !ns_disjoint && !disjoint(&ir.selectors[a.subject_pods], &ir.selectors[b.subject_pods])
}

fn first_match(tier: Tier) -> bool {
    !matches!(tier, Tier::Default)
}

fn allows(a: Action) -> bool {
    matches!(a, Action::Allow | Action::Audit)
}

/// Which tiers compete for a conflict note: all admin priorities form one class.
fn tier_class(t: Tier) -> u8 {
    match t {
        Tier::Admin(_) => 0,
        Tier::Default => 1,
        Tier::Baseline => 2,
    }
}

/// Narrows the pairs of rules the checks compare, so they scale with the number of rules
/// that really compete instead of the square of the whole input. Every list is a superset of
/// the rules the full test can accept, kept in evaluation order, so the findings (and the
/// order they are reported in) are exactly those of comparing every pair; a test checks that.
///
/// - Shadowing needs the same tier, direction and subject (an exact key: selectors are
///   interned), so rules are bucketed by that key; within a bucket, rules are filed under
///   what their peers can cover ([`CoverKey`]), and a rule looks up only the keys that can
///   cover its first peer.
/// - Conflicts need policies whose subjects may overlap (namespaced policies meet only their
///   own namespace and cluster-wide ones), the same tier class and direction, opposite
///   actions, and peers of kinds that can overlap ([`KindKey`]).
struct PairIndex<'a> {
    /// Per rule position: its shadowing bucket.
    bucket_of: Vec<usize>,
    cover: HashMap<(usize, CoverKey<'a>), Vec<usize>>,
    /// Per policy, the policies (itself included) it may conflict with.
    overlapping: SecondaryMap<PolicyId, Vec<PolicyId>>,
    /// (policy, direction, allows, peer kind) → positions, for conflicts.
    kinds: HashMap<(PolicyId, PolicyDirection, bool, KindKey), Vec<usize>>,
    /// Ignore the index: every rule is a candidate (the reference the index is tested against).
    all_pairs: bool,
    len: usize,
}

/// What a rule's peer can cover, for the shadowing index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CoverKey<'a> {
    /// No peers, or `all`: covers every peer.
    Any,
    Entity(Entity),
    /// Endpoints without a pod selector (or an empty one), by what their namespace scope
    /// can cover.
    AnyPods(NsKey<'a>),
    /// Endpoints whose pod selector's first requirement is on this key (and, for `In`, one
    /// of its values: `In(k, vs)` is implied only by `In(k, ws)` with `ws ⊆ vs`).
    Pods(&'a str, Option<&'a str>),
    Cidr(Cidr),
}

/// What an endpoint peer's namespace scope can cover (see `peer_covers`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum NsKey<'a> {
    /// Every namespace (no scope, or an empty selector).
    All,
    Named(&'a str),
    /// A selector whose first requirement is on this key (and, for `In`, one of its values).
    Selector(&'a str, Option<&'a str>),
}

/// Keys a selector is filed under: its first requirement's key, and for `In` each value.
fn requirement_keys(s: &SelectorData) -> Vec<(&str, Option<&str>)> {
    match s.requirements.first() {
        None => Vec::new(),
        Some(Requirement::In(k, vs)) => vs.iter().map(|v| (k.as_str(), Some(v.as_str()))).collect(),
        Some(r) => vec![(r.key(), None)],
    }
}

/// Keys under which a selector implied by `s` is filed: every key `s` constrains, and for
/// `In(k, ws)` the pair (k, ws[0]) (an implied `In(k, vs)` has `ws ⊆ vs`).
fn implied_keys(s: &SelectorData) -> Vec<(&str, Option<&str>)> {
    let mut out = Vec::new();
    for r in &s.requirements {
        out.push((r.key(), None));
        if let Requirement::In(k, ws) = r
            && let Some(w) = ws.first()
        {
            out.push((k.as_str(), Some(w.as_str())));
        }
    }
    out
}

/// A peer's kind, for the conflict index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KindKey {
    /// No peers, or `all`: overlaps every peer.
    Any,
    Endpoints,
    Cidr,
    Entity(Entity),
}

fn matches_anything(ir: &Ir, peers: &[PeerId]) -> bool {
    peers.is_empty()
        || peers
            .iter()
            .any(|p| ir.peers[*p].kind == PeerKind::Entity(Entity::All))
}

/// The keys a rule is filed under: one per peer, since covering any one of `b`'s peers is
/// what makes it a candidate.
fn cover_keys<'a>(ir: &'a Ir, rule: &'a RuleData) -> Vec<CoverKey<'a>> {
    if matches_anything(ir, &rule.peers) {
        return vec![CoverKey::Any];
    }
    let mut out = Vec::new();
    for p in &rule.peers {
        match &ir.peers[*p].kind {
            PeerKind::Entity(e) => out.push(CoverKey::Entity(*e)),
            PeerKind::Cidr { cidr, .. } => out.push(CoverKey::Cidr(cidr.canonical())),
            PeerKind::Endpoints { namespaces, pods } => {
                let pod_keys = pods
                    .map(|s| requirement_keys(&ir.selectors[s]))
                    .unwrap_or_default();
                if !pod_keys.is_empty() {
                    out.extend(pod_keys.into_iter().map(|(k, v)| CoverKey::Pods(k, v)));
                    continue;
                }
                match namespaces {
                    NamespaceScope::All => out.push(CoverKey::AnyPods(NsKey::All)),
                    NamespaceScope::Named(n) => out.push(CoverKey::AnyPods(NsKey::Named(n))),
                    NamespaceScope::Selector(s) => {
                        let keys = requirement_keys(&ir.selectors[*s]);
                        if keys.is_empty() {
                            out.push(CoverKey::AnyPods(NsKey::All));
                        }
                        out.extend(
                            keys.into_iter()
                                .map(|(k, v)| CoverKey::AnyPods(NsKey::Selector(k, v))),
                        );
                    }
                }
            }
        }
    }
    out
}

/// The keys under which a rule covering every peer of `rule` must be filed. A covering rule
/// must cover its first peer, so that one is enough.
fn covering_keys<'a>(ir: &'a Ir, rule: &'a RuleData) -> Vec<CoverKey<'a>> {
    let mut out = vec![CoverKey::Any];
    let Some(first) = rule.peers.first() else {
        // Only a rule that matches every peer covers one with no peers.
        return out;
    };
    match &ir.peers[*first].kind {
        PeerKind::Entity(e) => {
            out.push(CoverKey::Entity(*e));
            if *e == Entity::Host {
                out.push(CoverKey::Entity(Entity::Cluster));
            }
        }
        PeerKind::Cidr { cidr, .. } => {
            out.extend((0..=cidr.prefix).map(|prefix| {
                CoverKey::Cidr(
                    Cidr {
                        addr: cidr.addr,
                        prefix,
                    }
                    .canonical(),
                )
            }));
        }
        PeerKind::Endpoints { namespaces, pods } => {
            out.push(CoverKey::Entity(Entity::Cluster));
            if let Some(s) = pods {
                out.extend(
                    implied_keys(&ir.selectors[*s])
                        .into_iter()
                        .map(|(k, v)| CoverKey::Pods(k, v)),
                );
            }
            out.push(CoverKey::AnyPods(NsKey::All));
            match namespaces {
                NamespaceScope::All => {}
                NamespaceScope::Named(n) => out.push(CoverKey::AnyPods(NsKey::Named(n))),
                NamespaceScope::Selector(s) => out.extend(
                    implied_keys(&ir.selectors[*s])
                        .into_iter()
                        .map(|(k, v)| CoverKey::AnyPods(NsKey::Selector(k, v))),
                ),
            }
        }
    }
    out
}

fn kind_keys(ir: &Ir, peers: &[PeerId]) -> Vec<KindKey> {
    if matches_anything(ir, peers) {
        return vec![KindKey::Any];
    }
    let mut out: Vec<KindKey> = peers
        .iter()
        .map(|p| match &ir.peers[*p].kind {
            PeerKind::Entity(e) => KindKey::Entity(*e),
            PeerKind::Cidr { .. } => KindKey::Cidr,
            PeerKind::Endpoints { .. } => KindKey::Endpoints,
        })
        .collect();
    out.dedup();
    out
}

/// Kinds of peers that can overlap some peer of `peers` (see `peer_overlaps`).
fn overlapping_kinds(ir: &Ir, peers: &[PeerId]) -> Vec<KindKey> {
    use KindKey as K;
    let everything = || {
        vec![
            K::Any,
            K::Endpoints,
            K::Cidr,
            K::Entity(Entity::World),
            K::Entity(Entity::Host),
            K::Entity(Entity::Cluster),
        ]
    };
    let mut out = vec![K::Any];
    for k in kind_keys(ir, peers) {
        match k {
            K::Any => return everything(),
            K::Endpoints => out.extend([K::Endpoints, K::Entity(Entity::Cluster)]),
            K::Cidr | K::Entity(Entity::World) => out.extend([K::Cidr, K::Entity(Entity::World)]),
            K::Entity(Entity::Host) => {
                out.extend([K::Entity(Entity::Host), K::Entity(Entity::Cluster)])
            }
            K::Entity(Entity::Cluster) => out.extend([
                K::Entity(Entity::Cluster),
                K::Entity(Entity::Host),
                K::Endpoints,
            ]),
            K::Entity(Entity::All) => return everything(),
        }
    }
    out
}

impl<'a> PairIndex<'a> {
    fn new(ir: &'a Ir, order: &[RuleId], all_pairs: bool) -> PairIndex<'a> {
        type SubjectKey<'a> = (
            Tier,
            PolicyDirection,
            Option<&'a str>,
            Option<SelectorId>,
            SelectorId,
        );
        let mut buckets: HashMap<SubjectKey<'_>, usize> = HashMap::new();
        let mut bucket_of = Vec::with_capacity(order.len());
        let mut cover: HashMap<(usize, CoverKey<'a>), Vec<usize>> = HashMap::new();
        let mut kinds: HashMap<(PolicyId, PolicyDirection, bool, KindKey), Vec<usize>> =
            HashMap::new();
        for (i, &r) in order.iter().enumerate() {
            let pid = ir.policy_of(r);
            let p = &ir.policies[pid];
            let rule = &ir.rules[r];
            let key = (
                p.tier,
                rule.direction,
                p.namespace.as_deref(),
                p.subject_namespaces,
                p.subject_pods,
            );
            let n = buckets.len();
            let b = *buckets.entry(key).or_insert(n);
            bucket_of.push(b);
            let mut keys = cover_keys(ir, rule);
            keys.dedup();
            for k in keys {
                cover.entry((b, k)).or_default().push(i);
            }
            if rule.action != Action::Pass {
                for k in kind_keys(ir, &rule.peers) {
                    kinds
                        .entry((pid, rule.direction, allows(rule.action), k))
                        .or_default()
                        .push(i);
                }
            }
        }
        let mut by_namespace: HashMap<Option<&str>, Vec<PolicyId>> = HashMap::new();
        for (id, p) in ir.policies.iter() {
            by_namespace
                .entry(p.namespace.as_deref())
                .or_default()
                .push(id);
        }
        let all: Vec<PolicyId> = ir.policies.keys().collect();
        let mut overlapping: SecondaryMap<PolicyId, Vec<PolicyId>> = SecondaryMap::new();
        for (id, p) in ir.policies.iter() {
            let candidates: Vec<PolicyId> = match p.namespace.as_deref() {
                None => all.clone(),
                Some(ns) => [Some(ns), None]
                    .iter()
                    .filter_map(|k| by_namespace.get(k))
                    .flatten()
                    .copied()
                    .collect(),
            };
            overlapping[id] = candidates
                .into_iter()
                .filter(|q| {
                    let other = &ir.policies[*q];
                    tier_class(other.tier) == tier_class(p.tier) && subjects_overlap(ir, p, other)
                })
                .collect();
        }
        PairIndex {
            bucket_of,
            cover,
            overlapping,
            kinds,
            all_pairs,
            len: order.len(),
        }
    }

    /// Positions of rules that may shadow rule `b` (at `j`), in order.
    fn shadow_candidates<'s>(&'s self, ir: &'a Ir, b: RuleId, j: usize) -> Merged<'s> {
        if self.all_pairs {
            return Merged::all(self.len);
        }
        let bucket = self.bucket_of[j];
        Merged::new(
            covering_keys(ir, &ir.rules[b])
                .into_iter()
                .filter_map(|k| self.cover.get(&(bucket, k)))
                .map(Vec::as_slice)
                .collect(),
        )
    }

    /// Positions before `j` of rules that may conflict with rule `b` (at `j`), in order.
    fn conflict_candidates<'s>(&'s self, ir: &Ir, b: RuleId, j: usize) -> Merged<'s> {
        if self.all_pairs {
            return Merged::all(j);
        }
        let rb = &ir.rules[b];
        if rb.action == Action::Pass {
            return Merged::new(Vec::new());
        }
        let kinds = overlapping_kinds(ir, &rb.peers);
        let mut lists = Vec::new();
        for p in &self.overlapping[ir.policy_of(b)] {
            for k in &kinds {
                if let Some(ps) = self.kinds.get(&(*p, rb.direction, !allows(rb.action), *k)) {
                    // Positions are sorted: only the prefix before `j` matters.
                    lists.push(&ps[..ps.partition_point(|&i| i < j)]);
                }
            }
        }
        Merged::new(lists)
    }
}

/// Walks several ascending position lists as one ascending list, each position once, without
/// copying them (a rule is often filed under several keys, and lists can be long).
struct Merged<'s> {
    lists: Vec<&'s [usize]>,
    /// `Some(n)`: just 0..n (the all-pairs reference).
    range: Option<std::ops::Range<usize>>,
}

impl<'s> Merged<'s> {
    fn new(mut lists: Vec<&'s [usize]>) -> Merged<'s> {
        lists.retain(|l| !l.is_empty());
        Merged { lists, range: None }
    }
    fn all(n: usize) -> Merged<'s> {
        Merged {
            lists: Vec::new(),
            range: Some(0..n),
        }
    }
}

impl Iterator for Merged<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if let Some(r) = &mut self.range {
            return r.next();
        }
        let min = *self.lists.iter().filter_map(|l| l.first()).min()?;
        for l in &mut self.lists {
            if l.first() == Some(&min) {
                *l = &l[1..];
            }
        }
        Some(min)
    }
}

/// `all_pairs` compares every pair of rules instead of using the index: the slow reference the
/// index is tested against.
fn shadowed_and_conflicting(ir: &mut Ir, diags: &mut Diagnostics, all_pairs: bool) {
    // Found against a shared borrow of the IR (the index borrows it), then recorded.
    let shadowed = find_shadowed_and_conflicting(ir, diags, all_pairs);
    ir.shadowed_by = shadowed;
}

fn find_shadowed_and_conflicting(
    ir: &Ir,
    diags: &mut Diagnostics,
    all_pairs: bool,
) -> SecondaryMap<RuleId, PackedOption<RuleId>> {
    let mut shadowed_by: SecondaryMap<RuleId, PackedOption<RuleId>> = SecondaryMap::new();
    // Every rule, in evaluation order.
    let order: Vec<RuleId> = ir
        .evaluation_order()
        .into_iter()
        .flat_map(|p| ir.policies[p].rules.clone())
        .collect();
    let index = PairIndex::new(ir, &order, all_pairs);
    for (j, &b) in order.iter().enumerate() {
        let (pb, rb) = (ir.policy_of(b), &ir.rules[b]);
        // A rule that is already shadowed shadows nothing new; look for the shadowing rule
        // among the others.
        let shadow = index.shadow_candidates(ir, b, j).find_map(|i| {
            let a = order[i];
            if a == b || shadowed_by[a].is_some() {
                return None;
            }
            let (pa, ra) = (ir.policy_of(a), &ir.rules[a]);
            let (tier_a, tier_b) = (ir.policies[pa].tier, ir.policies[pb].tier);
            if tier_a != tier_b
                || ra.direction != rb.direction
                || !(pa == pb || same_subject(&ir.policies[pa], &ir.policies[pb]))
                || !peers_cover(ir, &ra.peers, &rb.peers)
                || !ir.port_sets[ra.ports].covers(&ir.port_sets[rb.ports])
            {
                return None;
            }
            if first_match(tier_a) {
                // Any earlier rule decides first.
                (i < j).then_some(a)
            } else {
                // Union semantics: order does not matter, the same action does. Of two rules
                // that cover each other, the later one is the redundant one.
                let mutual = peers_cover(ir, &rb.peers, &ra.peers)
                    && ir.port_sets[rb.ports].covers(&ir.port_sets[ra.ports]);
                (ra.action == rb.action && (i < j || !mutual)).then_some(a)
            }
        });
        if let Some(a) = shadow {
            shadowed_by[b] = a.into();
            let ra = &ir.rules[a];
            let why = if first_match(ir.policies[pb].tier) {
                format!(
                    "{} comes first and matches all of its traffic ({} decides first in the {} tier)",
                    ir.describe_rule(a),
                    action_word(ra.action),
                    ir.policies[pb].tier.name()
                )
            } else {
                format!(
                    "{} already {} all of its traffic",
                    ir.describe_rule(a),
                    action_verb(ra.action)
                )
            };
            let what = if first_match(ir.policies[pb].tier) {
                "can never decide anything"
            } else {
                "is redundant"
            };
            diags.push(
                Diag::warning(
                    "sluice::rule::shadowed",
                    format!("{} {what}", ir.describe_rule(b)),
                )
                .with_label(ir.rule_span(b), "this rule is shadowed…")
                .with_label(ir.rule_span(a), "…by this rule")
                .with_help(format!("{why}; remove it or narrow the other rule")),
            );
        }
    }

    // Conflicts: an allow and a deny that may see the same traffic, same tier and direction.
    for (j, &b) in order.iter().enumerate() {
        for a in index.conflict_candidates(ir, b, j).map(|i| order[i]) {
            let (pa, pb) = (ir.policy_of(a), ir.policy_of(b));
            let (ra, rb) = (&ir.rules[a], &ir.rules[b]);
            let (tier_a, tier_b) = (ir.policies[pa].tier, ir.policies[pb].tier);
            let same_tier = tier_a == tier_b
                || (matches!(tier_a, Tier::Admin(_)) && matches!(tier_b, Tier::Admin(_)));
            if !same_tier
                || ra.direction != rb.direction
                || allows(ra.action) == allows(rb.action)
                || ra.action == Action::Pass
                || rb.action == Action::Pass
                || shadowed_by[b].expand() == Some(a)
                || !subjects_overlap(ir, &ir.policies[pa], &ir.policies[pb])
                || !peers_overlap(ir, &ra.peers, &rb.peers)
                || !ir.port_sets[ra.ports].overlaps(&ir.port_sets[rb.ports])
            {
                continue;
            }
            let (deny, allow) = if ra.action == Action::Deny {
                (a, b)
            } else {
                (b, a)
            };
            let (msg, help) = if first_match(tier_a) {
                let tier_rule = match (tier_a, tier_b) {
                    (Tier::Admin(x), Tier::Admin(y)) if x != y => {
                        format!("priority {x} is evaluated before priority {y}")
                    }
                    _ => format!("{} tier rules are first-match, in order", tier_a.name()),
                };
                (
                    format!(
                        "{} and {} overlap; where both match, the {} wins",
                        ir.describe_rule(a),
                        ir.describe_rule(b),
                        action_word(ra.action)
                    ),
                    format!("{} comes first: {tier_rule}", ir.describe_rule(a)),
                )
            } else {
                (
                    format!(
                        "{} and {} overlap; where both match, the deny wins",
                        ir.describe_rule(allow),
                        ir.describe_rule(deny)
                    ),
                    "in the default tier a matching deny always wins over allows, whatever the order".to_string(),
                )
            };
            diags.push(
                Diag::note("sluice::rule::conflict", msg)
                    .with_label(ir.rule_span(b), format!("this {}…", action_verb(rb.action)))
                    .with_label(
                        ir.rule_span(a),
                        format!("…overlapping traffic this {}", action_verb(ra.action)),
                    )
                    .with_help(help),
            );
        }
    }
    shadowed_by
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Audit => "audit",
        Action::Pass => "pass",
    }
}

fn action_verb(a: Action) -> &'static str {
    match a {
        Action::Allow => "allows",
        Action::Deny => "denies",
        Action::Audit => "audits",
        Action::Pass => "passes",
    }
}

/// A CIDR peer (or an `except` of one) that is IPv6: the datapath judges IPv4 only
/// (`spec/datapath.md`, "What is enforced"), so the rule never matches a packet.
fn ipv6_peers(ir: &Ir, diags: &mut Diagnostics) {
    for (_, peer) in ir.peers.iter() {
        let PeerKind::Cidr { cidr, except } = &peer.kind else {
            continue;
        };
        let Some(v6) = std::iter::once(cidr)
            .chain(except)
            .find(|c| c.addr.is_ipv6())
        else {
            continue;
        };
        diags.push(
            Diag::warning(
                "sluice::ipv6::not-enforced",
                format!("IPv6 is not enforced yet: `{v6}` matches no packet"),
            )
            .with_label(peer.span, "this peer names IPv6 addresses")
            .with_help(
                "the datapath judges IPv4 only: an endpoint isolated in a direction drops \
                 every IPv6 packet in it, and elsewhere IPv6 passes unjudged",
            ),
        );
    }
}

fn unknown_named_ports(ir: &Ir, known: &[(L4, String)], diags: &mut Diagnostics) {
    for (rid, r) in ir.rules.iter() {
        for e in &ir.port_sets[r.ports].entries {
            let PortEntry::Named { proto, name } = e else {
                continue;
            };
            if known.iter().any(|(p, n)| p == proto && n == name) {
                continue;
            }
            let span = r
                .named_port_spans
                .iter()
                .find(|(n, _)| n == name)
                .map_or(ir.rule_span(rid), |(_, s)| *s);
            let same_proto: Vec<&str> = known
                .iter()
                .filter(|(p, _)| p == proto)
                .map(|(_, n)| n.as_str())
                .collect();
            let other_proto: Vec<L4> = known
                .iter()
                .filter(|(p, n)| p != proto && n == name)
                .map(|(p, _)| *p)
                .collect();
            let help = if let Some(p) = other_proto.first() {
                format!(
                    "a {p} port is named `{name}`; did you mean `{name}/{}`?",
                    p.name().to_lowercase()
                )
            } else if let Some(close) = crate::diag::suggest(name, &same_proto) {
                format!("did you mean `{close}`?")
            } else if same_proto.is_empty() {
                format!("no endpoint declares any named {proto} port")
            } else {
                let mut names = same_proto.clone();
                names.truncate(6);
                format!("named {proto} ports in the inventory: {}", names.join(", "))
            };
            diags.push(
                Diag::warning(
                    "sluice::port::unknown-name",
                    format!("no endpoint declares a {proto} port named `{name}`"),
                )
                .with_label(span, "this named port matches nothing")
                .with_help(help),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_shadowed_by_and_ignores_disjoint_rules() {
        let doc: crate::source::ast::Document = serde_json::from_str(
            r#"{"items":[{"kind":"policy","name":"p","namespace":"x","subject":{},"rules":[
              {"direction":"ingress","action":"allow","ports":[{"protocol":{"name":"tcp"}}]},
              {"direction":"ingress","action":"allow","ports":[{"protocol":{"name":"tcp"},"port":{"number":80}}]},
              {"direction":"ingress","action":"allow","ports":[{"protocol":{"name":"udp"},"port":{"number":80}}]}
            ]}]}"#,
        )
        .unwrap();
        let (ir, mut diags) = crate::ir::lower(&[doc]);
        let ir = check(ir, None, &mut diags);
        let rules: Vec<RuleId> = ir.rules.keys().collect();
        assert_eq!(ir.shadowed_by[rules[1]].expand(), Some(rules[0]));
        assert_eq!(ir.shadowed_by[rules[2]].expand(), None);
        assert_eq!(diags.count(crate::diag::Severity::Warning), 1);
    }

    /// Random policies over a small vocabulary (so that rules often overlap): the indexed
    /// checks report exactly what comparing every pair reports, in the same order.
    #[test]
    fn index_agrees_with_all_pairs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let selectors = ["all", "app = a0", "app = a1", "app in (a0, a1)", "!legacy"];
        let peers = [
            "",
            " pods { app = a0 }",
            " pods { app = a1 }",
            " pods { app = a0, zone = z }",
            " pods { app in (a0, a1) }",
            " pods { app notin (a1) }",
            " pods { zone }",
            " pods { !zone }",
            " pods { app = a1 }, cidr 10.1.2.0/24",
            " world, pods { zone = z }",
            " namespaces { team = t0 }",
            " namespaces { team in (t0, t1) }",
            " namespaces { team notin (t1) }",
            " namespaces { }",
            " pods { } in namespaces { team = t0 }",
            " pods { }",
            " pods { app = a0 } in namespaces { team = t0 }",
            " cidr 10.0.0.0/8",
            " cidr 0.0.0.0/0",
            " cidr 10.1.0.0/16",
            " cidr 10.1.2.0/24",
            " cidr 10.1.0.0/16, cidr 10.2.0.0/16",
            " cidr 10.0.0.0/8 except 10.1.0.0/16",
            " world",
            " cluster",
            " host",
            " all",
        ];
        let ports = [
            "",
            " ports 80/tcp",
            " ports 80-90/tcp",
            " ports 53/udp, 53/tcp",
            " proto tcp",
        ];
        let (mut total, mut findings) = (0, 0);
        for case in 0..400 {
            let mut text = String::new();
            for p in 0..1 + next(6) {
                let tier = next(4);
                let ns = match next(3) {
                    0 => String::new(),
                    n => format!(" in namespace ns{n}"),
                };
                text.push_str(&format!("policy \"p{p}\"{ns} {{\n"));
                match tier {
                    0 => text.push_str(&format!("  tier admin priority {}\n", next(2))),
                    1 => text.push_str("  tier baseline\n"),
                    _ => {}
                }
                text.push_str(&format!("  select {}\n", selectors[next(selectors.len())]));
                for _ in 0..1 + next(6) {
                    let dir = next(2);
                    let actions: &[&str] = if tier == 0 {
                        &["allow", "deny", "pass"]
                    } else {
                        &["allow", "deny", "audit"]
                    };
                    let peer = peers[next(peers.len())];
                    let peer = match (peer, dir) {
                        ("", _) => String::new(),
                        (p, 0) => format!(" from{p}"),
                        (p, _) => format!(" to{p}"),
                    };
                    text.push_str(&format!(
                        "  {} {}{peer}{}\n",
                        ["ingress", "egress"][dir],
                        actions[next(actions.len())],
                        ports[next(ports.len())]
                    ));
                }
                text.push_str("}\n");
            }
            let doc = crate::source::dsl::parse(crate::source::ast::SourceId(0), &text)
                .unwrap_or_else(|d| panic!("case {case} must parse: {d:?}\n{text}"));
            let (ir, lower_diags) = crate::ir::lower(&[doc]);
            assert!(!lower_diags.has_errors(), "{lower_diags:?}\n{text}");
            let run = |all_pairs: bool| {
                let mut ir = ir.clone();
                let mut d = Diagnostics::default();
                shadowed_and_conflicting(&mut ir, &mut d, all_pairs);
                let shadowed: Vec<_> = ir.rules.keys().map(|r| ir.shadowed_by[r]).collect();
                (d, shadowed)
            };
            let (indexed, reference) = (run(false), run(true));
            assert_eq!(indexed, reference, "case {case}:\n{text}");
            total += 1;
            findings += reference.0.items.len();
        }
        // The vocabulary is small enough that the cases do exercise both checks.
        assert!(findings > total, "{findings} findings in {total} cases");
    }
}
