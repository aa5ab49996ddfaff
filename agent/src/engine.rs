//! The one path for every change: the policy set and inventory the agent owns, compiled
//! together and swapped in as one generation through the loader's protocol (spec/swap.md),
//! the same `check_and_compile` + `apply_bundle` that `sluice apply` runs.
//!
//! A change is compiled with everything else first; a set that does not compile is rejected
//! with every finding and nothing is written. A set that compiles is committed to the store,
//! then swapped; if the kernel refuses it, the store is put back and the running generation
//! stays (the loader leaves the kernel unchanged on any failure before the flip). Only then is
//! the change acknowledged. A crash between commit and swap leaves a committed but
//! unacknowledged change, which the restart applies: the client's retry of the same PUT is a
//! no-op.
//!
//! The engine is synchronous (compiling and the bpf syscalls block); the server runs it on
//! tokio's blocking pool behind one lock, so changes are applied one at a time, in order.

use crate::api::{self, ChangeReport, ErrorBody, ErrorKind, HookStatus, WireDiag};
use crate::store::{GenerationRecord, Store, StoreError};
use sluice_compiler::compile::{self, BuildError, CompileOptions, Compiled};
use sluice_compiler::diag::Diagnostics;
use sluice_compiler::resolve::{Inventory, InventoryFiles};
use sluice_compiler::source::SourceMap;
use sluice_compiler::source::load::read_text;
use sluice_loader::generation::{self, HookAction, LoadOptions, SwapError};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Why a change (or the startup) failed. Each maps onto one [`ErrorKind`].
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the policy set does not compile ({} error(s))", count_errors(.0))]
    Rejected(Vec<WireDiag>),
    #[error("{0}")]
    Compile(#[from] compile::CompileError),
    #[error("the kernel refused the new generation; the running one stays: {0}")]
    Swap(#[source] SwapError),
    #[error("no policy named `{0}`")]
    NotFound(String),
    #[error(
        "bad policy name `{0}`: use letters, digits, `.`, `_` and `-`, ending in .sluice, .yaml, .yml or .json"
    )]
    BadName(String),
    #[error("the agent has no inventory: start it with `sluice agent --inventory FILE`")]
    NoInventory,
    #[error("no endpoint of the inventory has an `interface` or `netns`: nothing to attach to")]
    NothingToAttach,
    #[error("the stored inventory {name} no longer reads: {message}")]
    Inventory { name: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn count_errors(d: &[WireDiag]) -> usize {
    d.iter()
        .filter(|d| d.severity == sluice_compiler::diag::WireSeverity::Error)
        .count()
}

impl AgentError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AgentError::Rejected(_) | AgentError::Compile(_) | AgentError::NothingToAttach => {
                ErrorKind::Rejected
            }
            AgentError::Swap(_) => ErrorKind::Swap,
            AgentError::NotFound(_) => ErrorKind::NotFound,
            AgentError::BadName(_) => ErrorKind::BadRequest,
            AgentError::NoInventory => ErrorKind::NoInventory,
            AgentError::Inventory { .. } | AgentError::Store(_) => ErrorKind::Internal,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            kind: self.kind(),
            message: self.to_string(),
            diagnostics: match self {
                AgentError::Rejected(d) => d.clone(),
                _ => Vec::new(),
            },
            step: match self {
                AgentError::Swap(e) => Some(e.step().as_str().to_string()),
                _ => None,
            },
        }
    }
}

/// What the engine compiles for and where it swaps.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub load: LoadOptions,
    /// Compile for this inventory node only (`CompileOptions::node`).
    pub node: Option<String>,
}

/// The live generation, as the agent knows it.
#[derive(Clone, Debug)]
struct Live {
    generation: u64,
    bundle: String,
}

pub struct Engine {
    cfg: EngineConfig,
    store: Store,
    policies: BTreeMap<String, String>,
    /// (name, text) as stored, and the parsed inventory.
    inventory: Option<(String, String, Inventory)>,
    live: Option<Live>,
    startup: &'static str,
}

/// A compiled policy set with what the compiler said about it.
struct Built {
    compiled: Compiled,
    findings: Vec<WireDiag>,
    compile_us: u64,
}

