//! `sluice fmt`: prints `.sluice` files in canonical form, keeping comments.
//!
//! With `--check` it changes nothing and exits 1 when a file is not formatted (for CI); with
//! `--write` it rewrites files in place. A file that does not parse is reported and left alone.

use super::print_diagnostics;
use clap::Args;
use sluice_compiler::source::{SourceMap, dsl};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct FmtArgs {
    /// The files to format.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Exit with status 1 if any file would change; print nothing else.
    #[arg(long, conflicts_with = "write")]
    pub check: bool,
    /// Rewrite the files in place instead of printing them.
    #[arg(long)]
    pub write: bool,
}

pub fn run(args: FmtArgs) -> miette::Result<ExitCode> {
    let mut sources = SourceMap::new();
    let (mut failed, mut unformatted) = (false, false);
    for path in &args.files {
        let id = match sources.load(path) {
            Ok(id) => id,
            Err(e) => {
                eprintln!("error: cannot read {e}");
                failed = true;
                continue;
            }
        };
        let text = sources.file(id).text.clone();
        let formatted = match dsl::format(id, &text) {
            Ok(f) => f,
            Err(diags) => {
                print_diagnostics(&diags, &sources);
                failed = true;
                continue;
            }
        };
        if args.check {
            if formatted != text {
                eprintln!("{} is not formatted", path.display());
                unformatted = true;
            }
        } else if args.write {
            if formatted != text {
                std::fs::write(path, &formatted)
                    .map_err(|e| miette::miette!("cannot write {}: {e}", path.display()))?;
                tracing::info!(file = %path.display(), "formatted");
            }
        } else {
            print!("{formatted}");
        }
    }
    Ok(if failed || unformatted {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
