//! `sluice conformance run` end to end: the whole external corpus and the project's own
//! extra cases (`tests/conformance-extra`, destinations outside the cluster) pass with the
//! reference engine, and a case with one flipped expectation fails with exit code 1 and names
//! the cell.

#[path = "support/cli.rs"]
mod cli;

use cli::corpus;
use sluice_compiler::conformance::{self, Case, Expect};
use std::path::PathBuf;

/// `sluice ARGS`: exit code and stdout.
fn sluice(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let r = cli::sluice(&cli::repo(), args);
    (r.code, r.stdout)
}

#[test]
fn whole_corpus_passes() {
    let dir = corpus();
    let (code, out) = sluice(&["conformance".as_ref(), "run".as_ref(), dir.as_os_str()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("ok ")).count(), 58);
    assert!(out.contains("3132 loopback cells skipped"), "{out}");
    assert_eq!(out.lines().last(), Some("25056 passed, 0 failed"));
}

#[test]
fn a_wrong_expectation_fails() {
    let src = corpus().join("case-001-support-a-default-deny-ingress-policy.yaml");
    let text = std::fs::read_to_string(src).unwrap();
    let cell = "{from: x/a, to: x/b, port: 80, protocol: TCP, expect: deny";
    assert!(text.contains(cell));
    let flipped = text.replace(
        cell,
        "{from: x/a, to: x/b, port: 80, protocol: TCP, expect: allow",
    );
    let s = cli::Scratch::new("flipped");
    s.write("case-900-flipped.yaml", flipped);
    let case = s.path().join("case-900-flipped.yaml");
    let (code, out) = sluice(&["conformance".as_ref(), "run".as_ref(), case.as_os_str()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("x/a -> x/b 80/TCP: expected allow, got deny"),
        "{out}"
    );
    assert!(out.contains("isolated by `deny-ingress`"), "{out}");
    assert_eq!(out.lines().last(), Some("431 passed, 1 failed"));
}

fn extra() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-extra")
}

#[test]
fn extra_cases_probe_external_ips_both_ways() {
    // The point of the extra set: every case has cells whose destination is outside the
    // cluster, and over the set such cells are expected both allowed and denied.
    let files = conformance::case_files(&extra()).unwrap();
    assert_eq!(files.len(), 7);
    let (mut allow, mut deny) = (0, 0);
    for f in &files {
        let case = Case::load(f).unwrap();
        assert!(
            case.notes.as_deref().is_some_and(|n| n.len() > 200),
            "{}",
            case.name
        );
        let external: Vec<_> = case
            .probes
            .iter()
            .filter(|p| p.to.parse::<std::net::IpAddr>().is_ok())
            .collect();
        assert!(!external.is_empty(), "{}", case.name);
        allow += external
            .iter()
            .filter(|p| p.expect == Expect::Allow)
            .count();
        deny += external.iter().filter(|p| p.expect == Expect::Deny).count();
    }
    assert!(allow >= 10 && deny >= 10, "{allow} {deny}");
}

#[test]
fn extra_cases_pass_with_the_reference_engine() {
    let dir = extra();
    let (code, out) = sluice(&["conformance".as_ref(), "run".as_ref(), dir.as_os_str()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        7,
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("118 passed, 0 failed"), "{out}");
}
