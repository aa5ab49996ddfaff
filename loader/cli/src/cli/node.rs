//! `sluice node check FILE`: reads a node configuration (spec/node.md), checks it like policy
//! and prints what the node will run with, so a bad file is caught before it reaches a node.
//!
//! Exit 0 when the file is accepted (warnings and notes included), 1 on any error. With
//! `--output json` the accepted configuration is printed as JSON, defaults filled in, with the
//! masquerade data the datapath gets (`masq::MasqPlan`).

use super::print_diagnostics;
use clap::{Args, Subcommand, ValueEnum};
use sluice_compiler::masq::{self, MasqPlan};
use sluice_compiler::node;
use sluice_compiler::source::SourceMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Check a node configuration file; print it resolved (exit 1 on errors).
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The node configuration (YAML or JSON).
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn run(args: NodeArgs) -> miette::Result<ExitCode> {
    match args.command {
        NodeCommand::Check(a) => check(a),
    }
}

fn check(args: CheckArgs) -> miette::Result<ExitCode> {
    let mut sources = SourceMap::new();
    let (config, mut diags) = node::load(&mut sources, &args.file);
    // The masquerade sources it names are read and checked too: a bad ip-masq-agent file
    // must fail here, not on the node.
    let plan = config.as_ref().map(|c| {
        let base = args.file.parent().unwrap_or(std::path::Path::new("."));
        let (masq, d) = masq::load(c, base, &mut sources);
        diags.extend(d);
        MasqPlan::new(c, &masq)
    });
    let failed = print_diagnostics(&diags.sorted(), &sources);
    let (Some(config), Some(plan), false) = (config, plan, failed) else {
        return Ok(ExitCode::FAILURE);
    };
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"node": config, "masquerade": plan}))
                .expect("config serializes")
        ),
        Output::Text => {
            println!(
                "ok: node {} ({}, pods {}), {:?} routing, {} peer(s), pod MTU {}",
                config.name,
                config.ip,
                config.pod_cidr,
                config.routing,
                config.peers.len(),
                config.pod_mtu()
            );
            if plan.enabled {
                let ex: Vec<String> = plan.excluded.iter().map(|c| c.to_string()).collect();
                println!(
                    "masquerade to {}, except to {}",
                    plan.snat_ip,
                    ex.join(", ")
                );
            } else {
                println!("masquerade off");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
