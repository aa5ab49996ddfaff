//! `sluice check`: reads policy in any form sluice understands, lowers it and runs the semantic
//! checks, and prints every finding, without compiling anything.
//!
//! It is the fast edit-check loop (and a CI gate): exit 0 when the input is accepted, warnings
//! and notes included, and 1 when anything is an error. With `--inventory`, named ports are
//! checked against the endpoints that exist.

use super::print_diagnostics;
use clap::Args;
use sluice_compiler::compile;
use sluice_compiler::diag::Diagnostics;
use sluice_compiler::source::{SourceMap, load};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Policy files or directories (.sluice, NetworkPolicy / Cilium / ip-masq-agent YAML).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The inventory (YAML or JSON, spec/inventory.md); enables the named-port checks.
    #[arg(long, value_name = "INV")]
    pub inventory: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> miette::Result<ExitCode> {
    let t = Instant::now();
    let mut sources = SourceMap::new();
    let mut diags = Diagnostics::default();
    let inventory = match &args.inventory {
        Some(p) => match compile::load_inventory(p, &mut sources) {
            Ok(inv) => Some(inv),
            Err(d) => {
                diags.push(d);
                None
            }
        },
        None => None,
    };
    let (docs, load_diags) = load::load_paths(&args.files, &mut sources);
    diags.extend(load_diags);
    tracing::info!(files = docs.len(), elapsed = ?t.elapsed(), "read");
    if diags.has_errors() {
        print_diagnostics(&diags.sorted(), &sources);
        return Ok(ExitCode::FAILURE);
    }
    let docs: Vec<_> = docs.into_iter().map(|(_, d)| d).collect();
    let checked = compile::check_documents(&docs, inventory.as_ref());
    diags.extend(checked.diags);
    let diags = diags.sorted();
    if print_diagnostics(&diags, &sources) {
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!(elapsed = ?t.elapsed(), "checked");
    println!("ok: {}", compile::summary(&checked.ir, &diags));
    Ok(ExitCode::SUCCESS)
}
