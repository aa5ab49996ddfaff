//! Lowering: AST documents → [`Ir`], with the checks that need only the text itself.
//!
//! Lowering normalises (canonical CIDRs, `=` as one-value `In`, ports as ranges, explicit
//! isolation, peers' namespace scope made explicit) and rejects what cannot mean anything: a
//! CIDR with host bits set, an `except` outside its block, overlapping CIDRs, a `pass` outside
//! the admin tier, malformed selectors and port ranges. Checks that need the whole IR (shadowed
//! rules, conflicts) live in [`super::check`].

use super::*;
use crate::diag::{Diag, Diagnostics};
use crate::source::ast::{self, Action, Cidr, Document, Item, LabelOp, PortMatch, Protocol};
use crate::source::ipblock::overlapping_pairs;

/// Lowers every document of one compilation into one IR. The IR is complete even when
/// there are errors (bad parts are dropped), so later checks still run; callers stop on
/// `diags.has_errors()`.
pub fn lower(docs: &[Document]) -> (Ir, Diagnostics) {
    let mut cx = Lower {
        ir: Ir::default(),
        diags: Diagnostics::default(),
    };
    for doc in docs {
        for item in &doc.items {
            match item {
                Item::Policy(p) => cx.policy(p),
                Item::Masquerade(m) => cx.masquerade(m),
                Item::Ipam(i) => cx.ipam(i),
                // Includes are followed by the loader before lowering.
                Item::Include(_) => {}
            }
        }
    }
    cx.check_pool_overlaps();
    (cx.ir, cx.diags)
}

struct Lower {
    ir: Ir,
    diags: Diagnostics,
}

impl Lower {
    fn policy(&mut self, p: &ast::Policy) {
        let tier = match p.tier {
            ast::Tier::Admin { priority } => Tier::Admin(priority),
            ast::Tier::Default => Tier::Default,
            ast::Tier::Baseline => Tier::Baseline,
        };
        let subject_namespaces = p.subject.namespaces.as_ref().map(|s| self.selector(s));
        let subject_pods = self.selector(&p.subject.pods);
        let isolates = match &p.isolate {
            Some(dirs) => Isolation {
                ingress: dirs.contains(&PolicyDirection::Ingress),
                egress: dirs.contains(&PolicyDirection::Egress),
            },
            // Kubernetes: the directions it has rules for, ingress when none.
            None => {
                let ingress = p
                    .rules
                    .iter()
                    .any(|r| r.direction == PolicyDirection::Ingress);
                let egress = p
                    .rules
                    .iter()
                    .any(|r| r.direction == PolicyDirection::Egress);
                Isolation {
                    ingress: ingress || !egress,
                    egress,
                }
            }
        };
        let id = self.ir.policies.push(PolicyData {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            tier,
            subject_namespaces,
            subject_pods,
            isolates,
            rules: Vec::new(),
            verdicts: Vec::new(),
            span: p.span,
            name_span: p.name_span,
            subject_span: p.subject.span,
        });
        for (index, r) in p.rules.iter().enumerate() {
            if r.action == Action::Pass && !matches!(tier, Tier::Admin(_)) {
                self.diags.push(
                    Diag::error(
                        "sluice::rule::pass-outside-admin",
                        format!("`pass` is only meaningful in an admin tier, but policy `{}` is in the {} tier", p.name, tier.name()),
                    )
                    .with_label(r.span, "`pass` here")
                    .with_label(p.name_span, "policy declared here")
                    .with_help("use `allow` or `deny`, or move the policy to `tier admin <priority>`"),
                );
                continue;
            }
            let peers = r
                .peers
                .iter()
                .filter_map(|peer| self.peer(p, peer))
                .collect::<Vec<_>>();
            self.check_peer_overlaps(&peers);
            let ports = self.ports(&r.ports);
            let named_port_spans = r
                .ports
                .iter()
                .filter_map(|ps| match &ps.port {
                    Some(PortMatch::Named(n)) => Some((n.clone(), ps.span)),
                    _ => None,
                })
                .collect();
            let rule = self.ir.rules.push(RuleData {
                name: r.name.clone(),
                direction: r.direction,
                action: r.action,
                peers,
                ports,
                index: index as u32,
                span: r.span,
                named_port_spans,
            });
            self.ir.rule_policy[rule] = id.into();
            self.ir.policies[id].rules.push(rule);
        }
        self.verdicts(p, id);
    }

