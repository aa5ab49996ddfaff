//! The node maps the compiler fills: the local endpoints, the node itself, and every local
//! endpoint's ingress decision in one generic table. Layouts are `sluice_bundle::abi::node`'s
//! (and `spec/datapath.md`, "Nodes"); the ipcache, which also carries each remote prefix's
//! node, is built with the classes (`crate::plan::Classes`).

use super::super::keys;
use super::super::program::{can_deny, enforced};
use super::super::{MapContents, MapScope};
use super::Routing;
use crate::bpf::{MapDef, MapType};
use crate::plan::DecisionTable;
use sluice_bundle::abi::node::*;
use std::net::Ipv4Addr;

/// One endpoint on this node, as `sluice_eps` holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub ip: Ipv4Addr,
    /// Position among the bundle's attached endpoints, from 1; 0 when not attached.
    pub slot: u32,
    pub identity: u32,
    /// Its ingress decision in `sluice_node_in` (0: none).
    pub table: u32,
    pub flags: u32,
}

/// The flags of an endpoint with this ingress table (`conntrack`: its programs track).
pub fn ep_flags(ingress: Option<&DecisionTable>, conntrack: bool) -> u32 {
    let mut f = 0;
    if enforced(ingress) {
        f |= EP_ENFORCED;
    }
    if conntrack {
        f |= EP_CONNTRACK;
    }
    if can_deny(ingress) {
        f |= EP_CAN_DENY;
    }
    f
}

fn shared(def: MapDef, scope: MapScope, mut entries: Vec<(Vec<u8>, Vec<u8>)>) -> MapContents {
    entries.sort();
    MapContents {
        name: def.name.clone(),
        def,
        scope,
        entries,
    }
}

/// `sluice_eps`: the ifindex field holds the slot and both MACs are zero until the
/// loader completes them.
pub fn endpoints_contents(eps: &[LocalEndpoint]) -> MapContents {
    let entries: Vec<(Vec<u8>, Vec<u8>)> = eps
        .iter()
        .map(|e| {
            let mut v = vec![0u8; EP_VALUE_SIZE as usize];
            v[EP_IFINDEX..EP_IFINDEX + 4].copy_from_slice(&e.slot.to_le_bytes());
            v[EP_IDENTITY..EP_IDENTITY + 4].copy_from_slice(&e.identity.to_le_bytes());
            v[EP_TABLE..EP_TABLE + 4].copy_from_slice(&e.table.to_le_bytes());
            v[EP_FLAGS..EP_FLAGS + 4].copy_from_slice(&e.flags.to_le_bytes());
            (e.ip.octets().to_vec(), v)
        })
        .collect();
    let def = MapDef::new(
        ENDPOINTS,
        MapType::Hash,
        4,
        EP_VALUE_SIZE,
        entries.len().max(1) as u32,
    );
    shared(def, MapScope::Node, entries)
}

/// `sluice_node`: the routing mode and the node's address; the ifindexes are the loader's.
pub fn node_contents(routing: Routing, ip: Ipv4Addr) -> MapContents {
    let mut v = vec![0u8; NODE_VALUE_SIZE as usize];
    let mode = match routing {
        Routing::Vxlan => MODE_VXLAN,
        Routing::Native => MODE_NATIVE,
    };
    v[NODE_MODE..NODE_MODE + 4].copy_from_slice(&mode.to_le_bytes());
    v[NODE_IP..NODE_IP + 4].copy_from_slice(&ip.octets());
    let def = MapDef::new(NODE, MapType::Array, 4, NODE_VALUE_SIZE, 1);
    shared(def, MapScope::Node, vec![(0u32.to_le_bytes().to_vec(), v)])
}

/// The key of `sluice_node_in`: the port map key (`keys::port_key`) with the table in front.
pub fn ingress_key(table: u32, port_key: &[u8]) -> Vec<u8> {
    let bits = u32::from_le_bytes(port_key[..4].try_into().expect("a port key")) + 32;
    let mut k = bits.to_le_bytes().to_vec();
    k.extend_from_slice(&table.to_le_bytes());
    k.extend_from_slice(&port_key[4..]);
    k
}

/// `sluice_node_in`: table `i + 1` is `tables[i]` (`None`: no entries), as the generic mode lays out a table
/// (one entry set per class), so the verdict is the generic mode's, which the differential
/// tests hold to the reference evaluator.
pub fn ingress_contents(tables: &[Option<&DecisionTable>]) -> MapContents {
    let mut entries = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let Some(t) = t else { continue };
        let mut one = Vec::new();
        for (c, p) in t.class_profile.iter().enumerate() {
            keys::profile_entries(c as u32 + 1, &t.profiles[*p as usize], &mut one);
        }
        entries.extend(
            one.into_iter()
                .map(|(k, v)| (ingress_key(i as u32 + 1, &k), v)),
        );
    }
    let def = MapDef::new(
        NODE_INGRESS,
        MapType::LpmTrie,
        NODE_INGRESS_KEY_SIZE,
        4,
        entries.len().max(1) as u32,
    );
    shared(def, MapScope::Generation, entries)
}
