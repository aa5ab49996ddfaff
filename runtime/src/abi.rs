//! ABI v1 constants: the names and signatures a module must export and may import. The
//! prose contract is `spec/wasm-abi.md`; keep the two in step.

/// The one ABI version this host speaks.
pub const ABI_VERSION: i32 = 1;

/// The linear memory the host reads and writes.
pub const EXPORT_MEMORY: &str = "memory";
/// `() -> i32`: the ABI version the module was built for. Called first.
pub const EXPORT_ABI_VERSION: &str = "sluice_abi_version";
/// `(len: i32) -> i32`: a pointer to `len` writable bytes for the input, 0 on failure.
pub const EXPORT_ALLOC: &str = "sluice_alloc";
/// `(ptr: i32, len: i32) -> i64`: runs the generator on the input at `ptr..ptr+len`;
/// returns `(out_ptr << 32) | out_len` of the output JSON.
pub const EXPORT_GENERATE: &str = "sluice_generate";
/// Optional `() -> ()`: called once after instantiation, before `sluice_alloc`
/// (the reactor convention: C and Rust toolchains put constructors here).
pub const EXPORT_INITIALIZE: &str = "_initialize";

/// The only import namespace.
pub const IMPORT_MODULE: &str = "sluice";
/// `(level: i32, ptr: i32, len: i32) -> ()`: a UTF-8 log line.
pub const IMPORT_LOG: &str = "log";

/// Custom sections with the module's declared name and version (UTF-8, optional).
pub const SECTION_NAME: &str = "sluice.name";
pub const SECTION_VERSION: &str = "sluice.version";

/// Levels of `sluice.log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogLevel {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

impl LogLevel {
    /// Unknown levels are treated as `Info` rather than failing the run: logging must not
    /// be a way to break a module.
    pub fn from_i32(level: i32) -> LogLevel {
        match level {
            0 => LogLevel::Error,
            1 => LogLevel::Warn,
            3 => LogLevel::Debug,
            4 => LogLevel::Trace,
            _ => LogLevel::Info,
        }
    }
}
