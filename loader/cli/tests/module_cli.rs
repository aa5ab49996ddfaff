//! `sluice module inspect` and `sluice module run`, through the real binary.

#[path = "support/cli.rs"]
mod cli;

use cli::{Run, repo};
use std::path::Path;

/// `sluice ARGS` from the repository root.
fn sluice(args: &[&str]) -> Run {
    cli::sluice(&repo(), args)
}

#[test]
fn inspect_shows_identity_abi_and_exports() {
    let out = sluice(&["module", "inspect", "examples/wasm/wat/default-deny.wat"]);
    let stdout = &out.stdout;
    assert_eq!(out.code, 0, "{stdout}{}", out.stderr);
    let wasm = wat::parse_file(repo().join("examples/wasm/wat/default-deny.wat")).unwrap();
    let digest = sluice_runtime::Digest::of(&wasm).hex();
    for line in [
        "module    default-deny.wat".to_string(),
        format!("sha256    {digest}"),
        "name      default-deny".into(),
        "version   1.0.0".into(),
        "abi       1 (supported)".into(),
        "imports   sluice.log (func (param i32 i32 i32))".into(),
        "exports   memory (memory 1)".into(),
        "          sluice_generate (func (param i32 i32) (result i64))".into(),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing `{line}` in\n{stdout}"
        );
    }
}

#[test]
fn errors_name_the_module_and_its_sha256() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("module-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v2.wasm");
    let bytes = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "sluice_abi_version") (result i32) (i32.const 2)))"#,
    )
    .unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let out = sluice(&["module", "inspect", path.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let stderr = &out.stderr;
    let digest = sluice_runtime::Digest::of(&bytes).hex();
    assert!(stderr.contains("sluice::wasm::abi-version"), "{stderr}");
    assert!(
        stderr.contains("v2.wasm") && stderr.contains(&digest),
        "{stderr}"
    );

    std::fs::write(dir.join("notwasm.wasm"), b"hello").unwrap();
    let out = sluice(&[
        "module",
        "inspect",
        dir.join("notwasm.wasm").to_str().unwrap(),
    ]);
    let stderr = &out.stderr;
    assert_ne!(out.code, 0);
    assert!(stderr.contains("sluice::wasm::not-wasm"), "{stderr}");
    assert!(
        stderr.contains(&sluice_runtime::Digest::of(b"hello").hex()),
        "{stderr}"
    );
}

#[test]
fn run_prints_the_document_and_limits_apply() {
    let out = sluice(&[
        "module",
        "run",
        "examples/wasm/wat/default-deny.wat",
        "--inventory",
        "examples/wasm/inventory.json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["items"][0]["name"], "default-deny");

    let out = sluice(&[
        "module",
        "run",
        "examples/wasm/wat/default-deny.wat",
        "--inventory",
        "examples/wasm/inventory.json",
        "--wasm-output",
        "100",
    ]);
    assert_ne!(out.code, 0);
    let stderr = &out.stderr;
    assert!(stderr.contains("sluice::wasm::output-size"), "{stderr}");
    assert!(stderr.contains("--wasm-output"), "{stderr}");
}
