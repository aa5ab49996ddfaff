//! Reading the user's files: picks the front end for each file by extension and content.
//!
//! `sluice compile`, `convert` and friends take any mix of files and directories; this is the
//! one place that decides how each is read. `.sluice` files go to the DSL parser (with their
//! includes); `.yaml`, `.yml` and `.json` files are read document by document, each by its
//! `kind` (NetworkPolicy, Cilium policies, the ip-masq-agent ConfigMap, a bare ip-masq-agent
//! config, or a `List` of those), so one file may mix them. Directories are walked in sorted
//! order, so the result does not depend on the file system.

use super::ast::{Document, Item, SourceId};
use super::yaml::{self, Object, ObjectKind};
use super::{SourceMap, cilium, dsl, ipmasq, k8s};
use crate::diag::{Diag, Diagnostics};
use std::path::{Path, PathBuf};

/// Extensions read when walking a directory.
const EXTENSIONS: &[&str] = &["sluice", "yaml", "yml", "json"];

/// Reads every path (files, or directories walked recursively) into documents, one per file
/// read (a `.sluice` file's includes each count as a file). A file is read once however often
/// it is named or included. Documents of files with errors still hold the items that read
/// fine: callers check [`Diagnostics::has_errors`] before using them.
pub fn load_paths(
    paths: &[PathBuf],
    sources: &mut SourceMap,
) -> (Vec<(SourceId, Document)>, Diagnostics) {
    let mut out = Vec::new();
    let mut diags = Diagnostics::default();
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files_under(p, EXTENSIONS, &mut files, &mut diags);
        } else {
            files.push(p.clone());
        }
    }
    for f in files {
        if already_read(&f, sources) {
            continue;
        }
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "sluice" => match dsl::load_with_includes(&f, sources) {
                Ok(docs) => out.extend(docs),
                Err(d) => diags.extend(d),
            },
            "yaml" | "yml" | "json" => match sources.load(&f) {
                Ok(id) => {
                    let text = sources.file(id).text.clone();
                    let (doc, d) = read_yaml(id, &text);
                    diags.extend(d);
                    out.push((id, doc));
                }
                Err(e) => diags.push(Diag::error("sluice::load::io", e.to_string())),
            },
            _ => diags.push(
                Diag::error(
                    "sluice::load::unknown-file",
                    format!("don't know how to read {}", f.display()),
                )
                .with_help("sluice reads .sluice, .yaml, .yml and .json files"),
            ),
        }
    }
    // A file read as a root and later included by another gives the same document twice.
    let mut seen = Vec::new();
    out.retain(|(id, _)| {
        let Some(c) = sources
            .file(*id)
            .path
            .as_ref()
            .and_then(|p| std::fs::canonicalize(p).ok())
        else {
            return true;
        };
        if seen.contains(&c) {
            return false;
        }
        seen.push(c);
        true
    });
    (out, diags)
}

/// True when `path` is already in `sources` (named twice, or included by an earlier file).
fn already_read(path: &Path, sources: &SourceMap) -> bool {
    let Ok(canonical) = std::fs::canonicalize(path) else {
        return false;
    };
    sources.ids().any(|id| {
        sources
            .file(id)
            .path
            .as_ref()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .is_some_and(|p| p == canonical)
    })
}

