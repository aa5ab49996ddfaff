//! Numeric identities, allocated as Cilium does.
//!
//! Every distinct set of identity-relevant labels (an endpoint's labels, its namespace's name
//! and labels) gets one number, so policy is a decision over numbers, not per-address. The
//! numbers are deterministic: label sets are sorted and numbered from
//! [`FIRST_ENDPOINT_IDENTITY`], so the same inventory always gives the same numbers (and the
//! same bundle bytes).
//!
//! Reserved identities are Cilium's (`pkg/identity/numericidentity.go`):
//!
//! | id | name | who |
//! | --- | --- | --- |
//! | 0 | unknown | no identity yet |
//! | 1 | host | the local node |
//! | 2 | world | anything outside the cluster |
//! | 3 | unmanaged | endpoints sluice does not manage |
//! | 4 | health | the agent's health endpoint |
//! | 5 | init | endpoints whose labels are not known yet |
//! | 6 | remote-node | other nodes of the cluster |
//! | 7 | kube-apiserver | the API server |
//! | 8 | ingress | the ingress proxy |
//! | 9 | world-ipv4 | world, IPv4 only (dual-stack split) |
//! | 10 | world-ipv6 | world, IPv6 only |
//!
//! CIDR peers get *local* identities (Cilium's local scope, `1 << 24` upward): one per distinct
//! prefix named by any rule (blocks and excepts). A longest-prefix lookup of an address in
//! [`Identities::cidrs`] gives the most specific prefix containing it, and a rule's CIDR peers
//! match iff that prefix's identity is in the rule's set (see `resolve::ResolvedPeers`).

use super::inventory::{Inventory, Labels};
use crate::ir::{Ir, PeerKind};
use crate::source::ast::Cidr;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub const UNKNOWN: u32 = 0;
pub const HOST: u32 = 1;
pub const WORLD: u32 = 2;
pub const UNMANAGED: u32 = 3;
pub const HEALTH: u32 = 4;
pub const INIT: u32 = 5;
pub const REMOTE_NODE: u32 = 6;
pub const KUBE_APISERVER: u32 = 7;
pub const INGRESS: u32 = 8;
pub const WORLD_IPV4: u32 = 9;
pub const WORLD_IPV6: u32 = 10;

/// Endpoint identities start here (Cilium's cluster-local minimum).
pub const FIRST_ENDPOINT_IDENTITY: u32 = 256;
/// CIDR (local-scope) identities start above this, as in Cilium.
pub const LOCAL_IDENTITY_BASE: u32 = 1 << 24;

/// The label an identity carries for its namespace's name.
pub const POD_NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";
/// The prefix namespace labels carry inside an identity.
pub const NAMESPACE_LABELS_PREFIX: &str = "k8s:io.cilium.k8s.namespace.labels.";

/// One endpoint identity and what it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityInfo {
    pub id: u32,
    /// The identity's labels, in Cilium's source-prefixed form (`k8s:app=web`).
    pub labels: Labels,
    pub namespace: String,
    pub namespace_labels: Labels,
    pub pod_labels: Labels,
}

#[derive(Clone, Debug, Default)]
pub struct Identities {
    /// Endpoint identities, ascending.
    pub endpoints: Vec<IdentityInfo>,
    /// Identity of each inventory endpoint, by endpoint index.
    pub of_endpoint: Vec<u32>,
    /// Local identity of every prefix that a CIDR peer names (block or except).
    pub cidrs: BTreeMap<Cidr, u32>,
}

/// Cilium's identity label set for an endpoint.
pub fn identity_labels(namespace: &str, ns_labels: &Labels, pod_labels: &Labels) -> Labels {
    let mut l = Labels::new();
    for (k, v) in pod_labels {
        l.insert(format!("k8s:{k}"), v.clone());
    }
    for (k, v) in ns_labels {
        l.insert(format!("{NAMESPACE_LABELS_PREFIX}{k}"), v.clone());
    }
    l.insert(POD_NAMESPACE_LABEL.into(), namespace.into());
    l
}

