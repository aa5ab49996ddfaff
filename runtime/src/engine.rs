//! The host proper: the wasmtime engine, the epoch ticker, the caches and one module run.
//!
//! A run is: check imports and the ABI-version export → instantiate in a fresh store with
//! fuel, memory and epoch limits → check `sluice_abi_version()` → check the remaining exports
//! → `sluice_alloc` + write the input → `sluice_generate` → bound-check and copy the output →
//! parse it as JSON, then as a policy document. Each run gets a fresh store and instance, so
//! nothing leaks from one run into the next and outputs depend only on (module, input).

use crate::abi;
use crate::cache::Fifo;
use crate::digest::{Digest, ModuleId};
use crate::error::{ErrorKind, RuntimeError};
use crate::limits::Limits;
use sluice_policy::ast::{Document, Item};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::{
    Caller, Config, Engine, Extern, ExternType, Instance, Linker, Memory, Module, ResourceLimiter,
    Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc, ValType, WasmBacktrace,
};

/// How often the ticker advances the engine's epoch: the resolution of the wall-clock limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

const MODULE_CACHE_ENTRIES: usize = 64;
const OUTPUT_CACHE_ENTRIES: usize = 256;
/// At most this many frames of a trap's backtrace go into the error.
const BACKTRACE_FRAMES: usize = 6;

/// The JSON document a module receives (ABI v1): `{"abi":1,"inventory":…,"params":…}`.
///
/// It is serialized once, canonically (object keys sorted), so equal inputs have equal bytes
/// and the input digest is a sound cache key.
#[derive(Clone, Debug)]
pub struct Input {
    bytes: Arc<[u8]>,
    digest: Digest,
}

impl Input {
    pub fn new(inventory: serde_json::Value, params: serde_json::Value) -> Input {
        let doc = serde_json::json!({
            "abi": abi::ABI_VERSION,
            "inventory": inventory,
            "params": params,
        });
        // A Value always serializes.
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let digest = Digest::of(&bytes);
        Input {
            bytes: bytes.into(),
            digest,
        }
    }

    /// From the inventory's JSON text and, optionally, the parameters' (default `{}`).
    pub fn from_json(inventory: &[u8], params: Option<&[u8]>) -> Result<Input, serde_json::Error> {
        let inventory: serde_json::Value = serde_json::from_slice(inventory)?;
        let params = match params {
            Some(p) => serde_json::from_slice(p)?,
            None => serde_json::Value::Object(Default::default()),
        };
        Ok(Input::new(inventory, params))
    }

    /// From the compiler's inventory (validated and completed, as compilation sees it).
    pub fn from_inventory(
        inventory: &sluice_policy::inventory::Inventory,
        params: serde_json::Value,
    ) -> Result<Input, serde_json::Error> {
        Ok(Input::new(serde_json::to_value(inventory)?, params))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// One `sluice.log` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: abi::LogLevel,
    pub message: String,
}

/// What a successful run produced.
#[derive(Clone, Debug)]
pub struct Output {
    pub module: ModuleId,
    pub input_digest: Digest,
    /// The validated document.
    pub document: Document,
    /// `document` re-serialized (canonical: no whitespace, spans dropped).
    pub json: Vec<u8>,
    /// The module's output exactly as it returned it.
    pub raw: Vec<u8>,
    pub fuel_used: u64,
    pub logs: Vec<LogLine>,
    /// Log lines dropped because they exceeded [`Limits::log_bytes`].
    pub logs_dropped: usize,
}

/// A module compiled by this runtime's engine.
#[derive(Clone)]
pub struct CompiledModule {
    pub id: ModuleId,
    module: Module,
}

impl CompiledModule {
    pub fn wasmtime_module(&self) -> &Module {
        &self.module
    }
}

/// A module compiled ahead of time to native code ([`Runtime::precompile`]), ready to be
/// loaded without running Cranelift again.
#[derive(Clone)]
pub struct Precompiled {
    pub id: ModuleId,
    artifact: Arc<[u8]>,
}

impl Precompiled {
    /// The serialized artifact (what an agent would keep on disk).
    pub fn artifact(&self) -> &[u8] {
        &self.artifact
    }
}

/// Counters, mostly for tests and `-v` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub compiles: u64,
    pub module_hits: u64,
    pub runs: u64,
    pub output_hits: u64,
}

