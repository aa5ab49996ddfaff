//! The inventory: what exists in the cluster, which selectors are resolved against.
//!
//! Endpoints (with labels, IPs and container ports), namespaces (with labels), nodes and
//! services. The agent builds it from its endpoint registry or from Kubernetes; offline it is a
//! YAML or JSON file (format: `spec/inventory.md`), so `compile` works on a laptop.

use crate::ir::{EndpointView, L4};
use crate::source::ast::Cidr;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// The label Kubernetes puts on every namespace (and the one policies use to name one).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct Namespace {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: L4,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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

/// Why an inventory file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("{name}:{line}:{column}: {message}")]
    Syntax {
        name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{name}: {message}")]
    Invalid { name: String, message: String },
    #[error("{0}")]
    Io(String),
}

impl Inventory {
    /// Parses YAML or JSON (JSON is read as YAML), then [`Inventory::validate`]s it.
    pub fn parse(name: &str, text: &str) -> Result<Inventory, InventoryError> {
        let mut inv: Inventory = serde_norway::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            InventoryError::Syntax {
                name: name.into(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        inv.validate().map_err(|message| InventoryError::Invalid {
            name: name.into(),
            message,
        })?;
        Ok(inv)
    }

    pub fn load(path: &std::path::Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InventoryError::Io(format!("{}: {e}", path.display())))?;
        Inventory::parse(&path.display().to_string(), &text)
    }

    /// Completes and checks the inventory: namespaces endpoints name are created, every
    /// namespace gets its `kubernetes.io/metadata.name` label (as Kubernetes does), and
    /// duplicate names or addresses are rejected.
    pub fn validate(&mut self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
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
        let mut names = std::collections::BTreeSet::new();
        let mut ips: HashMap<IpAddr, String> = HashMap::new();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_completes() {
        let inv = Inventory::parse(
            "inv.yaml",
            "namespaces:\n- name: x\n  labels: {team: a}\nendpoints:\n- name: a\n  namespace: x\n  labels: {app: web}\n  ips: [10.0.0.1]\n  ports:\n  - {name: http, port: 80}\n- name: b\n  namespace: y\n",
        )
        .unwrap();
        assert_eq!(inv.namespaces.len(), 2);
        assert_eq!(
            inv.namespace_labels("y").unwrap()[NAMESPACE_NAME_LABEL],
            "y"
        );
        assert_eq!(inv.endpoints[0].named_port(L4::Tcp, "http"), vec![80]);
        assert_eq!(inv.endpoint_by_ip("10.0.0.1".parse().unwrap()), Some(0));
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err =
            Inventory::parse("inv.yaml", "endpoints:\n- name: a\n  colour: red\n").unwrap_err();
        match err {
            InventoryError::Syntax { line, column, .. } => assert_eq!((line, column), (3, 3)),
            e => panic!("{e}"),
        }
        let err = Inventory::parse(
            "inv.yaml",
            "endpoints:\n- {name: a, ips: [10.0.0.1]}\n- {name: b, ips: [10.0.0.1]}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("belongs to both"), "{err}");
    }
}
