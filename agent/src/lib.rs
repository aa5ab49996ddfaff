//! `sluice agent`: the per-node daemon (issue 10, first part).
//!
//! It owns the node's policy set and inventory ([`store`], in redb), turns every change into
//! one compile and one atomic swap through the loader ([`engine`]), and serves the API over a
//! Unix socket ([`server`], routes and bodies in [`api`], documented in spec/api.md). The CLI
//! talks to it through [`client`].
//!
//! Not here yet, with their places: Wasm module upload (a `modules` table in the store, its
//! documents merged in `Engine::build`), IPAM, the CNI plugin, metrics and events (more
//! `/v1/...` routes in `server::router`).

pub mod api;
pub mod client;
pub mod engine;
pub mod server;
pub mod store;
pub use hyper;
