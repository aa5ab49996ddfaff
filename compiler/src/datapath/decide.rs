//! The decision: one [`DecisionTable`] as code, in one of two modes.
//!
//! - **Specialized**: the shape [`cost::plan`] picks. The peer stage turns the remote address
//!   into a profile (no code when there is one profile; a compare tree over address
//!   intervals; or the ipcache, then a compare tree over class runs or an array); each
//!   profile's block switches on the protocol and binary-searches the port segments, or
//!   goes to the port map for lists too long to inline.
//! - **Generic** (the Cilium shape, a baseline and a differential oracle): always the
//!   ipcache, then one LPM lookup keyed by (class, protocol, port prefix).
//!
//! Every path ends with the verdict code in [`CODE`] and a jump to the tail
//! ([`super::verdict`]). Registers ([`super::frame`]): [`ID`] holds the class or profile id
//! (the context is not needed after parsing), [`L4_PROTO`]/[`L4_KEY`] the parser's protocol
//! and port, `R1`–`R5` are scratch.

pub use super::frame::{CODE, ID};

use super::cost::{self, Interval, ListPlan, PeerPlan, Plan, ProfilePlan};
use super::frame::{L4_KEY, L4_PROTO, Var};
use super::keys::{self, PORT_KEY_FIXED_BITS, PORT_KEY_SIZE};
use super::{MapContents, MapScope, TcxHook};
use crate::bpf::{Asm, Cond, Label, MapDef, MapRef, MapType, Reg, Size};
use crate::plan::table::Profile;
use crate::plan::{Classes, DecisionTable, ProfileId, Proto, Segment, Verdict};

/// The slot of the remote address: the destination for `from_ep`, the source for `to_ep`.
pub fn peer_slot(hook: TcxHook) -> i16 {
    match hook {
        TcxHook::Ingress => Var::Daddr.off(),
        TcxHook::Egress => Var::Saddr.off(),
    }
}

/// `R7 = code(v); goto tail`.
fn leaf(a: &mut Asm, v: Verdict, tail: Label) {
    a.mov64(CODE, keys::verdict_code(v) as i32).ja(tail);
}

/// A binary search over `items` (sorted by `lo`, the first at the bottom of the space) on
/// the low 32 bits of `reg`; `leaf` emits each item's code, which must not fall through.
fn tree<T>(a: &mut Asm, reg: Reg, items: &[(u32, T)], leaf: &mut impl FnMut(&mut Asm, &T)) {
    if let [only] = items {
        leaf(a, &only.1);
        return;
    }
    let mid = items.len() / 2;
    let right = a.label();
    a.jmp32(Cond::Ge, reg, items[mid].0 as i32, right);
    tree(a, reg, &items[..mid], leaf);
    a.bind(right);
    tree(a, reg, &items[mid..], leaf);
}

fn segment_items(segs: &[Segment]) -> Vec<(u32, Verdict)> {
    segs.iter().map(|s| (u32::from(s.lo), s.verdict)).collect()
}

fn interval_items(iv: &[Interval]) -> Vec<(u32, ProfileId)> {
    iv.iter().map(|i| (i.lo, i.profile)).collect()
}

/// `R6 = class of the remote address` (the ipcache). A miss cannot happen (the ipcache has
/// `0.0.0.0/0`) but goes to `fail`.
fn emit_ipcache(a: &mut Asm, hook: TcxHook, fail: Label) {
    use Reg::*;
    a.st(Size::W, R10, Var::IpcacheKey.off(), 32)
        .ldx(Size::W, R1, R10, peer_slot(hook))
        .stx(Size::W, R10, Var::IpcacheKey.off() + 4, R1)
        .map_lookup_stack(MapRef::new(keys::IPCACHE), Var::IpcacheKey.off())
        .jmp(Cond::Eq, R0, 0, fail)
        .ldx(Size::W, ID, R0, 0);
}

/// `R6 = profile of class R6` (the `sluice_profile` array).
fn emit_profile_lookup(a: &mut Asm, fail: Label) {
    use Reg::*;
    a.stx(Size::W, R10, Var::U32Key.off(), ID)
        .map_lookup_stack(MapRef::new(keys::PROFILE), Var::U32Key.off())
        .jmp(Cond::Eq, R0, 0, fail)
        .ldx(Size::W, ID, R0, 0);
}

