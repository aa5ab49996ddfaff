//! `sluice status`: the current generation and, per hook, what the kernel runs there now.
//!
//! With an agent running on `--socket`, the agent answers (its policies, endpoints, how it
//! started, and every hook as the kernel reports it). Without one, this reads the loader's
//! state directly, as it did before the agent existed, and says on stderr that no agent runs.

use std::process::ExitCode;

use super::PinArgs;
use super::agent::{ClientArgs, Output};
use sluice_agent::api as agent_api;
use sluice_agent::client::ClientError;
use sluice_agent::hyper::Method;
use sluice_loader::generation;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON instead of a table (the same as `--output json`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pins: PinArgs,
    #[command(flatten)]
    pub agent: ClientArgs,
}

pub fn run(mut args: Args) -> miette::Result<ExitCode> {
    if args.json {
        args.agent.output = Output::Json;
    }
    match args
        .agent
        .client()
        .call::<agent_api::Status>(Method::GET, "/status", None)
    {
        Ok(s) => {
            args.agent.print(&s, print_agent_status);
            return Ok(ExitCode::SUCCESS);
        }
        Err(e @ ClientError::AgentDown { .. }) => {
            eprintln!("note: {e}; reading the loader's state")
        }
        Err(e) => return args.agent.fail(e),
    }
    let json = args.agent.output == Output::Json;
    let status =
        generation::status(&args.pins.options(None)).map_err(|e| miette::miette!("{e}"))?;
    let Some(s) = status else {
        if json {
            println!("null");
        } else {
            println!("no generation loaded");
        }
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        let hooks: Vec<serde_json::Value> = s
            .hooks
            .iter()
            .map(|h| {
                serde_json::json!({
                    "endpoint": h.state.endpoint.to_string(),
                    "interface": h.state.iface,
                    "hook": h.state.hook.as_str(),
                    "artifact": h.state.artifact.to_string(),
                    "pin": h.state.pin,
                    "link_id": h.link.map(|l| l.link_id),
                    "program_id": h.link.map(|l| l.prog_id),
                    "ifindex": h.link.map(|l| l.ifindex),
                })
            })
            .collect();
        let maps: Vec<serde_json::Value> = s
            .node_maps
            .iter()
            .map(|(n, p, id)| serde_json::json!({ "name": n, "pin": p, "map_id": id }))
            .collect();
        let v = serde_json::json!({
            "generation": s.state.generation,
            "bundle": s.state.bundle.to_string(),
            "node_netns": s.state.node_netns,
            "hooks": hooks,
            "node_maps": maps,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "generation {} (bundle {}), node netns {}",
        s.state.generation,
        s.state.bundle,
        s.state.node_netns.as_deref().unwrap_or("(own)")
    );
    for h in &s.hooks {
        let live = match h.link {
            Some(l) if l.ifindex == 0 => format!("link {} DEFUNCT (interface gone)", l.link_id),
            Some(l) => format!("link {:>5} program {:>5}", l.link_id, l.prog_id),
            None => "MISSING (pin gone)".to_string(),
        };
        println!(
            "  {:<24} {:<16} {:<8} {live}",
            h.state.endpoint.to_string(),
            h.state.iface,
            h.state.hook.as_str()
        );
    }
    for (n, p, id) in &s.node_maps {
        match id {
            Some(id) => println!("  map {n} id {id} at {}", p.display()),
            None => println!("  map {n} MISSING at {}", p.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_agent_status(s: &agent_api::Status) {
    match (s.generation, &s.bundle) {
        (Some(g), Some(b)) => println!(
            "agent {} (pid {}): generation {g} (bundle {}), {} policies, {} endpoints, started: {}",
            s.version,
            s.pid,
            &b[..12.min(b.len())],
            s.policies,
            s.endpoints,
            s.startup
        ),
        _ => println!(
            "agent {} (pid {}): no generation yet, {} policies, {} endpoints",
            s.version, s.pid, s.policies, s.endpoints
        ),
    }
    for h in &s.hooks {
        let live = match (h.link_id, h.program_id) {
            (Some(l), Some(p)) if h.live => format!("link {l:>5} program {p:>5}"),
            (Some(l), _) => format!("link {l} NOT LIVE (defunct or another program)"),
            _ => "MISSING (pin gone)".to_string(),
        };
        println!(
            "  {:<24} {:<16} {:<8} {live}",
            h.endpoint, h.interface, h.hook
        );
    }
}