#[derive(Default)]
struct Counters {
    compiles: AtomicU64,
    module_hits: AtomicU64,
    runs: AtomicU64,
    output_hits: AtomicU64,
}

/// The long-lived host. `Send + Sync`: share one across threads.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Host>,
    modules: Mutex<Fifo<Digest, Module>>,
    outputs: Mutex<Fifo<(Digest, Digest), Arc<Output>>>,
    counters: Counters,
    stop_ticker: Arc<AtomicBool>,
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// Per-run store data.
struct Host {
    limiter: Limiter,
    logs: Vec<LogLine>,
    log_bytes: usize,
    log_limit: usize,
    logs_dropped: usize,
    module_name: String,
}

/// `StoreLimits` (which traps on a denied grow), plus a record that it denied one, so the
/// resulting trap is reported as a memory-limit error rather than a generic trap.
struct Limiter {
    inner: StoreLimits,
    denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.inner.memory_growing(current, desired, maximum);
        if !matches!(r, Ok(true)) {
            self.denied = true;
        }
        r
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

fn engine_config() -> Config {
    let mut c = Config::new();
    c.consume_fuel(true)
        .epoch_interruption(true)
        // Same bits for the same input on every host: NaNs canonicalized, relaxed SIMD fixed.
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES))
        .max_wasm_stack(1 << 20);
    c
}

impl Runtime {
    pub fn new() -> Runtime {
        // The config above is valid on every target wasmtime+cranelift supports; a failure
        // here is a build problem, not a user error.
        let engine = Engine::new(&engine_config()).expect("wasmtime engine configuration");
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(abi::IMPORT_MODULE, abi::IMPORT_LOG, host_log)
            .expect("defining sluice.log");
        let stop_ticker = Arc::new(AtomicBool::new(false));
        spawn_ticker(&engine, stop_ticker.clone());
        Runtime {
            engine,
            linker,
            modules: Mutex::new(Fifo::new(MODULE_CACHE_ENTRIES)),
            outputs: Mutex::new(Fifo::new(OUTPUT_CACHE_ENTRIES)),
            counters: Counters::default(),
            stop_ticker,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiles: self.counters.compiles.load(Ordering::Relaxed),
            module_hits: self.counters.module_hits.load(Ordering::Relaxed),
            runs: self.counters.runs.load(Ordering::Relaxed),
            output_hits: self.counters.output_hits.load(Ordering::Relaxed),
        }
    }

