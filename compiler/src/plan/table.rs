//! Decision tables: one endpoint direction's policy, flattened.
//!
//! For each peer class and protocol the table holds sorted, disjoint port intervals covering
//! `0..=65535`, each with its verdict. ICMP uses the same 16-bit space as `type << 8 | code`.
//! Classes whose whole decision is the same share one [`Profile`], so a table for 100k CIDRs
//! that all get "allow 443/tcp" is one profile, not 100k.
//!
//! The flattening is a sweep over interval boundaries per (class, protocol), with the active
//! rules kept per tier in ordered sets, so it costs O(r log r) per class for the r rules that
//! can match it, not O(r) per port. The combining rules are exactly those of
//! [`DirectionPolicy::evaluate`] (admin first-match with `pass`, deny wins in the default tier,
//! isolation, baseline first-match), and a property test holds the two together.

use super::classes::{ClassId, Classes};
use crate::ir::{L4, L4Match, RuleId, Tier};
use crate::resolve::{Decision, DirectionPolicy, ResolvedPort, ResolvedRule};
use crate::source::ast::{Action, PolicyDirection};
use std::collections::{BTreeMap, HashMap};

/// The protocols a table distinguishes. `Other` is every protocol without ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

impl Proto {
    pub const ALL: [Proto; 4] = [Proto::Tcp, Proto::Udp, Proto::Sctp, Proto::Icmp];

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
            Proto::Icmp => 1,
        }
    }

    fn of(l4: L4) -> Proto {
        match l4 {
            L4::Tcp => Proto::Tcp,
            L4::Udp => Proto::Udp,
            L4::Sctp => Proto::Sctp,
            L4::Icmp => Proto::Icmp,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A verdict and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Verdict {
    pub allow: bool,
    pub audited: bool,
    /// The deciding rule; `None` for the implicit outcomes (isolation, nothing applied).
    pub rule: Option<RuleId>,
}

impl From<Decision> for Verdict {
    fn from(d: Decision) -> Verdict {
        Verdict {
            allow: d.allow,
            audited: d.audited,
            rule: d.rule,
        }
    }
}

/// Ports `lo..=hi` get `verdict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment {
    pub lo: u16,
    pub hi: u16,
    pub verdict: Verdict,
}

/// The whole decision for one group of classes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Profile {
    /// Indexed by [`Proto`]; each covers `0..=65535` in order.
    pub ports: [Vec<Segment>; 4],
    /// Protocols without ports.
    pub other: Verdict,
}

impl Profile {
    pub fn segments(&self, proto: Proto) -> &[Segment] {
        &self.ports[proto.index()]
    }

    pub fn lookup(&self, proto: Proto, port: u16) -> Verdict {
        let segs = self.segments(proto);
        let i = segs.partition_point(|s| s.hi < port);
        segs[i].verdict
    }

    /// True when every packet gets the same verdict.
    pub fn is_uniform(&self) -> bool {
        self.ports
            .iter()
            .all(|s| s.len() == 1 && s[0].verdict == self.other)
    }
}

pub type ProfileId = u32;

/// One endpoint direction, flattened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionTable {
    pub direction: PolicyDirection,
    /// A default-tier policy isolates the endpoint in this direction (NetworkPolicy's
    /// isolation): what no rule allows is denied, including what the table cannot describe
    /// (IPv6, see `spec/datapath.md`).
    pub isolated: bool,
    pub profiles: Vec<Profile>,
    /// `class_profile[c - 1]` is the profile of class `c`.
    pub class_profile: Vec<ProfileId>,
}

impl DecisionTable {
    pub fn build(policy: &DirectionPolicy, classes: &Classes) -> DecisionTable {
        let index = RuleIndex::new(&policy.rules);
        let mut interned: HashMap<Profile, ProfileId> = HashMap::new();
        let mut profiles = Vec::new();
        let mut class_profile = Vec::with_capacity(classes.len());
        for (_, key) in classes.iter() {
            let candidates = index.candidates(key.identity, key.cidr_identity);
            let profile = flatten(policy, &candidates);
            let id = *interned.entry(profile).or_insert_with_key(|p| {
                profiles.push(p.clone());
                profiles.len() as ProfileId - 1
            });
            class_profile.push(id);
        }
        DecisionTable {
            direction: policy.direction,
            isolated: policy.isolated,
            profiles,
            class_profile,
        }
    }

