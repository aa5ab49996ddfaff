//! Diagnostics: what every stage reports about the user's input.
//!
//! Stages collect [`Diag`]s (typed, cheap, no rendering) into [`Diagnostics`]; the CLI renders
//! them with miette through [`Diag::render`], which attaches the source text so the output
//! names the file, line and column and underlines the offending text. Keeping rendering at the
//! edge lets tests compare exact output and lets a stage report many problems, not just the first.

use crate::source::SourceMap;
use crate::source::ast::Span;
use miette::{LabeledSpan, NamedSource, SourceSpan};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Something to know that is not wrong (which rule wins, an empty selector).
    Note,
    Warning,
    /// The input is rejected.
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

/// One finding about the input. `code` is stable (e.g. `sluice::cidr::host-bits`) so users and
/// tests can refer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    /// The first label is the primary one; all labels should be in the same file.
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diag {
    pub fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Diag {
        Diag {
            severity,
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }
    pub fn error(code: &'static str, message: impl Into<String>) -> Diag {
        Diag::new(Severity::Error, code, message)
    }
    pub fn warning(code: &'static str, message: impl Into<String>) -> Diag {
        Diag::new(Severity::Warning, code, message)
    }
    pub fn note(code: &'static str, message: impl Into<String>) -> Diag {
        Diag::new(Severity::Note, code, message)
    }
    pub fn with_label(mut self, span: Span, text: impl Into<String>) -> Diag {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }
    pub fn with_help(mut self, help: impl Into<String>) -> Diag {
        self.help = Some(help.into());
        self
    }

    pub fn primary_span(&self) -> Option<Span> {
        self.labels.first().map(|l| l.span)
    }

    /// A miette report carrying the source text of the primary label's file.
    pub fn render(&self, sources: &SourceMap) -> miette::Report {
        let primary = self.primary_span().filter(|s| !s.is_none());
        let mut labels = Vec::new();
        let mut help = self.help.clone();
        if let Some(primary) = primary {
            for l in &self.labels {
                if l.span.source == primary.source && !l.span.is_none() {
                    labels.push(LabeledSpan::new_with_span(
                        (!l.text.is_empty()).then(|| l.text.clone()),
                        SourceSpan::new((l.span.start as usize).into(), l.span.len()),
                    ));
                } else if let Some(loc) = sources.location(l.span) {
                    // miette draws one file per report; point at the others in words.
                    let extra = format!("{}: {loc}", l.text);
                    help = Some(match help {
                        Some(h) => format!("{h}\n{extra}"),
                        None => extra,
                    });
                }
            }
        }
        let rendered = Rendered {
            message: self.message.clone(),
            code: self.code.to_string(),
            severity: self.severity,
            help,
            labels,
            source: primary
                .and_then(|p| sources.get(p.source))
                .map(|f| NamedSource::new(f.name.clone(), f.text.clone())),
        };
        miette::Report::new(rendered)
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a stage found. Stages push and keep going; callers check [`Diagnostics::has_errors`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    pub items: Vec<Diag>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diag) {
        self.items.push(d);
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|d| d.severity == severity).count()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// `Ok(value)` unless an error was reported (warnings and notes are dropped).
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.has_errors() {
            Err(self)
        } else {
            Ok(value)
        }
    }
    /// In source order (file, then offset), errors first at equal positions: stable output.
    pub fn sorted(mut self) -> Diagnostics {
        self.items.sort_by_key(|d| {
            let s = d.primary_span().unwrap_or(Span::NONE);
            (s.source, s.start, std::cmp::Reverse(d.severity))
        });
        self
    }
}

#[derive(Debug)]
struct Rendered {
    message: String,
    code: String,
    severity: Severity,
    help: Option<String>,
    labels: Vec<LabeledSpan>,
    source: Option<NamedSource<String>>,
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Note => miette::Severity::Advice,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
}

/// Renders diagnostics as plain text (no colour, fixed width): the form golden tests compare and
/// the CLI prints when stdout is not a terminal.
pub fn render_plain(diags: &Diagnostics, sources: &SourceMap) -> String {
    render_reports_plain(diags.items.iter().map(|d| d.render(sources)))
}

/// Rendered reports as plain text (no colour, no links), one after another: what
/// [`render_plain`] prints, for reports made elsewhere (e.g. [`WireDiag::render`]).
pub fn render_reports_plain(reports: impl IntoIterator<Item = miette::Report>) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false);
    let mut out = String::new();
    for report in reports {
        handler
            .render_report(&mut out, report.as_ref())
            .expect("rendering to a String cannot fail");
        out.push('\n');
    }
    out
}
/// The candidate closest to a misspelt `word`, when it is close enough to be a typo: at most
/// one edit for names of up to three characters, else two, or a quarter of the name for long
/// names. Case is ignored and swapping two neighbours counts as one edit (`tpc` → `tcp`;
/// optimal string alignment). Of equally close candidates, the first wins. Every "did you mean"
/// in sluice comes from here.
pub fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::osa_distance(&word, &c.to_lowercase()), *c))
        .filter(|(d, c)| {
            let len = c.chars().count();
            *d <= if len <= 3 { 1 } else { 2.max(len / 4) }
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diagnostic sent as JSON renders exactly as the original does, labels in another file
    /// included (named in the help).
    #[test]
    fn wire_diagnostics_render_like_the_original() {
        let mut sources = SourceMap::new();
        let a = sources.add("a.sluice", "policy \"x\" {\n  ports 80/tcpx\n}\n");
        let b = sources.add("b.sluice", "policy \"y\" {}\n");
        let d = Diag::error("sluice::test::code", "unknown protocol `tcpx`")
            .with_label(Span::new(a, 24, 28), "here")
            .with_label(Span::new(b, 0, 6), "also here")
            .with_help("did you mean `tcp`?");
        let wire = d.to_wire(&sources);
        assert_eq!((wire.labels[0].line, wire.labels[0].column), (2, 12));
        assert_eq!(wire.source.as_ref().unwrap().name, "a.sluice");
        let back: WireDiag = serde_json::from_str(&serde_json::to_string(&wire).unwrap()).unwrap();
        assert_eq!(back, wire);
        let mut diags = Diagnostics::default();
        diags.push(d);
        assert_eq!(
            render_reports_plain([back.render()]),
            render_plain(&diags, &sources)
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("tpc", &["tcp", "udp"]), Some("tcp"));
        assert_eq!(suggest("TCP", &["tcp", "udp"]), Some("tcp"));
        assert_eq!(suggest("zzzzz", &["tcp", "udp"]), None);
        assert_eq!(suggest("polcy", &["policy", "ipam"]), Some("policy"));
        assert_eq!(suggest("htp", &["http", "metrics"]), Some("http"));
        // Three characters or fewer: one edit at most.
        assert_eq!(suggest("ab", &["lb"]), Some("lb"));
        assert_eq!(suggest("ax", &["lb"]), None);
        // Long names take a quarter of their length.
        assert_eq!(
            suggest("podSelecter", &["podSelector", "ingress"]),
            Some("podSelector")
        );
        assert_eq!(
            suggest("namespaceSelektr", &["namespaceSelector"]),
            Some("namespaceSelector")
        );
        assert_eq!(suggest("zzz", &["podSelector", "ingress"]), None);
        // Ties go to the first candidate.
        assert_eq!(suggest("bb", &["ab", "ba"]), Some("ab"));
    }
}

/// A diagnostic with its source text, as the agent's API sends it (spec/api.md): everything
/// [`Diag::render`] needs, so a client renders the same miette report the CLI would, with no
/// access to the files. Offsets are bytes into `source.text`; line and column (1-based) are
/// for readers that do not render.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireDiag {
    pub severity: WireSeverity,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<WireLabel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The primary label's file (name and whole text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<WireSource>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireSeverity {
    Note,
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireLabel {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub start: usize,
    pub end: usize,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireSource {
    pub name: String,
    pub text: String,
}

impl Diag {
    /// This diagnostic with its labels located in `sources` (labels without a position are left out).
    pub fn to_wire(&self, sources: &SourceMap) -> WireDiag {
        let labels = self
            .labels
            .iter()
            .filter(|l| !l.span.is_none())
            .filter_map(|l| {
                let loc = sources.location(l.span)?;
                Some(WireLabel {
                    file: loc.file,
                    line: loc.line,
                    column: loc.column,
                    start: l.span.start as usize,
                    end: l.span.end as usize,
                    text: l.text.clone(),
                })
            })
            .collect();
        WireDiag {
            severity: match self.severity {
                Severity::Note => WireSeverity::Note,
                Severity::Warning => WireSeverity::Warning,
                Severity::Error => WireSeverity::Error,
            },
            code: self.code.to_string(),
            message: self.message.clone(),
            labels,
            help: self.help.clone(),
            source: self
                .primary_span()
                .filter(|s| !s.is_none())
                .and_then(|p| sources.get(p.source))
                .map(|f| WireSource {
                    name: f.name.clone(),
                    text: f.text.clone(),
                }),
        }
    }
}

impl WireDiag {
    /// The miette report [`Diag::render`] would have made: labels in the primary file are
    /// drawn, others are named in the help.
    pub fn render(&self) -> miette::Report {
        let primary = self.source.as_ref().map(|s| s.name.as_str());
        let mut labels = Vec::new();
        let mut help = self.help.clone();
        for l in &self.labels {
            if Some(l.file.as_str()) == primary {
                labels.push(LabeledSpan::new_with_span(
                    (!l.text.is_empty()).then(|| l.text.clone()),
                    SourceSpan::new(l.start.into(), l.end.saturating_sub(l.start)),
                ));
            } else {
                let extra = format!("{}: {}:{}:{}", l.text, l.file, l.line, l.column);
                help = Some(match help {
                    Some(h) => format!("{h}\n{extra}"),
                    None => extra,
                });
            }
        }
        miette::Report::new(Rendered {
            message: self.message.clone(),
            code: self.code.clone(),
            severity: match self.severity {
                WireSeverity::Note => Severity::Note,
                WireSeverity::Warning => Severity::Warning,
                WireSeverity::Error => Severity::Error,
            },
            help,
            labels,
            source: self
                .source
                .as_ref()
                .map(|s| NamedSource::new(s.name.clone(), s.text.clone())),
        })
    }
}
