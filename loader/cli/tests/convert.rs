//! `sluice convert` end to end: the binary reads Kubernetes, Cilium and ip-masq-agent files and
//! prints DSL; bad input prints positioned errors and nothing on stdout.

#[path = "support/cli.rs"]
mod cli;

use cli::{Scratch, sluice};
use std::process::{Command, Stdio};

#[test]
fn converts_yaml_and_dsl_inputs() {
    let s = Scratch::new("ok");
    s.write(
        "np.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports: [{port: 443}]\n",
    )
    .write("masq.json", r#"{"nonMasqueradeCIDRs": ["10.0.0.0/8"]}"#);
    let r = sluice(s.path(), &["convert", "."]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let stdout = r.stdout;
    assert!(
        stdout.contains("policy \"web\" in namespace shop {"),
        "{stdout}"
    );
    assert!(stdout.contains("ports 443/tcp"), "{stdout}");
    assert!(stdout.contains("masquerade {"), "{stdout}");
    // Directory order is sorted: masq.json before np.yaml.
    assert!(stdout.find("masquerade").unwrap() < stdout.find("policy").unwrap());

    // Its own output converts to itself.
    s.write("out.sluice", &stdout);
    let again = sluice(s.path(), &["convert", "out.sluice"]).stdout;
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("# from") && !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&again), strip(&stdout));
}

#[test]
fn errors_have_positions_and_no_output() {
    let s = Scratch::new("bad");
    s.write(
        "bad.yaml",
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec:\n  endpointSelector: {}\n  egress:\n  - toFQDNs: [{matchName: example.com}]\n",
    );
    let r = sluice(s.path(), &["convert", "bad.yaml"]);
    assert_ne!(r.code, 0);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains("not supported by sluice: toFQDNs"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("bad.yaml:7:5"), "{}", r.stderr);
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

/// What the API server accepts and the DSL rejects (host bits, overlapping ipBlocks) converts,
/// with warnings on stderr, into DSL that `sluice check` accepts without an error.
#[test]
fn ipblocks_the_api_server_accepts_convert_to_dsl_that_checks() {
    let s = Scratch::new("ipblock");
    s.write(
        "np.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: corp, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - ipBlock: {cidr: 192.168.242.213/24}\n    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}\n    - ipBlock: {cidr: 10.0.0.0/15}\n    ports: [{port: 443}]\n  - to:\n    - ipBlock: {cidr: 172.16.0.0/12}\n    - ipBlock: {cidr: 172.16.0.0/16}\n",
    );
    let r = sluice(s.path(), &["convert", "np.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("has host bits set"), "{}", r.stderr);
    // Blocks that overlap, an except keeping either from covering the other: two rules.
    for rule in [
        "egress allow to cidr 192.168.242.0/24, cidr 10.0.0.0/8 except 10.1.0.0/16 ports 443/tcp\n",
        "egress allow to cidr 10.0.0.0/15 ports 443/tcp\n",
        // A block another covers goes.
        "egress allow to cidr 172.16.0.0/12\n",
    ] {
        assert!(r.stdout.contains(rule), "{rule}\n{}", r.stdout);
    }
    s.write("out.sluice", &r.stdout);
    let c = sluice(s.path(), &["check", "out.sluice"]);
    assert_eq!(c.code, 0, "{}\n{}", c.stdout, c.stderr);
}