    pub fn profile_of(&self, class: ClassId) -> &Profile {
        &self.profiles[self.class_profile[class as usize - 1] as usize]
    }

    /// The verdict for a packet, as the generated code must give it.
    pub fn lookup(&self, class: ClassId, m: L4Match) -> Verdict {
        let p = self.profile_of(class);
        match m {
            L4Match::Port { proto, port } => p.lookup(Proto::of(proto), port),
            L4Match::Icmp { icmp_type, code } => {
                p.lookup(Proto::Icmp, u16::from(icmp_type) << 8 | u16::from(code))
            }
        }
    }
}

/// Which rules can match a class: those for any peer, plus those naming its identity, its
/// CIDR identity, or the two as a pair. Built once per table so each class only looks at its own rules.
struct RuleIndex {
    any: Vec<usize>,
    by_identity: HashMap<u32, Vec<usize>>,
    by_cidr: HashMap<u32, Vec<usize>>,
    by_pair: HashMap<(u32, u32), Vec<usize>>,
}

impl RuleIndex {
    fn new(rules: &[ResolvedRule]) -> RuleIndex {
        let mut index = RuleIndex {
            any: Vec::new(),
            by_identity: HashMap::new(),
            by_cidr: HashMap::new(),
            by_pair: HashMap::new(),
        };
        for (i, r) in rules.iter().enumerate() {
            if r.peers.any {
                index.any.push(i);
                continue;
            }
            for id in &r.peers.identities {
                index.by_identity.entry(*id).or_default().push(i);
            }
            for id in &r.peers.cidr_identities {
                index.by_cidr.entry(*id).or_default().push(i);
            }
            for pair in &r.peers.pairs {
                index.by_pair.entry(*pair).or_default().push(i);
            }
        }
        index
    }

