//! Fuzzes the DSL parser: any input must give a document or diagnostics, never a panic, and a
//! document must print to text that parses back to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_compiler::source::ast::SourceId;
use sluice_compiler::source::dsl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(doc) = dsl::parse(SourceId(0), text) {
        let printed = dsl::print(&doc);
        let again = dsl::parse(SourceId(0), &printed).expect("printed documents parse");
        assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&doc).unwrap());
        let _ = dsl::format(SourceId(0), text);
    }
});
