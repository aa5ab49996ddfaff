//! Swap latency at 1k endpoints: from "policy file changed" to "all hooks flipped".
//!
//! One node namespace holds 1,000 veth pairs; each pair's first end is an endpoint's
//! host-side interface (pod namespaces are left out: they add nothing to a swap, and 1,000 of
//! them take minutes to make). The endpoints fall into 10 label groups of 100, and the policy
//! file gives each group an ingress and an egress policy. Generation 1 is loaded, then the
//! file alternates between two versions that differ in one port of one group's ingress rule,
//! and each change goes through the whole path: read the file, compile (parse, lower,
//! resolve, plan, codegen, bundle), load (maps, verifier) and flip every hook.
//!
//! Prints a markdown table (p50, p99, max per stage). Run as root:
//! `cargo bench -p sluice-cli --bench swap` (`-- --swaps N --endpoints N` to change the
//! size). The target (issue 4) is p99 < 10 ms; it is reported, not asserted.

use sluice_compiler::resolve::InventoryFiles;
use std::time::{Duration, Instant};

use sluice_cli::topology::unique_prefix;
use sluice_compiler::compile::{self, CompileOptions, CompileTimes};
use sluice_compiler::resolve::Inventory;
use sluice_compiler::source::{SourceMap, dsl};
use sluice_loader::generation;

#[path = "support/swap_node.rs"]
mod swap_node;
use swap_node::{Node, inventory_yaml, ms, policy_text, print_latency_table};

fn inventory(prefix: &str, endpoints: usize) -> Inventory {
    Inventory::parse("inventory.yaml", &inventory_yaml(prefix, endpoints)).expect("inventory")
}

/// Swap latency at N endpoints, per stage.
#[derive(clap::Parser)]
struct Args {
    /// Endpoints in the node (two hooks each).
    #[arg(long, default_value_t = 1000)]
    endpoints: usize,
    /// Swaps to time.
    #[arg(long, default_value_t = 40)]
    swaps: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let Args {
        endpoints, swaps, ..
    } = <Args as clap::Parser>::parse();
    let prefix = unique_prefix();
    let t = Instant::now();
    let node = Node::new(&prefix, endpoints);
    let setup = t.elapsed();
    let inv = inventory(&prefix, endpoints);
    let opts = CompileOptions::default();
    let dir = std::env::temp_dir().join(format!("{prefix}-swap-bench"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.sluice");

    let compile = |version: usize| {
        std::fs::write(&file, policy_text(version)).unwrap();
        // "Policy file changed": from here on the clock runs.
        let t0 = Instant::now();
        let text = std::fs::read_to_string(&file).unwrap();
        let (bundle, ct, front) = compile_policy(&text, &inv, &opts);
        (t0, bundle, ct, front)
    };
    let (_, first, _, _) = compile(0);
    let t = Instant::now();
    let r = generation::apply_bundle(&first, &node.opts).expect("generation 1");
    let first_load = t.elapsed();
    let hooks = r.hooks.len();

    let mut rows: Vec<[Duration; 10]> = Vec::new();
    let mut programs = 0;
    let mut flipped = 0;
    for i in 1..=swaps {
        let (t0, bundle, ct, front) = compile(i);
        let r = generation::apply_bundle(&bundle, &node.opts).expect("swap");
        let tm = r.timings;
        programs = r.programs_loaded;
        flipped = r
            .hooks
            .iter()
            .filter(|h| h.action != generation::HookAction::Unchanged)
            .count();
        rows.push([
            tm.flip_finished - t0,
            front,
            ct.resolve + ct.plan,
            ct.codegen,
            ct.bundle,
            tm.prepare,
            tm.map_create + tm.map_fill,
            tm.program_load,
            tm.flip,
            tm.after,
        ]);
    }
    let names = [
        "**total: file changed → all hooks flipped**",
        "compile: read, parse, lower, checks (with the inventory)",
        "compile: resolve, plan",
        "compile: codegen",
        "compile: bundle (sha256, dedup)",
        "load: prepare (state, interfaces, links)",
        "load: maps (create + fill)",
        "load: programs (verifier)",
        "flip (BPF_LINK_UPDATE per changed hook)",
        "after the flip (state file; not in total)",
    ];
    println!(
        "\n### Swap latency, {endpoints} endpoints ({hooks} tcx hooks)\n\n\
         {swaps} swaps; each changes one port of one group's ingress rule (100 endpoints). \
         Per swap: {programs} distinct programs loaded, {flipped} hooks flipped. \
         Setup: {endpoints} veth pairs in {:.1} s, first generation loaded in {} ms.\n",
        setup.as_secs_f64(),
        ms(first_load)
    );
    println!("| stage | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|");
    print_latency_table(&names, &rows);
    let _ = std::fs::remove_dir_all(&dir);
    drop(node);
}

/// Parses, checks and compiles the policy file's text the way `sluice apply` does.
fn compile_policy(
    text: &str,
    inv: &Inventory,
    opts: &CompileOptions,
) -> (sluice_compiler::bundle::Bundle, CompileTimes, Duration) {
    let t = Instant::now();
    let mut sources = SourceMap::new();
    let id = sources.add("policy.sluice", text);
    let doc = dsl::parse(id, text).expect("the bench policy parses");
    let checked = compile::check_documents(&[doc], Some(inv));
    assert!(!checked.diags.has_errors(), "{:?}", checked.diags);
    let front = t.elapsed();
    let inputs = [("policy.sluice".to_string(), text.as_bytes().to_vec())];
    let out =
        compile::compile(&checked.ir, inv, &sources, &inputs, opts, &mut |_| {}).expect("compile");
    (out.bundle, out.times, front)
}
