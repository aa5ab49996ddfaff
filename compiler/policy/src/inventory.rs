//! The inventory: what exists in the cluster, which selectors are resolved against.
//!
//! Endpoints (with labels, IPs and container ports), namespaces (with labels), nodes and
//! services. The agent builds it from its endpoint registry or from Kubernetes; offline it is a
//! YAML or JSON file (format: `spec/inventory.md`, read by the compiler), and a Wasm module
//! receives it as JSON.
//!
//! Unknown fields are ignored here, so a module built today keeps reading the inventory when it
//! grows new fields; the compiler reads files strictly (`sluice_compiler::resolve::inventory`).

use crate::ast::Cidr;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;
use serde::{Deserialize, Serialize};

/// The label Kubernetes puts on every namespace (and the one policies use to name one).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub services: Vec<Service>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// Kubernetes `spec.podCIDR`: the host-scope IPAM block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<Cidr>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    /// The node it runs on (decides which node is `host` to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Host-side interface (the loader attaches here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Network namespace name (for the loader and the test topologies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: L4,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub labels: Labels,
    /// Pods backing the service (equality-based, as in Kubernetes).
    #[serde(default)]
    pub selector: Labels,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<IpAddr>,
    #[serde(default, rename = "type")]
    pub kind: ServiceType,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    /// A number, or a container port name; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<TargetPort>,
    #[serde(default = "default_protocol")]
    pub protocol: L4,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_protocol() -> L4 {
    L4::Tcp
}

/// What selection needs to know about an endpoint: its namespace and labels.
#[derive(Clone, Copy, Debug)]
pub struct EndpointView<'a> {
    pub namespace: &'a str,
    pub namespace_labels: &'a Labels,
    pub labels: &'a Labels,
}

/// An L4 protocol as the datapath sees it. Serialised as Kubernetes spells it (`TCP`);
/// lower case is accepted too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum L4 {
    #[serde(alias = "tcp")]
    Tcp,
    #[serde(alias = "udp")]
    Udp,
    #[serde(alias = "sctp")]
    Sctp,
    #[serde(alias = "icmp")]
    Icmp,
}

impl L4 {
    pub fn number(&self) -> u8 {
        match self {
            L4::Tcp => 6,
            L4::Udp => 17,
            L4::Sctp => 132,
            L4::Icmp => 1,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            L4::Tcp => "TCP",
            L4::Udp => "UDP",
            L4::Sctp => "SCTP",
            L4::Icmp => "ICMP",
        }
    }

    /// Parses `TCP`, `udp`, ... (case-insensitive).
    pub fn parse(s: &str) -> Option<L4> {
        [L4::Tcp, L4::Udp, L4::Sctp, L4::Icmp]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for L4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Inventory {
    /// Completes and checks the inventory: namespaces endpoints name are created, every
    /// namespace gets its `kubernetes.io/metadata.name` label (as Kubernetes does), and
    /// duplicate names or addresses are rejected.
    pub fn validate(&mut self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for ns in &self.namespaces {
            if !seen.insert(ns.name.clone()) {
                return Err(format!("namespace `{}` is listed twice", ns.name));
            }
        }
        for ep in &self.endpoints {
            if seen.insert(ep.namespace.clone()) {
                self.namespaces.push(Namespace {
                    name: ep.namespace.clone(),
                    labels: Labels::new(),
                });
            }
        }
        for ns in &mut self.namespaces {
            ns.labels
                .entry(NAMESPACE_NAME_LABEL.into())
                .or_insert_with(|| ns.name.clone());
        }
        let mut names = BTreeSet::new();
        let mut ips: BTreeMap<IpAddr, String> = BTreeMap::new();
        for ep in &self.endpoints {
            let full = format!("{}/{}", ep.namespace, ep.name);
            if !names.insert(full.clone()) {
                return Err(format!("endpoint `{full}` is listed twice"));
            }
            for ip in &ep.ips {
                if let Some(other) = ips.insert(*ip, full.clone()) {
                    return Err(format!("{ip} belongs to both `{other}` and `{full}`"));
                }
            }
            if let Some(node) = &ep.node
                && !self.nodes.iter().any(|n| &n.name == node)
            {
                return Err(format!("endpoint `{full}` runs on unknown node `{node}`"));
            }
        }
        for n in &self.nodes {
            for ip in &n.ips {
                if let Some(other) = ips.insert(*ip, format!("node {}", n.name)) {
                    return Err(format!(
                        "{ip} belongs to both `{other}` and node `{}`",
                        n.name
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn namespace_labels(&self, ns: &str) -> Option<&Labels> {
        self.namespaces
            .iter()
            .find(|n| n.name == ns)
            .map(|n| &n.labels)
    }

    /// Index of the endpoint `namespace/name`.
    pub fn endpoint_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.endpoints
            .iter()
            .position(|e| e.namespace == namespace && e.name == name)
    }

    pub fn endpoint_by_ip(&self, ip: IpAddr) -> Option<usize> {
        self.endpoints.iter().position(|e| e.ips.contains(&ip))
    }

    pub fn node_by_ip(&self, ip: IpAddr) -> Option<&Node> {
        self.nodes.iter().find(|n| n.ips.contains(&ip))
    }

    /// What selection sees of endpoint `idx`.
    pub fn view(&self, idx: usize) -> EndpointView<'_> {
        static EMPTY: Labels = Labels::new();
        let ep = &self.endpoints[idx];
        EndpointView {
            namespace: &ep.namespace,
            namespace_labels: self.namespace_labels(&ep.namespace).unwrap_or(&EMPTY),
            labels: &ep.labels,
        }
    }

    /// Every (protocol, name) some endpoint declares: what a named port can resolve to.
    pub fn named_ports(&self) -> Vec<(L4, String)> {
        let mut v: Vec<(L4, String)> = self
            .endpoints
            .iter()
            .flat_map(|e| &e.ports)
            .filter_map(|p| p.name.clone().map(|n| (p.protocol, n)))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Endpoint {
    /// Port numbers of this endpoint's container ports with that name and protocol.
    pub fn named_port(&self, proto: L4, name: &str) -> Vec<u16> {
        self.ports
            .iter()
            .filter(|p| p.protocol == proto && p.name.as_deref() == Some(name))
            .map(|p| p.port)
            .collect()
    }
}
