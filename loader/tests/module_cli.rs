//! `sluice module inspect` and `sluice module run`, through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn inspect_shows_identity_abi_and_exports() {
    let out = sluice(&["module", "inspect", "examples/wasm/wat/default-deny.wat"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let wasm = wat::parse_file(repo().join("examples/wasm/wat/default-deny.wat")).unwrap();
    let digest = sluice_runtime::Digest::of(&wasm).to_hex();
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
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let digest = sluice_runtime::Digest::of(&bytes).to_hex();
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
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("sluice::wasm::not-wasm"), "{stderr}");
    assert!(
        stderr.contains(&sluice_runtime::Digest::of(b"hello").to_hex()),
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
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("sluice::wasm::output-size"), "{stderr}");
    assert!(stderr.contains("--wasm-output"), "{stderr}");
}