    /// A policy's verdict rules: admin tier only (they run like its first-match rules), and a
    /// sha256 of 64 hex digits. The module itself is read later, by [`super::verdict::load`].
    fn verdicts(&mut self, p: &ast::Policy, id: PolicyId) {
        for v in &p.verdicts {
            if !matches!(self.ir.policies[id].tier, Tier::Admin(_)) {
                self.diags.push(
                    Diag::error(
                        "sluice::verdict::tier",
                        format!(
                            "a verdict rule runs like an admin-tier rule, but policy `{}` is in the {} tier",
                            p.name,
                            self.ir.policies[id].tier.name()
                        ),
                    )
                    .with_label(v.span, "verdict rule here")
                    .with_label(p.name_span, "policy declared here")
                    .with_help("add `tier admin priority N` to the policy"),
                );
                continue;
            }
            let Some(sha256) = super::verdict::parse_hex_digest(&v.sha256) else {
                self.diags.push(
                    Diag::error(
                        "sluice::verdict::digest",
                        format!("`{}` is not a sha256: expected 64 hex digits", v.sha256),
                    )
                    .with_label(v.span, "in this verdict rule")
                    .with_help("`sha256sum FILE` prints it"),
                );
                continue;
            };
            let vid = self.ir.verdicts.push(VerdictData {
                name: v.name.clone(),
                direction: v.direction,
                policy: id,
                path: v.module.clone(),
                sha256,
                on_trap: v.on_trap,
                span: v.span,
                module: None,
                file: None,
            });
            self.ir.policies[id].verdicts.push(vid);
        }
    }

    fn selector(&mut self, s: &ast::Selector) -> SelectorId {
        let mut reqs = Vec::new();
        for e in &s.exprs {
            let mut values = e.values.clone();
            values.sort();
            values.dedup();
            let want = match e.op {
                LabelOp::Eq | LabelOp::NotEq => Some("exactly one value"),
                LabelOp::In | LabelOp::NotIn => None,
                LabelOp::Exists | LabelOp::DoesNotExist => Some("no values"),
            };
            let bad = match e.op {
                LabelOp::Eq | LabelOp::NotEq => values.len() != 1,
                LabelOp::In | LabelOp::NotIn => values.is_empty(),
                LabelOp::Exists | LabelOp::DoesNotExist => !values.is_empty(),
            };
            if bad {
                self.diags.push(
                    Diag::error(
                        "sluice::selector::values",
                        format!(
                            "label requirement on `{}` has {} value(s), but its operator takes {}",
                            e.key,
                            values.len(),
                            want.unwrap_or("one or more values")
                        ),
                    )
                    .with_label(e.span, "this requirement"),
                );
                continue;
            }
            reqs.push(match e.op {
                LabelOp::Eq | LabelOp::In => Requirement::In(e.key.clone(), values),
                LabelOp::NotEq | LabelOp::NotIn => Requirement::NotIn(e.key.clone(), values),
                LabelOp::Exists => Requirement::Exists(e.key.clone()),
                LabelOp::DoesNotExist => Requirement::DoesNotExist(e.key.clone()),
            });
        }
        reqs.sort();
        reqs.dedup();
        self.ir.intern_selector(SelectorData { requirements: reqs })
    }

    fn peer(&mut self, p: &ast::Policy, peer: &ast::Peer) -> Option<PeerId> {
        let kind = match peer {
            ast::Peer::Endpoints {
                namespaces, pods, ..
            } => {
                let namespaces = match (namespaces, &p.namespace) {
                    (Some(s), _) => NamespaceScope::Selector(self.selector(s)),
                    (None, Some(ns)) => NamespaceScope::Named(ns.clone()),
                    (None, None) => NamespaceScope::All,
                };
                let pods = pods.as_ref().map(|s| self.selector(s));
                PeerKind::Endpoints { namespaces, pods }
            }
            ast::Peer::Cidr {
                cidr, except, span, ..
            } => {
                let mut ok = self.canonical(cidr, *span);
                let mut excepts = Vec::new();
                for e in except {
                    ok &= self.canonical(e, *span);
                    let e = e.canonical();
                    if !cidr.canonical().covers(&e) || e.prefix == cidr.prefix {
                        self.diags.push(
                            Diag::error(
                                "sluice::cidr::except-outside",
                                format!(
                                    "`except {e}` is not strictly inside `{}`",
                                    cidr.canonical()
                                ),
                            )
                            .with_label(*span, "in this peer")
                            .with_help(format!(
                                "an except block must be a smaller part of {}; drop it or widen the block",
                                cidr.canonical()
                            )),
                        );
                        ok = false;
                    }
                    excepts.push(e);
                }
                for (i, a) in excepts.iter().enumerate() {
                    for b in &excepts[i + 1..] {
                        if a.covers(b) || b.covers(a) {
                            self.diags.push(
                                Diag::error(
                                    "sluice::cidr::overlap",
                                    format!("except blocks {a} and {b} overlap"),
                                )
                                .with_label(*span, "in this peer")
                                .with_help("keep only the larger block"),
                            );
                            ok = false;
                        }
                    }
                }
                if !ok {
                    return None;
                }
                excepts.sort();
                PeerKind::Cidr {
                    cidr: cidr.canonical(),
                    except: excepts,
                }
            }
            ast::Peer::Entity { entity, .. } => PeerKind::Entity(*entity),
        };
        Some(self.ir.peers.push(PeerData {
            kind,
            span: peer.span(),
        }))
    }

