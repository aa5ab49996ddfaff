//! Resource limits for one module run. Every limit has a default and can be overridden
//! (the CLI exposes each as a flag).

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Fuel units (about one per Wasm instruction). Deterministic, unlike the timeout.
    pub fuel: u64,
    /// Linear memory, in bytes, across the module's memories.
    pub memory_bytes: usize,
    /// Wall-clock time for instantiation plus the call, enforced by epoch interruption with a
    /// resolution of [`crate::engine::EPOCH_TICK`].
    pub timeout: Duration,
    /// Size of the returned policy document, in bytes.
    pub output_bytes: usize,
    /// Total bytes of `sluice.log` messages kept; the rest are counted and dropped.
    pub log_bytes: usize,
}

impl Limits {
    pub const DEFAULT_FUEL: u64 = 300_000_000;
    pub const DEFAULT_MEMORY_BYTES: usize = 256 << 20;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_OUTPUT_BYTES: usize = 16 << 20;
    pub const DEFAULT_LOG_BYTES: usize = 64 << 10;
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: Limits::DEFAULT_FUEL,
            memory_bytes: Limits::DEFAULT_MEMORY_BYTES,
            timeout: Limits::DEFAULT_TIMEOUT,
            output_bytes: Limits::DEFAULT_OUTPUT_BYTES,
            log_bytes: Limits::DEFAULT_LOG_BYTES,
        }
    }
}
