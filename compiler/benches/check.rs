//! Compile-time benchmark: generates a DSL file with many rules and times each stage of the
//! `sluice check` pipeline (parse, lower, semantic checks) and the whole of it, in rules per
//! second. Plain `std::time`, no harness:
//! `cargo bench -p sluice-compiler --bench check [-- RULES...]` (default: 10k and 100k).

use sluice_compiler::compile;
use sluice_compiler::diag::Severity;
use sluice_compiler::ir;
use sluice_compiler::source::ast::{Document, Item, SourceId};
use sluice_compiler::source::dsl;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// `rules` rules in policies of `per_policy`, mixing every peer and port form.
fn generate(rules: usize, per_policy: usize) -> String {
    let mut s = String::with_capacity(rules * 100);
    for p in 0..rules.div_ceil(per_policy) {
        writeln!(
            s,
            "# policy {p}\npolicy \"p{p}\" in namespace ns{} {{",
            p % 40
        )
        .unwrap();
        writeln!(
            s,
            "  select app = app{p}, tier in (web, api), !legacy\n  isolate ingress, egress"
        )
        .unwrap();
        for r in 0..per_policy.min(rules - p * per_policy) {
            let n = p * per_policy + r;
            let line = match n % 5 {
                0 => format!(
                    "ingress allow from pods {{ app = c{n} }} in namespaces {{ team = t{} }} ports {}/tcp, 8000-8080/tcp",
                    n % 7,
                    1 + n % 65000
                ),
                1 => format!(
                    "ingress deny from cidr 10.{}.{}.0/24 except 10.{}.{}.128/25",
                    n % 256,
                    (n / 256) % 256,
                    n % 256,
                    (n / 256) % 256
                ),
                2 => "egress audit to namespaces { kubernetes.io/metadata.name = kube-system } ports 53/udp, 53/tcp"
                    .to_string(),
                3 => "egress allow to world proto icmp type 8 code 0".to_string(),
                _ => format!(
                    "egress allow to pods {{ app.kubernetes.io/name = svc{n} }} ports http, {}/udp",
                    1 + n % 65000
                ),
            };
            writeln!(s, "  {line}").unwrap();
        }
        s.push_str("}\n\n");
    }
    s
}

fn count_rules(doc: &Document) -> usize {
    doc.items
        .iter()
        .map(|i| {
            if let Item::Policy(p) = i {
                p.rules.len()
            } else {
                0
            }
        })
        .sum()
}

/// Best of `runs` (the machine is shared, so the minimum is the honest figure).
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.unwrap())
}

/// Rules per second of the whole check.
#[derive(clap::Parser)]
struct Args {
    /// Rule counts to check (default: 10000 100000).
    sizes: Vec<usize>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let mut sizes = <Args as clap::Parser>::parse().sizes;
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000];
    }
    for &rules in &sizes {
        bench(rules, 50);
    }
    // The worst shape for pairwise checks: every rule competes with every other.
    bench(sizes[0], sizes[0]);
}

fn bench(rules: usize, per_policy: usize) {
    let runs = if rules > 20_000 { 2 } else { 5 };
    let text = generate(rules, per_policy);
    let (parse_t, doc) = time(runs, || {
        dsl::parse(SourceId(0), &text).expect("generated text parses")
    });
    assert_eq!(count_rules(&doc), rules);
    let (print_t, printed) = time(runs, || dsl::print(&doc));
    let docs = [doc];
    let (lower_t, (lowered, lower_diags)) = time(runs, || ir::lower(&docs));
    assert!(!lower_diags.has_errors());
    assert_eq!(lowered.rules.len(), rules);
    // The checks consume the IR: clone it outside the timed part.
    let (mut check_t, mut diags) = (Duration::MAX, lower_diags.clone());
    for _ in 0..runs {
        let (input, mut d) = (lowered.clone(), lower_diags.clone());
        let t = Instant::now();
        let checked = ir::check::check(input, None, &mut d);
        check_t = check_t.min(t.elapsed());
        drop(checked);
        diags = d;
    }
    // The whole pipeline as `sluice check` runs it, end to end.
    let (total_t, checked) = time(runs, || {
        let doc = dsl::parse(SourceId(0), &text).expect("generated text parses");
        compile::check_documents(&[doc], None)
    });
    assert_eq!(checked.ir.rules.len(), rules);
    let per_sec = |d: Duration| rules as f64 / d.as_secs_f64();
    let row = |name: &str, d: Duration| {
        println!(
            "  {name:<22} {:>9.2} ms  {:>12.0} rules/s",
            d.as_secs_f64() * 1e3,
            per_sec(d)
        )
    };
    println!(
        "{rules} rules in {} policies, {} KiB of DSL ({} warnings, {} notes)",
        rules.div_ceil(per_policy),
        text.len() / 1024,
        diags.count(Severity::Warning),
        diags.count(Severity::Note)
    );
    row("parse", parse_t);
    row("lower", lower_t);
    row("checks", check_t);
    row("check (parse+lower+checks)", total_t);
    println!(
        "  {:<22} {:>9.2} ms  {:>12.0} rules/s  ({} KiB)",
        "print (fmt)",
        print_t.as_secs_f64() * 1e3,
        per_sec(print_t),
        printed.len() / 1024
    );
}