    /// Reports a CIDR with host bits set; true when it is canonical.
    fn canonical(&mut self, c: &Cidr, span: Span) -> bool {
        if c.is_canonical() {
            return true;
        }
        self.diags.push(
            Diag::error(
                "sluice::cidr::host-bits",
                format!("`{c}` has host bits set"),
            )
            .with_label(span, "in this CIDR")
            .with_help(format!("did you mean {}?", c.canonical())),
        );
        false
    }

    /// Overlapping CIDR peers in one rule: one of them is redundant, or the author meant an
    /// `except`.
    fn check_peer_overlaps(&mut self, peers: &[PeerId]) {
        let cidrs: Vec<(PeerId, Cidr, &[Cidr])> = peers
            .iter()
            .filter_map(|p| match &self.ir.peers[*p].kind {
                PeerKind::Cidr { cidr, except } => Some((*p, *cidr, except.as_slice())),
                _ => None,
            })
            .collect();
        let blocks: Vec<(Cidr, &[Cidr])> = cidrs.iter().map(|(_, c, e)| (*c, *e)).collect();
        let found = overlapping_pairs(&blocks);
        for (first, second) in found {
            let (pa, a, _) = cidrs[first];
            let (pb, b, _) = cidrs[second];
            let (sa, sb) = (self.ir.peers[pa].span, self.ir.peers[pb].span);
            self.diags.push(
                Diag::error(
                    "sluice::cidr::overlap",
                    format!("CIDR peers {a} and {b} overlap"),
                )
                .with_label(sb, format!("{b} overlaps…"))
                .with_label(sa, format!("…{a}, listed here"))
                .with_help("keep the larger block, or use `except` to carve out the smaller one"),
            );
        }
    }

    fn ports(&mut self, specs: &[ast::PortSpec]) -> PortSetId {
        let mut entries = Vec::new();
        for s in specs {
            let proto = match s.protocol {
                Protocol::Tcp => Some(L4::Tcp),
                Protocol::Udp => Some(L4::Udp),
                Protocol::Sctp => Some(L4::Sctp),
                Protocol::Icmp { .. } | Protocol::Any => None,
            };
            let protos: Vec<L4> = match (proto, s.protocol) {
                (Some(p), _) => vec![p],
                (None, Protocol::Any) if s.port.is_some() => vec![L4::Tcp, L4::Udp, L4::Sctp],
                (None, Protocol::Any) => {
                    entries.push(PortEntry::AnyProtocol);
                    continue;
                }
                (None, Protocol::Icmp { icmp_type, code }) => {
                    if s.port.is_some() {
                        self.diags.push(
                            Diag::error("sluice::port::icmp-port", "ICMP has no ports")
                                .with_label(s.span, "port given here")
                                .with_help("match ICMP by `type` and `code` instead"),
                        );
                        continue;
                    }
                    entries.push(PortEntry::Icmp { icmp_type, code });
                    continue;
                }
                _ => unreachable!(),
            };
            for proto in protos {
                match &s.port {
                    None => entries.push(PortEntry::Range {
                        proto,
                        lo: 0,
                        hi: 65535,
                    }),
                    Some(PortMatch::Number(n)) => entries.push(PortEntry::Range {
                        proto,
                        lo: *n,
                        hi: *n,
                    }),
                    Some(PortMatch::Range(lo, hi)) if lo > hi => {
                        self.diags.push(
                            Diag::error(
                                "sluice::port::range",
                                format!("port range {lo}-{hi} is empty"),
                            )
                            .with_label(s.span, "this range")
                            .with_help(format!("did you mean {hi}-{lo}?")),
                        );
                        break;
                    }
                    Some(PortMatch::Range(lo, hi)) => entries.push(PortEntry::Range {
                        proto,
                        lo: *lo,
                        hi: *hi,
                    }),
                    Some(PortMatch::Named(name)) => entries.push(PortEntry::Named {
                        proto,
                        name: name.clone(),
                    }),
                }
            }
        }
        entries.sort();
        entries.dedup();
        if entries.contains(&PortEntry::AnyProtocol) {
            entries = vec![PortEntry::AnyProtocol];
        }
        self.ir.intern_port_set(PortSet { entries })
    }

