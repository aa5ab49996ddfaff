//! The reference engine for Wasm verdict functions (spec/wasm-verdict.md): runs a verdict
//! module's `verdict(len)` on one IP packet under wasmtime and says what it ended in.
//!
//! It exists so the translated eBPF code has something to be proven equal to: `sluice module
//! translate --verify` and the differential tests run the same packets through this runner
//! and through BPF_PROG_TEST_RUN and compare [`VerdictOutcome`]s.
//!
//! The host gives the module exactly the v1 imports: `sluice.pkt_len() -> i32` and
//! `sluice.pkt_u8|pkt_u16|pkt_u32(offset: i32) -> i32`, big-endian loads from the start of the
//! IP header that trap when `offset < 0 || offset + size > len`. No WASI, no memory growth.
//! Every run gets a fresh store and instance, so a run depends only on (module, packet).
//!
//! The allow-list of operators is the translator's job (`VerdictModule::parse`); this runner
//! checks only what linking needs (imports, the export, no start function). Traps that cannot
//! happen inside the v1 subset (division, memory, fuel) still end in a trap, reported as
//! [`TrapKind::Unreachable`]: fail closed, never an answer.

use crate::digest::ModuleId;
use crate::engine::{check_magic, error_chain, extern_type_string, func_type_string};
use crate::error::{ErrorKind, RuntimeError};
use sluice_policy::verdict::{
    EXPORT_VERDICT, IMPORT_MODULE, IMPORT_PKT_LEN, IMPORT_PKT_U8, IMPORT_PKT_U16, IMPORT_PKT_U32,
    TrapKind, VerdictOutcome,
};
use std::sync::LazyLock;
use wasmtime::{
    Caller, Config, Engine, ExternType, InstancePre, Linker, Module, Store, StoreLimits,
    StoreLimitsBuilder, Trap, TypedFunc,
};

/// Fuel for one run. A v1 function has no loops or calls, so it runs each instruction at most
/// once; this only bounds modules outside the subset (which the translator refuses).
const FUEL: u64 = 10_000_000;

/// The names of the packet imports, with their types as [`func_type_string`] prints them.
const IMPORTS: [(&str, &str); 4] = [
    (IMPORT_PKT_LEN, "(func (result i32))"),
    (IMPORT_PKT_U8, "(func (param i32) (result i32))"),
    (IMPORT_PKT_U16, "(func (param i32) (result i32))"),
    (IMPORT_PKT_U32, "(func (param i32) (result i32))"),
];
const VERDICT_TYPE: &str = "(func (param i32) (result i32))";

/// One engine (and linker) for every runner in the process: an `Engine` holds the compiler
/// and signal handlers, and differential tests build thousands of runners.
static ENGINE: LazyLock<(Engine, Linker<Run>)> = LazyLock::new(|| {
    let mut c = Config::new();
    // Verdict functions are small and run a few times each (the differential tests compile
    // thousands): Cranelift's optimizer would cost more than it saves.
    c.consume_fuel(true)
        .cranelift_opt_level(wasmtime::OptLevel::None);
    // The config is valid on every target wasmtime+cranelift supports.
    let engine = Engine::new(&c).expect("wasmtime engine configuration");
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap(IMPORT_MODULE, IMPORTS[0].0, |c: Caller<'_, Run>| {
            c.data().packet.len() as i32
        })
        .and_then(|l| {
            l.func_wrap(
                IMPORT_MODULE,
                IMPORTS[1].0,
                |c: Caller<'_, Run>, off: i32| load::<1>(c.data(), off).map(|b| b[0] as i32),
            )
        })
        .and_then(|l| {
            l.func_wrap(
                IMPORT_MODULE,
                IMPORTS[2].0,
                |c: Caller<'_, Run>, off: i32| {
                    load::<2>(c.data(), off).map(|b| u16::from_be_bytes(b) as i32)
                },
            )
        })
        .and_then(|l| {
            l.func_wrap(
                IMPORT_MODULE,
                IMPORTS[3].0,
                |c: Caller<'_, Run>, off: i32| {
                    load::<4>(c.data(), off).map(|b| u32::from_be_bytes(b) as i32)
                },
            )
        })
        .expect("defining the sluice.pkt_* imports");
    (engine, linker)
});

/// Per-run store data: the packet the imports read.
struct Run {
    packet: Vec<u8>,
    limits: StoreLimits,
}

/// The error a `pkt_*` import returns for an out-of-bounds load; recognised by type.
#[derive(Debug, thiserror::Error)]
#[error("packet load of {size} bytes at offset {offset} is outside the {len}-byte packet")]
struct PacketOutOfBounds {
    offset: i32,
    size: usize,
    len: usize,
}

