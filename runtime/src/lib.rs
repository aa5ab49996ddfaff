//! The WebAssembly host: runs policy-generator modules in a sandbox and returns their policy
//! documents.
//!
//! A module is untrusted code. It gets the inventory (and optional parameters) as JSON, and
//! nothing else: no clock, no randomness, no files, no network; the only import is
//! `sluice.log`. It runs under fuel, memory, wall-clock and output-size limits, and everything
//! that can go wrong is a typed [`RuntimeError`] naming the module and its sha256. The ABI is
//! specified in `spec/wasm-abi.md`; [`abi`] holds its constants.
//!
//! One [`Runtime`] is meant to live for the whole process (CLI run or agent): it owns the
//! wasmtime engine, the epoch ticker, the compiled-module cache (keyed by module sha256) and the
//! output cache (keyed by module and input sha256).
//!
//! ```no_run
//! use sluice_runtime::{Input, Limits, Runtime};
//! let rt = Runtime::new();
//! let bytes = std::fs::read("ns.wasm").unwrap();
//! let input = Input::from_json(br#"{"endpoints":[]}"#, None).unwrap();
//! let out = rt.generate(&bytes, "ns.wasm", &input, &Limits::default()).unwrap();
//! println!("{}", String::from_utf8_lossy(&out.json));
//! ```

// One audited exception: loading a precompiled module (Engine::load_precompiled).
#![deny(unsafe_code)]

pub mod abi;
mod cache;
mod digest;
mod engine;
mod error;
mod inspect;
mod limits;
mod verdict;

pub use digest::{Digest, ModuleId};
pub use engine::{CacheStats, CompiledModule, Input, LogLine, Output, Precompiled, Runtime};
pub use error::{ErrorKind, RuntimeError};
pub use inspect::{ExportInfo, ModuleInfo};
pub use limits::Limits;
pub use sluice_policy::verdict::{TrapKind, VerdictOutcome};
pub use verdict::VerdictRunner;
