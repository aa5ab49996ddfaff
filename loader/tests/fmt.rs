//! `sluice fmt` end to end: stdout, `--check`, `--write`, and errors rendered with a location.

use std::path::PathBuf;
use std::process::Command;

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("sluice-fmt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sluice(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap()
}

const MESSY: &str =
    "# web\npolicy web {select app=web\ningress allow from pods{app=client} ports 80 # http\n}\n";
const CLEAN: &str = "# web\npolicy \"web\" {\n  select app = web\n  ingress allow from pods { app = client } ports 80/tcp # http\n}\n";

#[test]
fn fmt_prints_checks_and_writes() {
    let dir = Scratch::new("ok");
    let file = dir.0.join("web.sluice");
    std::fs::write(&file, MESSY).unwrap();

    let out = sluice(&["fmt".as_ref(), file.as_os_str()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), CLEAN);

    let out = sluice(&["fmt".as_ref(), "--check".as_ref(), file.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not formatted"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        MESSY,
        "--check must not write"
    );

    let out = sluice(&["fmt".as_ref(), "--write".as_ref(), file.as_os_str()]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), CLEAN);

    let out = sluice(&["fmt".as_ref(), "--check".as_ref(), file.as_os_str()]);
    assert!(out.status.success());
}

#[test]
fn fmt_reports_syntax_errors_with_location() {
    let dir = Scratch::new("bad");
    let file = dir.0.join("bad.sluice");
    std::fs::write(
        &file,
        "policy \"web\" {\n  select all\n  ingress allow ports 80/tpc\n}\n",
    )
    .unwrap();
    let out = sluice(&["fmt".as_ref(), file.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown protocol \"tpc\""), "{err}");
    assert!(err.contains("bad.sluice:3:26"), "{err}");
    assert!(err.contains("did you mean tcp?"), "{err}");
    assert!(out.stdout.is_empty());
}