    /// Runs `bytes` (named `name` in errors) on `input`: the entry point for `sluice check`,
    /// `sluice compile` and the agent. Outputs are cached by (module digest, input digest);
    /// only successful runs are cached.
    pub fn generate(
        &self,
        bytes: &[u8],
        name: &str,
        input: &Input,
        limits: &Limits,
    ) -> Result<Arc<Output>, RuntimeError> {
        let id = ModuleId::new(name, bytes);
        let key = (id.digest, input.digest);
        if let Some(hit) = self.outputs.lock().unwrap().get(&key) {
            self.counters.output_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        let compiled = self.compile_with_id(bytes, id)?;
        let out = Arc::new(self.run(&compiled, input, limits)?);
        self.outputs.lock().unwrap().insert(key, out.clone());
        Ok(out)
    }

    /// Compiles (or fetches from the cache) a module.
    pub fn compile(&self, bytes: &[u8], name: &str) -> Result<CompiledModule, RuntimeError> {
        self.compile_with_id(bytes, ModuleId::new(name, bytes))
    }

    fn compile_with_id(&self, bytes: &[u8], id: ModuleId) -> Result<CompiledModule, RuntimeError> {
        if let Some(module) = self.modules.lock().unwrap().get(&id.digest) {
            self.counters.module_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(CompiledModule { id, module });
        }
        check_magic(bytes).map_err(|k| RuntimeError::new(&id, k))?;
        // Compile outside the lock: Cranelift can take tens of milliseconds.
        let module = Module::new(&self.engine, bytes).map_err(|e| {
            RuntimeError::new(
                &id,
                ErrorKind::Invalid {
                    message: error_chain(&e),
                },
            )
        })?;
        self.counters.compiles.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(module = %id, "compiled Wasm module");
        self.modules
            .lock()
            .unwrap()
            .insert(id.digest, module.clone());
        Ok(CompiledModule { id, module })
    }

    /// Compiles a module to a native-code artifact that [`Runtime::load_precompiled`] loads
    /// without Cranelift.
    pub fn precompile(&self, bytes: &[u8], name: &str) -> Result<Precompiled, RuntimeError> {
        let id = ModuleId::new(name, bytes);
        check_magic(bytes).map_err(|k| RuntimeError::new(&id, k))?;
        let artifact = self.engine.precompile_module(bytes).map_err(|e| {
            RuntimeError::new(
                &id,
                ErrorKind::Invalid {
                    message: error_chain(&e),
                },
            )
        })?;
        Ok(Precompiled {
            id,
            artifact: artifact.into(),
        })
    }

    #[allow(unsafe_code)]
    pub fn load_precompiled(&self, p: &Precompiled) -> Result<CompiledModule, RuntimeError> {
        // SAFETY: `Precompiled` can only be built by `precompile` (its artifact field is
        // private), so these bytes came from `Engine::precompile_module`; wasmtime itself
        // rejects artifacts from an incompatible engine configuration or version.
        let module = unsafe { Module::deserialize(&self.engine, &p.artifact) }.map_err(|e| {
            RuntimeError::new(
                &p.id,
                ErrorKind::Host {
                    message: error_chain(&e),
                },
            )
        })?;
        Ok(CompiledModule {
            id: p.id.clone(),
            module,
        })
    }

    /// Runs a compiled module once, without the output cache.
    pub fn run(
        &self,
        compiled: &CompiledModule,
        input: &Input,
        limits: &Limits,
    ) -> Result<Output, RuntimeError> {
        self.counters.runs.fetch_add(1, Ordering::Relaxed);
        let id = &compiled.id;
        let err = |kind| RuntimeError::new(id, kind);
        let module = &compiled.module;
        check_imports(module).map_err(err)?;
        check_export(module, abi::EXPORT_ABI_VERSION, &abi_version_type()).map_err(err)?;

        let mut store = self.new_store(id, limits);
        let trap = |store: &Store<Host>, e: wasmtime::Error| err(classify(store, e, limits));

        let instance = self
            .linker
            .instantiate(&mut store, module)
            .map_err(|e| trap(&store, e))?;
        let version = typed::<(), i32>(&mut store, &instance, abi::EXPORT_ABI_VERSION)
            .map_err(err)?
            .call(&mut store, ())
            .map_err(|e| trap(&store, e))?;
        if version != abi::ABI_VERSION {
            return Err(err(ErrorKind::AbiVersion {
                found: version,
                supported: abi::ABI_VERSION,
            }));
        }
        for (name, ty) in v1_exports() {
            check_export(module, name, &ty).map_err(err)?;
        }
        if let Some(init) = instance.get_func(&mut store, abi::EXPORT_INITIALIZE) {
            let init = init.typed::<(), ()>(&store).map_err(|_| {
                err(ErrorKind::ExportType {
                    name: abi::EXPORT_INITIALIZE.into(),
                    found: func_type_string(&init.ty(&store)),
                    expected: "(func)".into(),
                })
            })?;
            init.call(&mut store, ()).map_err(|e| trap(&store, e))?;
        }
        let memory = instance
            .get_memory(&mut store, abi::EXPORT_MEMORY)
            .ok_or_else(|| {
                err(ErrorKind::MissingExport {
                    name: abi::EXPORT_MEMORY.into(),
                    expected: "(memory)".into(),
                })
            })?;

        let input_bytes = input.bytes();
        let in_len = i32::try_from(input_bytes.len()).map_err(|_| {
            err(ErrorKind::Input {
                message: format!("{} bytes do not fit a 32-bit module", input_bytes.len()),
            })
        })?;
        let in_ptr = typed::<i32, i32>(&mut store, &instance, abi::EXPORT_ALLOC)
            .map_err(err)?
            .call(&mut store, in_len)
            .map_err(|e| trap(&store, e))?;
        let in_start = in_ptr as u32 as usize;
        if in_ptr == 0 || !in_bounds(&store, memory, in_start, input_bytes.len()) {
            return Err(err(ErrorKind::AbiViolation {
                message: format!(
                    "sluice_alloc({in_len}) returned {in_ptr:#x}, not a block inside memory"
                ),
            }));
        }
        memory.data_mut(&mut store)[in_start..in_start + input_bytes.len()]
            .copy_from_slice(input_bytes);

        let packed = typed::<(i32, i32), i64>(&mut store, &instance, abi::EXPORT_GENERATE)
            .map_err(err)?
            .call(&mut store, (in_ptr, in_len))
            .map_err(|e| trap(&store, e))? as u64;
        let (out_ptr, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        if out_len > limits.output_bytes {
            return Err(err(ErrorKind::OutputTooLarge {
                len: out_len as u64,
                limit: limits.output_bytes,
            }));
        }
        if !in_bounds(&store, memory, out_ptr, out_len) {
            return Err(err(ErrorKind::AbiViolation {
                message: format!(
                    "sluice_generate returned output {out_ptr:#x}+{out_len}, outside memory ({} bytes)",
                    memory.data_size(&store)
                ),
            }));
        }
        let raw = memory.data(&store)[out_ptr..out_ptr + out_len].to_vec();
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        let host = store.into_data();
        for line in &host.logs {
            emit_log(&host.module_name, line);
        }

        let document = parse_output(&raw).map_err(err)?;
        let json = serde_json::to_vec(&document).map_err(|e| {
            err(ErrorKind::Host {
                message: e.to_string(),
            })
        })?;
        tracing::debug!(module = %id, fuel_used, out_len, "Wasm module generated a document");
        Ok(Output {
            module: id.clone(),
            input_digest: input.digest(),
            document,
            json,
            raw,
            fuel_used,
            logs: host.logs,
            logs_dropped: host.logs_dropped,
        })
    }

    fn new_store(&self, id: &ModuleId, limits: &Limits) -> Store<Host> {
        let inner = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .memories(1)
            .tables(4)
            .table_elements(100_000)
            .instances(1)
            .trap_on_grow_failure(true)
            .build();
        let host = Host {
            limiter: Limiter {
                inner,
                denied: false,
            },
            logs: Vec::new(),
            log_bytes: 0,
            log_limit: limits.log_bytes,
            logs_dropped: 0,
            module_name: id.name.clone(),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        // Fuel is enabled in the config, so this cannot fail.
        let _ = store.set_fuel(limits.fuel);
        let ticks = limits
            .timeout
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos())
            .max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        store
    }

    /// Instantiates a module and calls only `sluice_abi_version` (for `sluice module inspect`).
    pub(crate) fn abi_version(
        &self,
        compiled: &CompiledModule,
        limits: &Limits,
    ) -> Result<i32, RuntimeError> {
        let id = &compiled.id;
        let err = |kind| RuntimeError::new(id, kind);
        check_imports(&compiled.module).map_err(err)?;
        check_export(
            &compiled.module,
            abi::EXPORT_ABI_VERSION,
            &abi_version_type(),
        )
        .map_err(err)?;
        let mut store = self.new_store(id, limits);
        let instance = self
            .linker
            .instantiate(&mut store, &compiled.module)
            .map_err(|e| err(classify(&store, e, limits)))?;
        let f = typed::<(), i32>(&mut store, &instance, abi::EXPORT_ABI_VERSION).map_err(err)?;
        f.call(&mut store, ())
            .map_err(|e| err(classify(&store, e, limits)))
    }
}

/// Advances the epoch every [`EPOCH_TICK`] until the runtime is dropped.
fn spawn_ticker(engine: &Engine, stop: Arc<AtomicBool>) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("sluice-wasm-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(e) = spawned {
        // Without a ticker the fuel limit still bounds every run.
        tracing::warn!("cannot start the Wasm epoch ticker: {e}; only fuel limits apply");
    }
}

fn host_log(mut caller: Caller<'_, Host>, level: i32, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let Some(Extern::Memory(memory)) = caller.get_export(abi::EXPORT_MEMORY) else {
        return Ok(());
    };
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = memory.data(&caller);
    let Some(bytes) = data.get(start..start.saturating_add(len)) else {
        wasmtime::bail!("sluice.log: message {start:#x}+{len} is outside memory");
    };
    let message = String::from_utf8_lossy(bytes).into_owned();
    let host = caller.data_mut();
    if host.log_bytes + message.len() > host.log_limit {
        host.logs_dropped += 1;
        return Ok(());
    }
    host.log_bytes += message.len();
    host.logs.push(LogLine {
        level: abi::LogLevel::from_i32(level),
        message,
    });
    Ok(())
}

