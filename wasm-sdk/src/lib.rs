//! The sluice WebAssembly SDK: what a policy-module author depends on.
//!
//! A module is a function from the cluster inventory (plus optional parameters) to a policy
//! document. This crate gives it typed builders for that document ([`doc`]), a typed view of
//! the inventory ([`inventory`]), and [`export_generator!`], which exports ABI v1
//! (`spec/wasm-abi.md`) so the author never sees pointers, allocation or JSON:
//!
//! ```ignore
//! #![no_std]
//! extern crate alloc;
//! use sluice_wasm_sdk::prelude::*;
//!
//! fn generate(input: &Input) -> Result<Document, String> {
//!     let mut doc = Document::new();
//!     for ns in &input.inventory.namespaces {
//!         doc.push(Policy::new("deny-all").namespace(&ns.name).isolate_both());
//!     }
//!     Ok(doc)
//! }
//! sluice_wasm_sdk::export_generator!(generate);
//! ```
//!
//! It is `no_std` + `alloc` so it builds with either toolchain route in
//! `examples/wasm/build.sh`. The document and inventory types are the compiler's own, from
//! the `no_std` crate `sluice-policy`: there is no mirror to keep in step.

#![no_std]

extern crate alloc;

pub mod abi;
pub mod doc;
pub mod inventory;
pub mod log;

#[cfg(all(target_arch = "wasm32", feature = "guest-runtime"))]
mod guest;

pub use abi::Input;

/// Everything a generator usually needs, in one import.
pub mod prelude {
    pub use crate::abi::Input;
    pub use crate::doc::*;
    pub use crate::inventory::*;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}
