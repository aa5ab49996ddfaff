//! The wire identity: what a node puts in the 24-bit VNI of a VXLAN packet, and how the
//! receiving node turns it back into the peer class its policy is decided over.
//!
//! The VNI is 24 bits. sluice's label identities (256 upward) and reserved identities
//! (1–10) fit; its CIDR identities are node-local and start at 2^24, so they never fit.
//! Cilium put whatever its ipcache held for a source into the tunnel id and the top byte of
//! a local identity was silently cut off, so the peer enforced the policy of an unrelated
//! identity (cilium/cilium#48257). Here [`wire_identity`] is the only way an identity
//! becomes a VNI: a node-local identity collapses to `world`, never to a truncated number.
//!
//! Label identities mean the same on every node because every node compiles the same
//! cluster inventory, and [`crate::resolve::identity::allocate`] numbers the sorted
//! distinct label sets of the *whole* inventory (not the node's own endpoints), so the
//! number depends on the inventory alone. `spec/datapath.md` ("Nodes") has the contract.
//!
//! The receiver knows an address's class (its ipcache) but the class also depends on the
//! source identity, which only the VNI carries when the receiver does not know the address.
//! [`wire_entries`] is the table `(VNI identity, ipcache class of the source) → class`:
//!
//! - the identity the receiver's own inventory gives the address: that class;
//! - an address the receiver knows only as `world` (a pod it has no record of, say in a
//!   remote pod CIDR) with a label identity: the class of that identity in the same CIDR
//!   region, when such a class exists;
//! - anything else (an identity the receiver cannot map, or one that contradicts what the
//!   receiver knows about the address) has no entry, and the packet is dropped.

use super::super::{MapContents, MapScope};
use crate::bpf::{MapDef, MapType};
use crate::plan::{ClassId, Classes};
use crate::resolve::identity::{self, LOCAL_IDENTITY_BASE};

/// The largest identity a VNI can carry.
pub const MAX_WIRE_IDENTITY: u32 = (1 << 24) - 1;

pub use sluice_bundle::abi::node::WIRE;

/// What goes into the VNI for a source of identity `id`: label and reserved identities as
/// they are, a node-local (CIDR) identity as `world`.
pub fn wire_identity(id: u32) -> u32 {
    if id >= LOCAL_IDENTITY_BASE || id > MAX_WIRE_IDENTITY {
        identity::WORLD
    } else {
        id
    }
}

/// One row of the receiver's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WireEntry {
    pub identity: u32,
    /// The class the receiver's ipcache gives the source address.
    pub addr_class: ClassId,
    /// The class the packet is decided as.
    pub class: ClassId,
}

/// The receiver's `(VNI identity, address class) → class` table (module doc), sorted.
pub fn wire_entries(classes: &Classes) -> Vec<WireEntry> {
    let mut out = Vec::new();
    for (c, key) in classes.iter() {
        if key.identity <= MAX_WIRE_IDENTITY {
            out.push(WireEntry {
                identity: key.identity,
                addr_class: c,
                class: c,
            });
        }
        if key.identity != identity::WORLD {
            continue;
        }
        // An address the receiver knows only as world: the VNI's label identity, in the
        // same CIDR region.
        for (other, okey) in classes.iter() {
            if okey.identity >= identity::FIRST_ENDPOINT_IDENTITY
                && okey.identity <= MAX_WIRE_IDENTITY
                && okey.cidr_identity == key.cidr_identity
            {
                out.push(WireEntry {
                    identity: okey.identity,
                    addr_class: c,
                    class: other,
                });
            }
        }
    }
    out.sort();
    out
}

/// The key of a row: `identity u32 | class u32`, little endian.
pub fn wire_key(identity: u32, addr_class: ClassId) -> Vec<u8> {
    let mut k = identity.to_le_bytes().to_vec();
    k.extend_from_slice(&addr_class.to_le_bytes());
    k
}

