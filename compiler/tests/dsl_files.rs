//! The standard library in `policies/` parses and is formatted, and `include` follows files,
//! reads each once, and reports cycles and missing files at the include.

use sluice_compiler::diag::render_plain;
use sluice_compiler::source::ast::Item;
use sluice_compiler::source::{SourceMap, dsl};
use std::path::{Path, PathBuf};

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[test]
fn standard_library_parses_and_is_formatted() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(policies_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sluice"))
        .collect();
    files.sort();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap())
        .collect();
    for expected in [
        "allow-dns.sluice",
        "default-deny.sluice",
        "demo.sluice",
        "ip-masq-defaults.sluice",
        "ipam-defaults.sluice",
    ] {
        assert!(names.contains(&expected), "policies/{expected} is missing");
    }
    for file in &files {
        let mut sources = SourceMap::new();
        let docs = dsl::load_with_includes(file, &mut sources)
            .unwrap_or_else(|d| panic!("{}", render_plain(&d, &sources)));
        assert!(!docs[0].1.items.is_empty(), "{} is empty", file.display());
        let (id, _) = docs[0];
        let text = &sources.file(id).text;
        assert_eq!(
            &dsl::format(id, text).unwrap(),
            text,
            "{} is not formatted (sluice fmt --write)",
            file.display()
        );
    }
}

#[test]
fn ip_masq_defaults_match_the_agent() {
    let mut sources = SourceMap::new();
    let docs = dsl::load_with_includes(
        &policies_dir().join("ip-masq-defaults.sluice"),
        &mut sources,
    )
    .unwrap();
    let Item::Masquerade(m) = &docs[0].1.items[0] else {
        panic!("not a masquerade block")
    };
    let cidrs: Vec<String> = m.non_masquerade.iter().map(|c| c.to_string()).collect();
    // The same list an empty ip-masq-agent config means (Cilium's defaults).
    assert_eq!(
        cidrs,
        sluice_compiler::source::ipmasq::DEFAULT_NON_MASQUERADE
    );
    assert!(!m.link_local);
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("sluice-dsl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("sub")).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(
    docs: &[(
        sluice_compiler::source::ast::SourceId,
        sluice_compiler::source::ast::Document,
    )],
    sources: &SourceMap,
) -> Vec<String> {
    docs.iter()
        .map(|(id, _)| {
            Path::new(&sources.file(*id).name)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn includes_are_relative_and_read_once() {
    let dir = TempDir::new("once");
    let root = dir.write(
        "root.sluice",
        "include \"sub/a.sluice\"\ninclude \"b.sluice\"\n",
    );
    dir.write(
        "sub/a.sluice",
        "include \"../b.sluice\"\npolicy \"a\" { select all }\n",
    );
    dir.write("b.sluice", "policy \"b\" { select all }\n");
    let mut sources = SourceMap::new();
    let docs = dsl::load_with_includes(&root, &mut sources)
        .unwrap_or_else(|d| panic!("{}", render_plain(&d, &sources)));
    assert_eq!(
        names(&docs, &sources),
        ["root.sluice", "a.sluice", "b.sluice"]
    );
}

#[test]
fn include_cycle_is_named_at_the_include() {
    let dir = TempDir::new("cycle");
    let root = dir.write("a.sluice", "include \"b.sluice\"\n");
    dir.write(
        "b.sluice",
        "policy \"b\" { select all }\ninclude \"a.sluice\"\n",
    );
    let mut sources = SourceMap::new();
    let err = dsl::load_with_includes(&root, &mut sources).unwrap_err();
    assert_eq!(err.items.len(), 1);
    let d = &err.items[0];
    assert_eq!(d.code, "sluice::include::cycle");
    assert!(
        d.message.contains("a.sluice → ")
            && d.message.contains("b.sluice → ")
            && d.message.ends_with("a.sluice"),
        "{}",
        d.message
    );
    let span = d.primary_span().unwrap();
    assert!(sources.file(span.source).name.ends_with("b.sluice"));
    assert_eq!(sources.snippet(span), "include \"a.sluice\"");
}

#[test]
fn missing_include_points_at_the_include() {
    let dir = TempDir::new("missing");
    let root = dir.write(
        "a.sluice",
        "policy \"a\" { select all }\n\ninclude \"nope.sluice\"\n",
    );
    let mut sources = SourceMap::new();
    let err = dsl::load_with_includes(&root, &mut sources).unwrap_err();
    let d = &err.items[0];
    assert_eq!(d.code, "sluice::include::read");
    assert!(
        d.message.contains("nope.sluice") && d.message.contains("no such file"),
        "{}",
        d.message
    );
    let loc = sources.location(d.primary_span().unwrap()).unwrap();
    assert_eq!((loc.line, loc.column), (3, 1));
}

#[test]
fn syntax_errors_in_included_files_name_that_file() {
    let dir = TempDir::new("syntax");
    let root = dir.write("a.sluice", "include \"b.sluice\"\n");
    dir.write(
        "b.sluice",
        "policy \"b\" { select all ingress allow ports 0 }\n",
    );
    let mut sources = SourceMap::new();
    let err = dsl::load_with_includes(&root, &mut sources).unwrap_err();
    let out = render_plain(&err, &sources);
    assert!(
        out.contains("b.sluice:1:45") && out.contains("port 0 is out of range"),
        "{out}"
    );
}

/// The examples in `spec/language.md` parse and are in canonical form.
#[test]
fn spec_examples_parse() {
    let spec = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/language.md"),
    )
    .unwrap();
    let blocks: Vec<&str> = spec
        .split("```sluice\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 4);
    for block in blocks {
        let mut sources = SourceMap::new();
        let id = sources.add("spec.sluice", block.to_string());
        let formatted =
            dsl::format(id, block).unwrap_or_else(|d| panic!("{}", render_plain(&d, &sources)));
        assert_eq!(formatted, block);
    }
}
