//! The example modules in examples/wasm, end to end: build them with examples/wasm/build.sh
//! (whichever toolchain route this machine has), run each on examples/wasm/inventory.json,
//! and check the documents they return against what they are documented to generate.
//!
//! Expected documents live in examples/wasm/expected/*.json (canonical JSON, pretty-printed);
//! `SLUICE_BLESS=1` rewrites them after an intended change.

use sluice_compiler::source::ast::{self, Direction, Item, LabelOp, Peer};
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
            Some(&[Direction::Ingress, Direction::Egress][..])
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
}

#[test]
fn c_module_guards_every_namespace_but_kube_system() {
    let doc = run("ns-ingress-guard", None);
    let nss: Vec<_> = policies(&doc)
        .iter()
        .map(|p| p.namespace.clone().unwrap())
        .collect();
    assert_eq!(nss, ["payments", "shop", "vault"]);
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
    assert_eq!(ps.len(), 1);
    assert!(ps[0].namespace.is_none() && ps[0].subject.pods.exprs.is_empty());
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
