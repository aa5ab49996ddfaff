//! The `sluice` command line: one file per subcommand.
//!
//! Subcommands return `miette::Result<ExitCode>`; errors are rendered here, at the edge.

pub mod agent;
pub mod check;
pub mod compile;
pub mod conformance;
pub mod convert;
pub mod demo;
pub mod endpoint;
pub mod fmt;
pub mod inputs;
pub mod lab;
pub mod load;
pub mod module;
pub mod nat;
pub mod node;
pub mod policy;
pub mod status;
pub mod trace;
pub mod unload;

use clap::{Parser, Subcommand};

/// `--output`: for people, or JSON for scripts. Every command that reports takes it.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Text,
    Json,
}

use sluice_compiler::diag::{Diagnostics, Severity};
use sluice_compiler::source::SourceMap;
use std::io::IsTerminal;
use std::path::PathBuf;
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
    /// Read, lower and check policy; print every finding (exit 1 on errors).
    Check(check::CheckArgs),
    /// Compile policy for an inventory into a bundle (or print its programs).
    Compile(compile::CompileArgs),
    /// Compile policy for an inventory and load it as the next generation.
    Apply(compile::ApplyArgs),
    /// Load a bundle as the next policy generation and flip every hook to it.
    Load(load::Args),
    /// Remove every link, pin and map sluice created.
    Unload(unload::Args),
    /// Show the current generation and what each hook runs.
    Status(status::Args),
    /// Print .sluice files in canonical form (or check / rewrite them).
    Fmt(fmt::FmtArgs),
    /// Run NetworkPolicy conformance truth tables.
    Conformance(conformance::Args),
    /// Print NetworkPolicy, Cilium, ip-masq-agent or DSL files as the equivalent DSL.
    Convert(convert::ConvertArgs),
    /// Inspect and run WebAssembly policy modules.
    Module(module::ModuleArgs),
    /// Run a packet through the programs attached now; show the verdict and deciding rule.
    Trace(trace::Args),
    /// Build a cluster in a box, apply policies/demo.sluice and show real connections.
    Demo(demo::DemoArgs),
    /// Check a node configuration (spec/node.md).
    Node(node::NodeArgs),
    /// The study's network in namespaces: LAN, router, VM, nodes and pods (spec/lab.md).
    Lab(lab::LabArgs),
    /// The node's masquerade table and counters (spec/datapath.md, "Masquerade").
    Nat(nat::Args),
    /// Run the node agent: owns the policy set, compiles and swaps each change, serves the API (spec/api.md).
    Agent(agent::AgentArgs),
    /// The node's policies, through the agent: apply, get, delete.
    Policy(policy::PolicyArgs),
    /// The node's endpoints, through the agent: list, get.
    Endpoint(endpoint::EndpointArgs),
}

/// Where sluice keeps its pins and state (the defaults are for production).
#[derive(clap::Args, Debug, Clone)]
pub struct PinArgs {
    /// bpffs directory for sluice's pins.
    #[arg(long, value_name = "DIR", default_value = sluice_loader::pin::SLUICE_ROOT)]
    pub root: PathBuf,
    /// Directory of the state file and lock.
    #[arg(long, value_name = "DIR", default_value = "/run/sluice")]
    pub state_dir: PathBuf,
}

impl PinArgs {
    pub fn options(&self, node_netns: Option<String>) -> sluice_loader::generation::LoadOptions {
        sluice_loader::generation::LoadOptions {
            root: self.root.clone(),
            state_dir: self.state_dir.clone(),
            node_netns,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs what it does (info) unless told otherwise; commands only warn.
    let daemon = u8::from(matches!(cli.command, Command::Agent(_)));
    init_tracing(cli.verbose.saturating_add(daemon));
    let result: miette::Result<ExitCode> = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Compile(args) => compile::run_compile(args),
        Command::Apply(args) => compile::run_apply(args),
        Command::Load(a) => load::run(a),
        Command::Unload(a) => unload::run(a),
        Command::Status(a) => status::run(a),
        Command::Fmt(args) => fmt::run(args),
        Command::Conformance(args) => conformance::main(args),
        Command::Convert(args) => convert::run(args),
        Command::Module(args) => module::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Node(args) => node::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Nat(args) => nat::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Endpoint(args) => endpoint::run(args),
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