/// The map and its contents (generation scope: the same for every program of a node).
pub fn wire_contents(classes: &Classes) -> MapContents {
    let entries: Vec<(Vec<u8>, Vec<u8>)> = wire_entries(classes)
        .into_iter()
        .map(|e| {
            (
                wire_key(e.identity, e.addr_class),
                e.class.to_le_bytes().to_vec(),
            )
        })
        .collect();
    let def = MapDef::new(WIRE, MapType::Hash, 8, 4, entries.len().max(1) as u32);
    MapContents {
        name: WIRE.to_string(),
        def,
        scope: MapScope::Generation,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{self, Flow, FlowEnd};
    use crate::ir::L4Match;
    use crate::plan::DecisionTable;
    use crate::resolve::InventoryFiles;
    use crate::resolve::{Inventory, policy_for};
    use crate::source::{SourceMap, dsl};
    use sluice_policy::inventory::L4;
    use std::net::IpAddr;

    /// Two nodes; `b2` runs on n1 with `b`'s labels, and is what the sender knows.
    const CLUSTER: &str = "
nodes:
- {name: n1, ips: [192.168.10.11], pod_cidr: 10.1.1.0/24}
- {name: n2, ips: [192.168.10.12], pod_cidr: 10.1.2.0/24}
endpoints:
- {name: a, namespace: x, labels: {app: a}, ips: [10.1.2.10], node: n2}
- {name: b, namespace: x, labels: {app: b}, ips: [10.1.1.10], node: n1}
- {name: c, namespace: x, labels: {app: c}, ips: [10.1.1.11], node: n1}
- {name: b2, namespace: x, labels: {app: b}, ips: [10.1.1.12], node: n1}
";
    const POLICY: &str = r#"policy "p" in namespace x { select app = a
        ingress allow from pods { app = b } ports 80/tcp
        ingress allow from cidr 172.16.0.0/12 ports 81/tcp }"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    struct Node {
        inv: Inventory,
        ir: crate::ir::Ir,
        ids: crate::resolve::identity::Identities,
        classes: Classes,
    }

    fn node(inventory: &str, name: &str) -> Node {
        let mut sm = SourceMap::new();
        let id = sm.add("t.sluice", POLICY);
        let doc = dsl::parse(id, POLICY).unwrap();
        let (ir, d) = crate::ir::lower(&[doc]);
        assert!(!d.has_errors(), "{d:?}");
        let inv = Inventory::parse("inv", inventory).unwrap();
        let ids = identity::allocate(&inv, &ir);
        let classes = Classes::build(&inv, &ids, Some(name));
        Node {
            inv,
            ir,
            ids,
            classes,
        }
    }

    /// What the receiver decides for a packet to `a` from `src` carrying `vni`: `None` when
    /// the table has no row (dropped).
    fn receive(n: &Node, vni: u32, src: &str, port: u16) -> Option<bool> {
        let entries = wire_entries(&n.classes);
        let addr_class = n.classes.class_of_ip(ip(src)).unwrap();
        let row = entries
            .iter()
            .find(|e| e.identity == vni && e.addr_class == addr_class)?;
        let a = n.inv.endpoint_index("x", "a").unwrap();
        let p = policy_for(&n.ir, &n.inv, &n.ids, a);
        let t = DecisionTable::build(p.ingress.as_ref().unwrap(), &n.classes);
        Some(
            t.lookup(
                row.class,
                L4Match::Port {
                    proto: L4::Tcp,
                    port,
                },
            )
            .allow,
        )
    }

    #[test]
    fn label_and_reserved_identities_go_on_the_wire_local_ones_never() {
        assert_eq!(wire_identity(identity::HOST), identity::HOST);
        assert_eq!(wire_identity(256), 256);
        assert_eq!(wire_identity(MAX_WIRE_IDENTITY), MAX_WIRE_IDENTITY);
        // Cilium's bug: 0x01000001 truncated to 24 bits is 1, the host.
        assert_eq!(wire_identity(LOCAL_IDENTITY_BASE + 1), identity::WORLD);
        assert_eq!(wire_identity(u32::MAX), identity::WORLD);
        let n = node(CLUSTER, "n2");
        assert!(!n.ids.cidrs.is_empty());
        for id in n.ids.cidrs.values() {
            assert_eq!(wire_identity(*id), identity::WORLD, "{id:#x}");
        }
        for e in &n.ids.endpoints {
            assert_eq!(wire_identity(e.id), e.id);
        }
        // No row of the receiver's table is keyed by a local identity.
        assert!(
            wire_entries(&n.classes)
                .iter()
                .all(|e| e.identity <= MAX_WIRE_IDENTITY)
        );
    }

    /// Every node compiles the same inventory, so an identity number means the same labels
    /// on every node, whichever node compiles.
    #[test]
    fn identities_mean_the_same_on_every_node() {
        let (n1, n2) = (node(CLUSTER, "n1"), node(CLUSTER, "n2"));
        assert_eq!(n1.ids.of_endpoint, n2.ids.of_endpoint);
        for (x, y) in n1.ids.endpoints.iter().zip(&n2.ids.endpoints) {
            assert_eq!((x.id, &x.labels), (y.id, &y.labels));
        }
    }

    /// The receiver decides as the reference evaluator does on the sender's inventory, even
    /// when only the VNI says who the source is.
    #[test]
    fn the_vni_gives_the_receiver_the_source_identity() {
        let sender = node(CLUSTER, "n1");
        let b = sender.inv.endpoint_index("x", "b").unwrap();
        let c = sender.inv.endpoint_index("x", "c").unwrap();
        let (id_b, id_c) = (sender.ids.of_endpoint[b], sender.ids.of_endpoint[c]);
        // The receiver does not know b2 (its inventory lags): its address is world there.
        let lagging = CLUSTER.replace(
            "- {name: b2, namespace: x, labels: {app: b}, ips: [10.1.1.12], node: n1}\n",
            "",
        );
        let receiver = node(&lagging, "n2");
        assert_eq!(receiver.ids.of_endpoint[b], id_b, "same numbers");
        let world_class = receiver.classes.class_of_ip(ip("10.1.1.12")).unwrap();
        assert_eq!(receiver.classes.key(world_class).identity, identity::WORLD);
        let truth = |src: &str, port: u16| {
            let flow = Flow {
                src: FlowEnd::Ip(ip(src)),
                dst: FlowEnd::Endpoint(sender.inv.endpoint_index("x", "a").unwrap()),
                l4: L4Match::Port {
                    proto: L4::Tcp,
                    port,
                },
            };
            eval::evaluate(&sender.ir, &sender.inv, &flow)
                .unwrap()
                .allow
        };
        for (vni, src) in [
            (id_b, "10.1.1.10"),
            (id_c, "10.1.1.11"),
            (id_b, "10.1.1.12"),
        ] {
            for port in [80, 81, 443] {
                assert_eq!(
                    receive(&receiver, vni, src, port),
                    Some(truth(src, port)),
                    "{vni} from {src}:{port}"
                );
            }
        }
        // Only the VNI made b2 allowed: as world it is not.
        assert_eq!(
            receive(&receiver, identity::WORLD, "10.1.1.12", 80),
            Some(false)
        );
        assert_eq!(receive(&receiver, id_b, "10.1.1.12", 80), Some(true));
        // An identity that contradicts the receiver's record of the address, a truncated
        // local identity, or one the receiver never allocated: no row, dropped.
        assert_eq!(receive(&receiver, id_b, "10.1.1.11", 80), None);
        assert_eq!(
            receive(&receiver, LOCAL_IDENTITY_BASE + 1, "10.1.1.12", 80),
            None
        );
        assert_eq!(receive(&receiver, 0xabcdef, "10.1.1.12", 80), None);
    }
}
