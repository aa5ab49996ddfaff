//! `sluice unload`: remove every link, pin and map sluice created, and its state file.

use std::process::ExitCode;

use super::PinArgs;
use sluice_loader::generation;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub pins: PinArgs,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let report =
        generation::unload(&args.pins.options(None)).map_err(|e| miette::miette!("{e}"))?;
    match report.generation {
        Some(g) => println!(
            "unloaded generation {g}: removed {} pin(s)",
            report.removed.len()
        ),
        None if report.removed.is_empty() => println!("nothing was loaded"),
        None => println!(
            "removed {} leftover pin(s) (no state file)",
            report.removed.len()
        ),
    }
    for p in &report.removed {
        println!("  {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
