//! `sluice lab up | exec | status | down`: the study's network in namespaces (spec/lab.md).
//!
//! `up` prints every member and its namespace, so `ip netns exec` and tcpdump can find them;
//! `exec` runs a command inside a member and exits with its status; `status` lists the members
//! (`--output json` for scripts); `down` removes exactly what `up` made, and is not an error
//! when nothing is up.

use crate::lab::{self, Lab, LabOptions, Member};
use clap::{Args, Subcommand, ValueEnum};
use miette::{IntoDiagnostic, miette};
use sluice_compiler::node::Routing;
use sluice_compiler::resolve::{Inventory, InventoryFiles};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
    /// Name prefix of every namespace (`PREFIX-node-1`, ...); one lab per prefix.
    #[arg(long, global = true, default_value = lab::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Where the state file, the node configurations and the inventory are written.
    #[arg(long, global = true, value_name = "DIR", default_value = lab::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Build the lab.
    Up(UpArgs),
    /// Run a command in a member: router, vm, node-N or NAMESPACE/POD.
    Exec(ExecArgs),
    /// List every member: name, role, node, addresses, namespace.
    Status(StatusArgs),
    /// Remove everything `up` made.
    Down,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    #[arg(long, value_enum, default_value_t = RoutingArg::Vxlan)]
    pub routing: RoutingArg,
    /// The pods and their labels (spec/inventory.md); default examples/lab/inventory.yaml.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Give the router a route to each pod CIDR via its node (the study's fix for
    /// "without masquerade").
    #[arg(long)]
    pub router_pod_routes: bool,
    /// An ip-masq-agent config for every node (copied into the state directory, named by
    /// each node configuration's `masquerade.ip_masq_agent`).
    #[arg(long, value_name = "FILE")]
    pub ip_masq_agent: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoutingArg {
    Vxlan,
    Native,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    pub member: String,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn run(args: LabArgs) -> miette::Result<ExitCode> {
    match args.command {
        LabCommand::Up(a) => up(&args.prefix, args.state_dir, a),
        LabCommand::Exec(a) => {
            let lab = loaded(&args.state_dir, &args.prefix)?;
            let status = lab::exec(&lab, &a.member, &a.command).into_diagnostic()?;
            Ok(ExitCode::from(status.code().map_or(1, |c| c as u8)))
        }
        LabCommand::Status(a) => {
            let lab = loaded(&args.state_dir, &args.prefix)?;
            print_status(&lab, a.output);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down => {
            if lab::down(&args.state_dir, &args.prefix).into_diagnostic()? {
                println!("lab {} removed", args.prefix);
            } else {
                println!("no lab {} is up: nothing to remove", args.prefix);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn loaded(state_dir: &std::path::Path, prefix: &str) -> miette::Result<Lab> {
    Lab::load(state_dir, prefix)
        .into_diagnostic()?
        .ok_or_else(|| miette!(lab::LabError::NotUp(prefix.into())))
}

fn up(prefix: &str, state_dir: PathBuf, a: UpArgs) -> miette::Result<ExitCode> {
    let routing = match a.routing {
        RoutingArg::Vxlan => Routing::Vxlan,
        RoutingArg::Native => Routing::Native,
    };
    let mut o = LabOptions::new(a.nodes, routing);
    o.prefix = prefix.into();
    o.state_dir = state_dir;
    o.router_pod_routes = a.router_pod_routes;
    if let Some(path) = &a.ip_masq_agent {
        let text = std::fs::read_to_string(path)
            .map_err(|e| miette!("cannot read {}: {e}", path.display()))?;
        o.ip_masq_agent = Some(text);
    }
    if let Some(path) = &a.inventory {
        o.inventory = Inventory::load(path).into_diagnostic()?;
    }
    let lab = lab::up(&o).into_diagnostic()?;
    print_status(&lab, Output::Text);
    println!(
        "\nnode configurations and the inventory: {}\ntry: sluice lab exec {} -- ping -c1 {}",
        lab.dir.display(),
        lab.members()
            .iter()
            .find(|m| m.role == lab::Role::Pod)
            .map_or("vm", |m| m.name.as_str()),
        lab::ROUTER_LOOPS[0]
    );
    if routing == Routing::Vxlan {
        println!(
            "vxlan mode: each node has {} (external, UDP 8472); until the node datapath is loaded, only native routing carries pod traffic between nodes",
            lab::VXLAN_DEV
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(lab: &Lab, output: Output) {
    let members = lab.members();
    match output {
        Output::Json => {
            let v = serde_json::json!({
                "prefix": lab.prefix,
                "routing": lab.routing,
                "state_dir": lab.dir,
                "members": members,
            });
            println!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        }
        Output::Text => {
            println!("lab {} ({:?} routing)", lab.prefix, lab.routing);
            for Member {
                name,
                role,
                node,
                addresses,
                netns,
            } in &members
            {
                println!(
                    "  {name:<20} {:<7} {:<8} {:<34} netns {netns}",
                    format!("{role:?}").to_lowercase(),
                    node.as_deref().unwrap_or("-"),
                    addresses.join(", "),
                );
            }
        }
    }
}
