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
//! Per-packet verdict functions (`#[verdict]`) are in [`verdict`]; they need neither an
//! allocator nor the generator half, so a verdict module depends on the SDK with
//! `default-features = false, features = ["verdict-runtime"]` and links no `alloc` at all.
//!
//! It is `no_std` + `alloc` so it builds with either toolchain route in
//! `examples/wasm/build.sh`. The document and inventory types are the compiler's own, from
//! the `no_std` crate `sluice-policy`: there is no mirror to keep in step.

#![no_std]

#[cfg(all(feature = "guest-runtime", feature = "verdict-runtime"))]
compile_error!(
    "features `guest-runtime` (policy generators) and `verdict-runtime` (verdict functions) \
     each bring a panic handler; a module is one or the other"
);

#[cfg(feature = "generator")]
extern crate alloc;

#[cfg(feature = "generator")]
pub mod abi;
#[cfg(feature = "generator")]
pub mod doc;
#[cfg(feature = "generator")]
pub mod inventory;
#[cfg(feature = "generator")]
pub mod log;
pub mod verdict;

#[cfg(all(target_arch = "wasm32", feature = "guest-runtime"))]
mod guest;

#[cfg(feature = "generator")]
pub use abi::Input;

/// Everything a generator usually needs, in one import.
#[cfg(feature = "generator")]
pub mod prelude {
    pub use crate::abi::Input;
    pub use crate::doc::*;
    pub use crate::inventory::*;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}