    fn masquerade(&mut self, m: &ast::Masquerade) {
        if let Some(prev) = &self.ir.masquerade {
            self.diags.push(
                Diag::error(
                    "sluice::masquerade::duplicate",
                    "more than one `masquerade` block",
                )
                .with_label(m.span, "second block")
                .with_label(prev.span, "first block")
                .with_help("merge them into one block"),
            );
            return;
        }
        let mut cidrs: Vec<Cidr> = Vec::new();
        for c in &m.non_masquerade {
            if !self.canonical(c, m.span) {
                continue;
            }
            if let Some(other) = cidrs.iter().find(|o| o.covers(c) || c.covers(o)) {
                self.diags.push(
                    Diag::error(
                        "sluice::masquerade::overlap",
                        format!("non-masquerade CIDRs {other} and {c} overlap"),
                    )
                    .with_label(m.span, "in this block")
                    .with_help("keep only the larger block"),
                );
                continue;
            }
            cidrs.push(*c);
        }
        self.ir.masquerade = Some(MasqueradeConfig {
            non_masquerade: cidrs,
            link_local: m.link_local,
            link_local_v6: m.link_local_v6,
            egress: m.egress.clone(),
            span: m.span,
        });
    }

    fn ipam(&mut self, i: &ast::Ipam) {
        for pool in &i.pools {
            if let Some(prev) = self.ir.pools.iter().find(|p| p.name == pool.name) {
                let prev = prev.span;
                self.diags.push(
                    Diag::error(
                        "sluice::ipam::duplicate",
                        format!("pool `{}` is defined twice", pool.name),
                    )
                    .with_label(pool.span, "second definition")
                    .with_label(prev, "first definition"),
                );
                continue;
            }
            let kind = match &pool.kind {
                ast::PoolKind::Cluster { cidrs, node_mask } => PoolKindConfig::Cluster {
                    cidrs: self.pool_cidrs(pool, cidrs, *node_mask),
                    node_mask: *node_mask,
                },
                ast::PoolKind::Multi {
                    cidrs,
                    node_mask,
                    pods,
                    namespaces,
                } => PoolKindConfig::Multi {
                    cidrs: self.pool_cidrs(pool, cidrs, *node_mask),
                    node_mask: *node_mask,
                    pods: self.selector(pods),
                    namespaces: namespaces.as_ref().map(|s| self.selector(s)),
                },
                ast::PoolKind::Lb { blocks, services } => {
                    for b in blocks {
                        match b {
                            ast::LbBlock::Cidr(c) => {
                                self.canonical(c, pool.span);
                            }
                            ast::LbBlock::Range(a, b) => {
                                if a.is_ipv4() != b.is_ipv4() || a > b {
                                    self.diags.push(
                                        Diag::error(
                                            "sluice::ipam::range",
                                            format!("address range {a}-{b} is empty"),
                                        )
                                        .with_label(pool.span, "in this pool"),
                                    );
                                }
                            }
                        }
                    }
                    PoolKindConfig::Lb {
                        blocks: blocks.clone(),
                        services: self.selector(services),
                    }
                }
                ast::PoolKind::HostScope => PoolKindConfig::HostScope,
            };
            self.ir.pools.push(PoolConfig {
                name: pool.name.clone(),
                kind,
                span: pool.span,
            });
        }
    }

