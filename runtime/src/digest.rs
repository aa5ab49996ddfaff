//! Module and input digests: modules are named by sha256, and caches are keyed by it.

use sha2::{Digest as _, Sha256};
use std::fmt;

/// A sha256 digest, printed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
