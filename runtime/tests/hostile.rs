//! Hostile and broken modules: each must fail with its own typed error, quickly, and leave
//! the runtime able to run a good module afterwards.

use sluice_runtime::{ErrorKind, Input, Limits, Runtime, RuntimeError};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

static RT: LazyLock<Runtime> = LazyLock::new(Runtime::new);

const GOOD: &str = include_str!("../../examples/wasm/wat/default-deny.wat");

#[path = "support/abi.rs"]
mod abi;

/// [`abi::abi_module_wat`], assembled.
fn abi_module(generate: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(abi::abi_module_wat(generate, extra)).unwrap()
}

/// [`abi::returning_wat`], assembled.
fn returning(json: &str) -> Vec<u8> {
    wat::parse_str(abi::returning_wat(json)).unwrap()
}

fn input() -> Input {
    Input::from_json(br#"{"endpoints":[]}"#, None).unwrap()
}

/// Runs `bytes` (uncached), checks it failed fast, then checks the runtime still works.
fn fails(bytes: &[u8], limits: &Limits) -> RuntimeError {
    let start = Instant::now();
    let result = RT
        .compile(bytes, "hostile.wasm")
        .and_then(|m| RT.run(&m, &input(), limits));
    let elapsed = start.elapsed();
    let err = match result {
        Ok(out) => panic!(
            "hostile module succeeded: {}",
            String::from_utf8_lossy(&out.raw)
        ),
        Err(e) => e,
    };
    assert!(
        elapsed < Duration::from_secs(1),
        "took {elapsed:?} to fail with {err}"
    );
    assert_eq!(err.module.name, "hostile.wasm");
    assert_eq!(err.module.digest, sluice_runtime::Digest::of(bytes));
    // The message names the module and its full sha256.
    let msg = err.to_string();
    assert!(
        msg.contains("hostile.wasm") && msg.contains(&err.module.digest.hex()),
        "{msg}"
    );
    still_healthy();
    err
}

fn still_healthy() {
    let good = wat::parse_str(GOOD).unwrap();
    let m = RT.compile(&good, "default-deny.wasm").unwrap();
    let out = RT.run(&m, &input(), &Limits::default()).unwrap();
    assert_eq!(out.document.items.len(), 2);
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let err = fails(
        &abi_module("(loop $l (br $l)) (i64.const 0)", ""),
        &Limits::default(),
    );
    assert_eq!(
        *err.kind,
        ErrorKind::OutOfFuel {
            limit: Limits::DEFAULT_FUEL
        }
    );
}

#[test]
fn infinite_loop_hits_the_wall_clock_limit() {
    let limits = Limits {
        fuel: u64::MAX,
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let start = Instant::now();
    let err = fails(&abi_module("(loop $l (br $l)) (i64.const 0)", ""), &limits);
    assert_eq!(
        *err.kind,
        ErrorKind::Timeout {
            limit: Duration::from_millis(200)
        }
    );
    assert!(start.elapsed() >= Duration::from_millis(190));
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let bomb =
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i64.const 0)";
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let err = fails(&abi_module(bomb, ""), &limits);
    assert_eq!(*err.kind, ErrorKind::MemoryLimit { limit: 64 << 20 });
    // Default limit too.
    let err = fails(&abi_module(bomb, ""), &Limits::default());
    assert_eq!(
        *err.kind,
        ErrorKind::MemoryLimit {
            limit: Limits::DEFAULT_MEMORY_BYTES
        }
    );
}

#[test]
fn huge_initial_memory_is_refused_at_instantiation() {
    let bytes = wat::parse_str(
        r#"(module (memory (export "memory") 20000)
             (func (export "sluice_abi_version") (result i32) (i32.const 1)))"#,
    )
    .unwrap();
    let err = fails(&bytes, &Limits::default());
    assert!(matches!(*err.kind, ErrorKind::MemoryLimit { .. }), "{err}");
}

