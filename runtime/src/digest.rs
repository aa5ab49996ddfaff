//! Module and input digests: modules are named by sha256, and caches are keyed by it.

use std::fmt;

/// The compiler's sha256 type: the same digest names bundle files and modules.
pub use sluice_policy::Digest;

/// What errors and logs call a module: the name the user knows it by (usually its file name)
/// and the digest that identifies it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModuleId {
    pub name: String,
    pub digest: Digest,
}

impl ModuleId {
    pub fn new(name: impl Into<String>, bytes: &[u8]) -> ModuleId {
        ModuleId {
            name: name.into(),
            digest: Digest::of(bytes),
        }
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (sha256 {})", self.name, self.digest)
    }
}
