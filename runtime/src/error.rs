//! Everything that can go wrong with a module, as data. The CLI renders these with miette
//! (they implement `miette::Diagnostic`: a stable code and, where useful, help); the agent
//! can match on [`ErrorKind`] to decide what to report upstream.

use crate::digest::ModuleId;
use std::fmt;
use std::time::Duration;

/// A failure of one module, naming it and its sha256.
#[derive(Debug, Clone)]
pub struct RuntimeError {
    pub module: ModuleId,
    /// Boxed to keep `Result<_, RuntimeError>` small.
    pub kind: Box<ErrorKind>,
}

impl RuntimeError {
    pub fn new(module: &ModuleId, kind: ErrorKind) -> RuntimeError {
        RuntimeError {
            module: module.clone(),
            kind: Box::new(kind),
        }
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wasm module {}: {}", self.module, self.kind)
    }
}

impl std::error::Error for RuntimeError {}

impl miette::Diagnostic for RuntimeError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.kind
            .help()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("not a WebAssembly module: {reason}")]
    NotWasm { reason: String },
    #[error("invalid WebAssembly: {message}")]
    Invalid { message: String },
    #[error("imports `{module}.{name}` ({ty}), which the host does not provide")]
    UnknownImport {
        module: String,
        name: String,
        ty: String,
    },
    #[error("export `{name}` is missing (expected {expected})")]
    MissingExport { name: String, expected: String },
    #[error("export `{name}` has type {found}, expected {expected}")]
    ExportType {
        name: String,
        found: String,
        expected: String,
    },
    #[error("was built for sluice ABI version {found}; this host supports version {supported}")]
    AbiVersion { found: i32, supported: i32 },
    #[error("broke the ABI: {message}")]
    AbiViolation { message: String },
    #[error("trapped: {message}{}", backtrace_suffix(.backtrace))]
    Trap {
        message: String,
        /// Innermost frame first, at most a few frames, e.g. `generate (func 12)`.
        backtrace: Vec<String>,
    },
    #[error("ran out of fuel (limit {limit} units)")]
    OutOfFuel { limit: u64 },
    #[error("ran longer than the {limit:?} time limit")]
    Timeout { limit: Duration },
    #[error("grew its memory past the {limit}-byte limit")]
    MemoryLimit { limit: usize },
    #[error("returned {len} bytes of output, more than the {limit}-byte limit")]
    OutputTooLarge { len: u64, limit: usize },
    #[error("output is not valid JSON: {message} at line {line}, column {column}")]
    OutputNotJson {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("output is not a valid policy document: at `{path}`: {message}")]
    InvalidDocument { path: String, message: String },
    #[error("reported an error: {message}")]
    Reported { message: String },
    #[error("invalid input: {message}")]
    Input { message: String },
    #[error("host failure: {message}")]
    Host { message: String },
}

fn backtrace_suffix(frames: &[String]) -> String {
    if frames.is_empty() {
        String::new()
    } else {
        format!(" (in {})", frames.join(" <- "))
    }
}

impl ErrorKind {
    /// A stable code users and tests can refer to.
    pub fn code(&self) -> &'static str {
        match self {
            ErrorKind::NotWasm { .. } => "sluice::wasm::not-wasm",
            ErrorKind::Invalid { .. } => "sluice::wasm::invalid",
            ErrorKind::UnknownImport { .. } => "sluice::wasm::unknown-import",
            ErrorKind::MissingExport { .. } => "sluice::wasm::missing-export",
            ErrorKind::ExportType { .. } => "sluice::wasm::export-type",
            ErrorKind::AbiVersion { .. } => "sluice::wasm::abi-version",
            ErrorKind::AbiViolation { .. } => "sluice::wasm::abi",
            ErrorKind::Trap { .. } => "sluice::wasm::trap",
            ErrorKind::OutOfFuel { .. } => "sluice::wasm::fuel",
            ErrorKind::Timeout { .. } => "sluice::wasm::timeout",
            ErrorKind::MemoryLimit { .. } => "sluice::wasm::memory",
            ErrorKind::OutputTooLarge { .. } => "sluice::wasm::output-size",
            ErrorKind::OutputNotJson { .. } => "sluice::wasm::output-json",
            ErrorKind::InvalidDocument { .. } => "sluice::wasm::output-document",
            ErrorKind::Reported { .. } => "sluice::wasm::reported",
            ErrorKind::Input { .. } => "sluice::wasm::input",
            ErrorKind::Host { .. } => "sluice::wasm::host",
        }
    }

    pub fn help(&self) -> Option<String> {
        Some(match self {
            ErrorKind::NotWasm { .. } => {
                "sluice modules are core WebAssembly modules (binary `.wasm`, starting with \\0asm)"
                    .into()
            }
            ErrorKind::UnknownImport { .. } => {
                "a module may import only `sluice.log`: no WASI, clock, randomness or I/O".into()
            }
            ErrorKind::MissingExport { .. }
            | ErrorKind::ExportType { .. }
            | ErrorKind::AbiViolation { .. } => {
                "see spec/wasm-abi.md; the Rust SDK's `export_generator!` provides every export"
                    .into()
            }
            ErrorKind::AbiVersion { .. } => {
                "rebuild the module against an SDK for this ABI version".into()
            }
            ErrorKind::OutOfFuel { .. } => "raise the limit with --wasm-fuel".into(),
            ErrorKind::Timeout { .. } => "raise the limit with --wasm-timeout".into(),
            ErrorKind::MemoryLimit { .. } => "raise the limit with --wasm-memory".into(),
            ErrorKind::OutputTooLarge { .. } => "raise the limit with --wasm-output".into(),
            ErrorKind::InvalidDocument { .. } => {
                "the output schema is spec/policy-document.schema.json".into()
            }
            _ => return None,
        })
    }
}
