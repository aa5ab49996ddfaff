//! The cost model: which shape each part of a decision table gets in a specialized program.
//!
//! A decision has two stages: the peer (remote address → profile) and the profile's port
//! decision (protocol, port → verdict). Each stage is either code (a compare tree: a binary
//! search over sorted boundaries, `ceil(log2 n)` compares per packet) or a map lookup (one
//! helper call). Per packet, a compare tree of up to 16 levels is cheaper than any lookup, so
//! the model prefers code, and turns to maps only for size: the program must stay within
//! [`Limits::inline_budget`] instructions, far below the verifier's limits (1M processed
//! instructions, jump offsets of ±32767 slots), and within per-tree caps that keep the
//! verifier's state exploration small. `spec/codegen.md` §3 documents the same numbers.

use crate::plan::table::Profile;
use crate::plan::{ClassId, Classes, DecisionTable, ProfileId, Proto};
use std::net::IpAddr;

/// Per-packet cost estimates in "instruction equivalents" (one ALU or jump = 1). The lookup
/// figures are what BPF_PROG_TEST_RUN measured on this kind of machine, divided by the cost
/// of one instruction (~0.5 ns): an array lookup ~10 ns, a hash lookup ~25 ns, an LPM trie
/// lookup ~40 ns (it walks the trie bit by bit).
pub const COST_ARRAY_LOOKUP: u32 = 20;
pub const COST_HASH_LOOKUP: u32 = 50;
pub const COST_LPM_LOOKUP: u32 = 80;

/// Instructions of a compare tree over `n` leaves: `n - 1` compares and `n` leaves of
/// `leaf` instructions each.
pub fn tree_insns(n: usize, leaf: usize) -> usize {
    n.saturating_sub(1) + n * leaf
}

/// Compares on a path through a tree over `n` leaves.
pub fn tree_depth(n: usize) -> u32 {
    (n.max(1) as u64).next_power_of_two().trailing_zeros()
}

/// A leaf of a verdict tree: `r7 = code; goto tail`.
pub const VERDICT_LEAF: usize = 2;
/// A leaf of a dispatch tree: `goto block`.
pub const JUMP_LEAF: usize = 1;
/// Going to the port map from a profile block: `r6 = profile; goto lookup`.
pub const MAP_LEAF: usize = 2;
/// The port map lookup block (key build, call, null check, load).
pub const PORT_LOOKUP_INSNS: usize = 16;
/// The ipcache lookup block (plus the class → profile array lookup).
pub const IPCACHE_LOOKUP_INSNS: usize = 12;
pub const PROFILE_LOOKUP_INSNS: usize = 9;

/// The thresholds. The defaults are what `sluice compile` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Instructions the whole decision may take inline.
    pub inline_budget: usize,
    /// Address intervals (distinct profile regions) a compare tree may search; more → the
    /// ipcache.
    pub addr_inline_max: usize,
    /// Class runs (consecutive class ids with one profile) a compare tree may search; more →
    /// an array map class → profile.
    pub class_inline_max: usize,
    /// Port segments of one (profile, protocol) a compare tree may search; more → the port
    /// map.
    pub ports_inline_max: usize,
    /// Profiles a dispatch tree may branch to; more → every profile in the port map.
    pub profiles_inline_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            inline_budget: 8192,
            addr_inline_max: 64,
            class_inline_max: 64,
            ports_inline_max: 64,
            profiles_inline_max: 256,
        }
    }
}

/// `lo..=hi` of a 32-bit space (addresses in host order, or class ids) with one profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub lo: u32,
    pub hi: u32,
    pub profile: ProfileId,
}

/// How the remote address becomes a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerPlan {
    /// Every class has this profile: no lookup.
    Single(ProfileId),
    /// A compare tree over address intervals (host order), no map.
    InlineAddr(Vec<Interval>),
    /// The ipcache gives the class; then a compare tree over class runs.
    IpcacheInline(Vec<Interval>),
    /// The ipcache gives the class; then the `sluice_profile` array.
    IpcacheArray,
}

/// One (profile, protocol) port decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListPlan {
    /// Same as the profile's port-less verdict: no code of its own.
    SameAsOther,
    Inline,
    Map,
}

/// How profiles decide on protocol and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfilePlan {
    /// A block per profile (after a dispatch tree when there are several), each switching on
    /// the protocol; `lists[p][proto]` says where each protocol's segments went.
    Blocks { lists: Vec<[ListPlan; 4]> },
    /// Every profile's decision in the port map, keyed by profile.
    AllMap,
}

