//! `sluice policy apply|get|delete`: the node's policy set, through the agent.
//!
//! A policy is named by its file name (the extension picks the reader: .sluice, .yaml, .yml,
//! .json). `apply` sends the file's text; the agent compiles it with every other policy and
//! swaps, or answers with every compiler finding, rendered here like `sluice check`'s.

use super::agent::{ClientArgs, print_wire_diagnostics};
use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, WrapErr, miette};
use sluice_agent::api::{ChangeReport, ErrorBody, ErrorKind, Policy};
use sluice_agent::client::ClientError;
use sluice_agent::hyper::Method;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Put a policy file on the node (replacing the policy of the same name).
    Apply {
        /// The policy file (.sluice, .yaml, .yml, .json).
        file: PathBuf,
        /// The policy's name on the node; default: the file's name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the node's policies, or print one.
    Get {
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a policy from the node.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn escape(name: &str) -> String {
    // Names are checked by the agent; anything outside its alphabet is percent-encoded so the
    // agent sees (and rejects) the name as given, not a different path.
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn print_change(r: &ChangeReport) {
    if !r.diagnostics.is_empty() {
        print_wire_diagnostics(&ErrorBody {
            kind: ErrorKind::Rejected,
            message: String::new(),
            diagnostics: r.diagnostics.clone(),
            step: None,
        });
    }
    println!(
        "generation {} live (bundle {}): {} program(s) loaded, {} of {} hook(s) changed; compile {:.1} ms, commit {:.1} ms, swap {:.1} ms",
        r.generation,
        &r.bundle[..12.min(r.bundle.len())],
        r.programs_loaded,
        r.hooks_changed,
        r.hooks,
        r.compile_us as f64 / 1000.0,
        r.commit_us as f64 / 1000.0,
        r.swap_us as f64 / 1000.0
    );
}

pub fn run(args: PolicyArgs) -> miette::Result<ExitCode> {
    match args.command {
        PolicyCommand::Apply { file, name, client } => {
            let text = std::fs::read_to_string(&file)
                .into_diagnostic()
                .wrap_err_with(|| format!("reading {}", file.display()))?;
            let name = match name {
                Some(n) => n,
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| miette!("{} has no file name", file.display()))?,
            };
            let r: Result<ChangeReport, ClientError> = client.client().call(
                Method::PUT,
                &format!("/policies/{}", escape(&name)),
                Some(text),
            );
            match r {
                Ok(r) => client.print(&r, print_change),
                Err(e) => return client.fail(e),
            }
        }
        PolicyCommand::Get { name: None, client } => {
            match client
                .client()
                .call::<Vec<Policy>>(Method::GET, "/policies", None)
            {
                Ok(list) => client.print(&list, |list| {
                    for p in list {
                        println!("{:<40} {:>8} bytes", p.name, p.bytes);
                    }
                }),
                Err(e) => return client.fail(e),
            }
        }
        PolicyCommand::Get {
            name: Some(name),
            client,
        } => match client.client().call::<Policy>(
            Method::GET,
            &format!("/policies/{}", escape(&name)),
            None,
        ) {
            Ok(p) => client.print(&p, |p| print!("{}", p.text.as_deref().unwrap_or(""))),
            Err(e) => return client.fail(e),
        },
        PolicyCommand::Delete { name, client } => match client.client().call::<ChangeReport>(
            Method::DELETE,
            &format!("/policies/{}", escape(&name)),
            None,
        ) {
            Ok(r) => client.print(&r, print_change),
            Err(e) => return client.fail(e),
        },
    }
    Ok(ExitCode::SUCCESS)
}
