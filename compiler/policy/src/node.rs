//! The node configuration: what one node needs to know to run the datapath (`spec/node.md`).
//!
//! Its name, address and network, the uplink it masquerades on, its pod CIDR, how pod traffic
//! reaches other nodes (VXLAN or native routing), the other nodes (peers), and where the
//! masquerade exclusions come from. The compiler reads and checks the file
//! (`sluice_compiler::node`, located diagnostics); the types live here, next to the inventory,
//! so the compiler, the bundle and the loader share one definition.
//!
//! IPv4 only: the node datapath (VXLAN, native routing, SNAT) is IPv4, as the lab is.

use crate::ast::Cidr;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};
use serde::{Deserialize, Serialize};

/// The Linux VXLAN port (Cilium's and flannel's default), not IANA's 4789.
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
pub const DEFAULT_MTU: u32 = 1500;
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const VXLAN_OVERHEAD: u32 = 50;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name; peers and the inventory's `nodes` use the same names.
    pub name: String,
    /// The node IP: the uplink's address, the SNAT source and the tunnel endpoint.
    pub ip: Ipv4Addr,
    /// The node network: the uplink's subnet, which must hold `ip`.
    pub network: Cidr,
    /// The uplink interface (traffic to the network and other nodes leaves here).
    pub uplink: String,
    /// This node's pod addresses.
    pub pod_cidr: Cidr,
    #[serde(default)]
    pub routing: Routing,
    /// UDP destination port of the VXLAN device.
    #[serde(default = "default_vxlan_port")]
    pub vxlan_port: u16,
    /// The uplink's MTU; routes through the tunnel get `mtu - 50`.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub masquerade: MasqueradeSources,
}

/// How pod traffic reaches a pod on another node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// Encapsulated to the peer's node IP, the source identity in the VNI.
    #[default]
    Vxlan,
    /// Routed as is: a route per peer pod CIDR via the peer's node IP.
    Native,
}

/// Another node of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Cidr,
}

/// Whether pod traffic leaving the cluster is SNATed, and where the exclusions come from. With
/// neither source, only link-local destinations are excluded (spec/node.md, "Masquerade").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasqueradeSources {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A `.sluice` file whose `masquerade` blocks list exclusions (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// An ip-masq-agent config file, read unchanged; an absent or empty file means the
    /// agent's 11 default CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_masq_agent: Option<String>,
}

impl Default for MasqueradeSources {
    fn default() -> MasqueradeSources {
        MasqueradeSources {
            enabled: true,
            policy: None,
            ip_masq_agent: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_vxlan_port() -> u16 {
    DEFAULT_VXLAN_PORT
}
fn default_mtu() -> u32 {
    DEFAULT_MTU
}

impl NodeConfig {
    /// The MTU of routes through the tunnel (VXLAN) or of pod routes (native).
    pub fn pod_mtu(&self) -> u32 {
        match self.routing {
            Routing::Vxlan => self.mtu.saturating_sub(VXLAN_OVERHEAD),
            Routing::Native => self.mtu,
        }
    }

    /// The peer whose pod CIDR holds `ip`.
    pub fn peer_for_pod(&self, ip: IpAddr) -> Option<&Peer> {
        self.peers.iter().find(|p| p.pod_cidr.contains(ip))
    }

    /// Every node IP of the cluster, this node's first.
    pub fn node_ips(&self) -> Vec<Ipv4Addr> {
        core::iter::once(self.ip)
            .chain(self.peers.iter().map(|p| p.ip))
            .collect()
    }
}