fn emit_log(module: &str, line: &LogLine) {
    use abi::LogLevel::*;
    let m = &line.message;
    match line.level {
        Error => tracing::error!(module, "{m}"),
        Warn => tracing::warn!(module, "{m}"),
        Info => tracing::info!(module, "{m}"),
        Debug => tracing::debug!(module, "{m}"),
        Trace => tracing::trace!(module, "{m}"),
    }
}

pub(crate) fn check_magic(bytes: &[u8]) -> Result<(), ErrorKind> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let reason = if bytes.starts_with(b"(module") || bytes.starts_with(b";;") {
            "this is WebAssembly text (WAT); assemble it to binary first".to_string()
        } else {
            format!(
                "{} bytes that do not start with the magic bytes \\0asm",
                bytes.len()
            )
        };
        return Err(ErrorKind::NotWasm { reason });
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        let reason = if bytes[6..8] == [1, 0] {
            "this is a component; sluice ABI v1 takes a core module".to_string()
        } else {
            format!("unsupported binary version {:02x?}", &bytes[4..8])
        };
        return Err(ErrorKind::NotWasm { reason });
    }
    Ok(())
}

fn check_imports(module: &Module) -> Result<(), ErrorKind> {
    for import in module.imports() {
        let ty = import.ty();
        let ok = import.module() == abi::IMPORT_MODULE
            && import.name() == abi::IMPORT_LOG
            && matches!(&ty, ExternType::Func(f) if func_type_string(f) == log_type());
        if !ok {
            return Err(ErrorKind::UnknownImport {
                module: import.module().into(),
                name: import.name().into(),
                ty: extern_type_string(&ty),
            });
        }
    }
    Ok(())
}

