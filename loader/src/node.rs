//! Completing the node maps: the fields of `sluice_eps` and `sluice_node` that only
//! the node knows when it loads (interface indexes, MAC addresses). The bundle carries them
//! zeroed, with each endpoint's slot where its ifindex goes (`spec/datapath.md`, "Node
//! maps"); these functions put the node's values in, before the maps are filled.

use sluice_bundle::abi::node::*;
use sluice_bundle::map::{MapContents, MapScope};
use sluice_bundle::{Bundle, EndpointRef, SharedMap};
use std::collections::{BTreeMap, BTreeSet};

/// What the node knows about one attached endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointLink {
    /// The host-side veth's ifindex in the node netns.
    pub ifindex: u32,
    /// The pod's `eth0` MAC.
    pub pod_mac: [u8; 6],
    /// The host-side veth's MAC.
    pub host_mac: [u8; 6],
}

/// Why a node map cannot be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeMapError {
    #[error("`{map}`: an entry of {got} bytes, the layout has {want}")]
    Layout { map: String, got: usize, want: u32 },
    #[error("`{ENDPOINTS}`: slot {0} names no attached endpoint")]
    UnknownSlot(u32),
    #[error("`{0}` has the node scope, but this loader does not know how to complete it")]
    Unknown(String),
}

fn check(map: &MapContents, want: u32) -> Result<(), NodeMapError> {
    match map.entries.iter().find(|(_, v)| v.len() != want as usize) {
        Some((_, v)) => Err(NodeMapError::Layout {
            map: map.name.clone(),
            got: v.len(),
            want,
        }),
        None => Ok(()),
    }
}

/// Replaces each entry's slot by its endpoint's ifindex and fills both MACs. `links[s - 1]`
/// is slot `s` (`None`: not found on this node, the entry keeps ifindex 0 and the
/// datapath leaves its packets to the host stack).
pub fn complete_endpoints(
    map: &mut MapContents,
    links: &[Option<EndpointLink>],
) -> Result<(), NodeMapError> {
    check(map, EP_VALUE_SIZE)?;
    for (_, v) in &mut map.entries {
        let slot = u32::from_le_bytes(v[EP_IFINDEX..EP_IFINDEX + 4].try_into().expect("4"));
        let link = match slot {
            0 => None,
            s => *links
                .get(s as usize - 1)
                .ok_or(NodeMapError::UnknownSlot(s))?,
        };
        let link = link.unwrap_or(EndpointLink {
            ifindex: 0,
            pod_mac: [0; 6],
            host_mac: [0; 6],
        });
        v[EP_IFINDEX..EP_IFINDEX + 4].copy_from_slice(&link.ifindex.to_le_bytes());
        v[EP_POD_MAC..EP_POD_MAC + 6].copy_from_slice(&link.pod_mac);
        v[EP_HOST_MAC..EP_HOST_MAC + 6].copy_from_slice(&link.host_mac);
    }
    Ok(())
}

/// Fills the VXLAN device's and the uplink's ifindex (0: none on this node).
pub fn complete_node(map: &mut MapContents, vxlan: u32, uplink: u32) -> Result<(), NodeMapError> {
    check(map, NODE_VALUE_SIZE)?;
    for (_, v) in &mut map.entries {
        v[NODE_VXLAN_IFINDEX..NODE_VXLAN_IFINDEX + 4].copy_from_slice(&vxlan.to_le_bytes());
        v[NODE_UPLINK_IFINDEX..NODE_UPLINK_IFINDEX + 4].copy_from_slice(&uplink.to_le_bytes());
    }
    Ok(())
}

/// The bundle's `node`-scope shared maps completed for this node. `links` holds what the
/// node found for each attached endpoint (`None`, or absent: not deliverable here); slots
/// are the bundle's attached endpoints (not the node's own devices) in sorted order, as the
/// compiler numbered them.
pub fn complete_shared(
    bundle: &Bundle,
    links: &BTreeMap<EndpointRef, Option<EndpointLink>>,
    vxlan: u32,
    uplink: u32,
) -> Result<Vec<SharedMap>, NodeMapError> {
    let slots: BTreeSet<&EndpointRef> = bundle
        .attachments
        .iter()
        .map(|a| &a.endpoint)
        .filter(|e| e.namespace != DEVICE_NAMESPACE)
        .collect();
    let by_slot: Vec<Option<EndpointLink>> = slots
        .iter()
        .map(|e| links.get(*e).copied().flatten())
        .collect();
    let mut out = Vec::new();
    for m in bundle
        .shared_maps
        .iter()
        .filter(|m| m.scope == MapScope::Node)
    {
        let mut c = MapContents {
            name: m.def.name.clone(),
            def: m.def.clone(),
            scope: m.scope,
            entries: m.entries.clone(),
        };
        match m.def.name.as_str() {
            ENDPOINTS => complete_endpoints(&mut c, &by_slot)?,
            NODE => complete_node(&mut c, vxlan, uplink)?,
            other => return Err(NodeMapError::Unknown(other.to_owned())),
        }
        out.push(SharedMap {
            entries: c.entries,
            ..m.clone()
        });
    }
    Ok(out)
}