/// Allocates identities for every endpoint of the inventory and every CIDR of the IR.
pub fn allocate(inv: &Inventory, ir: &Ir) -> Identities {
    let empty = Labels::new();
    let sets: Vec<(Labels, &str, &Labels, &Labels)> = inv
        .endpoints
        .iter()
        .map(|ep| {
            let ns_labels = inv.namespace_labels(&ep.namespace).unwrap_or(&empty);
            (
                identity_labels(&ep.namespace, ns_labels, &ep.labels),
                ep.namespace.as_str(),
                ns_labels,
                &ep.labels,
            )
        })
        .collect();
    // Sorted distinct label sets → dense numbers.
    let distinct: BTreeSet<&Labels> = sets.iter().map(|s| &s.0).collect();
    let number: BTreeMap<&Labels, u32> = distinct
        .iter()
        .enumerate()
        .map(|(i, l)| (*l, FIRST_ENDPOINT_IDENTITY + i as u32))
        .collect();
    let mut endpoints: Vec<IdentityInfo> = Vec::new();
    for (labels, ns, ns_labels, pod_labels) in &sets {
        let id = number[labels];
        if !endpoints.iter().any(|e| e.id == id) {
            endpoints.push(IdentityInfo {
                id,
                labels: labels.clone(),
                namespace: ns.to_string(),
                namespace_labels: (*ns_labels).clone(),
                pod_labels: (*pod_labels).clone(),
            });
        }
    }
    endpoints.sort_by_key(|e| e.id);
    let of_endpoint = sets.iter().map(|s| number[&s.0]).collect();

    let mut prefixes = BTreeSet::new();
    for (_, p) in ir.peers.iter() {
        if let PeerKind::Cidr { cidr, except } = &p.kind {
            prefixes.insert(*cidr);
            prefixes.extend(except.iter().copied());
        }
    }
    let cidrs = prefixes
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, LOCAL_IDENTITY_BASE + 1 + i as u32))
        .collect();
    Identities {
        endpoints,
        of_endpoint,
        cidrs,
    }
}

impl Identities {
    /// The identity of a remote address as the datapath's ipcache gives it: an endpoint's
    /// identity, `host` for the local node, `remote-node` for other nodes, else `world`.
    /// `local_node` is the node of the endpoint asking (`None`: every node is local).
    pub fn of_ip(&self, inv: &Inventory, ip: IpAddr, local_node: Option<&str>) -> u32 {
        if let Some(idx) = inv.endpoint_by_ip(ip) {
            return self.of_endpoint[idx];
        }
        if let Some(n) = inv.node_by_ip(ip) {
            return match local_node {
                Some(local) if local != n.name => REMOTE_NODE,
                _ => HOST,
            };
        }
        WORLD
    }

    /// The local identity of the most specific CIDR prefix containing `ip`, if any.
    pub fn cidr_of_ip(&self, ip: IpAddr) -> Option<u32> {
        self.cidrs
            .iter()
            .filter(|(c, _)| c.contains(ip))
            .max_by_key(|(c, _)| c.prefix)
            .map(|(_, id)| *id)
    }

    pub fn info(&self, id: u32) -> Option<&IdentityInfo> {
        self.endpoints.iter().find(|e| e.id == id)
    }
}

/// A reserved identity's name (for traces and dumps).
pub fn reserved_name(id: u32) -> Option<&'static str> {
    Some(match id {
        UNKNOWN => "unknown",
        HOST => "host",
        WORLD => "world",
        UNMANAGED => "unmanaged",
        HEALTH => "health",
        INIT => "init",
        REMOTE_NODE => "remote-node",
        KUBE_APISERVER => "kube-apiserver",
        INGRESS => "ingress",
        WORLD_IPV4 => "world-ipv4",
        WORLD_IPV6 => "world-ipv6",
        _ => return None,
    })
}