/// The shape of one specialized decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub peer: PeerPlan,
    pub profiles: ProfilePlan,
    /// Estimated instructions of the decision code.
    pub insns: usize,
    /// Estimated per-packet cost on the costliest path (instruction equivalents).
    pub per_packet: u32,
}

impl Plan {
    pub fn uses_ipcache(&self) -> bool {
        matches!(
            self.peer,
            PeerPlan::IpcacheInline(_) | PeerPlan::IpcacheArray
        )
    }

    pub fn uses_profile_map(&self) -> bool {
        self.peer == PeerPlan::IpcacheArray
    }

    pub fn uses_port_map(&self) -> bool {
        match &self.profiles {
            ProfilePlan::AllMap => true,
            ProfilePlan::Blocks { lists } => lists.iter().flatten().any(|l| *l == ListPlan::Map),
        }
    }
}

/// Merges consecutive intervals with one profile.
fn push_merged(out: &mut Vec<Interval>, lo: u32, hi: u32, profile: ProfileId) {
    match out.last_mut() {
        Some(last) if last.profile == profile && u64::from(last.hi) + 1 == u64::from(lo) => {
            last.hi = hi
        }
        _ => out.push(Interval { lo, hi, profile }),
    }
}

/// The address space as intervals of one profile each, by longest-prefix match over the
/// ipcache. Prefixes nest or are disjoint, so one sweep with a stack of open prefixes does
/// it. Only prefixes whose profile differs from their enclosing prefix's leave a trace.
pub fn address_intervals(table: &DecisionTable, classes: &Classes) -> Vec<Interval> {
    let mut prefixes: Vec<(u64, u64, u8, ProfileId)> = classes
        .ipcache
        .iter()
        .filter_map(|e| {
            let c = e.prefix.canonical();
            let IpAddr::V4(a) = c.addr else { return None };
            let lo = u64::from(u32::from(a));
            let size = 1u64 << (32 - u32::from(c.prefix));
            Some((lo, lo + size - 1, c.prefix, profile_of(table, e.class)))
        })
        .collect();
    prefixes.sort_by_key(|&(lo, _, len, _)| (lo, len));
    let mut out = Vec::new();
    // Open prefixes: (end, profile). Addresses outside every prefix get profile of class
    // "none"; the ipcache always has 0.0.0.0/0, so that cannot happen, but stay total.
    let fallback = table.class_profile.first().copied().unwrap_or(0);
    let mut stack: Vec<(u64, ProfileId)> = Vec::new();
    let mut cursor = 0u64;
    let emit = |out: &mut Vec<Interval>, lo: u64, hi: u64, p: ProfileId| {
        if lo <= hi {
            push_merged(out, lo as u32, hi as u32, p);
        }
    };
    for (lo, hi, _, p) in prefixes {
        while let Some(&(end, q)) = stack.last() {
            if end >= lo {
                break;
            }
            emit(&mut out, cursor, end, q);
            cursor = end + 1;
            stack.pop();
        }
        if lo > cursor {
            let q = stack.last().map_or(fallback, |s| s.1);
            emit(&mut out, cursor, lo - 1, q);
        }
        cursor = cursor.max(lo);
        stack.push((hi, p));
    }
    while let Some((end, q)) = stack.pop() {
        emit(&mut out, cursor, end, q);
        cursor = end + 1;
    }
    if cursor <= u64::from(u32::MAX) {
        emit(&mut out, cursor, u64::from(u32::MAX), fallback);
    }
    out
}

fn profile_of(table: &DecisionTable, class: ClassId) -> ProfileId {
    table.class_profile[class as usize - 1]
}

/// Class ids as runs of one profile (class ids start at 1; 0 never occurs).
pub fn class_intervals(table: &DecisionTable) -> Vec<Interval> {
    let mut out = Vec::new();
    for (i, p) in table.class_profile.iter().enumerate() {
        let c = i as u32 + 1;
        push_merged(&mut out, c, c, *p);
    }
    if let Some(first) = out.first_mut() {
        first.lo = 0;
    }
    if let Some(last) = out.last_mut() {
        last.hi = u32::MAX;
    }
    out
}

/// The decision's profiles as code: `(instructions, worst per-packet compares)`.
fn block_cost(profile: &Profile, lists: &[ListPlan; 4]) -> (usize, u32) {
    if profile.is_uniform() {
        return (VERDICT_LEAF, 0);
    }
    let mut insns = VERDICT_LEAF;
    let mut worst = 0;
    for (i, proto) in Proto::ALL.iter().enumerate() {
        let segs = profile.segments(*proto).len();
        match lists[i] {
            ListPlan::SameAsOther => {}
            ListPlan::Inline => {
                insns += 1 + tree_insns(segs, VERDICT_LEAF);
                worst = worst.max(1 + tree_depth(segs));
            }
            ListPlan::Map => {
                insns += 1 + MAP_LEAF;
                worst = worst.max(1 + COST_LPM_LOOKUP);
            }
        }
    }
    (insns, worst + Proto::ALL.len() as u32)
}

