//! The node datapath: what moves packets between pods, nodes and the outside, generated in
//! the same compilation as the policy and flipped in the same generation.
//!
//! Kept apart from the per-endpoint policy programs (`from_ep`, `to_ep`), which it builds on:
//! [`wire`] decides what identity goes into a VXLAN packet and how a receiver maps it back;
//! [`maps`] fills the node's maps; [`forward`] is what a from-pod program does after the
//! pod's egress verdict; [`deliver`] hands a packet to a local pod after its ingress
//! policy; [`overlay`] builds the programs of the node's own devices. [`compile_node`]
//! puts them together; [`nat`] is masquerade (SNAT at `forward`'s exit to the outside,
//! reverse NAT on the uplink). `spec/datapath.md` ("Nodes", "Masquerade") is the contract.

pub mod deliver;
pub mod forward;
pub mod maps;
pub mod nat;
pub mod overlay;
pub mod wire;

/// The node configuration is `spec/node.md`'s (read and checked by `crate::node`).
pub use sluice_policy::node::{NodeConfig, Routing};

/// The device a node program attaches to, with its role: `from_overlay` the VXLAN device,
/// `from_netdev` the uplink.
pub fn device<'c>(cfg: &'c NodeConfig, program: &str) -> (&'static str, &'c str) {
    use sluice_bundle::abi::node::{UPLINK_DEVICE, VXLAN_DEVICE, VXLAN_IFNAME};
    if program == overlay::Device::Overlay.program_name() {
        (VXLAN_DEVICE, VXLAN_IFNAME)
    } else {
        (UPLINK_DEVICE, cfg.uplink.as_str())
    }
}

/// A node configuration that agrees with the inventory: the node's first IPv4 address and
/// pod CIDR, and every other node with both as a peer (`None` when the node lacks either).
/// What a test or a tool that has only the inventory compiles with.
pub fn config_from_inventory(
    inv: &Inventory,
    node: &str,
    network: sluice_policy::ast::Cidr,
    uplink: &str,
    routing: Routing,
) -> Option<NodeConfig> {
    let of = |name: &str| -> Option<sluice_policy::node::Peer> {
        let n = inv.nodes.iter().find(|n| n.name == name)?;
        Some(sluice_policy::node::Peer {
            name: name.to_owned(),
            ip: crate::plan::classes::node_ipv4(inv, name)?,
            pod_cidr: n.pod_cidr?,
        })
    };
    let me = of(node)?;
    Some(NodeConfig {
        name: me.name,
        ip: me.ip,
        network,
        uplink: uplink.to_owned(),
        pod_cidr: me.pod_cidr,
        routing,
        vxlan_port: sluice_policy::node::DEFAULT_VXLAN_PORT,
        mtu: sluice_policy::node::DEFAULT_MTU,
        peers: inv
            .nodes
            .iter()
            .filter(|n| n.name != node)
            .filter_map(|n| of(&n.name))
            .collect(),
        masquerade: sluice_policy::node::MasqueradeSources::default(),
    })
}

use super::MapContents;
use crate::masq::MasqPlan;
use crate::plan::{Classes, DecisionTable};
use crate::resolve::Inventory;
use crate::resolve::identity::Identities;
use maps::LocalEndpoint;
use sluice_bundle::EndpointRef;
use std::net::IpAddr;

/// Why the node datapath cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("the node configuration is for node `{config}`, the compilation for `{node}`")]
    OtherNode { config: String, node: String },
    #[error(
        "the inventory says node `{name}` is at {inventory:?} with pod CIDR {inventory_cidr:?}, \
         the node configuration says {config} with {config_cidr}"
    )]
    Disagree {
        name: String,
        inventory: Option<std::net::Ipv4Addr>,
        inventory_cidr: Option<String>,
        config: std::net::Ipv4Addr,
        config_cidr: String,
    },
    #[error(transparent)]
    Codegen(#[from] super::DatapathError),
}