/// `R7 = map[(R6, protocol, port)]; goto tail`.
fn emit_port_lookup(a: &mut Asm, map: &str, fail: Label, tail: Label) {
    use Reg::*;
    let k = Var::PortKey.off();
    a.st(Size::W, R10, k, (PORT_KEY_FIXED_BITS + 16) as i32)
        .stx(Size::W, R10, k + 4, ID)
        .stx(Size::B, R10, k + 8, L4_PROTO)
        .st(Size::B, R10, k + 9, 0)
        .mov64(R1, L4_KEY)
        .be16(R1)
        .stx(Size::H, R10, k + 10, R1)
        .map_lookup_stack(MapRef::new(map), k)
        .jmp(Cond::Eq, R0, 0, fail)
        .ldx(Size::W, CODE, R0, 0)
        .ja(tail);
}

fn port_map_def(name: &str, entries: usize) -> MapDef {
    MapDef::new(
        name,
        MapType::LpmTrie,
        PORT_KEY_SIZE,
        4,
        entries.max(1) as u32,
    )
}

fn contents(def: MapDef, entries: Vec<(Vec<u8>, Vec<u8>)>) -> MapContents {
    MapContents {
        name: def.name.clone(),
        def,
        scope: MapScope::Program,
        entries,
    }
}

/// One profile's block: switch on the protocol, then the segments.
fn emit_block(
    a: &mut Asm,
    id: ProfileId,
    profile: &Profile,
    lists: &[ListPlan; 4],
    port_lookup: Label,
    tail: Label,
) {
    if profile.is_uniform() {
        leaf(a, profile.other, tail);
        return;
    }
    // Protocols with the same segments and the same plan share one tree.
    let mut groups: Vec<(Label, &[Segment], ListPlan, Vec<Proto>)> = Vec::new();
    for (i, proto) in Proto::ALL.iter().enumerate() {
        if lists[i] == ListPlan::SameAsOther {
            continue;
        }
        let segs = profile.segments(*proto);
        match groups.iter_mut().find(|g| g.1 == segs && g.2 == lists[i]) {
            Some(g) => g.3.push(*proto),
            None => {
                let l = a.label();
                groups.push((l, segs, lists[i], vec![*proto]));
            }
        }
    }
    for (label, _, _, protos) in &groups {
        for p in protos {
            a.jmp(Cond::Eq, L4_PROTO, i32::from(p.number()), *label);
        }
    }
    leaf(a, profile.other, tail);
    for (label, segs, plan, _) in groups {
        a.bind(label);
        match plan {
            ListPlan::Map => {
                a.mov64(ID, id as i32).ja(port_lookup);
            }
            _ => tree(a, L4_KEY, &segment_items(segs), &mut |a, v| {
                leaf(a, *v, tail)
            }),
        }
    }
}