fn load<const N: usize>(run: &Run, offset: i32) -> wasmtime::Result<[u8; N]> {
    let p = &run.packet;
    usize::try_from(offset)
        .ok()
        .and_then(|start| p.get(start..start.checked_add(N)?))
        .map(|b| b.try_into().expect("slice of length N"))
        .ok_or_else(|| {
            wasmtime::Error::new(PacketOutOfBounds {
                offset,
                size: N,
                len: p.len(),
            })
        })
}

/// A compiled verdict module, ready to run on packets. `Send + Sync`.
pub struct VerdictRunner {
    id: ModuleId,
    pre: InstancePre<Run>,
}

impl VerdictRunner {
    /// Compiles `wasm` and checks its shape: imports only `sluice.pkt_*` with their v1 types,
    /// exports `verdict: (i32) -> i32`, has no start function.
    pub fn new(wasm: &[u8]) -> Result<VerdictRunner, RuntimeError> {
        let id = ModuleId::new("verdict module", wasm);
        let err = |kind| RuntimeError::new(&id, kind);
        check_magic(wasm).map_err(err)?;
        check_no_start(wasm).map_err(err)?;
        let (engine, linker) = &*ENGINE;
        let module = Module::new(engine, wasm).map_err(|e| {
            err(ErrorKind::Invalid {
                message: error_chain(&e),
            })
        })?;
        check_shape(&module).map_err(err)?;
        let pre = linker.instantiate_pre(&module).map_err(|e| {
            err(ErrorKind::Invalid {
                message: error_chain(&e),
            })
        })?;
        Ok(VerdictRunner { id, pre })
    }

    /// The module's name and sha256, as errors name it.
    pub fn id(&self) -> &ModuleId {
        &self.id
    }

    /// Runs `verdict(len)` on `ip_packet`, which starts at the IP header. Every trap maps to a
    /// [`TrapKind`]; a return value other than 0, 1, 2 is [`TrapKind::BadVerdict`].
    pub fn run(&self, ip_packet: &[u8]) -> VerdictOutcome {
        let (engine, _) = &*ENGINE;
        // No memory instruction is in v1; a declared memory is instantiated but never grows.
        let limits = StoreLimitsBuilder::new()
            .memory_size(64 << 20)
            .memories(1)
            .tables(1)
            .instances(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            engine,
            Run {
                packet: ip_packet.to_vec(),
                limits,
            },
        );
        store.limiter(|r| &mut r.limits);
        // Fuel is enabled in the engine's config, so this cannot fail.
        let _ = store.set_fuel(FUEL);
        let len = i32::try_from(ip_packet.len()).unwrap_or(i32::MAX);
        let result = self.pre.instantiate(&mut store).and_then(|instance| {
            let f: TypedFunc<i32, i32> = instance.get_typed_func(&mut store, EXPORT_VERDICT)?;
            f.call(&mut store, len)
        });
        match result {
            Ok(ret) => VerdictOutcome::from_return(ret),
            Err(e) => VerdictOutcome::Trap(trap_kind(&e)),
        }
    }
}

fn trap_kind(e: &wasmtime::Error) -> TrapKind {
    if e.downcast_ref::<PacketOutOfBounds>().is_some() {
        return TrapKind::PacketOutOfBounds;
    }
    if !matches!(e.downcast_ref::<Trap>(), Some(Trap::UnreachableCodeReached)) {
        tracing::debug!(error = %error_chain(e), "verdict module trapped outside the v1 subset");
    }
    TrapKind::Unreachable
}

fn check_shape(module: &Module) -> Result<(), ErrorKind> {
    for import in module.imports() {
        let ty = import.ty();
        let found = extern_type_string(&ty);
        let ok = import.module() == IMPORT_MODULE
            && IMPORTS
                .iter()
                .any(|(name, t)| *name == import.name() && *t == found);
        if !ok {
            return Err(ErrorKind::UnknownImport {
                module: import.module().into(),
                name: import.name().into(),
                ty: found,
            });
        }
    }
    match module.get_export(EXPORT_VERDICT) {
        Some(ExternType::Func(f)) if func_type_string(&f) == VERDICT_TYPE => Ok(()),
        Some(other) => Err(ErrorKind::ExportType {
            name: EXPORT_VERDICT.into(),
            found: extern_type_string(&other),
            expected: VERDICT_TYPE.into(),
        }),
        None => Err(ErrorKind::MissingExport {
            name: EXPORT_VERDICT.into(),
            expected: VERDICT_TYPE.into(),
        }),
    }
}

