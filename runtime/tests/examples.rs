//! The example modules in examples/wasm, end to end: build them with examples/wasm/build.sh
//! (whichever toolchain route this machine has), run each on examples/wasm/inventory.json,
//! and check the documents they return against what they are documented to generate.
//!
//! Each document is then lowered to the IR and the reference evaluator (`compiler::eval`)
//! checks the verdicts of flows in the example inventory: the policy does what the module's
//! documentation says, not only what its JSON looks like.
//!
//! Expected documents live in examples/wasm/expected/*.json (canonical JSON, pretty-printed);
//! `SLUICE_BLESS=1` rewrites them after an intended change.

use sluice_compiler::eval::{Flow, FlowEnd, evaluate};
use sluice_compiler::ir::{L4, L4Match, lower};
use sluice_compiler::resolve::Inventory;
use sluice_compiler::resolve::InventoryFiles;
use sluice_compiler::source::ast::{self, Item, LabelOp, Peer, PolicyDirection};
use sluice_runtime::{Input, Limits, Runtime};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, OnceLock};

static RT: LazyLock<Runtime> = LazyLock::new(Runtime::new);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm")
}

/// Builds every example once per test binary; returns the output directory.
fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-modules");
        let status = Command::new(examples().join("build.sh"))
            .arg("--out")
            .arg(&out)
            .status()
            .expect("running examples/wasm/build.sh");
        assert!(status.success(), "examples/wasm/build.sh failed");
        out
    })
}

