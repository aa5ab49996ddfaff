//! `sluice module translate`, through the real binary: the listing, the located diagnostic,
//! and `--verify` (wasmtime against BPF_PROG_TEST_RUN, so this needs root like the other
//! kernel tests).

#[path = "support/cli.rs"]
mod cli;

use cli::{Scratch, repo, sluice};

const EXAMPLE: &str = "examples/wasm/verdict/ssh-syn.wat";

#[test]
fn translate_prints_the_program() {
    let out = sluice(&repo(), &["module", "translate", EXAMPLE, "--emit", "asm"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let wasm = wat::parse_file(repo().join(EXAMPLE)).unwrap();
    let digest = sluice_runtime::Digest::of(&wasm).hex();
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("; module ssh-syn.wat sha256 {digest}, function 3").as_str())
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("; program verdict (tcx ingress), "),
        "{}",
        out.stdout
    );
    // The first instruction keeps the context; the packet is read through skb_load_bytes
    // beyond the linear part; the program ends in an exit.
    assert_eq!(lines.next(), Some("   0: *(u64 *)(r10 - 8) = r1"));
    assert!(
        out.stdout.contains("call bpf_skb_load_bytes#26"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.trim_end().ends_with("exit"));
}

#[test]
fn translate_refuses_with_a_located_diagnostic() {
    let s = Scratch::new("verdict-refused");
    s.write(
        "div.wat",
        r#"(module (func (export "verdict") (param i32) (result i32)
             (i32.div_u (local.get 0) (i32.const 3))))"#,
    );
    let path = s.path().join("div.wat");
    let out = sluice(&repo(), &["module", "translate", path.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert!(
        out.stdout.is_empty(),
        "nothing printed as a program: {}",
        out.stdout
    );
    let wasm = wat::parse_file(&path).unwrap();
    let at = wasm.iter().rposition(|&b| b == 0x6e).unwrap();
    for want in [
        "div.wat: not translated".to_string(),
        "sluice::verdict::unsupported".into(),
        format!("function 0, instruction at byte offset {at:#x}: `i32.div_u`"),
        "it allows i32/i64 constants".into(),
    ] {
        assert!(
            out.stderr.contains(&want),
            "missing `{want}` in\n{}",
            out.stderr
        );
    }
}

#[test]
fn verify_runs_wasmtime_and_the_kernel_and_counts() {
    for on_trap in ["deny", "pass"] {
        let out = sluice(
            &repo(),
            &[
                "module",
                "translate",
                EXAMPLE,
                "--verify",
                "600",
                "--on-trap",
                on_trap,
            ],
        );
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            out.stdout.lines().last(),
            Some("600 passed, 0 failed"),
            "{}",
            out.stdout
        );
        assert!(!out.stdout.contains("mismatch"), "{}", out.stdout);
        assert!(
            out.stdout
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("; ssh-syn.wat: loaded; the verifier processed ")),
            "{}",
            out.stdout
        );
    }
}