#[test]
fn trap_reports_message_and_backtrace() {
    let err = fails(
        &abi_module(
            "(call $explode) (i64.const 0)",
            "(func $explode unreachable)",
        ),
        &Limits::default(),
    );
    match &*err.kind {
        ErrorKind::Trap { message, backtrace } => {
            assert_eq!(message, "wasm `unreachable` instruction executed");
            assert!(backtrace[0].starts_with("explode"), "{backtrace:?}");
            assert!(backtrace[1].starts_with("generate"), "{backtrace:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("explode"), "{err}");
}

#[test]
fn huge_output_is_refused_before_reading_it() {
    let err = fails(
        &abi_module("(i64.const 0xffffffff)", ""),
        &Limits::default(),
    );
    assert_eq!(
        *err.kind,
        ErrorKind::OutputTooLarge {
            len: 0xffff_ffff,
            limit: Limits::DEFAULT_OUTPUT_BYTES
        }
    );
    // Within the limit but outside memory: an ABI violation, not a host crash.
    let err = fails(
        &abi_module(
            "(i64.or (i64.shl (i64.const 0x7fff0000) (i64.const 32)) (i64.const 1000))",
            "",
        ),
        &Limits::default(),
    );
    assert!(matches!(*err.kind, ErrorKind::AbiViolation { .. }), "{err}");
}

#[test]
fn output_size_limit_is_configurable() {
    let limits = Limits {
        output_bytes: 10,
        ..Limits::default()
    };
    let err = fails(&returning(r#"{"items":[]}"#), &limits);
    assert_eq!(*err.kind, ErrorKind::OutputTooLarge { len: 12, limit: 10 });
}

#[test]
fn bad_json_says_where() {
    let err = fails(&returning(r#"{"items": [}"#), &Limits::default());
    match *err.kind {
        ErrorKind::OutputNotJson { line, column, .. } => assert_eq!((line, column), (1, 12)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_that_is_not_a_document_names_the_field() {
    let err = fails(
        &returning(
            r#"{"items":[{"kind":"policy","name":"p","subject":{},"rules":[{"direction":"egress","action":"maybe"}]}]}"#,
        ),
        &Limits::default(),
    );
    match *err.kind {
        ErrorKind::InvalidDocument { path, message } => {
            assert_eq!(path, "items[0].rules[0].action");
            assert!(message.contains("maybe"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn module_reported_error() {
    let err = fails(
        &returning(r#"{"error":"params.cidrs missing"}"#),
        &Limits::default(),
    );
    assert_eq!(
        *err.kind,
        ErrorKind::Reported {
            message: "params.cidrs missing".into()
        }
    );
}

#[test]
fn wrong_abi_version() {
    let bytes = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "sluice_abi_version") (result i32) (i32.const 2))
             (func (export "sluice_run") (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let err = fails(&bytes, &Limits::default());
    assert_eq!(
        *err.kind,
        ErrorKind::AbiVersion {
            found: 2,
            supported: 1
        }
    );
}

#[test]
fn missing_export() {
    let bytes = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "sluice_abi_version") (result i32) (i32.const 1))
             (func (export "sluice_alloc") (param i32) (result i32) (i32.const 8)))"#,
    )
    .unwrap();
    let err = fails(&bytes, &Limits::default());
    assert!(
        matches!(&*err.kind, ErrorKind::MissingExport { name, .. } if name == "sluice_generate"),
        "{err}"
    );
    let err = fails(&wat::parse_str("(module)").unwrap(), &Limits::default());
    assert!(
        matches!(&*err.kind, ErrorKind::MissingExport { name, .. } if name == "sluice_abi_version"),
        "{err}"
    );
}

#[test]
fn export_with_the_wrong_type() {
    let bytes = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "sluice_abi_version") (result i32) (i32.const 1))
             (func (export "sluice_alloc") (param i32) (result i32) (i32.const 8))
             (func (export "sluice_generate") (param i32 i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let err = fails(&bytes, &Limits::default());
    assert_eq!(
        *err.kind,
        ErrorKind::ExportType {
            name: "sluice_generate".into(),
            found: "(func (param i32 i32) (result i32))".into(),
            expected: "(func (param i32 i32) (result i64))".into()
        }
    );
}

#[test]
fn unknown_import() {
    let bytes = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
             (func (export "sluice_abi_version") (result i32) (i32.const 1)))"#,
    )
    .unwrap();
    let err = fails(&bytes, &Limits::default());
    assert_eq!(
        *err.kind,
        ErrorKind::UnknownImport {
            module: "wasi_snapshot_preview1".into(),
            name: "fd_write".into(),
            ty: "(func (param i32 i32 i32 i32) (result i32))".into()
        }
    );
    // The right name with the wrong signature is just as unknown.
    let bytes = wat::parse_str(
        r#"(module (import "sluice" "log" (func (param i32)))
             (func (export "sluice_abi_version") (result i32) (i32.const 1)))"#,
    )
    .unwrap();
    assert!(matches!(
        *fails(&bytes, &Limits::default()).kind,
        ErrorKind::UnknownImport { .. }
    ));
}

#[test]
fn not_wasm() {
    let err = fails(b"\x7fELF\x02\x01\x01\0 not wasm at all", &Limits::default());
    assert!(matches!(*err.kind, ErrorKind::NotWasm { .. }), "{err}");
    let err = fails(GOOD.as_bytes(), &Limits::default());
    assert!(
        matches!(&*err.kind, ErrorKind::NotWasm { reason } if reason.contains("WAT")),
        "{err}"
    );
    // Right magic, garbage after it: the validator's message.
    let err = fails(b"\0asm\x01\0\0\0\x01\xff\xff\xff", &Limits::default());
    assert!(matches!(*err.kind, ErrorKind::Invalid { .. }), "{err}");
}

#[test]
fn log_pointer_outside_memory_traps() {
    let err = fails(
        &abi_module(
            "(call $log (i32.const 2) (i32.const 0x7fff0000) (i32.const 100)) (i64.const 0)",
            r#"(import "sluice" "log" (func $log (param i32 i32 i32)))"#,
        ),
        &Limits::default(),
    );
    assert!(
        matches!(&*err.kind, ErrorKind::Trap { message, .. } if message.contains("outside memory")),
        "{err}"
    );
}

#[test]
fn errors_render_with_code_and_help() {
    use miette::Diagnostic;
    // Little fuel, so that fuel runs out long before the wall-clock limit even on a loaded
    // machine (with the default 300M units a slow debug build could hit the timeout first).
    let limits = Limits {
        fuel: 1_000_000,
        ..Limits::default()
    };
    let err = fails(&abi_module("(loop $l (br $l)) (i64.const 0)", ""), &limits);
    assert_eq!(err.code().unwrap().to_string(), "sluice::wasm::fuel");
    assert!(err.help().unwrap().to_string().contains("--wasm-fuel"));
}
