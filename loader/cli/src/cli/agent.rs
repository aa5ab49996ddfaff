//! `sluice agent` (the daemon) and what every command that talks to it shares: the socket
//! option, `--output`, and rendering the agent's errors (its compiler diagnostics through
//! miette, as `sluice check` shows them).

use clap::ValueEnum;
use miette::miette;
use sluice_agent::api::ErrorBody;
use sluice_agent::client::{Client, ClientError, DEFAULT_SOCKET};
use sluice_agent::engine::EngineConfig;
use sluice_agent::server::{self, AgentConfig, DEFAULT_BODY_LIMIT};
use sluice_compiler::source::SourceMap;
use sluice_loader::generation::LoadOptions;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The API's Unix socket (mode 0600, owned by root).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Directory of the agent's database (`agent.redb`): policies, inventory, generations.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/sluice")]
    pub state_dir: PathBuf,
    /// Import this inventory (replacing the stored one); without it the stored one is used.
    #[arg(long, value_name = "INV")]
    pub inventory: Option<PathBuf>,
    /// Compile for the endpoints of this inventory node only.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Named network namespace (/run/netns) holding the host-side veths; default: this one.
    #[arg(long = "netns", value_name = "NODE_NS")]
    pub netns: Option<String>,
    /// bpffs directory for sluice's pins.
    #[arg(long, value_name = "DIR", default_value = sluice_loader::pin::SLUICE_ROOT)]
    pub root: PathBuf,
    /// Directory of the loader's state file and lock (what `sluice apply --state-dir` takes).
    #[arg(long, value_name = "DIR", default_value = "/run/sluice")]
    pub run_dir: PathBuf,
    /// Also serve the API on TCP (needs --token-file).
    #[arg(long, value_name = "ADDR:PORT")]
    pub tcp: Option<SocketAddr>,
    /// File holding the bearer token TCP clients must send (at least 16 characters).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Largest request body accepted.
    #[arg(long, value_name = "SIZE", default_value_t = DEFAULT_BODY_LIMIT, value_parser = super::module::parse_size)]
    pub max_body: usize,
}

pub fn run(args: AgentArgs) -> miette::Result<ExitCode> {
    let inventory = match &args.inventory {
        None => None,
        Some(p) => {
            // Checked here, with a located diagnostic, before it replaces the stored one.
            let mut sources = SourceMap::new();
            if let Err(d) = sluice_compiler::compile::load_inventory(p, &mut sources) {
                return Err(d.render(&sources));
            }
            let f = sources.file(sources.ids().next().expect("the inventory was added"));
            Some((f.name.clone(), f.text.clone()))
        }
    };
    let cfg = AgentConfig {
        engine: EngineConfig {
            load: LoadOptions {
                root: args.root,
                state_dir: args.run_dir,
                node_netns: args.netns,
            },
            node: args.node,
        },
        state_dir: args.state_dir,
        socket: args.socket,
        inventory,
        tcp: args.tcp,
        token_file: args.token_file,
        body_limit: args.max_body,
    };
    server::run(cfg).map_err(|e| miette!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// What every command that talks to the agent takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// The agent's socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

impl ClientArgs {
    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// Prints `v` as JSON (with `--output json`) or through `text`.
    pub fn print<T: serde::Serialize>(&self, v: &T, text: impl FnOnce(&T)) {
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(v).expect("json")),
            Output::Text => text(v),
        }
    }

    /// An error from the agent: with `--output json` its body on stdout, else its diagnostics
    /// rendered on stderr and the message as the error.
    pub fn fail(&self, e: ClientError) -> miette::Result<ExitCode> {
        let body = match &e {
            ClientError::Api { body, .. } => body.clone(),
            _ => return Err(miette!("{e}")),
        };
        if self.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&body).expect("json"));
            return Ok(ExitCode::FAILURE);
        }
        print_wire_diagnostics(&body);
        Err(miette!("{}", body.message))
    }
}

/// The agent's diagnostics as `sluice check` prints its own (colour only on a terminal).
pub fn print_wire_diagnostics(body: &ErrorBody) {
    let reports = body.diagnostics.iter().map(|d| d.render());
    if std::io::stderr().is_terminal() {
        for r in reports {
            eprintln!("{r:?}");
        }
    } else {
        eprint!("{}", sluice_compiler::diag::render_reports_plain(reports));
    }
}
