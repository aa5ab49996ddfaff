//! `sluice check`: reads policy in any form sluice understands (WebAssembly modules included),
//! lowers it and runs the semantic checks, and prints every finding, without compiling anything.
//!
//! It is the fast edit-check loop (and a CI gate): exit 0 when the input is accepted, warnings
//! and notes included, and 1 when anything is an error. With `--inventory`, named ports are
//! checked against the endpoints that exist, and modules can run.

use super::inputs::{self, InputArgs};
use super::print_diagnostics;
use clap::Args;
use sluice_compiler::compile;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// The inventory (YAML or JSON, spec/inventory.md): enables the named-port checks, and is
    /// what WebAssembly modules run on.
    #[arg(long, value_name = "INV")]
    pub inventory: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> miette::Result<ExitCode> {
    let t = Instant::now();
    let inputs::Inputs {
        sources,
        docs,
        inventory,
        mut diags,
        ..
    } = inputs::read(&args.input, args.inventory.as_deref());
    tracing::info!(documents = docs.len(), elapsed = ?t.elapsed(), "read");
    if diags.has_errors() {
        print_diagnostics(&diags.sorted(), &sources);
        return Ok(ExitCode::FAILURE);
    }
    let docs: Vec<_> = docs.into_iter().map(|(_, d)| d).collect();
    let checked = compile::check_documents_in(&docs, inventory.as_ref(), Some(&sources));
    tracing::info!(lower = ?checked.times.lower, checks = ?checked.times.check, "checked");
    diags.extend(checked.diags);
    let diags = diags.sorted();
    if print_diagnostics(&diags, &sources) {
        return Ok(ExitCode::FAILURE);
    }
    println!("ok: {}", compile::summary(&checked.ir, &diags));
    Ok(ExitCode::SUCCESS)
}
