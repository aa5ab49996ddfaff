//! `sluice convert` end to end: the binary reads Kubernetes, Cilium and ip-masq-agent files and
//! prints DSL; bad input prints positioned errors and nothing on stdout.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-convert-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn converts_yaml_and_dsl_inputs() {
    let d = dir("ok");
    std::fs::write(
        d.join("np.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports: [{port: 443}]\n",
    )
    .unwrap();
    std::fs::write(
        d.join("masq.json"),
        r#"{"nonMasqueradeCIDRs": ["10.0.0.0/8"]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("convert")
        .arg(&d)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("policy \"web\" in namespace shop {"),
        "{stdout}"
    );
    assert!(stdout.contains("ports 443/tcp"), "{stdout}");
    assert!(stdout.contains("masquerade {"), "{stdout}");
    // Directory order is sorted: masq.json before np.yaml.
    assert!(stdout.find("masquerade").unwrap() < stdout.find("policy").unwrap());

    // Its own output converts to itself.
    std::fs::write(d.join("out.sluice"), &stdout).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["convert"])
        .arg(d.join("out.sluice"))
        .output()
        .unwrap();
    let again = String::from_utf8(again.stdout).unwrap();
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("# from") && !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&again), strip(&stdout));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn errors_have_positions_and_no_output() {
    let d = dir("bad");
    let f = d.join("bad.yaml");
    std::fs::write(
        &f,
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec:\n  endpointSelector: {}\n  egress:\n  - toFQDNs: [{matchName: example.com}]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("convert")
        .arg(&f)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("not supported by sluice: toFQDNs"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.yaml:7:5"), "{stderr}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn reads_stdin() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["convert", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {name: deny}\nspec: {podSelector: {}}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("policy \"deny\" in namespace default {"),
        "{stdout}"
    );
}
