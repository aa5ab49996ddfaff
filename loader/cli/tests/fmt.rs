//! `sluice fmt` end to end: stdout, `--check`, `--write`, and errors rendered with a location.

#[path = "support/cli.rs"]
mod cli;

use cli::{Scratch, sluice};

const MESSY: &str =
    "# web\npolicy web {select app=web\ningress allow from pods{app=client} ports 80 # http\n}\n";
const CLEAN: &str = "# web\npolicy \"web\" {\n  select app = web\n  ingress allow from pods { app = client } ports 80/tcp # http\n}\n";

#[test]
fn fmt_prints_checks_and_writes() {
    let s = Scratch::new("ok");
    s.write("web.sluice", MESSY);
    let file = s.path().join("web.sluice");

    let r = sluice(s.path(), &["fmt", "web.sluice"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, CLEAN);

    let r = sluice(s.path(), &["fmt", "--check", "web.sluice"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not formatted"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        MESSY,
        "--check must not write"
    );

    let r = sluice(s.path(), &["fmt", "--write", "web.sluice"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), CLEAN);

    let r = sluice(s.path(), &["fmt", "--check", "web.sluice"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn fmt_reports_syntax_errors_with_location() {
    let s = Scratch::new("bad");
    s.write(
        "bad.sluice",
        "policy \"web\" {\n  select all\n  ingress allow ports 80/tpc\n}\n",
    );
    let r = sluice(s.path(), &["fmt", "bad.sluice"]);
    assert_eq!(r.code, 1);
    let err = &r.stderr;
    assert!(err.contains("unknown protocol \"tpc\""), "{err}");
    assert!(err.contains("bad.sluice:3:26"), "{err}");
    assert!(err.contains("did you mean tcp?"), "{err}");
    assert!(r.stdout.is_empty());
}
