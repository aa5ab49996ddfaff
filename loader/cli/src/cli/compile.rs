//! `sluice compile` and `sluice apply`: policy (DSL, YAML, WebAssembly modules) plus an
//! inventory, through the checks, to a bundle; `apply` then loads it as the next generation.
//!
//! Both run the same front half as `sluice check` (and print its findings; errors stop here),
//! then `compile::compile`. `compile` writes the bundle directory (`--emit bundle`) or prints
//! every distinct program's disassembly (`--emit asm`); `apply` hands the bundle to
//! [`sluice_loader::generation::apply_bundle`] without writing it anywhere, so nothing is left behind.

use super::inputs::{self, InputArgs};
use super::{PinArgs, print_diagnostics};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use miette::miette;
use sluice_compiler::bundle::Digest;
use sluice_compiler::compile::{self, CompileOptions, Compiled, Progress};
use sluice_compiler::datapath::{CodegenOptions, Mode, ProgramArtifact, emit_asm};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Below this many endpoints a progress bar would only flicker.
const PROGRESS_MIN_ENDPOINTS: usize = 200;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// The cheapest shape per decision (compare trees, hash or LPM lookups, no unused code).
    #[default]
    Specialized,
    /// Map-only, one shape for every endpoint (the Cilium shape; a baseline and an oracle).
    Generic,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// Write the bundle directory (-o).
    #[default]
    Bundle,
    /// Print each distinct program's disassembly to stdout.
    Asm,
}

/// What `compile` and `apply` share.
#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// The inventory (YAML or JSON, spec/inventory.md): the endpoints to compile for.
    #[arg(long, value_name = "INV")]
    pub inventory: PathBuf,
    /// Decision code shape.
    #[arg(long, value_enum, default_value_t = ModeArg::Specialized)]
    pub mode: ModeArg,
    /// Only the endpoints of this inventory node (and its view of `host`).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Also generate this node's datapath (spec/node.md, spec/datapath.md "Nodes"): its
    /// configuration file. `--node` defaults to the configuration's name.
    #[arg(long, value_name = "FILE")]
    pub node_config: Option<PathBuf>,
    /// Record each packet's verdict and deciding rule for `sluice trace` (the default: five
    /// instructions per program, no map; spec/trace.md).
    #[arg(long, overrides_with = "no_trace")]
    pub trace: bool,
    /// Build without rule recording: no trace instructions at all (`sluice trace` then
    /// refuses this generation).
    #[arg(long, overrides_with = "trace")]
    pub no_trace: bool,
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// The bundle directory to write (must not exist, or be empty).
    #[arg(
        short,
        long,
        value_name = "BUNDLE_DIR",
        required_if_eq("emit", "bundle")
    )]
    pub output: Option<PathBuf>,
    /// What to produce.
    #[arg(long, value_enum, default_value_t = Emit::Bundle)]
    pub emit: Emit,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Named network namespace (/run/netns) holding the host-side veths; default: this one.
    #[arg(long = "netns", value_name = "NODE_NS")]
    pub netns: Option<String>,
    #[command(flatten)]
    pub pins: PinArgs,
}

