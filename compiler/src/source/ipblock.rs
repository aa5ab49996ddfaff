//! Kubernetes' ipBlock semantics, shared by the NetworkPolicy and Cilium readers.
//!
//! The API server accepts ipBlocks that the DSL rejects, and a CNI must enforce them as
//! Kubernetes means them:
//!
//! - a CIDR with host bits set (`192.168.242.213/24`) is stored as written and read by Go's
//!   `net.ParseCIDR`, which masks it (192.168.242.0/24); excepts too;
//! - a rule's peers match as a union however they overlap: two ipBlocks may repeat or nest
//!   (one of them with an `except`), and so may the excepts of one block.
//!
//! The readers turn such input into exactly what it means, in a form lowering accepts, with a
//! warning at each place: CIDRs are masked, an except inside another except of its block is
//! dropped, a peer inside another peer of its rule is dropped, and peers that still overlap
//! (an except keeps either from covering the other) go to separate copies of the rule. Copies
//! of a rule (one action, the same ports, next to each other) match the union of their peers
//! in every tier, as the rule did. `sluice convert` output then compiles as DSL and means the
//! same.

use super::ast::{Cidr, Peer, Rule, Span};
use crate::diag::Diag;
use std::net::IpAddr;

/// The finding codes, shared with lowering (where the DSL makes them errors).
const HOST_BITS: &str = "sluice::cidr::host-bits";
const OVERLAP: &str = "sluice::cidr::overlap";

/// `c` as Go's `net.ParseCIDR` reads it (host bits cleared), with a warning when that
/// changed it.
pub(crate) fn mask(c: Cidr, span: Span, diags: &mut Vec<Diag>) -> Cidr {
    let masked = c.canonical();
    if masked != c {
        diags.push(
            Diag::warning(HOST_BITS, format!("`{c}` has host bits set"))
                .with_label(span, format!("enforced as {masked}"))
                .with_help(format!(
                    "the API server accepts it and Go reads it as {masked}, as sluice does; write {masked} to say so"
                )),
        );
    }
    masked
}

/// An ipBlock's excepts (already masked) without those inside another except of the block,
/// with a warning for each one dropped: the addresses excluded stay the same.
pub(crate) fn excepts(list: Vec<(Cidr, Span)>, diags: &mut Vec<Diag>) -> Vec<Cidr> {
    let blocks: Vec<(Cidr, &[Cidr])> = list.iter().map(|(c, _)| (*c, &[][..])).collect();
    let mut dropped = vec![false; list.len()];
    for (i, j) in overlapping_pairs(&blocks) {
        if dropped[i] || dropped[j] {
            continue;
        }
        // Nested prefixes: the inner one goes; of two equal ones, the later.
        let (outer, inner) = if list[i].0.covers(&list[j].0) {
            (i, j)
        } else {
            (j, i)
        };
        dropped[inner] = true;
        let ((o, ospan), (n, nspan)) = (list[outer], list[inner]);
        diags.push(
            Diag::warning(OVERLAP, format!("except {n} lies inside except {o}"))
                .with_label(nspan, format!("{n} excludes nothing more…"))
                .with_label(ospan, format!("…than {o}, in the same block"))
                .with_help("Kubernetes excludes the union of the excepts; drop the inner one"),
        );
    }
    list.into_iter()
        .zip(dropped)
        .filter(|(_, d)| !d)
        .map(|((c, _), _)| c)
        .collect()
}

/// Whether every address of block `b` minus its excepts `eb` is in `a` minus `ea`. Judged
/// prefix by prefix, so `true` is always right and some real coverings answer `false`.
pub fn covers(a: &Cidr, ea: &[Cidr], b: &Cidr, eb: &[Cidr]) -> bool {
    let overlap = |x: &Cidr, y: &Cidr| x.covers(y) || y.covers(x);
    a.covers(b)
        && ea
            .iter()
            .all(|e| !overlap(e, b) || (b.covers(e) && eb.iter().any(|x| x.covers(e))))
}

