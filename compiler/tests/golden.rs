//! Golden tests of diagnostics: every `tests/golden/<kind>/NAME.sluice` is run through the stage
//! `<kind>` names, and the rendered diagnostics (`diag::render_plain`) must equal
//! `NAME.stderr` byte for byte. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected
//! files; review the diff by eye before committing.
//!
//! Kinds: `syntax` parses the file with the DSL parser; `readers` reads `NAME.yaml`/`.yml`/`.json`
//! with the YAML front ends (`load::read_yaml`); `node` reads node configurations
//! (`node::read`, spec/node.md); `semantic` parses, lowers and checks the file
//! (against `NAME.inventory.yaml` when present, for named ports); `verdict` parses and lowers
//! the file, then reads its verdict rules' modules relative to it (`ir::verdict::load`). Add a
//! kind by adding a directory and an arm to [`run`].

use sluice_compiler::diag::{Diagnostics, render_plain};
use sluice_compiler::ir::{self, check::check};
use sluice_compiler::node;
use sluice_compiler::resolve::Inventory;
use sluice_compiler::resolve::InventoryFiles;
use sluice_compiler::source::{SourceMap, dsl, load};
use std::path::{Path, PathBuf};

/// Runs one case and returns what it printed.
fn run(kind: &str, path: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut sources = SourceMap::new();
    let id = sources.add(name, text.clone());
    let diags: Diagnostics = match kind {
        "syntax" => match dsl::parse(id, &text) {
            Ok(_) => Diagnostics::default(),
            Err(d) => d,
        },
        "readers" => load::read_yaml(id, &text).1,
        "node" => node::read(id, &text).1,
        "semantic" => {
            let doc = dsl::parse(id, &text)
                .unwrap_or_else(|d| panic!("{name} must parse:\n{}", render_plain(&d, &sources)));
            let inventory_path = path.with_extension("inventory.yaml");
            let inventory = inventory_path
                .exists()
                .then(|| Inventory::load(&inventory_path).unwrap());
            let (ir, mut diags) = ir::lower(&[doc]);
            let named = inventory.as_ref().map(|i| i.named_ports());
            check(ir, named.as_deref(), &mut diags);
            diags.sorted()
        }
        "verdict" => {
            let doc = dsl::parse(id, &text)
                .unwrap_or_else(|d| panic!("{name} must parse:\n{}", render_plain(&d, &sources)));
            let (mut ir, mut diags) = ir::lower(&[doc]);
            let dir = path.parent().unwrap().to_path_buf();
            ir::verdict::load(&mut ir, &|_| dir.clone(), &mut diags);
            // The rule whose module passed every check has it; the others do not.
            for (_, v) in ir.verdicts.iter() {
                assert_eq!(
                    v.module.is_some(),
                    v.name.as_deref() == Some("fine"),
                    "{v:?}"
                );
            }
            diags.sorted()
        }
        other => {
            panic!("tests/golden/{other}: no runner for this directory (add one in golden.rs)")
        }
    };
    if diags.is_empty() {
        "(no diagnostics)\n".into()
    } else {
        render_plain(&diags, &sources)
    }
}

#[test]
fn golden() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let (mut cases, mut failures) = (0, Vec::new());
    for dir in dirs {
        let kind = dir.file_name().unwrap().to_str().unwrap().to_string();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                match kind.as_str() {
                    "readers" | "node" => ["yaml", "yml", "json"].contains(&ext),
                    _ => ext == "sluice",
                }
            })
            .collect();
        files.sort();
        for file in files {
            cases += 1;
            let name = format!("{kind}/{}", file.file_name().unwrap().to_str().unwrap());
            let got = run(&kind, &file, &name);
            let expected_path = file.with_extension("stderr");
            if update {
                std::fs::write(&expected_path, &got).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
            if got != expected {
                failures.push(format!(
                    "--- {name}: expected ({})\n{expected}\n--- got\n{got}",
                    expected_path.display()
                ));
            }
        }
    }
    assert!(cases > 0, "no golden cases found under {}", root.display());
    assert!(
        failures.is_empty(),
        "{} of {cases} golden cases differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