    fn candidates(&self, identity: u32, cidr: Option<u32>) -> Vec<usize> {
        let mut out = self.any.clone();
        out.extend(self.by_identity.get(&identity).into_iter().flatten());
        out.extend(
            cidr.and_then(|c| self.by_cidr.get(&c))
                .into_iter()
                .flatten(),
        );
        out.extend(
            cidr.and_then(|c| self.by_pair.get(&(identity, c)))
                .into_iter()
                .flatten(),
        );
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The rules active over one stretch of ports, per tier, ordered by evaluation position.
#[derive(Default)]
struct Active {
    admin: BTreeMap<usize, u32>,
    deny: BTreeMap<usize, u32>,
    allow: BTreeMap<usize, u32>,
    audits: u32,
    baseline: BTreeMap<usize, u32>,
}

impl Active {
    fn update(&mut self, rules: &[ResolvedRule], i: usize, delta: i32) {
        let r = &rules[i];
        let set = match (r.tier, r.action) {
            (Tier::Admin(_), _) => &mut self.admin,
            (Tier::Default, Action::Deny) => &mut self.deny,
            (Tier::Default, _) => &mut self.allow,
            (Tier::Baseline, _) => &mut self.baseline,
        };
        bump(set, i, delta);
        if r.tier == Tier::Default && r.action == Action::Audit {
            self.audits = self
                .audits
                .checked_add_signed(delta)
                .expect("balanced events");
        }
    }

    /// The verdict of the active rules, by the combining rules of `DirectionPolicy::evaluate`.
    fn verdict(&self, policy: &DirectionPolicy) -> Verdict {
        let decide = |i: usize| {
            let r = &policy.rules[i];
            Verdict {
                allow: r.action != Action::Deny,
                audited: r.action == Action::Audit,
                rule: Some(r.rule),
            }
        };
        if let Some((&i, _)) = self.admin.first_key_value()
            && policy.rules[i].action != Action::Pass
        {
            return decide(i);
        }
        if let Some((&i, _)) = self.deny.first_key_value() {
            return decide(i);
        }
        if let Some((&i, _)) = self.allow.first_key_value() {
            return Verdict {
                audited: self.audits > 0,
                ..decide(i)
            };
        }
        if policy.isolated {
            return Verdict {
                allow: false,
                audited: false,
                rule: None,
            };
        }
        if let Some((&i, _)) = self.baseline.first_key_value() {
            return decide(i);
        }
        Verdict {
            allow: true,
            audited: false,
            rule: None,
        }
    }
}

fn bump(set: &mut BTreeMap<usize, u32>, i: usize, delta: i32) {
    let n = set.entry(i).or_insert(0);
    *n = n.checked_add_signed(delta).expect("balanced events");
    if *n == 0 {
        set.remove(&i);
    }
}

/// The port intervals each candidate rule covers, per protocol; `None` entries in `other` mean
/// the rule matches port-less protocols.
fn flatten(policy: &DirectionPolicy, candidates: &[usize]) -> Profile {
    let mut spans: [Vec<(u32, u32, usize)>; 4] = Default::default();
    let mut other = Active::default();
    for &i in candidates {
        let r = &policy.rules[i];
        let any = [ResolvedPort::AnyProtocol];
        let ports: &[ResolvedPort] = if r.ports.is_empty() { &any } else { &r.ports };
        for p in ports {
            match p {
                ResolvedPort::AnyProtocol => {
                    for s in &mut spans {
                        s.push((0, 65535, i));
                    }
                    other.update(&policy.rules, i, 1);
                }
                ResolvedPort::Range { proto, lo, hi } => {
                    spans[Proto::of(*proto).index()].push((u32::from(*lo), u32::from(*hi), i))
                }
                ResolvedPort::Icmp { icmp_type, code } => {
                    let icmp = &mut spans[Proto::Icmp.index()];
                    match (icmp_type, code) {
                        (None, None) => icmp.push((0, 65535, i)),
                        (Some(t), None) => {
                            icmp.push((u32::from(*t) << 8, u32::from(*t) << 8 | 255, i))
                        }
                        (Some(t), Some(c)) => {
                            let v = u32::from(*t) << 8 | u32::from(*c);
                            icmp.push((v, v, i))
                        }
                        // A code without a type: every type with that code.
                        (None, Some(c)) => icmp.extend(
                            (0..=255u32)
                                .map(|t| (t << 8 | u32::from(*c), t << 8 | u32::from(*c), i)),
                        ),
                    }
                }
            }
        }
    }
    let ports = spans.map(|s| sweep(policy, s));
    Profile {
        ports,
        other: other.verdict(policy),
    }
}

/// Sweeps one protocol's port space: at every boundary, rules start or stop being active.
fn sweep(policy: &DirectionPolicy, spans: Vec<(u32, u32, usize)>) -> Vec<Segment> {
    let mut events: Vec<(u32, i32, usize)> = Vec::with_capacity(spans.len() * 2);
    for (lo, hi, i) in spans {
        events.push((lo, 1, i));
        events.push((hi + 1, -1, i));
    }
    events.sort_unstable();
    let mut active = Active::default();
    let mut out: Vec<Segment> = Vec::new();
    let mut at = 0u32;
    let mut e = 0;
    while at <= 65535 {
        while e < events.len() && events[e].0 == at {
            active.update(&policy.rules, events[e].2, events[e].1);
            e += 1;
        }
        let next = events.get(e).map_or(65536, |ev| ev.0).min(65536);
        let verdict = active.verdict(policy);
        match out.last_mut() {
            Some(last) if last.verdict == verdict => last.hi = (next - 1) as u16,
            _ => out.push(Segment {
                lo: at as u16,
                hi: (next - 1) as u16,
                verdict,
            }),
        }
        at = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::ResolvedPeers;
    use cranelift_entity::EntityRef;
    use proptest::prelude::*;

    fn rule_strategy() -> impl Strategy<Value = ResolvedRule> {
        let tier = prop_oneof![
            (0u32..3).prop_map(Tier::Admin),
            Just(Tier::Default),
            Just(Tier::Baseline)
        ];
        let action = prop_oneof![
            Just(Action::Allow),
            Just(Action::Deny),
            Just(Action::Audit),
            Just(Action::Pass)
        ];
        let port = prop_oneof![
            Just(ResolvedPort::AnyProtocol),
            (0..3usize, 0u16..12, 0u16..6).prop_map(|(p, lo, w)| ResolvedPort::Range {
                proto: [L4::Tcp, L4::Udp, L4::Sctp][p],
                lo,
                hi: lo + w
            }),
            (proptest::option::of(0u8..3), proptest::option::of(0u8..3))
                .prop_map(|(icmp_type, code)| ResolvedPort::Icmp { icmp_type, code }),
        ];
        (
            tier,
            action,
            any::<bool>(),
            proptest::collection::btree_set(1u32..5, 0..3),
            proptest::collection::btree_set(10u32..13, 0..2),
            proptest::collection::btree_set((1u32..5, 10u32..13), 0..2),
            proptest::collection::vec(port, 0..3),
            0usize..50,
        )
            .prop_map(
                |(tier, action, any, identities, cidr_identities, pairs, ports, rule)| {
                    // Pass only exists in admin tiers.
                    let action = if action == Action::Pass && !matches!(tier, Tier::Admin(_)) {
                        Action::Allow
                    } else {
                        action
                    };
                    ResolvedRule {
                        tier,
                        action,
                        peers: ResolvedPeers {
                            any,
                            identities,
                            cidr_identities,
                            pairs,
                            cidrs: Vec::new(),
                        },
                        ports,
                        rule: RuleId::new(rule),
                    }
                },
            )
    }

    fn policy_strategy() -> impl Strategy<Value = DirectionPolicy> {
        (
            any::<bool>(),
            proptest::collection::vec(rule_strategy(), 0..8),
        )
            .prop_map(|(isolated, mut rules)| {
                // Evaluation order: admin by priority, default, baseline (stable within a tier).
                rules.sort_by_key(|r| r.tier);
                DirectionPolicy {
                    direction: PolicyDirection::Ingress,
                    isolated,
                    rules,
                }
            })
    }

    proptest! {
        /// The flattened table gives `evaluate`'s verdict for every class, protocol and port
        /// of a small universe.
        #[test]
        fn table_agrees_with_evaluate(policy in policy_strategy()) {
            let index = RuleIndex::new(&policy.rules);
            for identity in 0u32..6 {
                for cidr in [None, Some(10), Some(11), Some(12)] {
                    let profile = flatten(&policy, &index.candidates(identity, cidr));
                    for proto in [L4::Tcp, L4::Udp, L4::Sctp] {
                        for port in 0u16..20 {
                            let m = L4Match::Port { proto, port };
                            prop_assert_eq!(profile.lookup(Proto::of(proto), port), Verdict::from(policy.evaluate(identity, cidr, m)), "{:?} id {} cidr {:?}", m, identity, cidr);
                        }
                        prop_assert_eq!(profile.lookup(Proto::of(proto), 40000), Verdict::from(policy.evaluate(identity, cidr, L4Match::Port { proto, port: 40000 })));
                    }
                    for icmp_type in 0u8..4 {
                        for code in 0u8..4 {
                            let m = L4Match::Icmp { icmp_type, code };
                            let v = u16::from(icmp_type) << 8 | u16::from(code);
                            prop_assert_eq!(profile.lookup(Proto::Icmp, v), Verdict::from(policy.evaluate(identity, cidr, m)));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn segments_cover_the_port_space_in_order() {
        let policy = DirectionPolicy {
            direction: PolicyDirection::Egress,
            isolated: true,
            rules: vec![ResolvedRule {
                tier: Tier::Default,
                action: Action::Allow,
                peers: ResolvedPeers {
                    any: true,
                    ..Default::default()
                },
                ports: vec![ResolvedPort::Range {
                    proto: L4::Tcp,
                    lo: 80,
                    hi: 81,
                }],
                rule: RuleId::new(0),
            }],
        };
        let p = flatten(&policy, &[0]);
        let tcp = p.segments(Proto::Tcp);
        assert_eq!(tcp.len(), 3);
        assert_eq!((tcp[0].lo, tcp[0].hi, tcp[0].verdict.allow), (0, 79, false));
        assert_eq!((tcp[1].lo, tcp[1].hi, tcp[1].verdict.allow), (80, 81, true));
        assert_eq!(
            (tcp[2].lo, tcp[2].hi, tcp[2].verdict.allow),
            (82, 65535, false)
        );
        assert!(!p.other.allow);
        assert_eq!(p.segments(Proto::Udp).len(), 1);
    }
}