/// A rule whose CIDR peers overlap, as rules whose CIDR peers don't, matching the same
/// traffic: a peer inside another is dropped, and peers that still overlap go to copies of
/// the rule (the first keeps every other peer). Each change gets a warning.
pub(crate) fn split_overlaps(rule: Rule, diags: &mut Vec<Diag>) -> Vec<Rule> {
    // (index in rule.peers, block, excepts, span)
    let cidrs: Vec<(usize, Cidr, &[Cidr], Span)> = rule
        .peers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Peer::Cidr { cidr, except, span } => Some((i, *cidr, except.as_slice(), *span)),
            _ => None,
        })
        .collect();
    let blocks: Vec<(Cidr, &[Cidr])> = cidrs.iter().map(|(_, c, e, _)| (*c, *e)).collect();
    let pairs = overlapping_pairs(&blocks);
    if pairs.is_empty() {
        return vec![rule];
    }
    // 1. Drop peers another live peer covers. Each drop keeps the union of the live peers.
    let mut dropped = vec![false; cidrs.len()];
    let mut overlapping = Vec::new();
    for &(i, j) in &pairs {
        if dropped[i] || dropped[j] {
            continue;
        }
        let cov = |x: usize, y: usize| covers(&blocks[x].0, blocks[x].1, &blocks[y].0, blocks[y].1);
        let (outer, inner) = match (cov(i, j), cov(j, i)) {
            (true, _) => (i, j),
            (false, true) => (j, i),
            (false, false) => {
                overlapping.push((i, j));
                continue;
            }
        };
        dropped[inner] = true;
        let ((_, o, _, ospan), (_, n, _, nspan)) = (cidrs[outer], cidrs[inner]);
        diags.push(
            Diag::warning(
                OVERLAP,
                format!("CIDR peer {n} is covered by CIDR peer {o} of the same rule"),
            )
            .with_label(nspan, format!("{n} adds nothing…"))
            .with_label(ospan, format!("…to {o}"))
            .with_help("Kubernetes matches the union of a rule's peers; drop the covered one"),
        );
    }
    overlapping.retain(|&(i, j)| !dropped[i] && !dropped[j]);

    // 2. Peers that still overlap go to different copies: greedy colouring, in order.
    let mut group = vec![0usize; cidrs.len()];
    for b in 0..cidrs.len() {
        let taken: Vec<usize> = overlapping
            .iter()
            .filter_map(|&(i, j)| (j == b).then_some(group[i]))
            .collect();
        group[b] = (0..).find(|g| !taken.contains(g)).expect("a free group");
    }
    let copies = overlapping
        .iter()
        .map(|&(_, j)| group[j] + 1)
        .max()
        .unwrap_or(1);
    for &(i, j) in &overlapping {
        let ((_, a, _, aspan), (_, b, _, bspan)) = (cidrs[i], cidrs[j]);
        diags.push(
            Diag::warning(OVERLAP, format!("CIDR peers {a} and {b} overlap"))
                .with_label(bspan, format!("{b} overlaps…"))
                .with_label(aspan, format!("…{a}, in the same rule"))
                .with_help(format!(
                    "Kubernetes matches the union of a rule's peers; sluice enforces this rule as {copies} rules with the same ports, whose peers do not overlap"
                )),
        );
    }

    // Per peer of the rule: the copy it goes to, or none (dropped).
    let mut target: Vec<Option<usize>> = vec![Some(0); rule.peers.len()];
    for (k, (i, ..)) in cidrs.iter().enumerate() {
        target[*i] = (!dropped[k]).then_some(group[k]);
    }
    let mut out: Vec<Rule> = (0..copies)
        .map(|_| Rule {
            peers: Vec::new(),
            ..rule.clone()
        })
        .collect();
    for (peer, t) in rule.peers.into_iter().zip(target) {
        if let Some(t) = t {
            out[t].peers.push(peer);
        }
    }
    out
}

