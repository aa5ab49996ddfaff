//! `sluice convert`: prints any input sluice reads (NetworkPolicy, Cilium policies, the
//! ip-masq-agent config, or the DSL itself) as the equivalent DSL.
//!
//! It is how users see what sluice understood from their existing manifests, and how they move
//! to the DSL. Includes are followed and flattened, so the output stands alone. Notes (defaults
//! used, fields ignored) go to stderr; on any error nothing is printed to stdout.

use super::print_diagnostics;
use clap::Args;
use sluice_compiler::source::ast::{Document, Item};
use sluice_compiler::source::{SourceMap, dsl, load};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Files or directories to convert; `-` reads YAML or JSON from stdin.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: ConvertArgs) -> miette::Result<ExitCode> {
    let mut sources = SourceMap::new();
    let (paths, stdin): (Vec<PathBuf>, Vec<PathBuf>) =
        args.files.into_iter().partition(|p| p.as_os_str() != "-");
    let (mut docs, mut diags) = load::load_paths(&paths, &mut sources);
    if !stdin.is_empty() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| miette::miette!("cannot read stdin: {e}"))?;
        let id = sources.add("<stdin>", text.clone());
        let (doc, d) = load::read_yaml(id, &text);
        docs.push((id, doc));
        diags.extend(d);
    }
    let diags = diags.sorted();
    if print_diagnostics(&diags, &sources) {
        return Ok(ExitCode::FAILURE);
    }
    let mut out = String::new();
    for (id, doc) in &docs {
        // Included files are printed in their own turn, so the include items go.
        let items: Vec<Item> = doc
            .items
            .iter()
            .filter(|i| !matches!(i, Item::Include(_)))
            .cloned()
            .collect();
        if items.is_empty() {
            continue;
        }
        if docs.len() > 1 {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("# from {}\n", sources.file(*id).name));
        }
        out.push_str(&dsl::print(&Document { items }));
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