fn log_type() -> String {
    "(func (param i32 i32 i32))".into()
}

fn abi_version_type() -> String {
    "(func (result i32))".into()
}

/// The exports ABI v1 requires besides `sluice_abi_version`.
fn v1_exports() -> [(&'static str, String); 3] {
    [
        (abi::EXPORT_MEMORY, "(memory)".into()),
        (abi::EXPORT_ALLOC, "(func (param i32) (result i32))".into()),
        (
            abi::EXPORT_GENERATE,
            "(func (param i32 i32) (result i64))".into(),
        ),
    ]
}

fn check_export(module: &Module, name: &str, expected: &str) -> Result<(), ErrorKind> {
    let Some(ty) = module.get_export(name) else {
        return Err(ErrorKind::MissingExport {
            name: name.into(),
            expected: expected.into(),
        });
    };
    let found = match &ty {
        // Any memory type is acceptable: the module picks its own limits.
        ExternType::Memory(_) => "(memory)".to_string(),
        other => extern_type_string(other),
    };
    if found != expected {
        return Err(ErrorKind::ExportType {
            name: name.into(),
            found,
            expected: expected.into(),
        });
    }
    Ok(())
}

pub(crate) fn extern_type_string(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => func_type_string(f),
        ExternType::Memory(m) => {
            let max = m.maximum().map(|m| format!(" {m}")).unwrap_or_default();
            let bits = if m.is_64() { "i64 " } else { "" };
            format!("(memory {bits}{}{max})", m.minimum())
        }
        ExternType::Global(g) => format!(
            "(global {}{})",
            if g.mutability() == wasmtime::Mutability::Var {
                "mut "
            } else {
                ""
            },
            g.content()
        ),
        ExternType::Table(t) => format!("(table {})", t.element()),
        ExternType::Tag(_) => "(tag)".into(),
    }
}

