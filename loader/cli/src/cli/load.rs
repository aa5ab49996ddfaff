//! `sluice load BUNDLE`: put a compiled bundle into the kernel as the next generation.
//!
//! Thin: reads and verifies the bundle, then hands it to [`sluice_loader::generation::apply_bundle`],
//! which is also what `sluice apply` calls after compiling.

use std::path::PathBuf;
use std::process::ExitCode;

use sluice_compiler::bundle::Bundle;

use super::PinArgs;
use sluice_loader::generation::{self, GenerationReport, HookAction};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The bundle directory (`sluice compile` output).
    pub bundle: PathBuf,
    /// Named network namespace (/run/netns) holding the host-side veths; default: this one.
    #[arg(long = "netns", value_name = "NODE_NS")]
    pub netns: Option<String>,
    #[command(flatten)]
    pub pins: PinArgs,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let bundle = Bundle::read(&args.bundle).map_err(|e| miette::miette!("{e}"))?;
    let opts = args.pins.options(args.netns);
    let report = generation::apply_bundle(&bundle, &opts).map_err(|e| miette::miette!("{e}"))?;
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

/// The human summary of a generation swap.
pub fn print_report(r: &GenerationReport) {
    println!(
        "generation {} live (bundle {}), {} program(s) on {} hook(s){}",
        r.generation,
        &r.bundle.hex()[..12],
        r.programs_loaded,
        r.hooks.len(),
        r.previous
            .map(|p| format!(", replacing generation {p}"))
            .unwrap_or_default()
    );
    for h in &r.hooks {
        let what = match h.action {
            HookAction::Replaced { old_program_id } => {
                format!("replaced program {old_program_id}")
            }
            HookAction::Attached => "attached".to_string(),
            HookAction::Unchanged => "unchanged".to_string(),
        };
        println!(
            "  {:<24} {:<28} link {:>5} program {:>5}  {what}",
            h.endpoint.to_string(),
            h.target.to_string(),
            h.link_id,
            h.program_id
        );
    }
    for d in &r.detached {
        println!("  detached {}", d.display());
    }
}
