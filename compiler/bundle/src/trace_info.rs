//! What `sluice trace` needs from the compiler besides the programs: which source rule a
//! verdict code's rule number is, and which addresses belong to which endpoint.
//!
//! Generated programs record only a number (`RuleId` index + 1, see `spec/datapath.md`);
//! turning it back into `policy.sluice:12:5`, a policy and a rule name needs the IR and the
//! source map, which are gone once the bundle is written. So the compile driver builds a
//! [`TraceInfo`] (`sluice_compiler::trace_info::build`) and the bundle
//! carries it as one content-addressed JSON file (`spec/bundle.md`). It is data about the
//! generation, like DWARF for an object: the loader never reads it to enforce anything.
//!
//! It must stay reproducible: rules are listed by id, endpoints by namespace and name, and
//! file names are the names the source map was given (the same ones the bundle's `inputs`
//! use), never absolute paths made up here.

use serde::{Deserialize, Serialize};

/// Version of the trace info schema.
pub const TRACE_INFO_FORMAT: u32 = 1;

/// Where a rule was written: 1-based line and column of its first character.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceLocation {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One rule as a trace reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    /// The rule number programs record: `RuleId` index + 1 (0 means "no rule").
    pub id: u32,
    pub policy: String,
    /// The rule's own name, if it has one.
    pub name: Option<String>,
    /// Position within its policy, 1-based (what "rule 2 of policy `web`" says).
    pub index: u32,
    /// `ingress` or `egress` (of the policy's subject).
    pub direction: String,
    /// `allow`, `deny`, `audit` or `pass`.
    pub action: String,
    /// `admin (priority N)`, `default` or `baseline`.
    pub tier: String,
    /// `None` when the rule has no source text (built in code, not read from a file).
    pub location: Option<SourceLocation>,
    /// For a verdict rule (`action` is `verdict`): its module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictEntry>,
}

/// The Wasm module of a verdict rule, as a trace names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictEntry {
    /// The file as the rule wrote it.
    pub module: String,
    /// Its sha256, lowercase hex.
    pub sha256: String,
    /// `deny`, `allow` or `pass`: what a trap means.
    pub on_trap: String,
}

impl RuleEntry {
    /// "rule `allow-web` of policy `web`" or "rule 2 of policy `web`".
    pub fn describe(&self) -> String {
        let rule = match &self.name {
            Some(n) => format!("rule `{n}` of policy `{}`", self.policy),
            None => format!("rule {} of policy `{}`", self.index, self.policy),
        };
        match &self.verdict {
            Some(v) => format!("verdict {rule}: module {} (sha256 {})", v.module, v.sha256),
            None => rule,
        }
    }
}

/// Rule number → source rule, sorted by id (ids are dense: entry `i` has id `i + 1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleTable(pub Vec<RuleEntry>);

impl RuleTable {
    /// The entry for a recorded rule number (`None` for 0 or an unknown number).
    pub fn get(&self, id: u32) -> Option<&RuleEntry> {
        let i = usize::try_from(id.checked_sub(1)?).ok()?;
        self.0.get(i).filter(|e| e.id == id)
    }
}

/// An endpoint's addresses, so a trace can build its packets and tell pods from the world.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointEntry {
    pub namespace: String,
    pub name: String,
    /// As written in the inventory (IPv4 and IPv6), in inventory order.
    pub ips: Vec<String>,
}

/// Everything a bundle carries for `sluice trace`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceInfo {
    pub format: u32,
    /// Whether the programs were compiled with rule recording (`CodegenOptions::trace`);
    /// without it a trace can still run packets but cannot say which rule decided.
    pub rule_recording: bool,
    pub rules: RuleTable,
    /// Sorted by namespace, then name.
    pub endpoints: Vec<EndpointEntry>,
}

impl TraceInfo {
    /// The canonical bytes (pretty JSON plus a newline), as the bundle stores them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("plain data serializes");
        v.push(b'\n');
        v
    }

    /// Parses [`TraceInfo::to_bytes`] output; refuses other formats.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let t: TraceInfo = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if t.format != TRACE_INFO_FORMAT {
            return Err(format!(
                "trace info format {}, this sluice reads {TRACE_INFO_FORMAT}",
                t.format
            ));
        }
        Ok(t)
    }
}