pub(crate) fn func_type_string(f: &wasmtime::FuncType) -> String {
    let list = |tys: &mut dyn Iterator<Item = ValType>| {
        tys.map(|t| t.to_string()).collect::<Vec<_>>().join(" ")
    };
    let params = list(&mut f.params());
    let results = list(&mut f.results());
    let mut s = "(func".to_string();
    if !params.is_empty() {
        s += &format!(" (param {params})");
    }
    if !results.is_empty() {
        s += &format!(" (result {results})");
    }
    s + ")"
}

fn typed<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    store: &mut Store<Host>,
    instance: &Instance,
    name: &str,
) -> Result<TypedFunc<P, R>, ErrorKind> {
    let func = instance
        .get_func(&mut *store, name)
        .ok_or_else(|| ErrorKind::MissingExport {
            name: name.into(),
            expected: "a function".into(),
        })?;
    func.typed::<P, R>(&*store)
        .map_err(|_| ErrorKind::ExportType {
            name: name.into(),
            found: func_type_string(&func.ty(&*store)),
            expected: "the ABI v1 signature".into(),
        })
}

fn in_bounds(store: &Store<Host>, memory: Memory, start: usize, len: usize) -> bool {
    start
        .checked_add(len)
        .is_some_and(|end| end <= memory.data_size(store))
}

/// Turns a wasmtime error from instantiation or a call into what happened, in the user's terms.
fn classify(store: &Store<Host>, e: wasmtime::Error, limits: &Limits) -> ErrorKind {
    if store.data().limiter.denied {
        return ErrorKind::MemoryLimit {
            limit: limits.memory_bytes,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => ErrorKind::OutOfFuel { limit: limits.fuel },
        Some(Trap::Interrupt) => ErrorKind::Timeout {
            limit: limits.timeout,
        },
        Some(trap) => ErrorKind::Trap {
            message: trap.to_string().trim_start_matches("wasm trap: ").into(),
            backtrace: backtrace(&e),
        },
        // A host function's error (e.g. a bad `sluice.log` pointer) or an instantiation
        // failure such as a data segment out of bounds: still the module's fault.
        None => ErrorKind::Trap {
            message: error_chain(&e),
            backtrace: backtrace(&e),
        },
    }
}

fn backtrace(e: &wasmtime::Error) -> Vec<String> {
    let Some(bt) = e.downcast_ref::<WasmBacktrace>() else {
        return Vec::new();
    };
    bt.frames()
        .iter()
        .take(BACKTRACE_FRAMES)
        .map(|f| match f.func_name() {
            Some(name) => format!("{name} (func {})", f.func_index()),
            None => format!("func {}", f.func_index()),
        })
        .collect()
}

/// The error and its causes on one line, without the backtrace wasmtime appends.
pub(crate) fn error_chain(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if s.starts_with("error while executing at wasm backtrace") {
            continue;
        }
        let first = s.lines().next().unwrap_or_default().to_string();
        if !parts.contains(&first) {
            parts.push(first);
        }
    }
    parts.join(": ")
}

