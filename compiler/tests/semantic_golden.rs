//! Golden tests of semantic diagnostics: every `tests/golden/semantic/NAME.sluice` is parsed,
//! lowered and checked (against `NAME.inventory.yaml` when present), and the plain rendering
//! of its diagnostics must equal `NAME.stderr`. `BLESS=1 cargo test` rewrites the expectations.

use sluice_compiler::diag::{Diagnostics, render_plain};
use sluice_compiler::ir::{self, check::check};
use sluice_compiler::resolve::Inventory;
use sluice_compiler::source::{SourceMap, dsl};
use std::path::Path;

fn run_case(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let mut sm = SourceMap::new();
    let id = sm.add(name.clone(), text.clone());
    let doc = match dsl::parse(id, &text) {
        Ok(d) => d,
        Err(d) => panic!("{name} must parse:\n{}", render_plain(&d, &sm)),
    };
    let inv_path = path.with_extension("inventory.yaml");
    let inventory = inv_path
        .exists()
        .then(|| Inventory::load(&inv_path).unwrap());
    let (ir, mut diags) = ir::lower(&[doc]);
    let named = inventory.as_ref().map(|i| i.named_ports());
    let _ir = check(ir, named.as_deref(), &mut diags);
    render_plain(&Diagnostics::sorted(diags), &sm)
}

#[test]
fn semantic_goldens() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/semantic");
    let bless = std::env::var_os("BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sluice"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected at least 10 cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let got = run_case(case);
        let want_path = case.with_extension("stderr");
        if bless {
            std::fs::write(&want_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&want_path)
            .unwrap_or_else(|_| panic!("missing {}", want_path.display()));
        if got != want {
            failures.push(format!(
                "--- {}\n--- expected\n{want}\n--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