/// The pairs `(i, j)`, `i < j`, of blocks that overlap, in list order. Blocks overlap unless
/// the smaller one sits inside an except of the larger.
///
/// Two prefixes overlap only when one contains the other. Sorted by address, then widest
/// first, the blocks containing each prefix are exactly a stack of nested blocks, so one pass
/// finds every pair instead of comparing all of them (100k CIDR peers in one rule would be
/// 5·10⁹ pairs).
pub fn overlapping_pairs(blocks: &[(Cidr, &[Cidr])]) -> Vec<(usize, usize)> {
    let overlap = |a: &Cidr, ea: &[Cidr], b: &Cidr| a.covers(b) && !ea.iter().any(|e| e.covers(b));
    let key = |c: &Cidr| {
        let c = c.canonical();
        let addr = match c.addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        (c.addr.is_ipv6(), addr, c.prefix)
    };
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| (key(&blocks[i].0), i));
    let mut enclosing: Vec<usize> = Vec::new();
    let mut found = Vec::new();
    for i in order {
        while enclosing
            .last()
            .is_some_and(|&o| !blocks[o].0.covers(&blocks[i].0))
        {
            enclosing.pop();
        }
        for &o in &enclosing {
            let (first, second) = (o.min(i), o.max(i));
            let (a, ea) = blocks[first];
            let (b, eb) = blocks[second];
            if overlap(&a, ea, &b) || overlap(&b, eb, &a) {
                found.push((first, second));
            }
        }
        enclosing.push(i);
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ast::{Action, PolicyDirection};
    use proptest::prelude::*;

    /// The one-pass overlap search finds exactly the pairs an all-pairs comparison finds.
    #[test]
    fn overlapping_pairs_match_all_pairs() {
        let cidr = (0u32..16, 26u8..=32).prop_map(|(a, p)| Cidr {
            addr: std::net::Ipv4Addr::from(0x0a00_0000 | a << 2).into(),
            prefix: p,
        });
        let block = (cidr.clone(), proptest::collection::vec(cidr, 0..2));
        proptest!(|(blocks in proptest::collection::vec(block, 0..12))| {
            let refs: Vec<(Cidr, &[Cidr])> = blocks.iter().map(|(c, e)| (*c, e.as_slice())).collect();
            let overlap = |a: &Cidr, ea: &[Cidr], b: &Cidr| a.covers(b) && !ea.iter().any(|e| e.covers(b));
            let mut naive = Vec::new();
            for i in 0..refs.len() {
                for j in i + 1..refs.len() {
                    let ((a, ea), (b, eb)) = (refs[i], refs[j]);
                    if overlap(&a, ea, &b) || overlap(&b, eb, &a) {
                        naive.push((i, j));
                    }
                }
            }
            prop_assert_eq!(overlapping_pairs(&refs), naive);
        });
    }

    /// Blocks inside 10.0.0.0/27 (so they nest often), excepts strictly inside them.
    fn peer() -> impl Strategy<Value = Peer> {
        let cidr = (0u32..32, 27u8..=32).prop_map(|(a, p)| {
            Cidr {
                addr: std::net::Ipv4Addr::from(0x0a00_0000 | a).into(),
                prefix: p,
            }
            .canonical()
        });
        (cidr.clone(), proptest::collection::vec(cidr, 0..3)).prop_map(|(c, ex)| Peer::Cidr {
            cidr: c,
            except: ex
                .into_iter()
                .filter(|e| c.covers(e) && e.prefix > c.prefix)
                .collect(),
            span: Span::NONE,
        })
    }

    fn matches(peers: &[Peer], ip: IpAddr) -> bool {
        peers.iter().any(|p| match p {
            Peer::Cidr { cidr, except, .. } => {
                cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))
            }
            _ => unreachable!(),
        })
    }

    /// Splitting matches exactly the addresses the rule matched, and leaves no copy whose
    /// peers overlap (what lowering requires).
    #[test]
    fn split_overlaps_keeps_the_union_and_removes_overlaps() {
        proptest!(|(peers in proptest::collection::vec(peer(), 1..7))| {
            let rule = Rule {
                name: None,
                direction: PolicyDirection::Egress,
                action: Action::Allow,
                peers: peers.clone(),
                ports: Vec::new(),
                span: Span::NONE,
            };
            let mut diags = Vec::new();
            let out = split_overlaps(rule, &mut diags);
            prop_assert!(!out.is_empty() && out.iter().all(|r| !r.peers.is_empty()));
            prop_assert_eq!(out.len() > 1 || out[0].peers.len() < peers.len(), !diags.is_empty());
            for r in &out {
                let blocks: Vec<(Cidr, &[Cidr])> = r.peers.iter().map(|p| match p {
                    Peer::Cidr { cidr, except, .. } => (*cidr, except.as_slice()),
                    _ => unreachable!(),
                }).collect();
                prop_assert!(overlapping_pairs(&blocks).is_empty(), "{:?}", r.peers);
            }
            for a in 0..40u32 {
                let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | a));
                let union = out.iter().any(|r| matches(&r.peers, ip));
                prop_assert_eq!(union, matches(&peers, ip), "{}", ip);
            }
        });
    }

    #[test]
    fn masks_host_bits_and_drops_nested_excepts() {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        let mut diags = Vec::new();
        assert_eq!(
            mask(c("192.168.242.213/24"), Span::NONE, &mut diags),
            c("192.168.242.0/24")
        );
        assert_eq!(
            mask(c("10.0.0.0/8"), Span::NONE, &mut diags),
            c("10.0.0.0/8")
        );
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, HOST_BITS);
        let list = ["10.1.2.0/24", "10.1.0.0/16", "10.2.0.0/16", "10.1.0.0/16"]
            .map(|s| (c(s), Span::NONE))
            .to_vec();
        assert_eq!(
            excepts(list, &mut diags),
            [c("10.1.0.0/16"), c("10.2.0.0/16")]
        );
        assert_eq!(diags.len(), 3);
    }
}
