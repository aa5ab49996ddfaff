//! Front ends: every way a user can write policy, each producing the one [`ast::Document`].
//!
//! The [`SourceMap`] owns the text of every file read, so a span anywhere in the pipeline can
//! be rendered later with its file, line and column.

pub use sluice_policy::ast;
pub mod cilium;
pub mod dsl;
pub mod ipblock;
pub mod ipmasq;
pub mod k8s;
pub mod load;
pub mod yaml;

use ast::{SourceId, Span};
use std::path::{Path, PathBuf};

/// One file's text, as read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The name shown in diagnostics (the path as the user gave it).
    pub name: String,
    pub path: Option<PathBuf>,
    pub text: String,
}

/// All source text of one compilation, addressed by [`SourceId`].
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds text that did not come from disk (stdin, tests, a module's output).
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> SourceId {
        self.files.push(SourceFile {
            name: name.into(),
            path: None,
            text: text.into(),
        });
        SourceId(self.files.len() as u32 - 1)
    }

    /// Reads a file from disk. The error names the file.
    pub fn load(&mut self, path: &Path) -> Result<SourceId, std::io::Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.files.push(SourceFile {
            name: path.display().to_string(),
            path: Some(path.to_path_buf()),
            text,
        });
        Ok(SourceId(self.files.len() as u32 - 1))
    }

    pub fn get(&self, id: SourceId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    pub fn file(&self, id: SourceId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn ids(&self) -> impl Iterator<Item = SourceId> + '_ {
        (0..self.files.len() as u32).map(SourceId)
    }

    /// The text a span covers ("" for `Span::NONE`).
    pub fn snippet(&self, span: Span) -> &str {
        match self.get(span.source) {
            Some(f) => f
                .text
                .get(span.start as usize..span.end as usize)
                .unwrap_or(""),
            None => "",
        }
    }

    /// `file:line:column` (1-based) of a span's start, for one-line reports like `sluice trace`.
    pub fn location(&self, span: Span) -> Option<Location> {
        let file = self.get(span.source)?;
        let upto = file.text.get(..span.start as usize)?;
        let line = upto.matches('\n').count() + 1;
        let column = upto.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some(Location {
            file: file.name.clone(),
            line,
            column,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}