/// JSON first (so a syntax error says where), then the document schema (so a schema error
/// says which field), then the rules only a module output has.
fn parse_output(raw: &[u8]) -> Result<Document, ErrorKind> {
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| ErrorKind::OutputNotJson {
            message: strip_position(&e),
            line: e.line(),
            column: e.column(),
        })?;
    if let Some(obj) = value.as_object()
        && !obj.contains_key("items")
        && let Some(message) = obj.get("error").and_then(|m| m.as_str())
    {
        return Err(ErrorKind::Reported {
            message: message.into(),
        });
    }
    let document: Document = serde_path_to_error::deserialize(&value)
        .map_err(|e| refine_path(&value, e.path().to_string(), e.inner().to_string()))?;
    for (i, item) in document.items.iter().enumerate() {
        if let Item::Include(inc) = item {
            return Err(ErrorKind::InvalidDocument {
                path: format!("items[{i}]"),
                message: format!(
                    "modules cannot include files (`{}`): a module's output must be self-contained",
                    inc.path
                ),
            });
        }
    }
    Ok(document)
}

/// Items are internally tagged (`"kind"`), and serde buffers tagged enums, so the path of a
/// schema error stops at `items[i]`. Deserializing that item as its variant's struct again
/// finds the field inside it.
fn refine_path(value: &serde_json::Value, path: String, message: String) -> ErrorKind {
    use sluice_policy::ast::{Ipam, Masquerade, Policy};
    fn deeper<T: serde::de::DeserializeOwned>(
        item: &serde_json::Value,
    ) -> Option<(String, String)> {
        serde_path_to_error::deserialize::<_, T>(item)
            .err()
            .map(|e| (e.path().to_string(), e.inner().to_string()))
    }
    let items = value.get("items").and_then(|i| i.as_array());
    for (i, item) in items.into_iter().flatten().enumerate() {
        if path != format!("items[{i}]") {
            continue;
        }
        let found = match item.get("kind").and_then(|k| k.as_str()) {
            Some("policy") => deeper::<Policy>(item),
            Some("masquerade") => deeper::<Masquerade>(item),
            Some("ipam") => deeper::<Ipam>(item),
            _ => None,
        };
        if let Some((inner, message)) = found.filter(|(p, _)| p != ".") {
            return ErrorKind::InvalidDocument {
                path: format!("{path}.{inner}"),
                message,
            };
        }
    }
    ErrorKind::InvalidDocument { path, message }
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_errors_name_the_field() {
        let e = parse_output(br#"{"items":[{"kind":"policy","name":"p","subject":{},"rules":[{"direction":"sideways","action":"allow"}]}]}"#).unwrap_err();
        match e {
            ErrorKind::InvalidDocument { path, message } => {
                assert_eq!(path, "items[0].rules[0].direction");
                assert!(message.contains("sideways"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_output(b"{\"items\": [").unwrap_err(),
            ErrorKind::OutputNotJson { line: 1, .. }
        ));
        assert_eq!(
            parse_output(br#"{"error":"no pci namespaces"}"#).unwrap_err(),
            ErrorKind::Reported {
                message: "no pci namespaces".into()
            }
        );
        assert!(matches!(
            parse_output(br#"{"items":[{"kind":"include","path":"/etc/passwd"}]}"#).unwrap_err(),
            ErrorKind::InvalidDocument { .. }
        ));
        assert_eq!(
            parse_output(br#"{"items":[]}"#).unwrap(),
            Document::default()
        );
    }

    #[test]
    fn magic_checks() {
        assert!(check_magic(b"\0asm\x01\0\0\0").is_ok());
        assert!(
            matches!(check_magic(b"(module)"), Err(ErrorKind::NotWasm { reason }) if reason.contains("WAT"))
        );
        assert!(
            matches!(check_magic(b"\0asm\x0d\0\x01\0"), Err(ErrorKind::NotWasm { reason }) if reason.contains("component"))
        );
        assert!(check_magic(b"\x7fELF").is_err());
    }
}