/// A node's datapath as generated: its maps, the from-pod program of every distinct
/// program pair (replacing that pair's `from_ep`), and the programs of its own devices.
#[derive(Clone, Debug)]
pub struct NodeDatapath {
    pub maps: NodeMaps,
    pub from_pod: Vec<super::ProgramArtifact>,
    /// `from_overlay` (VXLAN) and `from_netdev` (native routing, or VXLAN with masquerade:
    /// the reverse NAT).
    pub devices: Vec<super::ProgramArtifact>,
}

/// Generates the node datapath (see [`node_maps`] for the arguments; `tables[d]` also holds
/// the egress table of pair `d`).
#[allow(clippy::too_many_arguments)]
pub fn compile_node(
    inv: &Inventory,
    ids: &Identities,
    classes: &Classes,
    node: &str,
    cfg: &NodeConfig,
    selected: &[usize],
    distinct_of: &[usize],
    tables: &[(Option<DecisionTable>, Option<DecisionTable>, bool)],
    opts: &super::CodegenOptions,
    masq: &MasqPlan,
) -> Result<NodeDatapath, NodeError> {
    let ingress: Vec<(Option<DecisionTable>, bool)> =
        tables.iter().map(|(i, _, ct)| (i.clone(), *ct)).collect();
    let maps = node_maps(
        inv,
        ids,
        classes,
        node,
        cfg,
        selected,
        distinct_of,
        &ingress,
        masq,
    )?;
    let mut from_pod = Vec::with_capacity(tables.len());
    for (_, egress, ct) in tables {
        from_pod.push(super::program::compile_program_with(
            super::TcxHook::Ingress,
            egress.as_ref(),
            &[],
            classes,
            opts,
            *ct,
            Some(&maps),
        )?);
    }
    let mut devices = Vec::with_capacity(2);
    if cfg.routing == Routing::Vxlan {
        devices.push(overlay::compile(overlay::Device::Overlay, &maps)?);
    }
    if cfg.routing == Routing::Native || masq.enabled {
        devices.push(overlay::compile(overlay::Device::Uplink, &maps)?);
    }
    Ok(NodeDatapath {
        maps,
        from_pod,
        devices,
    })
}

/// The maps of one node's programs (one compilation: the same in every program).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeMaps {
    pub ipcache: MapContents,
    pub endpoints: MapContents,
    pub node: MapContents,
    pub ingress: MapContents,
    pub wire: MapContents,
    /// The masquerade exclusions (`nat::exclusions_contents`).
    pub excluded: MapContents,
    /// What the SNAT is generated from.
    pub masq: MasqPlan,
}

impl NodeMaps {
    /// The per-generation maps (the bundle's shared maps).
    pub fn all(&self) -> Vec<MapContents> {
        vec![
            self.ipcache.clone(),
            self.endpoints.clone(),
            self.node.clone(),
            self.ingress.clone(),
            self.wire.clone(),
            self.excluded.clone(),
        ]
    }

    /// The maps shared across generations the node programs also use: NAT and its counters
    /// when masquerade is on.
    pub fn persistent(&self) -> Vec<MapContents> {
        if self.masq.enabled {
            vec![nat::nat_map(), nat::stats_map()]
        } else {
            Vec::new()
        }
    }
}

