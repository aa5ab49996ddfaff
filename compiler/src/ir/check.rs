//! Semantic checks over the whole IR: findings that need more than one rule to see.
//!
//! - an explicitly empty selector that matches everything (note);
//! - a rule shadowed by an earlier or broader one, so it can never decide anything (warning);
//! - an allow and a deny over overlapping traffic (note: which wins and why);
//! - a named port no endpoint of the inventory declares (warning, when there is an inventory).
//!
//! Coverage and overlap are judged syntactically (selectors by implication, CIDRs by
//! containment), so a finding is always real; some real cases go unreported. It is a pass:
//! it takes the IR, records `shadowed_by`, and hands it back.

use super::*;
use crate::diag::{Diag, Diagnostics};
use crate::source::ast::{Action, Cidr, Entity};

/// Runs every check. `named_ports` lists the (protocol, name) pairs the inventory declares,
/// when there is an inventory.
pub fn check(mut ir: Ir, named_ports: Option<&[(L4, String)]>, diags: &mut Diagnostics) -> Ir {
    empty_selectors(&ir, diags);
    shadowed_and_conflicting(&mut ir, diags);
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
        ) => {
            ca.covers(cb)
                && ea
                    .iter()
                    .all(|e| !overlap(e, cb) || (cb.covers(e) && eb.iter().any(|x| x.covers(e))))
        }
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

fn shadowed_and_conflicting(ir: &mut Ir, diags: &mut Diagnostics) {
    // Every rule, in evaluation order.
    let order: Vec<RuleId> = ir
        .evaluation_order()
        .into_iter()
        .flat_map(|p| ir.policies[p].rules.clone())
        .collect();
    for (j, &b) in order.iter().enumerate() {
        let (pb, rb) = (ir.policy_of(b), &ir.rules[b]);
        // A rule that is already shadowed shadows nothing new; look for the shadowing rule
        // among the others.
        let shadow = order.iter().enumerate().find_map(|(i, &a)| {
            if a == b || ir.shadowed_by[a].is_some() {
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
            ir.shadowed_by[b] = a.into();
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
        for &a in &order[..j] {
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
                || ir.shadowed_by[b].expand() == Some(a)
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

/// Edit distance, for "did you mean" on misspelt names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
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
            } else if let Some(close) = same_proto
                .iter()
                .filter(|n| distance(n, name) <= 2)
                .min_by_key(|n| distance(n, name))
            {
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

    #[test]
    fn edit_distance() {
        assert_eq!(distance("htp", "http"), 1);
        assert_eq!(distance("metrics", "metrics"), 0);
        assert_eq!(distance("abc", "xyz"), 3);
    }
}
