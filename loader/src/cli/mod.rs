//! The `sluice` command line: one file per subcommand.
//!
//! Subcommands return `miette::Result<ExitCode>`; errors are rendered here, at the edge.

pub mod conformance;
pub mod convert;
pub mod demo;
pub mod fmt;

use clap::{Parser, Subcommand};
use sluice_compiler::diag::{Diagnostics, Severity};
use sluice_compiler::source::SourceMap;
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Network-policy compiler and eBPF datapath"
)]
pub struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print .sluice files in canonical form (or check / rewrite them).
    Fmt(fmt::FmtArgs),
    /// Run NetworkPolicy conformance truth tables.
    Conformance(conformance::Args),
    /// Print NetworkPolicy, Cilium, ip-masq-agent or DSL files as the equivalent DSL.
    Convert(convert::ConvertArgs),
    /// Build a cluster in a box, apply policies/demo.sluice and show real connections.
    Demo(demo::DemoArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result: miette::Result<ExitCode> = match cli.command {
        Command::Fmt(args) => fmt::run(args),
        Command::Conformance(args) => conformance::main(args),
        Command::Convert(args) => convert::run(args),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Prints diagnostics to stderr (colour only on a terminal) and says whether any was an error.
pub fn print_diagnostics(diags: &Diagnostics, sources: &SourceMap) -> bool {
    if std::io::stderr().is_terminal() {
        for d in &diags.items {
            eprintln!("{:?}", d.render(sources));
        }
    } else {
        eprint!("{}", sluice_compiler::diag::render_plain(diags, sources));
    }
    let (e, w) = (diags.count(Severity::Error), diags.count(Severity::Warning));
    if e + w > 0 {
        eprintln!("{e} error(s), {w} warning(s)");
    }
    diags.has_errors()
}
