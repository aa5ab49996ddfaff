use sluice_compiler::diag::render_plain;
use sluice_compiler::source::{SourceMap, dsl};

#[test]
fn smoke() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/demo.sluice"
    ))
    .unwrap();
    let mut sm = SourceMap::new();
    let id = sm.add("demo.sluice", text.clone());
    match dsl::parse(id, &text) {
        Ok(doc) => {
            println!("{}", dsl::print(&doc));
            println!("-----\n{}", dsl::format(id, &text).unwrap());
        }
        Err(d) => panic!("{}", render_plain(&d, &sm)),
    }
}
