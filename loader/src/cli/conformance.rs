//! `sluice conformance run DIR`: judge an engine by the NetworkPolicy truth tables.
//!
//! Each case of the corpus (see `compiler::conformance`) is a cluster, its NetworkPolicies and
//! the expected verdict of every probe. The engine answers every probe; one line per case
//! says how many cells passed and shows the first few failures with the rules that decided
//! them. Loopback cells (a pod to itself; undefined in Kubernetes) are skipped unless asked.

use clap::{Subcommand, ValueEnum};
use miette::{IntoDiagnostic, WrapErr};
use sluice_compiler::conformance;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `writeln!` that ends the command quietly when stdout is closed (`| head`).
macro_rules! line {
    ($out:expr, $($arg:tt)*) => {
        match writeln!($out, $($arg)*) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::FAILURE),
            Err(e) => return Err(e).into_diagnostic(),
        }
    };
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Subcommand, Debug)]
pub enum Sub {
    /// Run every `case-*.yaml` of a directory (or the given case files).
    Run {
        /// A corpus directory, or case files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// What answers the probes.
        #[arg(long, value_enum, default_value_t = Engine::Reference)]
        engine: Engine,
        /// Also run loopback cells (pod to itself).
        #[arg(long)]
        include_loopback: bool,
        /// Failing cells shown per case.
        #[arg(long, default_value_t = 5)]
        show: usize,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The compiler's reference evaluator (IR semantics, no kernel).
    Reference,
}

pub fn main(args: Args) -> miette::Result<ExitCode> {
    match args.command {
        Sub::Run {
            paths,
            engine,
            include_loopback,
            show,
        } => run(&paths, engine, include_loopback, show),
    }
}

fn run(
    paths: &[PathBuf],
    engine: Engine,
    include_loopback: bool,
    show: usize,
) -> miette::Result<ExitCode> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(
                conformance::case_files(p)
                    .into_diagnostic()
                    .wrap_err_with(|| format!("reading {}", p.display()))?,
            );
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        miette::bail!("no case-*.yaml files found in {paths:?}");
    }
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed, mut skipped, mut bad_cases) = (0, 0, 0, 0);
    for f in &files {
        let report = match engine {
            Engine::Reference => {
                conformance::run_file(f, include_loopback, &mut conformance::reference_engine)
            }
        };
        passed += report.passed;
        failed += report.failed.len();
        skipped += report.skipped_loopback;
        let status = if report.failed.is_empty() && report.error.is_none() {
            "ok"
        } else {
            bad_cases += 1;
            "FAILED"
        };
        line!(
            out,
            "{status:6} {}: {} passed, {} failed",
            report.name,
            report.passed,
            report.failed.len()
        );
        if let Some(e) = &report.error {
            line!(out, "       {}", e.trim_end().replace('\n', "\n       "));
        }
        for c in report.failed.iter().take(show) {
            line!(out, "       {c}");
        }
        if report.failed.len() > show {
            line!(out, "       … and {} more", report.failed.len() - show);
        }
    }
    if include_loopback {
        line!(out, "loopback cells included");
    } else {
        line!(
            out,
            "{skipped} loopback cells skipped (pod to itself; --include-loopback runs them)"
        );
    }
    line!(
        out,
        "{} cases ({} failing), engine {engine:?}",
        files.len(),
        bad_cases
    );
    line!(out, "{passed} passed, {failed} failed");
    Ok(if failed == 0 && bad_cases == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
