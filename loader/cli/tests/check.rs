//! `sluice check` end to end: exit codes, the summary line, and the exact rendered diagnostics
//! (run from inside a scratch directory, so file names in the output are stable).

#[path = "../../../runtime/tests/support/abi.rs"]
mod abi;
#[path = "support/cli.rs"]
mod cli;

use abi::abi_module_wat;
use cli::{Run, Scratch, sluice};
use std::path::Path;

fn check(dir: &Path, args: &[&str]) -> Run {
    sluice(dir, &[&["check"], args].concat())
}

const WEB: &str = r#"policy "web" in namespace shop {
  select app = web
  ingress allow from pods { app = lb } ports 80/tcp, 443/tcp
  egress allow to cidr 10.0.0.0/8 ports 5432/tcp
}
"#;

#[test]
fn clean_input_exits_zero_with_a_summary() {
    let s = Scratch::new("clean");
    s.write("web.sluice", WEB);
    let r = check(s.path(), &["web.sluice"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "ok: 1 policy, 2 rules, 0 warnings\n");
    assert_eq!(r.stderr, "");
}

#[test]
fn mixed_inputs_directories_and_includes() {
    let s = Scratch::new("mixed");
    s.write("dsl/main.sluice", "include \"web.sluice\"\n")
        .write("dsl/web.sluice", WEB)
        .write(
            "k8s/np.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: 5432}]\n",
        )
        .write(
            "k8s/masq.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ip-masq-agent, namespace: kube-system}\ndata:\n  config: |\n    nonMasqueradeCIDRs: [10.0.0.0/8]\n",
        );
    let r = check(s.path(), &["dsl/main.sluice", "k8s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "ok: 2 policies, 3 rules, masquerade, 0 warnings\n"
    );
}

#[test]
fn warnings_are_printed_and_accepted() {
    let s = Scratch::new("warn");
    s.write(
        "shadow.sluice",
        r#"policy "web" {
  select app = web
  ingress allow from pods { app = lb } ports 80/tcp, 443/tcp
  ingress allow from pods { app = lb, zone = a } ports 443/tcp
}
"#,
    );
    let r = check(s.path(), &["shadow.sluice"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "ok: 1 policy, 2 rules, 1 warning\n");
    assert_eq!(
        r.stderr,
        r#"sluice::rule::shadowed

  ⚠ rule 2 of policy `web` is redundant
   ╭─[shadow.sluice:3:3]
 2 │   select app = web
 3 │   ingress allow from pods { app = lb } ports 80/tcp, 443/tcp
   ·   ─────────────────────────────┬────────────────────────────
   ·                                ╰── …by this rule
 4 │   ingress allow from pods { app = lb, zone = a } ports 443/tcp
   ·   ──────────────────────────────┬─────────────────────────────
   ·                                 ╰── this rule is shadowed…
 5 │ }
   ╰────
  help: rule 1 of policy `web` already allows all of its traffic; remove it or narrow the other
        rule

0 error(s), 1 warning(s)
"#
    );
}

#[test]
fn errors_exit_one_and_print_no_summary() {
    let s = Scratch::new("err");
    s.write(
        "bits.sluice",
        "policy \"p\" {\n  select app = a\n  egress allow to cidr 10.1.2.3/16\n}\n",
    );
    let r = check(s.path(), &["bits.sluice"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        r#"sluice::cidr::host-bits

  × `10.1.2.3/16` has host bits set
   ╭─[bits.sluice:3:19]
 2 │   select app = a
 3 │   egress allow to cidr 10.1.2.3/16
   ·                   ────────┬───────
   ·                           ╰── in this CIDR
 4 │ }
   ╰────
  help: did you mean 10.1.0.0/16?

1 error(s), 0 warning(s)
"#
    );
}

#[test]
fn syntax_errors_and_unreadable_files() {
    let s = Scratch::new("syntax");
    s.write("bad.sluice", "policy \"p\" {\n  select app = \n}\n");
    let r = check(s.path(), &["bad.sluice"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad.sluice:"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    let r = check(s.path(), &["missing.sluice"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("missing.sluice"), "{}", r.stderr);
    s.write("notes.txt", "hello");
    let r = check(s.path(), &["notes.txt"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("don't know how to read"), "{}", r.stderr);
}

#[test]
fn inventory_enables_named_port_checks() {
    let s = Scratch::new("inv");
    s.write(
        "web.sluice",
        "policy \"web\" {\n  select app = web\n  ingress allow ports htp, metrics\n}\n",
    )
    .write(
        "inv.yaml",
        "endpoints:\n- name: web-1\n  namespace: shop\n  labels: {app: web}\n  ips: [10.0.0.5]\n  ports:\n  - {name: http, port: 80}\n  - {name: metrics, port: 9090}\n",
    );
    // Without an inventory, named ports cannot be judged.
    let r = check(s.path(), &["web.sluice"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "ok: 1 policy, 1 rule, 0 warnings\n");
    let r = check(s.path(), &["web.sluice", "--inventory", "inv.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "ok: 1 policy, 1 rule, 1 warning\n");
    assert!(
        r.stderr
            .contains("no endpoint declares a TCP port named `htp`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did you mean `http`?"), "{}", r.stderr);
    assert!(!r.stderr.contains("`metrics`"), "{}", r.stderr);
}

#[test]
fn inventory_errors_are_positioned() {
    let s = Scratch::new("badinv");
    s.write("web.sluice", WEB)
        .write("inv.yaml", "endpoints:\n- name: a\n  colour: red\n");
    let r = check(s.path(), &["web.sluice", "--inventory", "inv.yaml"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        r#"sluice::inventory::syntax

  × invalid inventory: unknown field `colour` (at `endpoints.0.colour`), expected one of `name`,
  │ `namespace`, `labels`, `ips`, `ports`, `node`, `interface`, `netns`
   ╭─[inv.yaml:3:3]
 2 │ - name: a
 3 │   colour: red
   ·   ┬
   ·   ╰── here
   ╰────
  help: the inventory format is described in spec/inventory.md

1 error(s), 0 warning(s)
"#
    );
    // Broken YAML syntax, and a well-formed but inconsistent inventory.
    s.write("inv2.yaml", "endpoints: [\n  {name: a\n");
    let r = check(s.path(), &["web.sluice", "--inventory", "inv2.yaml"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("╭─[inv2.yaml:2:"), "{}", r.stderr);
    assert!(!r.stderr.contains("at line"), "{}", r.stderr);
    s.write(
        "inv3.yaml",
        "endpoints:\n- {name: a, ips: [10.0.0.1]}\n- {name: b, ips: [10.0.0.1]}\n",
    );
    let r = check(s.path(), &["web.sluice", "--inventory", "inv3.yaml"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "invalid inventory inv3.yaml: 10.0.0.1 belongs to both `default/a` and `default/b`"
        ),
        "{}",
        r.stderr
    );
    let r = check(s.path(), &["web.sluice", "--inventory", "nope.yaml"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("nope.yaml"), "{}", r.stderr);
}

// --- WebAssembly modules -------------------------------------------------------------------

fn repo(path: &str) -> String {
    cli::repo().join(path).display().to_string()
}

/// The rendering wraps long messages at 100 columns; this joins them back.
fn flat(stderr: &str) -> String {
    stderr.replace("\n  │ ", " ")
}

/// A module returning the policy document of `dsl` (serialized as the ABI's JSON).
fn returning_dsl(dsl: &str) -> String {
    let doc = sluice_compiler::source::dsl::parse(sluice_compiler::source::ast::SourceId(0), dsl)
        .expect("test DSL parses");
    abi::returning_wat(&serde_json::to_string(&doc).unwrap())
}

#[test]
fn modules_mix_with_dsl_and_yaml() {
    let s = Scratch::new("wasm-mix");
    s.write("web.sluice", WEB).write(
        "np.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n",
    );
    let (wat, inv) = (
        repo("examples/wasm/wat/default-deny.wat"),
        repo("examples/wasm/inventory.json"),
    );
    let r = check(
        s.path(),
        &["web.sluice", &wat, "np.yaml", "--inventory", &inv],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // web (2 rules), db (none), and the module's two policies (one rule each).
    assert_eq!(r.stdout, "ok: 4 policies, 4 rules, 0 warnings\n");
    // Findings about the module's rules point into its output, named by module and digest.
    assert!(
        r.stderr.contains("default-deny.wat (output, sha256 "),
        "{}",
        r.stderr
    );
    // A directory's modules are read too.
    s.write("mods/deny.wat", std::fs::read_to_string(&wat).unwrap());
    let r = check(s.path(), &["mods", "--inventory", &inv]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "ok: 2 policies, 2 rules, 0 warnings\n");
}

#[test]
fn module_errors_name_the_module_and_its_digest() {
    let s = Scratch::new("wasm-err");
    let inv = repo("examples/wasm/inventory.json");
    s.write("web.sluice", WEB)
        .write("junk.wasm", "definitely not wasm");
    let digest = sluice_runtime::Digest::of(b"definitely not wasm").hex();
    let r = check(s.path(), &["web.sluice", "junk.wasm", "--inventory", &inv]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("sluice::wasm::not-wasm"), "{}", r.stderr);
    // (The rendering wraps long lines, so the name and the digest are checked apart.)
    assert!(
        r.stderr.contains("Wasm module `junk.wasm` (sha256"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&digest), "{}", r.stderr);

    // A module without an inventory has nothing to run on.
    let r = check(s.path(), &["junk.wasm"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("needs an inventory"), "{}", r.stderr);

    // Limits come from flags: fuel, output size.
    s.write(
        "spin.wat",
        abi_module_wat("(loop $l (br $l)) (unreachable)", ""),
    );
    let t = std::time::Instant::now();
    let r = check(
        s.path(),
        &["spin.wat", "--inventory", &inv, "--wasm-fuel", "100000"],
    );
    assert_eq!(r.code, 1);
    assert!(
        flat(&r.stderr).contains("ran out of fuel (limit 100000 units)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--wasm-fuel"), "{}", r.stderr);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    s.write("big.wat", returning_dsl(WEB));
    let r = check(
        s.path(),
        &["big.wat", "--inventory", &inv, "--wasm-output", "64"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("sluice::wasm::output-size"),
        "{}",
        r.stderr
    );
    let r = check(s.path(), &["big.wat", "--inventory", &inv]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "ok: 1 policy, 2 rules, 0 warnings\n");
}

#[test]
fn semantic_errors_in_module_output_point_into_it() {
    let s = Scratch::new("wasm-sem");
    let inv = repo("examples/wasm/inventory.json");
    s.write(
        "gen.wat",
        returning_dsl("policy \"m\" {\n  select app = a\n  egress allow to cidr 10.1.2.3/16\n}\n"),
    );
    let r = check(s.path(), &["gen.wat", "--inventory", &inv]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("`10.1.2.3/16` has host bits set"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("╭─[gen.wat (output, sha256 "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("│   egress allow to cidr 10.1.2.3/16"),
        "{}",
        r.stderr
    );
}

/// An IPv6 ipBlock in a NetworkPolicy is accepted with the warning that IPv6 is not
/// enforced yet (`spec/datapath.md`, "What is enforced").
#[test]
fn ipv6_ip_blocks_warn_that_ipv6_is_not_enforced() {
    let s = Scratch::new("ipv6");
    s.write(
        "np.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: v6, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  ingress:\n  - from: [{ipBlock: {cidr: 'fd00::/8'}}, {ipBlock: {cidr: 10.0.0.0/8}}]\n",
    );
    let r = check(s.path(), &["np.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "ok: 1 policy, 1 rule, 1 warning\n");
    assert!(
        r.stderr.contains("sluice::ipv6::not-enforced")
            && r.stderr
                .contains("IPv6 is not enforced yet: `fd00::/8` matches no packet"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("10.0.0.0/8` matches no packet"),
        "{}",
        r.stderr
    );
}

/// Verdict rules read their module relative to the file that names them: a DSL file's
/// directory, or a policy module's (its output has no file of its own). The module's sha256
/// is checked, and a mismatch points into the output that pinned it.
#[test]
fn verdict_modules_are_relative_to_the_file_or_module_that_names_them() {
    const PASS: &str = "a3d74436c7dd34344cb99790f24940fa603e7d9f90325ccbb73a9df0019c6552";
    let s = Scratch::new("verdict");
    let wasm = std::fs::read(repo("compiler/tests/golden/verdict/pass.wasm")).unwrap();
    std::fs::create_dir_all(s.path().join("sub/guard")).unwrap();
    std::fs::create_dir_all(s.path().join("mods/guard")).unwrap();
    std::fs::write(s.path().join("sub/guard/pass.wasm"), &wasm).unwrap();
    std::fs::write(s.path().join("mods/guard/pass.wasm"), &wasm).unwrap();
    let guard = |sha: &str| {
        format!(
            "policy \"g\" {{\n  tier admin priority 1\n  select app = web\n  ingress verdict \"guard/pass.wasm\" sha256 \"{sha}\"\n}}\n"
        )
    };
    s.write("sub/g.sluice", guard(PASS));
    let r = check(s.path(), &["sub/g.sluice"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "ok: 1 policy, 0 rules, 1 verdict rule, 0 warnings\n"
    );

    let inv = repo("examples/wasm/inventory.json");
    s.write("mods/gen.wat", returning_dsl(&guard(PASS)));
    let r = check(s.path(), &["mods/gen.wat", "--inventory", &inv]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "ok: 1 policy, 0 rules, 1 verdict rule, 0 warnings\n"
    );

    let wrong = "0".repeat(64);
    s.write("mods/gen.wat", returning_dsl(&guard(&wrong)));
    let r = check(s.path(), &["mods/gen.wat", "--inventory", &inv]);
    assert_eq!(r.code, 1);
    let err = flat(&r.stderr);
    assert!(err.contains("sluice::verdict::digest-mismatch"), "{err}");
    assert!(err.contains(&format!("has sha256 {PASS}")), "{err}");
    assert!(err.contains("gen.wat (output, sha256 "), "{err}");
}
