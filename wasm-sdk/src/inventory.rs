//! A typed, read-only view of the inventory a module receives (`spec/inventory.md`).
//!
//! Lenient on purpose: unknown fields are ignored and most fields default, so a module built
//! today keeps working when the inventory grows new fields.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use serde::Deserialize;

pub type Labels = BTreeMap<String, String>;

/// The label every namespace carries with its own name (as Kubernetes sets it).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Clone, Debug, Default, Deserialize)]
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

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Namespace {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub ips: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Endpoint {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerPort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Service {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub labels: Labels,
    /// The pods behind the service.
    #[serde(default)]
    pub selector: Labels,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub target_port: Option<TargetPort>,
    /// `TCP`, `UDP` or `SCTP` (any case); TCP when absent.
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

fn default_namespace() -> String {
    "default".into()
}

impl Inventory {
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.name == name)
    }

    /// Namespaces whose labels include `key=value`.
    pub fn namespaces_labelled<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a Namespace> + 'a {
        self.namespaces
            .iter()
            .filter(move |n| n.labels.get(key).is_some_and(|v| v == value))
    }
}
