//! `sluice endpoint list|get`: the node's endpoints, from the agent's inventory.

use super::agent::ClientArgs;
use clap::{Args, Subcommand};
use miette::miette;
use sluice_agent::hyper::Method;
use sluice_compiler::resolve::inventory::Endpoint;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct EndpointArgs {
    #[command(subcommand)]
    pub command: EndpointCommand,
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Every endpoint of the node.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One endpoint, as NAMESPACE/NAME.
    Get {
        #[arg(value_name = "NAMESPACE/NAME")]
        endpoint: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn line(e: &Endpoint) {
    let ips: Vec<String> = e.ips.iter().map(|i| i.to_string()).collect();
    println!(
        "{:<32} {:<32} {}",
        format!("{}/{}", e.namespace, e.name),
        ips.join(","),
        e.interface
            .as_deref()
            .or(e.netns.as_deref())
            .unwrap_or("(unattached)")
    );
}

pub fn run(args: EndpointArgs) -> miette::Result<ExitCode> {
    match args.command {
        EndpointCommand::List { client } => {
            match client
                .client()
                .call::<Vec<Endpoint>>(Method::GET, "/endpoints", None)
            {
                Ok(list) => client.print(&list, |l| l.iter().for_each(line)),
                Err(e) => return client.fail(e),
            }
        }
        EndpointCommand::Get { endpoint, client } => {
            let (ns, name) = endpoint
                .split_once('/')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
                .ok_or_else(|| miette!("`{endpoint}`: give the endpoint as NAMESPACE/NAME"))?;
            match client.client().call::<Endpoint>(
                Method::GET,
                &format!("/endpoints/{ns}/{name}"),
                None,
            ) {
                Ok(e) => client.print(&e, |e| {
                    line(e);
                    if !e.labels.is_empty() {
                        println!(
                            "  labels: {}",
                            serde_json::to_string(&e.labels).expect("json")
                        );
                    }
                }),
                Err(e) => return client.fail(e),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
