//! `sluice conformance run` end to end: the whole external corpus passes with the reference
//! engine, and a case with one flipped expectation fails with exit code 1 and names the cell.

#[path = "support/cli.rs"]
mod cli;

use cli::corpus;

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