fn module(name: &str) -> Vec<u8> {
    if name.ends_with(".wat") {
        let text = std::fs::read_to_string(examples().join("wat").join(name)).unwrap();
        return wat::parse_str(text).unwrap();
    }
    let path = built().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn input(params: Option<&str>) -> Input {
    let inv = std::fs::read(examples().join("inventory.json")).unwrap();
    let params = params.map(|p| std::fs::read(examples().join(p)).unwrap());
    Input::from_json(&inv, params.as_deref()).unwrap()
}

/// Runs the module 3 times (uncached), checks the outputs are byte-identical, compares the
/// document with the expected file, and returns it.
fn run(name: &str, params: Option<&str>) -> ast::Document {
    let bytes = module(name);
    let compiled = RT.compile(&bytes, name).unwrap();
    let input = input(params);
    let outs: Vec<_> = (0..3)
        .map(|_| {
            RT.run(&compiled, &input, &Limits::default())
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    assert!(
        outs.iter()
            .all(|o| o.raw == outs[0].raw && o.fuel_used == outs[0].fuel_used)
    );
    let out = &outs[0];
    // The canonical form is what the module returned, re-serialized from the compiler's AST.
    let reparsed: ast::Document = serde_json::from_slice(&out.json).unwrap();
    assert_eq!(serde_json::to_vec(&reparsed).unwrap(), out.json);

    let stem = name.trim_end_matches(".wat");
    let expected_path = examples().join("expected").join(format!("{stem}.json"));
    let pretty = serde_json::to_string_pretty(&out.document).unwrap() + "\n";
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::create_dir_all(expected_path.parent().unwrap()).unwrap();
        std::fs::write(&expected_path, &pretty).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with SLUICE_BLESS=1)", expected_path.display()));
    assert_eq!(
        pretty,
        expected,
        "{stem}: output differs from {}",
        expected_path.display()
    );
    out.document.clone()
}

/// Checks reference verdicts: each case is (source, destination, protocol, port, allowed),
/// where an end is an endpoint name from inventory.json or an IP address.
fn verdicts(doc: &ast::Document, cases: &[(&str, &str, L4, u16, bool)]) {
    let (ir, diags) = lower(std::slice::from_ref(doc));
    assert!(!diags.has_errors(), "{diags:?}");
    let inv = Inventory::load(&examples().join("inventory.json")).unwrap();
    let end = |name: &str| match name.parse() {
        Ok(ip) => FlowEnd::Ip(ip),
        Err(_) => FlowEnd::Endpoint(
            inv.endpoints
                .iter()
                .position(|e| e.name == name)
                .unwrap_or_else(|| panic!("no endpoint {name}")),
        ),
    };
    let mut wrong = Vec::new();
    for &(src, dst, proto, port, allowed) in cases {
        let flow = Flow {
            src: end(src),
            dst: end(dst),
            l4: L4Match::Port { proto, port },
        };
        let v = evaluate(&ir, &inv, &flow).unwrap();
        if v.allow != allowed {
            wrong.push(format!(
                "{src} -> {dst} {proto:?}/{port}: allow={} ({v:?})",
                v.allow
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

fn policies(doc: &ast::Document) -> Vec<&ast::Policy> {
    doc.items
        .iter()
        .map(|i| match i {
            Item::Policy(p) => p,
            other => panic!("unexpected item {other:?}"),
        })
        .collect()
}

#[test]
fn namespace_isolation_closes_pci_namespaces() {
    let doc = run(
        "namespace-isolation",
        Some("rust/namespace-isolation/params.json"),
    );
    let ps = policies(&doc);
    let nss: Vec<_> = ps.iter().map(|p| p.namespace.as_deref().unwrap()).collect();
    assert_eq!(nss, ["payments", "vault"]);
    for p in ps {
        assert_eq!(
            p.isolate.as_deref(),
            Some(&[PolicyDirection::Ingress, PolicyDirection::Egress][..])
        );
        let cidrs: Vec<String> = p
            .rules
            .iter()
            .flat_map(|r| &r.peers)
            .filter_map(|peer| match peer {
                Peer::Cidr { cidr, .. } => Some(cidr.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(cidrs, ["203.0.113.0/24", "198.51.100.7/32"]);
    }
    use L4::*;
    verdicts(
        &doc,
        &[
            ("pay-api-1", "ledger-1", Tcp, 9090, true),
            ("ledger-1", "pay-api-1", Tcp, 8443, true),
            ("web-1", "pay-api-1", Tcp, 8443, false),
            ("vault-1", "pay-api-1", Tcp, 8443, false),
            ("pay-api-1", "web-1", Tcp, 80, false),
            ("pay-api-1", "203.0.113.5", Tcp, 443, true),
            ("pay-api-1", "203.0.113.5", Tcp, 80, false),
            ("vault-1", "198.51.100.7", Tcp, 443, true),
            ("vault-1", "198.51.100.8", Tcp, 443, false),
            ("pay-api-1", "coredns-1", Udp, 53, true),
            ("pay-api-1", "coredns-1", Udp, 54, false),
            ("web-1", "cart-1", Tcp, 8080, true),
            ("203.0.113.5", "pay-api-1", Tcp, 8443, false),
        ],
    );
    // Without params: no CIDR rule, DNS still allowed.
    let bytes = module("namespace-isolation");
    let out = RT
        .generate(
            &bytes,
            "namespace-isolation.wasm",
            &input(None),
            &Limits::default(),
        )
        .unwrap();
    let ps = policies(&out.document);
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0].rules.len(), 3);
    assert!(
        out.logs[0]
            .message
            .contains("isolated 2 namespace(s) labelled tier=pci")
    );
}

#[test]
fn namespace_isolation_reports_bad_params() {
    let bytes = module("namespace-isolation");
    let inv = std::fs::read(examples().join("inventory.json")).unwrap();
    let input = Input::from_json(&inv, Some(br#"{"egress_cidrs":["10.0.0.0/40"]}"#)).unwrap();
    let err = RT
        .generate(
            &bytes,
            "namespace-isolation.wasm",
            &input,
            &Limits::default(),
        )
        .unwrap_err();
    assert!(
        matches!(&*err.kind, sluice_runtime::ErrorKind::Reported { message } if message.contains("10.0.0.0/40")),
        "{err}"
    );
}

#[test]
fn service_egress_follows_service_labels() {
    let doc = run("service-egress", None);
    let ps = policies(&doc);
    let names: Vec<_> = ps.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["egress-cart", "egress-web"]);
    // web may call cart (target port 8080) and db's metrics port; plus DNS.
    let web = ps[1];
    assert_eq!(web.namespace.as_deref(), Some("shop"));
    assert_eq!(web.subject.pods.exprs[0].key, "app");
    assert_eq!(web.subject.pods.exprs[0].op, LabelOp::Eq);
    assert_eq!(web.subject.pods.exprs[0].values, ["web"]);
    let rules: Vec<_> = web
        .rules
        .iter()
        .map(|r| r.name.as_deref().unwrap())
        .collect();
    assert_eq!(rules, ["to-cart", "to-db-metrics", "dns"]);
    assert_eq!(
        web.rules[0].ports[0].port,
        Some(ast::PortMatch::Number(8080))
    );
    // cart may call db on the named port "pg".
    assert_eq!(
        ps[0].rules[0].ports[0].port,
        Some(ast::PortMatch::Named("pg".into()))
    );
    use L4::*;
    verdicts(
        &doc,
        &[
            ("web-1", "cart-1", Tcp, 8080, true),
            ("web-1", "cart-1", Tcp, 9999, false),
            ("web-1", "db-1", Tcp, 9187, true),
            ("web-1", "db-1", Tcp, 5432, false),
            // "pg" is db-1's container port 5432.
            ("cart-1", "db-1", Tcp, 5432, true),
            ("cart-1", "db-1", Tcp, 9187, false),
            ("cart-1", "web-1", Tcp, 80, false),
            ("web-1", "coredns-1", Udp, 53, true),
            ("web-1", "8.8.8.8", Tcp, 443, false),
            // Apps no service names are not restricted.
            ("db-1", "8.8.8.8", Tcp, 443, true),
            ("pay-api-1", "web-1", Tcp, 80, true),
        ],
    );
}

#[test]
fn c_module_guards_every_namespace_but_kube_system() {
    let doc = run("ns-ingress-guard", None);
    let nss: Vec<_> = policies(&doc)
        .iter()
        .map(|p| p.namespace.clone().unwrap())
        .collect();
    assert_eq!(nss, ["payments", "shop", "vault"]);
    use L4::*;
    verdicts(
        &doc,
        &[
            ("web-1", "cart-1", Tcp, 8080, true),
            ("pay-api-1", "web-1", Tcp, 80, false),
            ("coredns-1", "web-1", Tcp, 80, false),
            ("8.8.8.8", "cart-1", Tcp, 8080, false),
            // kube-system is exempt, and egress is not touched.
            ("web-1", "coredns-1", Udp, 53, true),
            ("web-1", "8.8.8.8", Tcp, 443, true),
        ],
    );
    // params.exempt is honoured.
    let inv = std::fs::read(examples().join("inventory.json")).unwrap();
    let input = Input::from_json(&inv, Some(br#"{"exempt":["shop","nope"]}"#)).unwrap();
    let out = RT
        .generate(
            &module("ns-ingress-guard"),
            "ns-ingress-guard.wasm",
            &input,
            &Limits::default(),
        )
        .unwrap();
    let nss: Vec<_> = policies(&out.document)
        .iter()
        .map(|p| p.namespace.clone().unwrap())
        .collect();
    assert_eq!(nss, ["payments", "vault"]);
}

#[test]
fn wat_module_denies_by_default() {
    let doc = run("default-deny.wat", None);
    let ps = policies(&doc);
    assert_eq!(ps.len(), 2);
    assert!(ps[0].namespace.is_none() && ps[0].subject.pods.exprs.is_empty());
    use L4::*;
    verdicts(
        &doc,
        &[
            ("web-1", "cart-1", Tcp, 8080, false),
            ("web-1", "8.8.8.8", Tcp, 443, false),
            ("8.8.8.8", "web-1", Tcp, 80, false),
            ("web-1", "coredns-1", Udp, 53, true),
            ("pay-api-1", "coredns-1", Tcp, 53, true),
            ("web-1", "coredns-1", Tcp, 80, false),
            ("coredns-1", "8.8.8.8", Udp, 53, false),
        ],
    );
}

#[test]
fn every_example_declares_name_and_version() {
    for (file, name, version) in [
        ("namespace-isolation", "namespace-isolation", "1.0.0"),
        ("service-egress", "service-egress", "0.3.0"),
        ("ns-ingress-guard", "ns-ingress-guard", "1.0.0"),
        ("default-deny.wat", "default-deny", "1.0.0"),
    ] {
        let info = RT.inspect(&module(file), file).unwrap();
        assert_eq!(info.name.as_deref(), Some(name), "{file}");
        assert_eq!(info.version.as_deref(), Some(version), "{file}");
        assert_eq!(*info.abi_version.as_ref().unwrap(), 1, "{file}");
        // Nothing but the ABI is imported.
        assert!(
            info.imports.iter().all(|i| i.name == "sluice.log"),
            "{file}: {:?}",
            info.imports
        );
    }
}

/// An IPv4/TCP packet from `src` to port `dport` with TCP `flags`, IHL 5.
fn tcp_packet(src: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[33] = flags;
    p
}

/// The Rust verdict example, built for wasm32v1-none with the SDK's `#[verdict]`, is a v1
/// module: only the pkt_* imports, one reachable function, no memory or global access, no
/// calls but to the imports, no loops; and the translator accepts it.
#[test]
fn rust_verdict_example_fits_v1() {
    use wasmparser::{Operator, Parser, Payload, TypeRef};
    let wasm = module("ssh-syn-guard");
    let mut imports = Vec::new();
    let mut ops = Vec::new();
    for payload in Parser::new(0).parse_all(&wasm) {
        match payload.unwrap() {
            Payload::ImportSection(r) => {
                for i in r.into_imports() {
                    let i = i.unwrap();
                    assert!(matches!(i.ty, TypeRef::Func(_)), "{}", i.name);
                    imports.push(format!("{}.{}", i.module, i.name));
                }
            }
            Payload::StartSection { .. } => panic!("a start function"),
            Payload::CodeSectionEntry(body) => {
                let mut r = body.get_operators_reader().unwrap();
                while !r.eof() {
                    ops.push(r.read().unwrap());
                }
            }
            _ => {}
        }
    }
    imports.sort();
    assert_eq!(
        imports,
        ["sluice.pkt_u16", "sluice.pkt_u32", "sluice.pkt_u8"]
    );
    for op in &ops {
        let s = format!("{op:?}");
        let allowed = match op {
            Operator::Call { function_index } => (*function_index as usize) < imports.len(),
            Operator::Loop { .. }
            | Operator::CallIndirect { .. }
            | Operator::GlobalGet { .. }
            | Operator::GlobalSet { .. }
            | Operator::MemorySize { .. }
            | Operator::MemoryGrow { .. } => false,
            _ => !s.contains("Load") && !s.contains("Store"),
        };
        assert!(allowed, "{s} in {ops:?}");
    }
    println!(
        "ssh-syn-guard: {} bytes, {} operators",
        wasm.len(),
        ops.len()
    );
    sluice_compiler::wasm_verdict::VerdictModule::parse(&wasm)
        .unwrap_or_else(|e| panic!("the translator refuses the Rust example: {e}"));
}

/// The Rust example decides as documented, a panic is a trap, and it agrees with the WAT
/// version (examples/wasm/verdict/ssh-syn.wat) wherever that has no IHL check.
#[test]
fn rust_verdict_example_decides_like_the_wat_one() {
    use sluice_runtime::{TrapKind, VerdictOutcome, VerdictRunner};
    let rust = VerdictRunner::new(&module("ssh-syn-guard")).unwrap();
    let wat_text = std::fs::read_to_string(examples().join("verdict/ssh-syn.wat")).unwrap();
    let wat = VerdictRunner::new(&wat::parse_str(wat_text).unwrap()).unwrap();

    let cases = [
        (tcp_packet([192, 168, 1, 1], 22, 0x02), VerdictOutcome::Deny),
        (tcp_packet([10, 9, 8, 7], 22, 0x02), VerdictOutcome::Allow),
        (tcp_packet([192, 168, 1, 1], 22, 0x12), VerdictOutcome::Pass),
        (
            tcp_packet([192, 168, 1, 1], 443, 0x02),
            VerdictOutcome::Pass,
        ),
        (
            tcp_packet([11, 0, 0, 1], 22, 0x02)[..34].to_vec(),
            VerdictOutcome::Deny,
        ),
        // The flags byte is cut off: the load traps.
        (
            tcp_packet([11, 0, 0, 1], 22, 0x02)[..33].to_vec(),
            VerdictOutcome::Trap(TrapKind::PacketOutOfBounds),
        ),
        (vec![0x45; 19], VerdictOutcome::Pass),
        (vec![], VerdictOutcome::Pass),
    ];
    for (p, want) in &cases {
        assert_eq!(rust.run(p), *want, "{p:02x?}");
        assert_eq!(wat.run(p), *want, "{p:02x?}");
    }
    // IHL 4: the Rust example's assert! panics, and a panic is a trap.
    let mut short_ihl = tcp_packet([192, 168, 1, 1], 22, 0x02);
    short_ihl[0] = 0x44;
    assert_eq!(
        rust.run(&short_ihl),
        VerdictOutcome::Trap(TrapKind::Unreachable)
    );

    // Every IHL, both flag bytes of interest, sources in and out of 10/8, lengths around the
    // TCP header's end: the two agree wherever IHL >= 5.
    let mut compared = 0;
    for ihl in 5..16u8 {
        for flags in [0x02, 0x12, 0x00, 0xff] {
            for src in [[10, 0, 0, 1], [9, 255, 255, 255]] {
                for len in [20, 23, 24, 33, 34, 40, 60, 80] {
                    let l4 = ihl as usize * 4;
                    let mut p = vec![0u8; 80];
                    p[0] = 0x40 | ihl;
                    p[9] = 6;
                    p[12..16].copy_from_slice(&src);
                    p[l4 + 2..l4 + 4].copy_from_slice(&22u16.to_be_bytes());
                    if l4 + 13 < 80 {
                        p[l4 + 13] = flags;
                    }
                    p.truncate(len);
                    assert_eq!(rust.run(&p), wat.run(&p), "{p:02x?}");
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 11 * 4 * 2 * 8);
}
