//! The policy document a module returns, with builders.
//!
//! These are the compiler's own AST types (`sluice-policy`, a `no_std` crate), so a module's
//! output means exactly what the same policy written in the DSL means.

pub use sluice_policy::ast::*;
pub use sluice_policy::build::cidr;
