//! Compile-time benchmark: generates a DSL file with many rules and times each stage. Plain
//! `std::time`, no harness: `cargo bench -p sluice-compiler --bench check [-- RULES]`.
//! Today it times parsing (and printing); lowering and checks join as they land.

use sluice_compiler::source::ast::{Document, Item, SourceId};
use sluice_compiler::source::dsl;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// `rules` rules in policies of 50, mixing every peer and port form.
fn generate(rules: usize) -> String {
    let mut s = String::with_capacity(rules * 100);
    for p in 0..rules.div_ceil(50) {
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
        for r in 0..50.min(rules - p * 50) {
            let n = p * 50 + r;
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

fn main() {
    let rules: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let text = generate(rules);
    let (parse_t, doc) = time(5, || {
        dsl::parse(SourceId(0), &text).expect("generated text parses")
    });
    assert_eq!(count_rules(&doc), rules);
    let (print_t, printed) = time(5, || dsl::print(&doc));
    let per_sec = |d: Duration| rules as f64 / d.as_secs_f64();
    println!("{rules} rules, {} KiB of DSL", text.len() / 1024);
    println!(
        "parse: {:>8.2} ms  {:>12.0} rules/s",
        parse_t.as_secs_f64() * 1e3,
        per_sec(parse_t)
    );
    println!(
        "print: {:>8.2} ms  {:>12.0} rules/s  ({} KiB)",
        print_t.as_secs_f64() * 1e3,
        per_sec(print_t),
        printed.len() / 1024
    );
}