fn list_plans(profile: &Profile, limits: &Limits) -> [ListPlan; 4] {
    Proto::ALL.map(|proto| {
        let segs = profile.segments(proto);
        if segs.len() == 1 && segs[0].verdict == profile.other {
            ListPlan::SameAsOther
        } else if segs.len() > limits.ports_inline_max {
            ListPlan::Map
        } else {
            ListPlan::Inline
        }
    })
}

/// Plans one table.
pub fn plan(table: &DecisionTable, classes: &Classes, limits: &Limits) -> Plan {
    let nprofiles = table.profiles.len();
    let (peer, peer_insns, peer_cost) = if nprofiles <= 1 {
        (PeerPlan::Single(0), 0, 0)
    } else {
        let addr = address_intervals(table, classes);
        if addr.len() <= limits.addr_inline_max {
            let n = addr.len();
            (
                PeerPlan::InlineAddr(addr),
                3 + tree_insns(n, JUMP_LEAF),
                tree_depth(n),
            )
        } else {
            let runs = class_intervals(table);
            if runs.len() <= limits.class_inline_max {
                let n = runs.len();
                (
                    PeerPlan::IpcacheInline(runs),
                    IPCACHE_LOOKUP_INSNS + tree_insns(n, JUMP_LEAF),
                    COST_LPM_LOOKUP + tree_depth(n),
                )
            } else {
                (
                    PeerPlan::IpcacheArray,
                    IPCACHE_LOOKUP_INSNS + PROFILE_LOOKUP_INSNS,
                    COST_LPM_LOOKUP + COST_ARRAY_LOOKUP,
                )
            }
        }
    };
    // Profiles reached through a class run or an address interval need a dispatch tree
    // over profile ids only when the peer stage yields an id (the array); the inline peer
    // trees jump straight to the blocks.
    let dispatch = |n: usize| {
        if matches!(peer, PeerPlan::IpcacheArray) {
            tree_insns(n, JUMP_LEAF)
        } else {
            0
        }
    };
    let all_map = |peer: PeerPlan| Plan {
        insns: peer_insns + PORT_LOOKUP_INSNS,
        per_packet: peer_cost + COST_LPM_LOOKUP,
        peer,
        profiles: ProfilePlan::AllMap,
    };
    if nprofiles > limits.profiles_inline_max {
        return all_map(peer);
    }
    let mut lists: Vec<[ListPlan; 4]> = table
        .profiles
        .iter()
        .map(|p| list_plans(p, limits))
        .collect();
    let total = |lists: &[[ListPlan; 4]]| -> (usize, u32) {
        let mut insns = peer_insns + dispatch(nprofiles);
        let mut worst = 0;
        let mut any_map = false;
        for (p, l) in table.profiles.iter().zip(lists) {
            let (i, w) = block_cost(p, l);
            insns += i;
            worst = worst.max(w);
            any_map |= l.contains(&ListPlan::Map);
        }
        if any_map {
            insns += PORT_LOOKUP_INSNS;
        }
        (insns, worst)
    };
    // Over budget: move the biggest inline trees to the map until it fits.
    let (mut insns, mut worst) = total(&lists);
    if insns > limits.inline_budget {
        let mut inline: Vec<(usize, usize, usize)> = Vec::new();
        for (p, profile) in table.profiles.iter().enumerate() {
            for (i, proto) in Proto::ALL.iter().enumerate() {
                if lists[p][i] == ListPlan::Inline {
                    inline.push((profile.segments(*proto).len(), p, i));
                }
            }
        }
        inline.sort_by(|a, b| b.cmp(a));
        for (_, p, i) in inline {
            if insns <= limits.inline_budget {
                break;
            }
            lists[p][i] = ListPlan::Map;
            (insns, worst) = total(&lists);
        }
        if insns > limits.inline_budget {
            return all_map(peer);
        }
    }
    Plan {
        peer,
        profiles: ProfilePlan::Blocks { lists },
        insns,
        per_packet: peer_cost + worst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_figures() {
        assert_eq!(tree_depth(1), 0);
        assert_eq!(tree_depth(2), 1);
        assert_eq!(tree_depth(3), 2);
        assert_eq!(tree_depth(64), 6);
        assert_eq!(tree_insns(1, 2), 2);
        assert_eq!(tree_insns(4, 2), 11);
    }
}
