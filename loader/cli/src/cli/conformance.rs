//! `sluice conformance run DIR`: judge an engine by the NetworkPolicy truth tables.
//!
//! Each case of the corpus (see `compiler::conformance`) is a cluster, its NetworkPolicies and
//! the expected verdict of every probe. The engine answers every probe; one line per case
//! says how many cells passed and shows the first few failures with the rules that decided
//! them. Loopback cells (a pod to itself; undefined in Kubernetes) are skipped unless asked.
//!
//! `--engine kernel` (root) runs the cases against the generated programs attached in a
//! cluster in a box (see `crate::conformance`): BPF_PROG_TEST_RUN on every cell and real
//! sockets on a sample, reported separately per case with where the time went.

use clap::{Subcommand, ValueEnum};
use miette::{IntoDiagnostic, WrapErr};
use sluice_compiler::conformance::{self, CaseReport};
use sluice_compiler::datapath;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::conformance::{KernelEngine, KernelOptions};

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
        /// Kernel engine: code shape of the decisions.
        #[arg(long, value_enum, default_value_t = CodeMode::Specialized)]
        mode: CodeMode,
        /// Kernel engine: cells per case also checked with real TCP/UDP sockets.
        #[arg(long, default_value_t = 24)]
        sample: usize,
        /// Kernel engine: seed of the socket sample.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Kernel engine: how long a socket probe waits before it counts as dropped.
        #[arg(long, default_value_t = 250)]
        socket_timeout_ms: u64,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The compiler's reference evaluator (IR semantics, no kernel).
    Reference,
    /// sluice's generated programs, attached in network namespaces (needs root).
    Kernel,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeMode {
    /// The cheapest shape per decision (compare trees or maps).
    Specialized,
    /// Map-only, the Cilium shape.
    Generic,
}

/// What `run` needs besides the files.
#[derive(Debug, Clone)]
struct RunOptions {
    engine: Engine,
    include_loopback: bool,
    show: usize,
    kernel: KernelOptions,
}

pub fn main(args: Args) -> miette::Result<ExitCode> {
    match args.command {
        Sub::Run {
            paths,
            engine,
            include_loopback,
            show,
            mode,
            sample,
            seed,
            socket_timeout_ms,
        } => run(
            &paths,
            &RunOptions {
                engine,
                include_loopback,
                show,
                kernel: KernelOptions {
                    mode: match mode {
                        CodeMode::Specialized => datapath::Mode::Specialized,
                        CodeMode::Generic => datapath::Mode::Generic,
                    },
                    sample,
                    seed,
                    timeout: Duration::from_millis(socket_timeout_ms),
                },
            },
        ),
    }
}

fn run(paths: &[PathBuf], opts: &RunOptions) -> miette::Result<ExitCode> {
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
    match opts.engine {
        Engine::Reference => run_reference(&files, opts),
        Engine::Kernel => run_kernel(&files, opts),
    }
}

fn run_reference(files: &[PathBuf], opts: &RunOptions) -> miette::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed, mut skipped, mut bad_cases) = (0, 0, 0, 0);
    for f in files {
        let report =
            conformance::run_file(f, opts.include_loopback, &mut conformance::reference_engine);
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
        for c in report.failed.iter().take(opts.show) {
            line!(out, "       {c}");
        }
        if report.failed.len() > opts.show {
            line!(out, "       … and {} more", report.failed.len() - opts.show);
        }
    }
    if opts.include_loopback {
        line!(out, "loopback cells included");
    } else {
        line!(
            out,
            "{skipped} loopback cells skipped (pod to itself; --include-loopback runs them)"
        );
    }
    line!(
        out,
        "{} cases ({} failing), engine {:?}",
        files.len(),
        bad_cases,
        opts.engine
    );
    line!(out, "{passed} passed, {failed} failed");
    Ok(if failed == 0 && bad_cases == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn run_kernel(files: &[PathBuf], opts: &RunOptions) -> miette::Result<ExitCode> {
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut engine = KernelEngine::new(opts.kernel.clone());
    // Totals per check: passed, failed.
    let mut totals = [(0usize, 0usize); 2];
    let (mut skipped, mut bad_cases) = (0, 0);
    for f in files {
        let before = engine.timings.len();
        let reports: Vec<CaseReport> =
            conformance::run_file_checks(f, opts.include_loopback, &mut engine);
        let ok = reports
            .iter()
            .all(|r| r.failed.is_empty() && r.error.is_none());
        if !ok {
            bad_cases += 1;
        }
        for (t, r) in totals.iter_mut().zip(&reports) {
            t.0 += r.passed;
            t.1 += r.failed.len();
        }
        skipped += reports.first().map_or(0, |r| r.skipped_loopback);
        let counts: Vec<String> = reports
            .iter()
            .map(|r| format!("{} {} passed, {} failed", r.check, r.passed, r.failed.len()))
            .collect();
        let timing = engine.timings.get(before).map_or_else(String::new, |t| {
            format!(
                " [{} ms: topology {}, compile {}, apply {} ({} replaced, {} unchanged, {} attached, {} programs), test-run {}, sockets {}]",
                ms(t.total),
                ms(t.topology),
                ms(t.compile),
                ms(t.apply),
                t.replaced,
                t.unchanged,
                t.attached,
                t.programs,
                ms(t.test_run),
                ms(t.sockets)
            )
        });
        let name = reports.first().map_or("?", |r| r.name.as_str());
        line!(
            out,
            "{:6} {name}: {}{timing}",
            if ok { "ok" } else { "FAILED" },
            counts.join("; ")
        );
        if let Some(r) = reports.first()
            && let Some(e) = &r.error
        {
            line!(out, "       {}", e.trim_end().replace('\n', "\n       "));
        }
        for r in &reports {
            for c in r.failed.iter().take(opts.show) {
                line!(out, "       {}: {c}", r.check);
            }
            if r.failed.len() > opts.show {
                line!(
                    out,
                    "       {}: … and {} more",
                    r.check,
                    r.failed.len() - opts.show
                );
            }
        }
    }
    engine.finish();
    if opts.include_loopback {
        line!(out, "loopback cells included");
    } else {
        line!(
            out,
            "{skipped} loopback cells skipped (pod to itself; --include-loopback runs them)"
        );
    }
    line!(
        out,
        "{} cases ({} failing), engine kernel, mode {:?}, {:.1} s",
        files.len(),
        bad_cases,
        opts.kernel.mode,
        started.elapsed().as_secs_f64()
    );
    line!(
        out,
        "test-run: {} passed, {} failed",
        totals[0].0,
        totals[0].1
    );
    line!(
        out,
        "sockets: {} passed, {} failed",
        totals[1].0,
        totals[1].1
    );
    Ok(if bad_cases == 0 && totals.iter().all(|t| t.1 == 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
