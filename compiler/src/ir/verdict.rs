//! Verdict rules' modules: read, checked against the sha256 the rule pins, and translated.
//!
//! Lowering is a pure function of the documents, so it only records where a verdict rule's
//! module is. This pass (run by the compile driver once lowering is clean) reads each module
//! relative to the file that names it, refuses it unless its bytes have the pinned sha256,
//! and runs the translator's checks (`wasm_verdict::VerdictModule::parse`), so that every
//! problem is a diagnostic located at the rule and a module that would not compile never
//! gets as far as code generation. A module named by several rules is read once.

use super::{Ir, VerdictId};
use crate::diag::{Diag, Diagnostics};
use crate::source::SourceMap;
use crate::source::ast::SourceId;
use crate::wasm_verdict::VerdictModule;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// 64 hex digits (either case) → the digest.
pub fn parse_hex_digest(s: &str) -> Option<[u8; 32]> {
    // Only digits: `from_str_radix` alone would take a sign.
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Lowercase hex, as `sha256sum` prints it.
pub fn hex(d: &[u8; 32]) -> String {
    sluice_policy::Digest(*d).hex()
}

/// The directory a verdict rule's path is relative to: that of the file the rule was read
/// from; the working directory for a rule with no file (built in code, or a module output
/// whose paths the caller already made absolute).
pub fn base_dir(sources: Option<&SourceMap>, source: SourceId) -> PathBuf {
    sources
        .and_then(|s| s.get(source))
        .and_then(|f| f.path.as_ref())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// Reads, checks and translates every verdict rule's module, filling `VerdictData::module`;
/// `dir` gives the directory paths in a file are relative to ([`base_dir`] for the files of
/// a source map). Every failure is an error at its rule; such a rule keeps `module: None`.
pub fn load(ir: &mut Ir, dir: &dyn Fn(SourceId) -> PathBuf, diags: &mut Diagnostics) {
    // Canonical path → the module (or the error already reported for it).
    let mut read: HashMap<PathBuf, Result<Arc<VerdictModule>, ()>> = HashMap::new();
    let ids: Vec<VerdictId> = ir.verdicts.keys().collect();
    for v in ids {
        let d = &ir.verdicts[v];
        let path = dir(d.span.source).join(&d.path);
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let loaded = match read.get(&key) {
            Some(r) => r.clone(),
            None => {
                let r = read_module(&path, d.span, &d.path, diags);
                read.insert(key, r.clone());
                r
            }
        };
        let Ok(loaded) = loaded else { continue };
        let got = loaded.digest();
        let d = &ir.verdicts[v];
        if got != d.sha256 {
            diags.push(
                Diag::error(
                    "sluice::verdict::digest-mismatch",
                    format!(
                        "verdict module {} has sha256 {}, but the rule pins {}",
                        d.path,
                        hex(&got),
                        hex(&d.sha256)
                    ),
                )
                .with_label(d.span, "pinned here")
                .with_help(format!(
                    "if the module changed on purpose, write sha256 \"{}\"",
                    hex(&got)
                )),
            );
            continue;
        }
        ir.verdicts[v].module = Some(loaded);
        ir.verdicts[v].file = Some(path);
    }
}

fn read_module(
    path: &Path,
    span: crate::source::ast::Span,
    written: &str,
    diags: &mut Diagnostics,
) -> Result<Arc<VerdictModule>, ()> {
    let bytes = std::fs::read(path).map_err(|e| {
        diags.push(
            Diag::error(
                "sluice::verdict::read",
                format!("cannot read verdict module {written}: {e}"),
            )
            .with_label(span, "named here")
            .with_help(format!(
                "`{written}` is relative to the directory of the file that names it"
            )),
        );
    })?;
    let module = VerdictModule::parse(&bytes).map_err(|e| {
        diags.push(
            Diag::error(
                "sluice::verdict::refused",
                format!("verdict module {written} cannot be translated: {e}"),
            )
            .with_label(span, "named here")
            .with_help("spec/wasm-verdict.md lists what a v1 verdict module may contain"),
        );
    })?;
    Ok(Arc::new(module))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_exactly_64_hex_digits() {
        let d = "a3d74436c7dd34344cb99790f24940fa603e7d9f90325ccbb73a9df0019c6552";
        let bytes = parse_hex_digest(d).unwrap();
        assert_eq!(hex(&bytes), d);
        assert_eq!(parse_hex_digest(&d.to_uppercase()), Some(bytes));
        assert_eq!(parse_hex_digest(&d[..62]), None);
        assert_eq!(parse_hex_digest(&format!("{d}00")), None);
        assert_eq!(parse_hex_digest(&"+a".repeat(32)), None);
        assert_eq!(parse_hex_digest(&"zz".repeat(32)), None);
    }
}
