//! `sluice status`: the current generation and, per hook, what the kernel runs there now.

use std::process::ExitCode;

use super::PinArgs;
use sluice_loader::generation;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pins: PinArgs,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let status =
        generation::status(&args.pins.options(None)).map_err(|e| miette::miette!("{e}"))?;
    let Some(s) = status else {
        if args.json {
            println!("null");
        } else {
            println!("no generation loaded");
        }
        return Ok(ExitCode::SUCCESS);
    };
    if args.json {
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
