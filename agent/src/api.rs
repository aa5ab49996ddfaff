//! The API's bodies, shared by the server and the client (spec/api.md documents each).
//!
//! Errors are one JSON shape, [`ErrorBody`], for every route and status: a `kind` a program can
//! match on, a one-line `message`, and for a rejected policy every compiler finding as a
//! [`WireDiag`] (message, code, labels with file/line/column, help and the source text), so
//! `sluice policy apply` renders exactly what `sluice check` would.

use serde::{Deserialize, Serialize};
pub use sluice_compiler::diag::WireDiag;

/// API version prefix of every route.
pub const PREFIX: &str = "/v1";

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The policy set does not compile; `diagnostics` says why. Nothing changed.
    Rejected,
    /// The kernel refused the new generation (verifier, maps, interfaces); nothing changed.
    Swap,
    /// No such policy or endpoint.
    NotFound,
    /// The request is malformed (a bad name, a body that is not UTF-8).
    BadRequest,
    /// The body is over the agent's limit.
    TooLarge,
    /// TCP without a valid bearer token.
    Unauthorized,
    /// The agent has no inventory to compile for.
    NoInventory,
    /// The agent's own state (redb) failed.
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<WireDiag>,
    /// For `swap`: the protocol step that failed (spec/swap.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// `GET /v1/policies/{name}`, and each entry of `GET /v1/policies` (without `text`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub bytes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The answer to an accepted change (`PUT`/`DELETE /v1/policies/{name}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeReport {
    /// The generation now live (unchanged when the change compiled to the same bundle).
    pub generation: u64,
    pub bundle: String,
    pub programs_loaded: usize,
    pub hooks: usize,
    /// Hooks given a new program or newly attached (the others kept theirs).
    pub hooks_changed: usize,
    /// Warnings and notes from the compiler.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<WireDiag>,
    /// Time per stage, in microseconds: compile, the durable commit to redb, the swap, and
    /// the whole change from received to every hook flipped.
    pub compile_us: u64,
    pub commit_us: u64,
    pub swap_us: u64,
    pub total_us: u64,
}

/// One hook as `GET /v1/status` shows it: what the state records and what the kernel runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStatus {
    pub endpoint: String,
    pub interface: String,
    pub hook: String,
    pub artifact: String,
    pub link_id: Option<u32>,
    pub program_id: Option<u32>,
    /// The kernel runs the recorded program on a live interface.
    pub live: bool,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub node: Option<String>,
    pub node_netns: Option<String>,
    pub policies: usize,
    pub endpoints: usize,
    /// `None` before the first generation.
    pub generation: Option<u64>,
    pub bundle: Option<String>,
    /// How the running generation was reached at startup: `adopted` (the pinned one, nothing
    /// reloaded), `applied`, or `none`.
    pub startup: String,
    pub hooks: Vec<HookStatus>,
}
