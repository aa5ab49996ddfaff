//! Reading what `check`, `compile` and `apply` are given: policy files of every kind, directories,
//! WebAssembly modules, and the inventory, into documents and one set of diagnostics.
//!
//! Text goes through `source::load::load_paths`. A module (`.wasm`, or `.wat` text) runs in the
//! sandbox on the inventory; its policy document is printed as DSL and parsed back under a name
//! that says which module (and which sha256) produced it, so every later finding about its
//! rules points at a line of readable text. A module that fails becomes one error naming the
//! module and its sha256, and the other inputs are still read, so one run reports everything.
//! A module's verdict rules name their Wasm files relative to the module's own file.

use super::module::{LimitArgs, read_module};
use clap::Args;
use sluice_compiler::compile;
use sluice_compiler::diag::{Diag, Diagnostics};
use sluice_compiler::resolve::Inventory;
use sluice_compiler::source::ast::{Document, Item, SourceId};
use sluice_compiler::source::{SourceMap, dsl, load};
use sluice_runtime::{Input, Runtime};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Policy files or directories: .sluice, NetworkPolicy / Cilium / ip-masq-agent YAML or
    /// JSON, and WebAssembly policy modules (.wasm, .wat).
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Parameters (a JSON file) given to every WebAssembly module; `{}` when absent.
    #[arg(long, value_name = "JSON")]
    pub wasm_params: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Everything read, ready for lowering (when `diags` has no errors).
pub struct Inputs {
    pub sources: SourceMap,
    pub docs: Vec<(SourceId, Document)>,
    pub inventory: Option<Inventory>,
    pub diags: Diagnostics,
    /// Each input file's name and bytes (modules included), for a bundle's manifest.
    pub files: Vec<(String, Vec<u8>)>,
}

const MODULE_EXTENSIONS: &[&str] = &["wasm", "wat"];

fn is_module(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MODULE_EXTENSIONS.contains(&e))
}

/// Reads the inventory (when given), then every file, running modules on the inventory.
pub fn read(args: &InputArgs, inventory: Option<&Path>) -> Inputs {
    let mut sources = SourceMap::new();
    let mut diags = Diagnostics::default();
    let inventory = match inventory {
        Some(p) => match compile::load_inventory(p, &mut sources) {
            Ok(inv) => Some(inv),
            Err(d) => {
                diags.push(d);
                None
            }
        },
        None => None,
    };
    let (mut modules, text): (Vec<PathBuf>, Vec<PathBuf>) =
        args.files.iter().cloned().partition(|p| is_module(p));
    for p in text.iter().filter(|p| p.is_dir()) {
        // load_paths walks the same directories and reports an unreadable one.
        load::files_under(
            p,
            MODULE_EXTENSIONS,
            &mut modules,
            &mut Diagnostics::default(),
        );
    }
    let (mut docs, d) = load::load_paths(&text, &mut sources);
    diags.extend(d);
    let mut files: Vec<(String, Vec<u8>)> = sources
        .ids()
        .map(|id| {
            let f = sources.file(id);
            (f.name.clone(), f.text.clone().into_bytes())
        })
        .collect();
    if !modules.is_empty() {
        run_modules(
            args,
            &modules,
            inventory.as_ref(),
            &mut sources,
            &mut docs,
            &mut files,
            &mut diags,
        );
    }
    Inputs {
        sources,
        docs,
        inventory,
        diags,
        files,
    }
}

fn run_modules(
    args: &InputArgs,
    modules: &[PathBuf],
    inventory: Option<&Inventory>,
    sources: &mut SourceMap,
    docs: &mut Vec<(SourceId, Document)>,
    files: &mut Vec<(String, Vec<u8>)>,
    diags: &mut Diagnostics,
) {
    let Some(inventory) = inventory else {
        // Without an inventory (or with a broken one, already reported) a module has no input.
        if !diags.has_errors() {
            diags.push(
                Diag::error(
                    "sluice::wasm::no-inventory",
                    format!(
                        "{} is a WebAssembly module, which needs an inventory to run on",
                        modules[0].display()
                    ),
                )
                .with_help("pass --inventory INV (spec/inventory.md)"),
            );
        }
        return;
    };
    let params = match &args.wasm_params {
        None => serde_json::json!({}),
        Some(p) => match std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("not JSON: {e}")))
        {
            Ok(v) => v,
            Err(e) => {
                diags.push(Diag::error(
                    "sluice::wasm::params",
                    format!("--wasm-params {}: {e}", p.display()),
                ));
                return;
            }
        },
    };
    let input = match Input::from_inventory(inventory, params) {
        Ok(i) => i,
        Err(e) => {
            diags.push(Diag::error("sluice::wasm::input", e.to_string()));
            return;
        }
    };
    let limits = args.limits.limits();
    let runtime = Runtime::new();
    for path in modules {
        let (bytes, _) = match read_module(path) {
            Ok(m) => m,
            Err(e) => {
                diags.push(Diag::error("sluice::wasm::read", format!("{e}")));
                continue;
            }
        };
        let name = path.display().to_string();
        files.push((name.clone(), bytes.clone()));
        let out = match runtime.generate(&bytes, &name, &input, &limits) {
            Ok(out) => out,
            Err(e) => {
                let mut d = Diag::error(e.kind.code(), e.to_string());
                if let Some(h) = e.kind.help() {
                    d = d.with_help(h);
                }
                diags.push(d);
                continue;
            }
        };
        for line in &out.logs {
            tracing::info!(module = %name, level = ?line.level, "{}", line.message);
        }
        tracing::info!(module = %out.module, fuel_used = out.fuel_used, "module ran");
        // A verdict rule's module is relative to the policy module's file; once printed,
        // the output has no file, so make the path relative to the working directory.
        let mut document = out.document.clone();
        let dir = path.parent().unwrap_or(Path::new(""));
        for item in &mut document.items {
            if let Item::Policy(p) = item {
                for v in &mut p.verdicts {
                    v.module = dir.join(&v.module).display().to_string();
                }
            }
        }
        // Printed and parsed back, so findings point at readable lines of the output.
        let text = dsl::print(&document);
        let shown = format!("{name} (output, sha256 {})", &out.module.digest.hex()[..12]);
        let id = sources.add(shown, text.clone());
        match dsl::parse(id, &text) {
            Ok(doc) => docs.push((id, doc)),
            Err(_) => {
                // The printer and parser round-trip (a property test says so); should they
                // ever disagree, the document itself is still right, only without positions.
                tracing::warn!(module = %name, "module output did not re-parse; no positions");
                docs.push((id, document));
            }
        }
    }
}