/// wasmtime would run a start function at every instantiation; v1 has none.
fn check_no_start(wasm: &[u8]) -> Result<(), ErrorKind> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::StartSection { func, .. }) => {
                return Err(ErrorKind::Invalid {
                    message: format!(
                        "has a start function (func {func}); verdict modules have none"
                    ),
                });
            }
            // Code comes after the start section: nothing more to look for.
            Ok(wasmparser::Payload::CodeSectionStart { .. }) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(ErrorKind::Invalid {
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(body: &str) -> VerdictRunner {
        let wat = format!(
            r#"(module
  (import "sluice" "pkt_len" (func $len (result i32)))
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (import "sluice" "pkt_u16" (func $u16 (param i32) (result i32)))
  (import "sluice" "pkt_u32" (func $u32 (param i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32) {body}))"#
        );
        VerdictRunner::new(&wat::parse_str(wat).unwrap()).unwrap()
    }

    const P: [u8; 6] = [0x45, 0x00, 0x12, 0x34, 0xfe, 0xdc];

    #[test]
    fn return_values_map_to_outcomes() {
        use VerdictOutcome::*;
        assert_eq!(runner("(i32.const 0)").run(&P), Pass);
        assert_eq!(runner("(i32.const 1)").run(&P), Allow);
        assert_eq!(runner("(i32.const 2)").run(&P), Deny);
        for bad in ["3", "-1", "0x10", "2147483647"] {
            assert_eq!(
                runner(&format!("(i32.const {bad})")).run(&P),
                Trap(TrapKind::BadVerdict),
                "{bad}"
            );
        }
        assert_eq!(runner("unreachable").run(&P), Trap(TrapKind::Unreachable));
        // Outside v1, still a trap.
        assert_eq!(
            runner("(i32.div_u (i32.const 1) (i32.const 0))").run(&P),
            Trap(TrapKind::Unreachable)
        );
    }

    #[test]
    fn loads_are_big_endian_and_bounded() {
        use VerdictOutcome::*;
        // Returns 1 when the expression equals `want`, 2 when it does not.
        let eq = |expr: &str, want: i64| {
            runner(&format!(
                "(select (i32.const 1) (i32.const 2) (i32.eq {expr} (i32.const {want})))"
            ))
            .run(&P)
        };
        assert_eq!(eq("(call $len)", 6), Allow);
        assert_eq!(eq("(local.get $len)", 6), Allow);
        assert_eq!(eq("(call $u8 (i32.const 0))", 0x45), Allow);
        assert_eq!(eq("(call $u8 (i32.const 5))", 0xdc), Allow);
        assert_eq!(eq("(call $u16 (i32.const 2))", 0x1234), Allow);
        assert_eq!(eq("(call $u16 (i32.const 4))", 0xfedc), Allow);
        assert_eq!(eq("(call $u32 (i32.const 2))", 0x1234fedc), Allow);
        assert_eq!(eq("(call $u32 (i32.const 1))", 0x001234fe), Allow);
        let oob = Trap(TrapKind::PacketOutOfBounds);
        for expr in [
            "(call $u8 (i32.const 6))",
            "(call $u8 (i32.const -1))",
            "(call $u16 (i32.const 5))",
            "(call $u32 (i32.const 3))",
            "(call $u32 (i32.const 2147483647))",
            "(call $u32 (i32.const -2147483648))",
        ] {
            assert_eq!(eq(expr, 0), oob, "{expr}");
        }
        assert_eq!(runner("(call $u8 (i32.const 0))").run(&[]), oob);
    }

    #[test]
    fn shape_is_checked() {
        let kind = |wat: &str| {
            *VerdictRunner::new(&wat::parse_str(wat).unwrap())
                .err()
                .unwrap()
                .kind
        };
        assert!(matches!(
            kind(r#"(module (func (export "verdict") (param i64) (result i32) (i32.const 0)))"#),
            ErrorKind::ExportType { .. }
        ));
        assert!(matches!(
            kind(r#"(module (func (export "decide") (param i32) (result i32) (i32.const 0)))"#),
            ErrorKind::MissingExport { .. }
        ));
        assert!(matches!(
            kind(
                r#"(module (import "sluice" "pkt_u8" (func (param i64) (result i32))) (func (export "verdict") (param i32) (result i32) (i32.const 0)))"#
            ),
            ErrorKind::UnknownImport { .. }
        ));
        assert!(matches!(
            kind(
                r#"(module (import "wasi" "fd_write" (func)) (func (export "verdict") (param i32) (result i32) (i32.const 0)))"#
            ),
            ErrorKind::UnknownImport { .. }
        ));
        assert!(matches!(
            kind(
                r#"(module (func $s) (start $s) (func (export "verdict") (param i32) (result i32) (i32.const 0)))"#
            ),
            ErrorKind::Invalid { .. }
        ));
        // What Rust toolchains emit besides the function is accepted.
        let rust_like = r#"(module (memory 17) (global (mut i32) (i32.const 1048576))
            (export "memory" (memory 0)) (func (export "verdict") (param i32) (result i32) (i32.const 0)))"#;
        assert!(VerdictRunner::new(&wat::parse_str(rust_like).unwrap()).is_ok());
    }
}