/// The node's maps: the ipcache (with each remote prefix's node), local endpoints, the node, every local ingress decision, and the wire
/// table. `selected` are the inventory indexes of the node's endpoints, `distinct_of[i]`
/// which distinct program pair `selected[i]` runs, and `tables[d]` that pair's ingress
/// table and whether it tracks flows.
#[allow(clippy::too_many_arguments)]
pub fn node_maps(
    inv: &Inventory,
    ids: &Identities,
    classes: &Classes,
    node: &str,
    cfg: &NodeConfig,
    selected: &[usize],
    distinct_of: &[usize],
    tables: &[(Option<DecisionTable>, bool)],
    masq: &MasqPlan,
) -> Result<NodeMaps, NodeError> {
    if cfg.name != node {
        return Err(NodeError::OtherNode {
            config: cfg.name.clone(),
            node: node.to_owned(),
        });
    }
    // The ipcache places remote pods by the inventory; the configuration must agree.
    let me = sluice_policy::node::Peer {
        name: cfg.name.clone(),
        ip: cfg.ip,
        pod_cidr: cfg.pod_cidr,
    };
    for p in std::iter::once(&me).chain(&cfg.peers) {
        let n = inv.nodes.iter().find(|n| n.name == p.name);
        let ip = crate::plan::classes::node_ipv4(inv, &p.name);
        let cidr = n.and_then(|n| n.pod_cidr);
        if ip != Some(p.ip) || cidr.is_some_and(|c| c != p.pod_cidr) {
            return Err(NodeError::Disagree {
                name: p.name.clone(),
                inventory: ip,
                inventory_cidr: cidr.map(|c| c.to_string()),
                config: p.ip,
                config_cidr: p.pod_cidr.to_string(),
            });
        }
    }
    let ip = cfg.ip;
    // Slots: the bundle's attached endpoints, sorted as the bundle sorts them.
    let mut attached: Vec<EndpointRef> = selected
        .iter()
        .map(|&e| &inv.endpoints[e])
        .filter(|ep| ep.interface.is_some() || ep.netns.is_some())
        .map(|ep| EndpointRef {
            namespace: ep.namespace.clone(),
            name: ep.name.clone(),
        })
        .collect();
    attached.sort();
    let mut locals = Vec::new();
    for (&e, &d) in selected.iter().zip(distinct_of) {
        let ep = &inv.endpoints[e];
        let me = EndpointRef {
            namespace: ep.namespace.clone(),
            name: ep.name.clone(),
        };
        let slot = attached.binary_search(&me).map_or(0, |i| i as u32 + 1);
        let (ingress, conntrack) = &tables[d];
        for a in &ep.ips {
            let IpAddr::V4(a) = a else { continue };
            locals.push(LocalEndpoint {
                ip: *a,
                slot,
                identity: ids.of_endpoint[e],
                table: if ingress.is_some() { d as u32 + 1 } else { 0 },
                flags: maps::ep_flags(ingress.as_ref(), *conntrack),
            });
        }
    }
    let refs: Vec<Option<&DecisionTable>> = tables.iter().map(|(t, _)| t.as_ref()).collect();
    Ok(NodeMaps {
        ipcache: super::decide::ipcache_contents(classes),
        endpoints: maps::endpoints_contents(&locals),
        node: maps::node_contents(cfg.routing, ip),
        ingress: maps::ingress_contents(&refs),
        wire: wire::wire_contents(classes),
        excluded: nat::exclusions_contents(masq),
        masq: masq.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{CompileOptions, check_documents, compile};
    use crate::datapath::{CodegenOptions, Mode};
    use crate::resolve::InventoryFiles;
    use crate::source::SourceMap;
    use sluice_bundle::SharedMap;
    use sluice_bundle::abi::node::*;
    use sluice_bundle::map::MapScope;

    const POLICY: &str = r#"policy "web" in namespace shop {
  select app = web
  ingress allow from pods { app = lb } ports 80/tcp
}
"#;
    const INVENTORY: &str = r#"
nodes:
- {name: n1, ips: [192.168.10.11], pod_cidr: 10.0.0.0/24}
- {name: n2, ips: [192.168.10.12], pod_cidr: 10.0.1.0/24}
endpoints:
- {name: web-2, namespace: shop, labels: {app: web}, ips: [10.0.0.2], node: n1, netns: web2}
- {name: web-1, namespace: shop, labels: {app: web}, ips: [10.0.0.1], node: n1, interface: v-web1}
- {name: lb-1, namespace: shop, labels: {app: lb}, ips: [10.0.1.3], node: n2, netns: lb1}
"#;

    fn build(node: &str, mode: Mode) -> sluice_bundle::Bundle {
        let mut sm = SourceMap::new();
        let id = sm.add("web.sluice", POLICY);
        let doc = crate::source::dsl::parse(id, POLICY).unwrap();
        let inv = Inventory::parse("inv.yaml", INVENTORY).unwrap();
        let checked = check_documents(&[doc], Some(&inv));
        let net = "192.168.10.0/24".parse().unwrap();
        let cfg = config_from_inventory(&inv, node, net, "eth0", Routing::Vxlan).unwrap();
        let opts = CompileOptions {
            codegen: CodegenOptions {
                mode,
                ..CodegenOptions::default()
            },
            node: Some(node.into()),
            datapath: Some(cfg),
            masquerade: Vec::new(),
        };
        compile(&checked.ir, &inv, &sm, &[], &opts, &mut |_| {})
            .unwrap()
            .bundle
    }

    fn map<'b>(b: &'b sluice_bundle::Bundle, name: &str) -> &'b SharedMap {
        b.shared_maps.iter().find(|m| m.def.name == name).unwrap()
    }

    fn u32_at(v: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(v[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn the_bundle_carries_the_node_maps_with_their_scopes() {
        let b = build("n1", Mode::Specialized);
        let eps = map(&b, ENDPOINTS);
        assert_eq!(eps.scope, MapScope::Node);
        assert_eq!(map(&b, NODE).scope, MapScope::Node);
        assert_eq!(map(&b, NODE_INGRESS).scope, MapScope::Generation);
        assert_eq!(map(&b, WIRE).scope, MapScope::Generation);
        // Both local pods, by address; slots follow the bundle's endpoint order.
        let rows: Vec<(Vec<u8>, u32, u32, u32, u32)> = eps
            .entries
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    u32_at(v, EP_IFINDEX),
                    u32_at(v, EP_IDENTITY),
                    u32_at(v, EP_TABLE),
                    u32_at(v, EP_FLAGS),
                )
            })
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0.as_slice(), rows[0].1), (&[10, 0, 0, 1][..], 1));
        assert_eq!((rows[1].0.as_slice(), rows[1].1), (&[10, 0, 0, 2][..], 2));
        assert_eq!(rows[0].2, rows[1].2, "one identity for one label set");
        assert!(rows[0].2 >= 256);
        assert_ne!(rows[0].3, 0);
        assert_eq!(rows[0].4, EP_ENFORCED | EP_CONNTRACK | EP_CAN_DENY);
        assert!(
            eps.entries
                .iter()
                .all(|(_, v)| v[EP_POD_MAC..].iter().all(|b| *b == 0))
        );
        // The node: VXLAN, its own address.
        let (_, v) = &map(&b, NODE).entries[0];
        assert_eq!(u32_at(v, NODE_MODE), MODE_VXLAN);
        assert_eq!(&v[NODE_IP..NODE_IP + 4], &[192, 168, 10, 11]);
        // The ipcache sends lb-1 and n2's pod CIDR to n2.
        let ipc = map(&b, crate::datapath::keys::IPCACHE);
        let tunnel = |prefix: u32, addr: [u8; 4]| {
            let mut k = prefix.to_le_bytes().to_vec();
            k.extend_from_slice(&addr);
            let (_, v) = ipc.entries.iter().find(|(kk, _)| *kk == k).unwrap();
            v[4..8].to_vec()
        };
        assert_eq!(tunnel(32, [10, 0, 1, 3]), [192, 168, 10, 12]);
        assert_eq!(tunnel(24, [10, 0, 1, 0]), [192, 168, 10, 12]);
        assert_eq!(tunnel(32, [10, 0, 0, 1]), [0; 4]);
    }

    /// The node's ingress decision is the generic mode's table, entry for entry, under the
    /// endpoint's table number.
    #[test]
    fn node_ingress_is_the_generic_table() {
        let b = build("n1", Mode::Generic);
        let to_ep = b.artifacts.values().find(|a| a.program == "to_ep").unwrap();
        let generic = &to_ep
            .maps
            .iter()
            .find(|m| m.name == crate::datapath::keys::POLICY)
            .unwrap()
            .entries;
        let table = u32_at(&map(&b, ENDPOINTS).entries[0].1, EP_TABLE);
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = generic
            .iter()
            .map(|(k, v)| (maps::ingress_key(table, k), v.clone()))
            .collect();
        want.sort();
        let got: Vec<_> = map(&b, NODE_INGRESS)
            .entries
            .iter()
            .filter(|(k, _)| u32_at(k, 4) == table)
            .cloned()
            .collect();
        assert!(!got.is_empty());
        assert_eq!(got, want);
    }

    /// Masquerade on (the default): the NAT table and its counters are persistent maps
    /// pinned by name, the exclusions a generation map holding the plan's prefixes, and the
    /// uplink gets `from_netdev` in VXLAN mode too; off: none of it.
    #[test]
    fn masquerade_maps_and_programs() {
        let b = build("n1", Mode::Specialized);
        let nat = map(&b, NAT);
        assert_eq!(
            (nat.scope, nat.pin.as_deref(), nat.def.ty),
            (
                MapScope::Persistent,
                Some("nat"),
                crate::bpf::MapType::LruHash
            )
        );
        assert!(nat.entries.is_empty());
        assert_eq!(map(&b, NAT_STATS).pin.as_deref(), Some("nat_cnt"));
        let excl = map(&b, MASQ_EXCLUDED);
        assert_eq!(excl.scope, MapScope::Generation);
        // No exclusion source: only link-local (IPv4) is excluded.
        let mut k = 16u32.to_ne_bytes().to_vec();
        k.extend_from_slice(&[169, 254, 0, 0]);
        assert_eq!(excl.entries, vec![(k, 1u32.to_le_bytes().to_vec())]);
        let programs: Vec<&str> = b.artifacts.values().map(|a| a.program.as_str()).collect();
        assert!(programs.contains(&"from_overlay") && programs.contains(&"from_netdev"));

        // Off: no NAT maps, no uplink program under VXLAN.
        let mut sm = SourceMap::new();
        let id = sm.add("web.sluice", POLICY);
        let doc = crate::source::dsl::parse(id, POLICY).unwrap();
        let inv = Inventory::parse("inv.yaml", INVENTORY).unwrap();
        let checked = check_documents(&[doc], Some(&inv));
        let net = "192.168.10.0/24".parse().unwrap();
        let mut cfg = config_from_inventory(&inv, "n1", net, "eth0", Routing::Vxlan).unwrap();
        cfg.masquerade.enabled = false;
        let opts = CompileOptions {
            node: Some("n1".into()),
            datapath: Some(cfg),
            ..CompileOptions::default()
        };
        let off = compile(&checked.ir, &inv, &sm, &[], &opts, &mut |_| {})
            .unwrap()
            .bundle;
        assert!(!off.shared_maps.iter().any(|m| m.def.name == NAT));
        assert!(!off.artifacts.values().any(|a| a.program == "from_netdev"));
    }

    /// The node configuration and the inventory must place the nodes alike.
    #[test]
    fn a_configuration_that_disagrees_with_the_inventory_is_refused() {
        let mut sm = SourceMap::new();
        let id = sm.add("web.sluice", POLICY);
        let doc = crate::source::dsl::parse(id, POLICY).unwrap();
        let inv = Inventory::parse("inv.yaml", INVENTORY).unwrap();
        let checked = check_documents(&[doc], Some(&inv));
        let net = "192.168.10.0/24".parse().unwrap();
        let mut cfg = config_from_inventory(&inv, "n1", net, "eth0", Routing::Vxlan).unwrap();
        cfg.peers[0].pod_cidr = "10.0.9.0/24".parse().unwrap();
        let opts = CompileOptions {
            node: Some("n1".into()),
            datapath: Some(cfg.clone()),
            ..CompileOptions::default()
        };
        let e = compile(&checked.ir, &inv, &sm, &[], &opts, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("node `n2` is at"), "{e}");
        let opts = CompileOptions {
            node: Some("n2".into()),
            datapath: Some(cfg),
            ..CompileOptions::default()
        };
        let e = compile(&checked.ir, &inv, &sm, &[], &opts, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("for node `n1`"), "{e}");
    }
}