/// Emits the specialized decision of `table` as `plan` says; returns its per-program maps.
pub fn emit_specialized(
    a: &mut Asm,
    hook: TcxHook,
    table: &DecisionTable,
    plan: &Plan,
    tail: Label,
    fail: Label,
) -> Vec<MapContents> {
    let mut maps = Vec::new();
    let port_lookup = a.label();
    let all_map = plan.profiles == ProfilePlan::AllMap;
    let blocks: Vec<Label> = if all_map {
        Vec::new()
    } else {
        table.profiles.iter().map(|_| a.label()).collect()
    };
    // How a peer-stage leaf reaches profile `p`.
    let mut goto_profile = |a: &mut Asm, p: &ProfileId| {
        if all_map {
            a.mov64(ID, *p as i32).ja(port_lookup);
        } else {
            a.ja(blocks[*p as usize]);
        }
    };

    match &plan.peer {
        PeerPlan::Single(p) => goto_profile(a, p),
        PeerPlan::InlineAddr(iv) => {
            a.ldx(Size::W, Reg::R1, Reg::R10, peer_slot(hook))
                .be32(Reg::R1);
            tree(a, Reg::R1, &interval_items(iv), &mut goto_profile);
        }
        PeerPlan::IpcacheInline(runs) => {
            emit_ipcache(a, hook, fail);
            tree(a, ID, &interval_items(runs), &mut goto_profile);
        }
        PeerPlan::IpcacheDirect => {
            emit_ipcache(a, hook, fail);
            a.ja(port_lookup);
        }
        PeerPlan::IpcacheArray => {
            emit_ipcache(a, hook, fail);
            emit_profile_lookup(a, fail);
            let mut entries = Vec::with_capacity(table.class_profile.len());
            for (i, p) in table.class_profile.iter().enumerate() {
                entries.push((
                    (i as u32 + 1).to_le_bytes().to_vec(),
                    p.to_le_bytes().to_vec(),
                ));
            }
            maps.push(contents(
                MapDef::new(
                    keys::PROFILE,
                    MapType::Array,
                    4,
                    4,
                    table.class_profile.len() as u32 + 1,
                ),
                entries,
            ));
            if all_map {
                a.ja(port_lookup);
            } else {
                let items: Vec<(u32, ProfileId)> =
                    (0..table.profiles.len() as u32).map(|p| (p, p)).collect();
                tree(a, ID, &items, &mut |a, p| {
                    a.ja(blocks[*p as usize]);
                });
            }
        }
    }

    let mut port_entries = Vec::new();
    match &plan.profiles {
        ProfilePlan::AllMap if plan.peer == PeerPlan::IpcacheDirect => {
            for (i, p) in table.class_profile.iter().enumerate() {
                let profile = &table.profiles[*p as usize];
                keys::profile_entries(i as u32 + 1, profile, &mut port_entries);
            }
        }
        ProfilePlan::AllMap => {
            for (p, profile) in table.profiles.iter().enumerate() {
                keys::profile_entries(p as u32, profile, &mut port_entries);
            }
        }
        ProfilePlan::Blocks { lists } => {
            for (p, profile) in table.profiles.iter().enumerate() {
                a.bind(blocks[p]);
                emit_block(a, p as ProfileId, profile, &lists[p], port_lookup, tail);
                let mut in_map = false;
                for (i, proto) in Proto::ALL.iter().enumerate() {
                    if lists[p][i] == ListPlan::Map {
                        keys::segment_entries(p as u32, *proto, profile, &mut port_entries);
                        in_map = true;
                    }
                }
                if in_map {
                    keys::other_entry(p as u32, profile, &mut port_entries);
                }
            }
        }
    }
    if plan.uses_port_map() {
        a.bind(port_lookup);
        emit_port_lookup(a, keys::PORTS, fail, tail);
        maps.push(contents(
            port_map_def(keys::PORTS, port_entries.len()),
            port_entries,
        ));
    }
    maps
}

/// Emits the generic decision: ipcache → class, then `sluice_policy`. Returns its map.
pub fn emit_generic(
    a: &mut Asm,
    hook: TcxHook,
    table: &DecisionTable,
    tail: Label,
    fail: Label,
) -> Vec<MapContents> {
    emit_ipcache(a, hook, fail);
    emit_port_lookup(a, keys::POLICY, fail, tail);
    let mut entries = Vec::new();
    for (i, p) in table.class_profile.iter().enumerate() {
        keys::profile_entries(i as u32 + 1, &table.profiles[*p as usize], &mut entries);
    }
    vec![contents(port_map_def(keys::POLICY, entries.len()), entries)]
}

/// The ipcache's contents (one map per generation, the same in every artifact).
pub fn ipcache_contents(classes: &Classes) -> MapContents {
    let entries: Vec<(Vec<u8>, Vec<u8>)> = classes
        .ipcache
        .iter()
        .filter_map(|e| {
            Some((
                keys::ipcache_key(e.prefix)?,
                keys::ipcache_value(e.class, e.tunnel),
            ))
        })
        .collect();
    MapContents {
        name: keys::IPCACHE.to_string(),
        def: MapDef::new(
            keys::IPCACHE,
            MapType::LpmTrie,
            8,
            keys::IPCACHE_VALUE_SIZE,
            entries.len().max(1) as u32,
        ),
        scope: MapScope::Generation,
        entries,
    }
}

/// The plan of a specialized decision (re-exported for `--emit asm` headers and tests).
pub fn plan(table: &DecisionTable, classes: &Classes, limits: &cost::Limits) -> Plan {
    cost::plan(table, classes, limits)
}
