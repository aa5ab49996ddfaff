//! The inventory a module receives (`spec/inventory.md`): the compiler's own types.
//!
//! Lenient on purpose: unknown fields are ignored, so a module built today keeps working when
//! the inventory grows new fields.

pub use sluice_policy::inventory::*;

/// Namespace lookups a generator often needs.
pub trait InventoryExt {
    fn namespace(&self, name: &str) -> Option<&Namespace>;
    /// Namespaces whose labels include `key=value`.
    fn namespaces_labelled<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a Namespace> + 'a;
}

impl InventoryExt for Inventory {
    fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.name == name)
    }

    fn namespaces_labelled<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a Namespace> + 'a {
        self.namespaces
            .iter()
            .filter(move |n| n.labels.get(key).is_some_and(|v| v == value))
    }
}