/// Reads, checks and compiles; `Ok(None)` when the input had errors (already printed).
fn build(args: &BuildArgs) -> miette::Result<Option<Compiled>> {
    let t = Instant::now();
    let inputs::Inputs {
        mut sources,
        docs,
        inventory,
        mut diags,
        mut files,
    } = inputs::read(&args.input, Some(&args.inventory));
    if diags.has_errors() {
        print_diagnostics(&diags.sorted(), &sources);
        return Ok(None);
    }
    let inventory = inventory.expect("an inventory without errors was read");
    let mut masquerade = Vec::new();
    let datapath = match &args.node_config {
        None => None,
        Some(path) => {
            let (config, mut node_diags) = compile::node_config(&mut sources, path, &mut files);
            // The masquerade exclusions the configuration names, relative to its directory.
            if let Some(c) = &config {
                let base = path.parent().unwrap_or(std::path::Path::new("."));
                let (m, d) = sluice_compiler::masq::load(c, base, &mut sources);
                node_diags.extend(d);
                masquerade = m;
            }
            if node_diags.has_errors() {
                print_diagnostics(&node_diags.sorted(), &sources);
                return Ok(None);
            }
            diags.extend(node_diags);
            config
        }
    };
    let docs: Vec<_> = docs.into_iter().map(|(_, d)| d).collect();
    let opts = CompileOptions {
        codegen: CodegenOptions {
            mode: match args.mode {
                ModeArg::Specialized => Mode::Specialized,
                ModeArg::Generic => Mode::Generic,
            },
            trace: !args.no_trace,
            ..CodegenOptions::default()
        },
        node: args
            .node
            .clone()
            .or_else(|| datapath.as_ref().map(|c| c.name.clone())),
        datapath,
        masquerade,
    };
    let mut bar: Option<ProgressBar> = None;
    let mut progress = |p: Progress| match p {
        Progress::Planned { endpoints }
            if endpoints >= PROGRESS_MIN_ENDPOINTS && std::io::stderr().is_terminal() =>
        {
            let b =
                ProgressBar::with_draw_target(Some(endpoints as u64), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} endpoints ({eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_message("compiling");
            bar = Some(b);
        }
        Progress::Planned { .. } => {}
        Progress::Endpoint { done, total } => {
            if let Some(b) = &bar {
                b.set_position(done as u64);
            } else if done % 1000 == 0 {
                tracing::info!("{done}/{total} endpoints compiled");
            }
        }
    };
    let result =
        compile::check_and_compile(&docs, &inventory, &sources, &files, &opts, &mut progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let compiled = match result {
        Ok((compiled, findings)) => {
            diags.extend(findings);
            let diags = diags.sorted();
            if !diags.is_empty() {
                print_diagnostics(&diags, &sources);
            }
            compiled
        }
        Err(compile::BuildError::Rejected(findings)) => {
            diags.extend(findings);
            print_diagnostics(&diags.sorted(), &sources);
            return Ok(None);
        }
        Err(compile::BuildError::Compile(e)) => return Err(miette!("{e}")),
    };
    if !compiled.unattached.is_empty() {
        let mut names: Vec<String> = compiled
            .unattached
            .iter()
            .take(5)
            .map(|e| e.to_string())
            .collect();
        if compiled.unattached.len() > 5 {
            names.push(format!("and {} more", compiled.unattached.len() - 5));
        }
        eprintln!(
            "warning: {} endpoint(s) have neither `interface` nor `netns` in the inventory, so the bundle does not attach their programs: {}",
            compiled.unattached.len(),
            names.join(", ")
        );
    }
    tracing::info!(elapsed = ?t.elapsed(), times = ?compiled.times, "compiled");
    Ok(Some(compiled))
}

fn summary(c: &Compiled) -> String {
    format!(
        "{} endpoint(s), {} identities, {} program(s) on {} hook(s)",
        c.endpoints.len(),
        c.identities,
        c.bundle.artifacts.len(),
        c.bundle.attachments.len()
    )
}

pub fn run_compile(args: CompileArgs) -> miette::Result<ExitCode> {
    // (clap's `required_if_eq` does not see the default value, so this is checked here.)
    if args.emit == Emit::Bundle && args.output.is_none() {
        <super::Cli as clap::CommandFactory>::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "`sluice compile` writes a bundle: give its directory with -o BUNDLE_DIR (or use --emit asm)",
            )
            .exit();
    }
    let Some(compiled) = build(&args.build)? else {
        return Ok(ExitCode::FAILURE);
    };
    match args.emit {
        Emit::Asm => print!("{}", asm(&compiled)?),
        Emit::Bundle => {
            let dir = args.output.expect("checked above");
            compiled
                .bundle
                .write(&dir)
                .map_err(|e| miette!("writing the bundle: {e}"))?;
            println!(
                "wrote {} (bundle {}): {}",
                dir.display(),
                &compiled.bundle.digest().hex()[..12],
                summary(&compiled)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every distinct program once (by its object's sha256), in endpoint order, each headed by
/// the endpoints that run it.
fn asm(c: &Compiled) -> miette::Result<String> {
    let mut groups: Vec<(Digest, &ProgramArtifact, Vec<String>)> = Vec::new();
    let mut index: HashMap<Digest, usize> = HashMap::new();
    for ep in &c.endpoints {
        for art in [&ep.programs.from_ep, &ep.programs.to_ep] {
            let id = Digest::of(&art.elf);
            let g = *index.entry(id).or_insert_with(|| {
                groups.push((id, art, Vec::new()));
                groups.len() - 1
            });
            groups[g].2.push(ep.endpoint.to_string());
        }
    }
    let mut out = String::new();
    for (id, art, users) in groups {
        out.push_str(&format!(
            "; {} of {} (object sha256 {})\n",
            art.name,
            users.join(", "),
            &id.hex()[..12]
        ));
        out.push_str(&emit_asm(art).map_err(|e| miette!("{}: {e}", art.name))?);
        out.push('\n');
    }
    Ok(out)
}

pub fn run_apply(args: ApplyArgs) -> miette::Result<ExitCode> {
    let Some(compiled) = build(&args.build)? else {
        return Ok(ExitCode::FAILURE);
    };
    if compiled.bundle.attachments.is_empty() {
        return Err(miette!(
            "nothing to apply: no endpoint of the inventory has an `interface` or `netns`"
        ));
    }
    let opts = args.pins.options(args.netns);
    let report = sluice_loader::generation::apply_bundle(&compiled.bundle, &opts)
        .map_err(|e| miette!("{e}"))?;
    super::load::print_report(&report);
    Ok(ExitCode::SUCCESS)
}
