//! `sluice compile` end to end (no kernel needed): bundles that the bundle reader accepts,
//! byte-identical across runs, `--emit asm`, modules mixed with DSL, and errors that leave no
//! bundle behind.

use sluice_compiler::bundle::Bundle;
#[path = "support/cli.rs"]
mod cli;

use cli::{Run, Scratch, sluice};
use std::path::Path;

/// `sluice compile FILES --inventory inv.yaml REST` in the scratch directory.
fn compile(s: &Scratch, files: &[&str], rest: &[&str]) -> Run {
    sluice(
        s.path(),
        &[&["compile"], files, &["--inventory", "inv.yaml"], rest].concat(),
    )
}

const POLICY: &str = r#"policy "web" in namespace shop {
  select app = web
  ingress allow from pods { app = lb } ports 80/tcp
  egress allow to cidr 10.0.0.0/8 ports 5432/tcp
}
"#;

const INVENTORY: &str = r#"nodes: [{name: n1, ips: [192.168.0.1]}]
endpoints:
- {name: web-1, namespace: shop, labels: {app: web}, ips: [10.0.0.1], node: n1, interface: v-web1}
- {name: web-2, namespace: shop, labels: {app: web}, ips: [10.0.0.2], node: n1, interface: v-web2}
- {name: lb-1, namespace: shop, labels: {app: lb}, ips: [10.0.0.3], node: n1, netns: lb1}
"#;

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "programs", "maps"] {
        let d = dir.join(sub);
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn writes_a_reproducible_bundle() {
    let s = Scratch::new("bundle");
    s.write("web.sluice", POLICY).write("inv.yaml", INVENTORY);
    let r = compile(&s, &["web.sluice"], &["-o", "b1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("wrote b1 (bundle "), "{}", r.stdout);
    assert!(
        r.stdout.contains("3 endpoint(s)") && r.stdout.contains("on 6 hook(s)"),
        "{}",
        r.stdout
    );
    let bundle = Bundle::read(&s.path().join("b1")).expect("the bundle reads back");
    assert_eq!(bundle.attachments.len(), 6);
    let inputs: Vec<&str> = bundle.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inputs, ["inv.yaml", "web.sluice"]);
    // web-1 and web-2 share their programs.
    assert!(bundle.artifacts.len() <= 4, "{}", bundle.artifacts.len());
    let r = compile(&s, &["web.sluice"], &["-o", "b2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        files_of(&s.path().join("b1")),
        files_of(&s.path().join("b2"))
    );
    // An existing bundle is not overwritten.
    let r = compile(&s, &["web.sluice"], &["-o", "b1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    // The generic shape gives other programs.
    let r = compile(&s, &["web.sluice"], &["-o", "g", "--mode", "generic"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let generic = Bundle::read(&s.path().join("g")).unwrap();
    assert_ne!(generic.digest(), bundle.digest());
    // -o is required for a bundle.
    let r = compile(&s, &["web.sluice"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn emits_asm_per_distinct_program() {
    let s = Scratch::new("asm");
    s.write("web.sluice", POLICY).write("inv.yaml", INVENTORY);
    let r = compile(&s, &["web.sluice"], &["--emit", "asm"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let headers: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("; ")).collect();
    assert!(
        headers
            .iter()
            .any(|h| h.starts_with("; from_ep of shop/web-1, shop/web-2 (object sha256 ")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("; program to_ep (tcx egress), "),
        "{}",
        r.stdout
    );
    // Instructions in bpftool's syntax, ending in an exit.
    assert!(r.stdout.contains(": r6 = r1"), "{}", r.stdout);
    assert!(r.stdout.contains(": exit"), "{}", r.stdout);
    assert!(!s.path().join("b").exists());
}

#[test]
fn errors_stop_before_the_bundle() {
    let s = Scratch::new("err");
    s.write(
        "bad.sluice",
        "policy \"p\" {\n  select app = a\n  egress allow to cidr 10.1.2.3/16\n}\n",
    )
    .write("inv.yaml", INVENTORY);
    let r = compile(&s, &["bad.sluice"], &["-o", "b"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("has host bits set"), "{}", r.stderr);
    assert!(!s.path().join("b").exists());
    // The inventory is required.
    let r = sluice(s.path(), &["compile", "bad.sluice", "-o", "b"]);
    assert_eq!(r.code, 2);
}

#[test]
fn modules_and_dsl_compile_together() {
    let s = Scratch::new("wasm");
    let wat =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/wasm/wat/default-deny.wat");
    s.write("web.sluice", POLICY)
        .write("inv.yaml", INVENTORY)
        .write("deny.wat", std::fs::read_to_string(wat).unwrap());
    let r = compile(&s, &["web.sluice", "deny.wat"], &["-o", "b"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bundle = Bundle::read(&s.path().join("b")).unwrap();
    let inputs: Vec<&str> = bundle.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inputs, ["deny.wat", "inv.yaml", "web.sluice"]);
    // The module's default-deny changes the programs of every endpoint.
    let r = compile(&s, &["web.sluice"], &["-o", "plain"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plain = Bundle::read(&s.path().join("plain")).unwrap();
    let lb = |b: &Bundle| {
        b.attachments
            .iter()
            .filter(|a| a.endpoint.name == "lb-1")
            .map(|a| a.artifact)
            .collect::<Vec<_>>()
    };
    assert_ne!(lb(&bundle), lb(&plain));
}

/// `--node-config` adds the node datapath: the node maps and the VXLAN device's program,
/// attached under the `vxlan` role; a configuration that disagrees with the inventory, or a
/// bad one, writes no bundle and says why.
#[test]
fn a_node_configuration_adds_the_node_datapath() {
    let s = Scratch::new("node");
    let inv = "nodes:\n\
               - {name: n1, ips: [192.168.10.11], pod_cidr: 10.244.1.0/24}\n\
               - {name: n2, ips: [192.168.10.12], pod_cidr: 10.244.2.0/24}\n\
               endpoints:\n\
               - {name: web-1, namespace: shop, labels: {app: web}, ips: [10.244.1.10], node: n1, netns: w1}\n\
               - {name: lb-1, namespace: shop, labels: {app: lb}, ips: [10.244.2.10], node: n2, netns: l1}\n";
    let node = "name: n1\nip: 192.168.10.11\nnetwork: 192.168.10.0/24\nuplink: eth0\n\
                pod_cidr: 10.244.1.0/24\npeers:\n- {name: n2, ip: 192.168.10.12, pod_cidr: 10.244.2.0/24}\n";
    s.write("web.sluice", POLICY)
        .write("inv.yaml", inv)
        .write("n1.yaml", node)
        .write("bad.yaml", node.replace("10.244.2.0/24", "10.244.9.0/24"));
    let r = compile(
        &s,
        &["web.sluice"],
        &["--node-config", "n1.yaml", "-o", "b"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b = Bundle::read(&s.path().join("b")).unwrap();
    let names: Vec<&str> = b.shared_maps.iter().map(|m| m.def.name.as_str()).collect();
    for m in [
        "sluice_eps",
        "sluice_node",
        "sluice_node_in",
        "sluice_wire",
        "sluice_ipcache",
    ] {
        assert!(names.contains(&m), "{m} missing from {names:?}");
    }
    // Node devices are attachments with an empty namespace and their role as the name.
    let device = |role: &str| {
        b.attachments
            .iter()
            .find(|a| a.endpoint.namespace.is_empty() && a.endpoint.name == role)
            .unwrap_or_else(|| panic!("no `{role}` device attachment"))
    };
    let dev = device("vxlan");
    assert_eq!(dev.interface.as_deref(), Some("sluice_vxlan"));
    assert_eq!(b.artifacts[&dev.artifact].program, "from_overlay");
    // Masquerade is on by default: replies come back through the uplink's reverse NAT.
    let uplink = device("uplink");
    assert_eq!(uplink.interface.as_deref(), Some("eth0"));
    assert_eq!(b.artifacts[&uplink.artifact].program, "from_netdev");
    assert!(b.inputs.iter().any(|i| i.name.ends_with("n1.yaml")));

    let r = compile(
        &s,
        &["web.sluice"],
        &["--node-config", "bad.yaml", "-o", "c"],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("node `n2` is at"), "{}", r.stderr);
    assert!(!s.path().join("c").join("manifest.json").exists());
    s.write("typo.yaml", node.replace("uplink:", "uplinc:"));
    let r = compile(
        &s,
        &["web.sluice"],
        &["--node-config", "typo.yaml", "-o", "d"],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("typo.yaml:4:"), "{}", r.stderr);

    // The node datapath delivers through one per-node ingress lookup that cannot run a Wasm
    // verdict: a verdict rule is refused there, never silently skipped.
    let pass = std::fs::read(cli::repo().join("compiler/tests/golden/verdict/pass.wasm")).unwrap();
    std::fs::write(s.path().join("pass.wasm"), pass).unwrap();
    s.write(
        "guard.sluice",
        format!(
            "policy \"g\" {{\n  tier admin priority 1\n  select app = web\n  ingress verdict \"pass.wasm\" sha256 \"{PASS_WASM}\"\n}}\n"
        ),
    );
    let r = compile(
        &s,
        &["web.sluice", "guard.sluice"],
        &["--node-config", "n1.yaml", "-o", "e"],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("shop/web-1 runs a Wasm verdict module"),
        "{}",
        r.stderr
    );
    assert!(!s.path().join("e").join("manifest.json").exists());
}

/// sha256 of compiler/tests/golden/verdict/pass.wasm.
const PASS_WASM: &str = "a3d74436c7dd34344cb99790f24940fa603e7d9f90325ccbb73a9df0019c6552";

/// A verdict rule's module is an input like the policy files: the manifest records it by
/// sha256, under its path as read (relative to the rule's file).
#[test]
fn verdict_modules_are_bundle_inputs() {
    let s = Scratch::new("verdict");
    let wasm = std::fs::read(cli::repo().join("compiler/tests/golden/verdict/pass.wasm")).unwrap();
    std::fs::create_dir_all(s.path().join("sub")).unwrap();
    std::fs::write(s.path().join("sub/pass.wasm"), &wasm).unwrap();
    s.write(
        "sub/g.sluice",
        format!(
            "policy \"g\" {{\n  tier admin priority 1\n  select app = web\n  ingress verdict \"pass.wasm\" sha256 \"{PASS_WASM}\"\n}}\n"
        ),
    )
    .write("inv.yaml", INVENTORY);
    let r = compile(&s, &["sub/g.sluice"], &["-o", "b"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bundle = Bundle::read(&s.path().join("b")).unwrap();
    let module = bundle
        .inputs
        .iter()
        .find(|i| i.name == "sub/pass.wasm")
        .unwrap_or_else(|| panic!("{:?}", bundle.inputs));
    assert_eq!(module.sha256.hex(), PASS_WASM);
}
