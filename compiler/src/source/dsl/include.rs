//! Following `include "file"` items: paths are relative to the including file, every file is
//! read once, and a cycle is an error that names it and points at the include that closes it.

use super::parse;
use crate::diag::{Diag, Diagnostics};
use crate::source::SourceMap;
use crate::source::ast::{Document, Item, SourceId, Span};
use std::path::{Path, PathBuf};

/// Reads `path` and, depth first, every file it includes. Returns each file once, the root
/// first, then its includes in the order they are written (each followed by its own includes).
pub fn load_with_includes(
    path: &Path,
    sources: &mut SourceMap,
) -> Result<Vec<(SourceId, Document)>, Diagnostics> {
    let mut loader = Loader {
        sources,
        done: Vec::new(),
        out: Vec::new(),
        diags: Diagnostics::default(),
    };
    loader.file(path, None, &mut Vec::new());
    if loader.diags.has_errors() {
        Err(loader.diags.sorted())
    } else {
        Ok(loader.out)
    }
}

struct Loader<'s> {
    sources: &'s mut SourceMap,
    /// Canonical paths already read.
    done: Vec<PathBuf>,
    out: Vec<(SourceId, Document)>,
    diags: Diagnostics,
}

impl Loader<'_> {
    /// `from` is the include item that named this file; `stack` the files being read above it.
    fn file(&mut self, path: &Path, from: Option<Span>, stack: &mut Vec<(PathBuf, String)>) {
        let canonical = match std::fs::canonicalize(path) {
            Ok(c) => c,
            Err(e) => return self.cannot_read(path, from, e),
        };
        if let Some(pos) = stack.iter().position(|(p, _)| *p == canonical) {
            let mut names: Vec<&str> = stack[pos..].iter().map(|(_, n)| n.as_str()).collect();
            names.push(&stack[pos].1);
            let mut d = Diag::error(
                "sluice::include::cycle",
                format!("include cycle: {}", names.join(" → ")),
            );
            if let Some(span) = from {
                d = d.with_label(span, "this include closes the cycle");
            }
            self.diags.push(d.with_help("remove one of the includes"));
            return;
        }
        if self.done.contains(&canonical) {
            return;
        }
        let id = match self.sources.load(path) {
            Ok(id) => id,
            Err(e) => return self.cannot_read(path, from, e),
        };
        self.done.push(canonical.clone());
        let doc = match parse(id, &self.sources.file(id).text) {
            Ok(doc) => doc,
            Err(d) => {
                self.diags.extend(d);
                return;
            }
        };
        let includes: Vec<(String, Span)> = doc
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Include(inc) => Some((inc.path.clone(), inc.span)),
                _ => None,
            })
            .collect();
        self.out.push((id, doc));
        stack.push((canonical, path.display().to_string()));
        let dir = path.parent().unwrap_or(Path::new("."));
        for (rel, span) in includes {
            self.file(&dir.join(rel), Some(span), stack);
        }
        stack.pop();
    }

    fn cannot_read(&mut self, path: &Path, from: Option<Span>, e: std::io::Error) {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        };
        let mut d = Diag::error(
            "sluice::include::read",
            format!("cannot read {}: {reason}", path.display()),
        );
        if let Some(span) = from {
            d = d.with_label(span, "included here");
        }
        self.diags.push(d);
    }
}
