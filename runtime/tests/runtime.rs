//! The host's contract on a good module: determinism, caching, precompiled artifacts, logs
//! and metadata.

use sluice_runtime::{Input, Limits, Runtime, abi::LogLevel};

fn default_deny() -> Vec<u8> {
    wat::parse_str(include_str!("../../examples/wasm/wat/default-deny.wat")).unwrap()
}

fn input(n: usize) -> Input {
    let eps: Vec<_> = (0..n)
        .map(|i| serde_json::json!({"name": format!("pod-{i}"), "namespace": "default"}))
        .collect();
    Input::new(
        serde_json::json!({ "endpoints": eps }),
        serde_json::json!({}),
    )
}

#[test]
fn three_runs_are_byte_identical() {
    let rt = Runtime::new();
    let m = rt.compile(&default_deny(), "default-deny.wasm").unwrap();
    let runs: Vec<_> = (0..3)
        .map(|_| rt.run(&m, &input(3), &Limits::default()).unwrap())
        .collect();
    for r in &runs[1..] {
        assert_eq!(r.raw, runs[0].raw);
        assert_eq!(r.json, runs[0].json);
        assert_eq!(r.fuel_used, runs[0].fuel_used);
    }
    assert_eq!(rt.stats().runs, 3);
}

#[test]
fn compiled_modules_and_outputs_are_cached() {
    let rt = Runtime::new();
    let bytes = default_deny();
    let a = rt
        .generate(&bytes, "a.wasm", &input(1), &Limits::default())
        .unwrap();
    let b = rt
        .generate(&bytes, "a.wasm", &input(1), &Limits::default())
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let s = rt.stats();
    assert_eq!((s.compiles, s.runs, s.output_hits), (1, 1, 1));
    // A different input reruns the module but reuses the compiled code.
    rt.generate(&bytes, "a.wasm", &input(2), &Limits::default())
        .unwrap();
    let s = rt.stats();
    assert_eq!((s.compiles, s.module_hits, s.runs), (1, 1, 2));
    // Equal inputs built differently have the same canonical bytes and digest.
    let x = Input::from_json(br#"{"b": 1, "a": [1, 2]}"#, Some(b"{}")).unwrap();
    let y = Input::from_json(br#"{ "a":[1,2],"b":1 }"#, None).unwrap();
    assert_eq!(x.digest(), y.digest());
    assert_eq!(
        x.bytes(),
        br#"{"abi":1,"inventory":{"a":[1,2],"b":1},"params":{}}"#
    );
}

#[test]
fn precompiled_module_gives_the_same_output() {
    let rt = Runtime::new();
    let bytes = default_deny();
    let pre = rt.precompile(&bytes, "dd.wasm").unwrap();
    assert!(!pre.artifact().is_empty());
    let loaded = rt.load_precompiled(&pre).unwrap();
    let compiled = rt.compile(&bytes, "dd.wasm").unwrap();
    let a = rt.run(&loaded, &input(1), &Limits::default()).unwrap();
    let b = rt.run(&compiled, &input(1), &Limits::default()).unwrap();
    assert_eq!(a.raw, b.raw);
    assert_eq!(a.module.digest, b.module.digest);
}

#[test]
fn logs_are_captured_and_capped() {
    let rt = Runtime::new();
    let out = rt
        .generate(&default_deny(), "dd.wasm", &input(0), &Limits::default())
        .unwrap();
    assert_eq!(out.logs.len(), 1);
    assert_eq!(out.logs[0].level, LogLevel::Info);
    assert_eq!(out.logs[0].message, "default-deny: closing cluster");
    let tight = Limits {
        log_bytes: 4,
        ..Limits::default()
    };
    let m = rt.compile(&default_deny(), "dd.wasm").unwrap();
    let out = rt.run(&m, &input(0), &tight).unwrap();
    assert!(out.logs.is_empty());
    assert_eq!(out.logs_dropped, 1);
}

#[test]
fn inspect_reads_metadata_exports_and_abi_version() {
    let rt = Runtime::new();
    let bytes = default_deny();
    let info = rt.inspect(&bytes, "default-deny.wasm").unwrap();
    assert_eq!(info.name.as_deref(), Some("default-deny"));
    assert_eq!(info.version.as_deref(), Some("1.0.0"));
    assert_eq!(*info.abi_version.as_ref().unwrap(), 1);
    assert_eq!(info.size, bytes.len());
    let exports: Vec<_> = info
        .exports
        .iter()
        .map(|e| format!("{} {}", e.name, e.ty))
        .collect();
    assert_eq!(
        exports,
        [
            "memory (memory 1)",
            "sluice_abi_version (func (result i32))",
            "sluice_alloc (func (param i32) (result i32))",
            "sluice_generate (func (param i32 i32) (result i64))",
        ]
    );
    assert_eq!(info.imports[0].name, "sluice.log");
    // A module without the ABI still inspects; only the version is an error.
    let info = rt
        .inspect(&wat::parse_str("(module)").unwrap(), "empty.wasm")
        .unwrap();
    assert!(info.abi_version.is_err());
    assert!(info.name.is_none());
}