/// Collects the files under `dir` whose extension is one of `extensions`, recursively, in
/// sorted order, skipping hidden entries. An unreadable directory is an error in `diags`.
pub fn files_under(
    dir: &Path,
    extensions: &[&str],
    out: &mut Vec<PathBuf>,
    diags: &mut Diagnostics,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(Diag::error(
                "sluice::load::io",
                format!("{}: {e}", dir.display()),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            files_under(&p, extensions, out, diags);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
        {
            out.push(p);
        }
    }
}

/// Reads one policy given as text (not a file), by the extension of `name` like [`load_paths`]
/// (`.sluice`: the DSL; `.yaml`, `.yml`, `.json`: by `kind`). The text is added to `sources`
/// under `name`. A DSL `include` is an error here: there is no directory to resolve it in.
pub fn read_text(
    name: &str,
    text: &str,
    sources: &mut SourceMap,
) -> (SourceId, Document, Diagnostics) {
    let id = sources.add(name, text);
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    match ext {
        "sluice" => match dsl::parse(id, text) {
            Ok(doc) => {
                let mut diags = Diagnostics::default();
                for item in &doc.items {
                    if let Item::Include(inc) = item {
                        diags.push(
                            Diag::error(
                                "sluice::include::unsupported",
                                "`include` needs a file system; a policy given as text cannot include",
                            )
                            .with_label(inc.span, "this include")
                            .with_help("send the included file as a policy of its own"),
                        );
                    }
                }
                (id, doc, diags)
            }
            Err(d) => (id, Document::default(), d),
        },
        "yaml" | "yml" | "json" => {
            let (doc, d) = read_yaml(id, text);
            (id, doc, d)
        }
        _ => {
            let mut diags = Diagnostics::default();
            diags.push(
                Diag::error(
                    "sluice::load::unknown-file",
                    format!("don't know how to read {name}"),
                )
                .with_help("policy names end in .sluice, .yaml, .yml or .json"),
            );
            (id, Document::default(), diags)
        }
    }
}

/// Reads a YAML or JSON file whose documents may be of any kind sluice understands.
pub fn read_yaml(source: SourceId, text: &str) -> (Document, Diagnostics) {
    // A file that is only an ip-masq-agent config (no `kind` anywhere, maybe empty) is read
    // as one, like the agent reads its mounted file.
    if let Ok(docs) = yaml::parse_tree(source, text, &|o| o) {
        let bare = !docs.is_empty()
            && docs.iter().all(|d| {
                matches!(
                    ObjectKind::of(d),
                    ObjectKind::IpMasqConfig | ObjectKind::Empty
                )
            })
            && docs.iter().any(|d| !d.is_null());
        if bare {
            return ipmasq::read_with_diags(source, text);
        }
    }
    yaml::read_document(source, text, |o, items, diags| match &o.object {
        Object::NetworkPolicy(np) => {
            items.extend(k8s::convert(np, &o.node, diags).map(Item::Policy));
        }
        Object::Cilium(p) => {
            items.extend(
                cilium::convert(p, &o.node, diags)
                    .into_iter()
                    .map(Item::Policy),
            );
        }
        // Only ip-masq-agent's ConfigMap is policy; others get a "no `config` key" error.
        Object::ConfigMap(cm) => {
            items.extend(ipmasq::convert_configmap(cm, &o.node, text, diags).map(Item::Masquerade));
        }
        Object::IpMasqConfig(c) => {
            items.extend(ipmasq::convert(c, &o.node, None, diags).map(Item::Masquerade));
        }
        _ => diags.push(k8s::unexpected(
            o,
            "a NetworkPolicy, a Cilium policy, or an ip-masq-agent ConfigMap or config",
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::render_plain;
    use crate::source::ast::Item;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-load-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn kinds(doc: &Document) -> Vec<&'static str> {
        doc.items
            .iter()
            .map(|i| match i {
                Item::Policy(_) => "policy",
                Item::Masquerade(_) => "masquerade",
                Item::Ipam(_) => "ipam",
                Item::Include(_) => "include",
            })
            .collect()
    }

    #[test]
    fn mixed_multi_document_file() {
        let text = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec: {podSelector: {}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cnp}
spec: {endpointSelector: {}, ingress: [{}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ip-masq-agent, namespace: kube-system}
data:
  config: |
    nonMasqueradeCIDRs: [10.0.0.0/8]
---
nonMasqueradeCIDRs: [192.168.0.0/16]
masqLinkLocal: true
"#;
        let mut sm = SourceMap::new();
        let id = sm.add("mixed.yaml", text);
        let (doc, diags) = read_yaml(id, text);
        assert!(!diags.has_errors(), "{}", render_plain(&diags, &sm));
        assert_eq!(
            kinds(&doc),
            ["policy", "policy", "masquerade", "masquerade"]
        );
        // What `sluice convert` prints reads back as the same tree.
        let printed = dsl::print(&doc);
        let back = dsl::parse(SourceId(1), &printed).expect("printed DSL parses");
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&doc).unwrap(),
            "{printed}"
        );
    }

    #[test]
    fn unknown_kinds_and_plain_configmaps_are_errors() {
        let text =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n---\nkind: Pod\n";
        let mut sm = SourceMap::new();
        let id = sm.add("x.yaml", text);
        let (_, diags) = read_yaml(id, text);
        let out = render_plain(&diags, &sm);
        assert_eq!(diags.items.len(), 2, "{out}");
        assert!(out.contains("has no `config` key"), "{out}");
        assert!(out.contains("`Pod`"), "{out}");
    }

    #[test]
    fn directories_walk_sorted_and_files_read_once() {
        let d = tmpdir("walk");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::create_dir_all(d.join(".hidden")).unwrap();
        std::fs::write(
            d.join("b.yaml"),
            "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {name: b}\nspec: {}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("sub/a.json"),
            r#"{"nonMasqueradeCIDRs": ["10.0.0.0/8"]}"#,
        )
        .unwrap();
        std::fs::write(d.join(".hidden/c.yaml"), "kind: Pod\n").unwrap();
        std::fs::write(d.join("notes.txt"), "not policy").unwrap();
        std::fs::write(d.join("a.sluice"), "include \"sub/inc.sluice\"\n").unwrap();
        // Included by z.sluice, but read first as a root: still one document.
        std::fs::write(d.join("y.sluice"), "").unwrap();
        std::fs::write(d.join("z.sluice"), "include \"y.sluice\"\n").unwrap();
        std::fs::write(d.join("sub/inc.sluice"), "").unwrap();
        let mut sm = SourceMap::new();
        // The directory and one of its files: that file is read once.
        let (docs, diags) = load_paths(&[d.clone(), d.join("b.yaml")], &mut sm);
        assert!(!diags.has_errors(), "{}", render_plain(&diags, &sm));
        let names: Vec<String> = docs
            .iter()
            .map(|(id, _)| {
                let f = sm.file(*id);
                let p = f.path.as_ref().unwrap();
                p.strip_prefix(&d).unwrap_or(p).display().to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "a.sluice",
                "sub/inc.sluice",
                "b.yaml",
                "sub/a.json",
                "y.sluice",
                "z.sluice"
            ]
        );
        assert_eq!(kinds(&docs[2].1), ["policy"]);
        assert_eq!(kinds(&docs[3].1), ["masquerade"]);
        let (_, diags) = load_paths(&[d.join("notes.txt")], &mut sm);
        assert!(render_plain(&diags, &sm).contains("don't know how to read"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