    fn pool_cidrs(&mut self, pool: &ast::Pool, cidrs: &[Cidr], node_mask: u8) -> Vec<Cidr> {
        let mut out = Vec::new();
        for c in cidrs {
            if !self.canonical(c, pool.span) {
                continue;
            }
            if node_mask < c.prefix || node_mask > c.max_prefix() {
                self.diags.push(
                    Diag::error(
                        "sluice::ipam::node-mask",
                        format!("node mask /{node_mask} cannot cut {c} into per-node blocks"),
                    )
                    .with_label(pool.span, "in this pool")
                    .with_help(format!(
                        "use a node mask between /{} and /{}",
                        c.prefix,
                        c.max_prefix()
                    )),
                );
            }
            out.push(*c);
        }
        out
    }

    /// Two pools (or one pool twice) handing out the same addresses would allocate one IP to
    /// two pods.
    fn check_pool_overlaps(&mut self) {
        let mut all: Vec<(usize, Cidr)> = Vec::new();
        for (i, p) in self.ir.pools.iter().enumerate() {
            let cidrs: &[Cidr] = match &p.kind {
                PoolKindConfig::Cluster { cidrs, .. } | PoolKindConfig::Multi { cidrs, .. } => {
                    cidrs
                }
                _ => &[],
            };
            all.extend(cidrs.iter().map(|c| (i, *c)));
        }
        for (n, (i, a)) in all.iter().enumerate() {
            for (j, b) in &all[n + 1..] {
                if a.covers(b) || b.covers(a) {
                    let (pa, pb) = (&self.ir.pools[*i], &self.ir.pools[*j]);
                    let mut d = Diag::error(
                        "sluice::ipam::overlap",
                        format!("pool `{}` ({b}) overlaps pool `{}` ({a})", pb.name, pa.name),
                    )
                    .with_label(pb.span, format!("{b} here…"));
                    if i != j {
                        d = d.with_label(pa.span, format!("…overlaps {a} here"));
                    }
                    self.diags
                        .push(d.with_help("pools must not share addresses; shrink or drop one"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Document {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn interns_selectors_and_ports_and_defaults_isolation() {
        let d = doc(r#"{"items":[
          {"kind":"policy","name":"a","namespace":"x","subject":{"pods":{"exprs":[{"key":"app","op":"eq","values":["web"]}]}},
           "rules":[{"direction":"egress","action":"allow","ports":[{"protocol":{"name":"tcp"},"port":{"number":80}}]}]},
          {"kind":"policy","name":"b","namespace":"x","subject":{"pods":{"exprs":[{"key":"app","op":"in","values":["web"]}]}},
           "rules":[{"direction":"egress","action":"allow","ports":[{"protocol":{"name":"tcp"},"port":{"range":[80,80]}}]}]}
        ]}"#);
        let (ir, diags) = lower(&[d]);
        assert!(diags.is_empty(), "{diags:?}");
        let p: Vec<_> = ir.policies.values().collect();
        assert_eq!(p[0].subject_pods, p[1].subject_pods);
        let r: Vec<_> = ir.rules.values().collect();
        assert_eq!(r[0].ports, r[1].ports);
        assert_eq!(
            p[0].isolates,
            Isolation {
                ingress: false,
                egress: true
            }
        );
    }

    #[test]
    fn host_bits_and_pass_are_errors() {
        let d = doc(r#"{"items":[
          {"kind":"policy","name":"a","subject":{},
           "rules":[{"direction":"ingress","action":"pass"},
                    {"direction":"ingress","action":"allow","peers":[{"peer":"cidr","cidr":"10.1.2.3/8"}]}]}
        ]}"#);
        let (ir, diags) = lower(&[d]);
        let codes: Vec<_> = diags.items.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            [
                "sluice::rule::pass-outside-admin",
                "sluice::cidr::host-bits"
            ]
        );
        assert_eq!(
            diags.items[1].help.as_deref(),
            Some("did you mean 10.0.0.0/8?")
        );
        // The bad peer is dropped, the rule kept.
        assert_eq!(ir.rules.len(), 1);
        assert!(ir.rules.values().next().unwrap().peers.is_empty());
    }

    #[test]
    fn any_protocol_with_port_expands() {
        let d = doc(r#"{"items":[
          {"kind":"policy","name":"a","subject":{},
           "rules":[{"direction":"ingress","action":"allow","ports":[{"protocol":{"name":"any"},"port":{"number":53}}]}]}
        ]}"#);
        let (ir, _) = lower(&[d]);
        let ps = &ir.port_sets[ir.rules.values().next().unwrap().ports];
        assert_eq!(ps.to_string(), "TCP/53, UDP/53, SCTP/53");
    }
}