/// Policy names are file names (the extension picks the reader) and appear in diagnostics.
pub fn valid_name(name: &str) -> bool {
    let ext_ok = [".sluice", ".yaml", ".yml", ".json"]
        .iter()
        .any(|e| name.len() > e.len() && name.ends_with(e));
    ext_ok
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Engine {
    /// Opens the store, imports `inventory` when given (replacing the stored one), and brings
    /// the kernel to the stored policy set: adopts the pinned generation when it is exactly
    /// that set's bundle with every hook live, else swaps (the loader keeps unchanged hooks).
    pub fn start(
        cfg: EngineConfig,
        state_dir: &Path,
        inventory: Option<(String, String)>,
    ) -> Result<Engine, AgentError> {
        let store = Store::open(state_dir)?;
        if let Some((name, text)) = &inventory {
            store.set_inventory(name, text)?;
        }
        let loaded = store.load()?;
        let inventory = match loaded.inventory {
            Some((name, text)) => {
                let inv = Inventory::parse(&name, &text).map_err(|e| AgentError::Inventory {
                    name: name.clone(),
                    message: e.to_string(),
                })?;
                Some((name, text, inv))
            }
            None => None,
        };
        let mut engine = Engine {
            cfg,
            store,
            policies: loaded.policies,
            inventory,
            live: None,
            startup: "none",
        };
        engine.reconcile()?;
        Ok(engine)
    }

    fn reconcile(&mut self) -> Result<(), AgentError> {
        if self.inventory.is_none() || self.policies.is_empty() {
            tracing::info!(
                policies = self.policies.len(),
                inventory = self.inventory.is_some(),
                "nothing to enforce yet"
            );
            return Ok(());
        }
        let built = self.build(&self.policies)?;
        let digest = built.compiled.bundle.digest();
        if let Some(status) = generation::status(&self.cfg.load).map_err(AgentError::Swap)?
            && status.state.bundle == digest
            && status.hooks.iter().all(|h| {
                h.link.is_some_and(|l| {
                    l.ifindex != 0
                        && l.ifindex == h.state.ifindex
                        && l.prog_id == h.state.program_id
                })
            })
        {
            tracing::info!(
                generation = status.state.generation,
                bundle = %digest,
                hooks = status.hooks.len(),
                "adopted the pinned generation: same bundle, every hook live"
            );
            self.live = Some(Live {
                generation: status.state.generation,
                bundle: digest.hex(),
            });
            self.startup = "adopted";
            return Ok(());
        }
        self.swap(built, "startup".into(), Instant::now(), 0)?;
        self.startup = "applied";
        Ok(())
    }

    /// Compiles `policies` with the inventory.
    fn build(&self, policies: &BTreeMap<String, String>) -> Result<Built, AgentError> {
        let t = Instant::now();
        let Some((inv_name, inv_text, inventory)) = &self.inventory else {
            return Err(AgentError::NoInventory);
        };
        let mut sources = SourceMap::new();
        sources.add(inv_name.clone(), inv_text.clone());
        let mut docs = Vec::with_capacity(policies.len());
        let mut diags = Diagnostics::default();
        for (name, text) in policies {
            let (_, doc, d) = read_text(name, text, &mut sources);
            diags.extend(d);
            docs.push(doc);
        }
        let wire = |d: &Diagnostics, s: &SourceMap| -> Vec<WireDiag> {
            d.items.iter().map(|x| x.to_wire(s)).collect()
        };
        if diags.has_errors() {
            return Err(AgentError::Rejected(wire(&diags.sorted(), &sources)));
        }
        // The manifest records every input by sha256, as `sluice apply`'s does.
        let files: Vec<(String, Vec<u8>)> = sources
            .ids()
            .map(|id| {
                let f = sources.file(id);
                (f.name.clone(), f.text.clone().into_bytes())
            })
            .collect();
        let opts = CompileOptions {
            node: self.cfg.node.clone(),
            ..CompileOptions::default()
        };
        match compile::check_and_compile(&docs, inventory, &sources, &files, &opts, &mut |_| {}) {
            Ok((compiled, findings)) => {
                diags.extend(findings);
                if compiled.bundle.attachments.is_empty() {
                    return Err(AgentError::NothingToAttach);
                }
                let findings = wire(&diags.sorted(), &sources);
                Ok(Built {
                    compiled,
                    findings,
                    compile_us: t.elapsed().as_micros() as u64,
                })
            }
            Err(BuildError::Rejected(d)) => {
                diags.extend(d);
                Err(AgentError::Rejected(wire(&diags.sorted(), &sources)))
            }
            Err(BuildError::Compile(e)) => Err(e.into()),
        }
    }

    /// Swaps a built set in and records the generation.
    /// `received`: when the change arrived (the report's `total_us` runs from there).
    fn swap(
        &mut self,
        built: Built,
        change: String,
        received: Instant,
        commit_us: u64,
    ) -> Result<ChangeReport, AgentError> {
        let t = Instant::now();
        let report = generation::apply_bundle(&built.compiled.bundle, &self.cfg.load)
            .map_err(AgentError::Swap)?;
        let swap_us = t.elapsed().as_micros() as u64;
        let hooks_changed = report
            .hooks
            .iter()
            .filter(|h| h.action != HookAction::Unchanged)
            .count();
        let rec = GenerationRecord {
            generation: report.generation,
            bundle: report.bundle.hex(),
            change,
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            programs_loaded: report.programs_loaded,
            hooks: report.hooks.len(),
            hooks_changed,
            swap_us,
        };
        tracing::info!(
            generation = rec.generation,
            change = %rec.change,
            hooks_changed,
            programs = rec.programs_loaded,
            compile_us = built.compile_us,
            swap_us,
            "generation live"
        );
        let total = received.elapsed();
        // The generation log is informational: a failure to write it is logged, not fatal
        // (the policy set itself was committed before the swap).
        if let Err(e) = self.store.record_generation(&rec) {
            tracing::error!("recording generation {}: {e}", rec.generation);
        }
        self.live = Some(Live {
            generation: report.generation,
            bundle: rec.bundle.clone(),
        });
        Ok(ChangeReport {
            generation: report.generation,
            bundle: rec.bundle,
            programs_loaded: report.programs_loaded,
            hooks: report.hooks.len(),
            hooks_changed,
            diagnostics: built.findings,
            compile_us: built.compile_us,
            commit_us,
            swap_us,
            total_us: total.as_micros() as u64,
        })
    }

    /// `Some(text)`: put; `None`: delete. The one path for every policy change.
    pub fn change(&mut self, name: &str, text: Option<String>) -> Result<ChangeReport, AgentError> {
        let received = Instant::now();
        if !valid_name(name) {
            return Err(AgentError::BadName(name.to_string()));
        }
        let previous = self.policies.get(name).cloned();
        if text.is_none() && previous.is_none() {
            return Err(AgentError::NotFound(name.to_string()));
        }
        let mut next = self.policies.clone();
        let verb = match &text {
            Some(t) => {
                next.insert(name.to_string(), t.clone());
                "put"
            }
            None => {
                next.remove(name);
                "delete"
            }
        };
        let built = self.build(&next)?;
        let t = Instant::now();
        self.store.set_policy(name, text.as_deref())?;
        let commit_us = t.elapsed().as_micros() as u64;
        match self.swap(built, format!("{verb} {name}"), received, commit_us) {
            Ok(r) => {
                self.policies = next;
                Ok(r)
            }
            Err(e) => {
                // Put the store back: the running generation is the old set's.
                if let Err(se) = self.store.set_policy(name, previous.as_deref()) {
                    tracing::error!("restoring policy {name} after a failed swap: {se}");
                }
                Err(e)
            }
        }
    }

    pub fn policies(&self) -> Vec<api::Policy> {
        self.policies
            .iter()
            .map(|(n, t)| api::Policy {
                name: n.clone(),
                bytes: t.len(),
                text: None,
            })
            .collect()
    }

    pub fn policy(&self, name: &str) -> Result<api::Policy, AgentError> {
        let text = self
            .policies
            .get(name)
            .ok_or_else(|| AgentError::NotFound(name.to_string()))?;
        Ok(api::Policy {
            name: name.to_string(),
            bytes: text.len(),
            text: Some(text.clone()),
        })
    }

    /// The inventory's endpoints (this node's, when the agent has a node).
    pub fn endpoints(&self) -> Vec<sluice_compiler::resolve::inventory::Endpoint> {
        let Some((_, _, inv)) = &self.inventory else {
            return Vec::new();
        };
        inv.endpoints
            .iter()
            .filter(|e| self.cfg.node.is_none() || e.node == self.cfg.node)
            .cloned()
            .collect()
    }

    pub fn generations(&self) -> Result<Vec<GenerationRecord>, AgentError> {
        Ok(self.store.generations()?)
    }

    pub fn status(&self) -> Result<api::Status, AgentError> {
        let live = generation::status(&self.cfg.load).map_err(AgentError::Swap)?;
        let hooks = live
            .as_ref()
            .map(|s| {
                s.hooks
                    .iter()
                    .map(|h| HookStatus {
                        endpoint: h.state.endpoint.to_string(),
                        interface: h.state.iface.clone(),
                        hook: h.state.hook.as_str().to_string(),
                        artifact: h.state.artifact.to_string(),
                        link_id: h.link.map(|l| l.link_id),
                        program_id: h.link.map(|l| l.prog_id),
                        live: h
                            .link
                            .is_some_and(|l| l.ifindex != 0 && l.prog_id == h.state.program_id),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(api::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            node: self.cfg.node.clone(),
            node_netns: self.cfg.load.node_netns.clone(),
            policies: self.policies.len(),
            endpoints: self.endpoints().len(),
            generation: self.live.as_ref().map(|l| l.generation),
            bundle: self.live.as_ref().map(|l| l.bundle.clone()),
            startup: self.startup.to_string(),
            hooks,
        })
    }
}
