//! Lexical layer of the DSL parser: whitespace and comments, words, strings, numbers, and the
//! parse error type.
//!
//! The grammar has no separate tokenizer: these small nom parsers are called by the grammar in
//! `parser.rs` wherever a token is expected, so error positions are exact byte offsets and the
//! grammar decides what a word means where it stands (a keyword here, a label value there).

use nom::IResult;
use nom::bytes::complete::take_while;
use nom::error::{ErrorKind, ParseError};

/// A parse error. Positions are kept as "bytes left in the input" so the error can be built
/// from a bare `&str` inside nom combinators; the caller turns that into an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PErr(Box<PErrInner>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PErrInner {
    pub rest_len: usize,
    pub width: usize,
    pub code: &'static str,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
    /// A second label: (bytes left at its start, width, text). Used for "this `{`".
    pub related: Option<(usize, usize, String)>,
}

impl PErr {
    pub fn at(i: &str, width: usize, code: &'static str, message: impl Into<String>) -> PErr {
        PErr(Box::new(PErrInner {
            rest_len: i.len(),
            width,
            code,
            message: message.into(),
            label: String::new(),
            help: None,
            related: None,
        }))
    }
    pub fn label(mut self, text: impl Into<String>) -> PErr {
        self.0.label = text.into();
        self
    }
    pub fn help(mut self, text: impl Into<String>) -> PErr {
        self.0.help = Some(text.into());
        self
    }
    pub fn related(mut self, i: &str, width: usize, text: impl Into<String>) -> PErr {
        self.0.related = Some((i.len(), width, text.into()));
        self
    }
    pub fn into_inner(self) -> PErrInner {
        *self.0
    }
}

impl<'a> ParseError<&'a str> for PErr {
    fn from_error_kind(input: &'a str, kind: ErrorKind) -> Self {
        PErr::at(
            input,
            token_width(input),
            EXPECTED,
            format!("unexpected input ({})", kind.description()),
        )
    }
    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
    /// The error that got further wins: it is the one closest to what the user meant.
    fn or(self, other: Self) -> Self {
        if other.0.rest_len < self.0.rest_len {
            other
        } else {
            self
        }
    }
}

pub(crate) type R<'a, T> = IResult<&'a str, T, PErr>;

pub(crate) const EXPECTED: &str = "sluice::syntax::expected";
pub(crate) const UNTERMINATED: &str = "sluice::syntax::unterminated";
pub(crate) const UNCLOSED: &str = "sluice::syntax::unclosed";
pub(crate) const UNKNOWN: &str = "sluice::syntax::unknown";
pub(crate) const DUPLICATE: &str = "sluice::syntax::duplicate";
pub(crate) const VALUE: &str = "sluice::syntax::value";
pub(crate) const CIDR: &str = "sluice::syntax::cidr";
pub(crate) const PORT: &str = "sluice::syntax::port";
pub(crate) const PASS: &str = "sluice::syntax::pass-outside-admin";

/// A committed (non-backtracking) error.
pub(crate) fn fail<T>(e: PErr) -> R<'static, T> {
    Err(nom::Err::Failure(e))
}

/// Skips whitespace and comments (`#`, `//`, `/* */`).
pub(crate) fn sp(mut i: &str) -> R<'_, ()> {
    loop {
        let (rest, _) = take_while::<_, _, PErr>(char::is_whitespace)(i)?;
        i = rest;
        if i.starts_with('#') || i.starts_with("//") {
            let end = i.find('\n').unwrap_or(i.len());
            i = &i[end..];
        } else if i.starts_with("/*") {
            match i[2..].find("*/") {
                Some(end) => i = &i[2 + end + 2..],
                None => {
                    return fail(
                        PErr::at(i, 2, UNTERMINATED, "unterminated block comment")
                            .label("this comment is never closed")
                            .help("close it with `*/`"),
                    );
                }
            }
        } else {
            return Ok((i, ()));
        }
    }
}

/// Characters of a bare word: label keys like `app.kubernetes.io/name`, values, names.
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

/// Length of the bare word at the start of `i` (0 if none). A word starts with a letter or
/// digit and never swallows a comment opener (`//`, `/*`).
pub(crate) fn word_len(i: &str) -> usize {
    word_len_with(i, is_word_char)
}

/// Like [`word_len`] with another character class (addresses add `:`).
pub(crate) fn word_len_with(i: &str, class: impl Fn(char) -> bool) -> usize {
    let b = i.as_bytes();
    if b.is_empty() || !(b[0] as char).is_ascii_alphanumeric() && b[0] != b':' {
        return 0;
    }
    let mut n = 0;
    while n < b.len() {
        let c = b[n] as char;
        if !class(c) || (c == '/' && matches!(b.get(n + 1), Some(b'/') | Some(b'*'))) {
            break;
        }
        n += 1;
    }
    n
}

/// True when `s` can be written without quotes (reads back as exactly `s`).
pub(crate) fn is_bare(s: &str) -> bool {
    !s.is_empty() && word_len(s) == s.len() && s.as_bytes()[0] != b':'
}

/// The bare word at the start of `i` (no whitespace skipped).
pub(crate) fn word(i: &str) -> Option<(&str, &str)> {
    let n = word_len(i);
    if n == 0 || i.starts_with(':') {
        None
    } else {
        Some((&i[n..], &i[..n]))
    }
}

/// The width to underline for an unexpected token at `i`.
pub(crate) fn token_width(i: &str) -> usize {
    let n = word_len(i);
    if n > 0 {
        return n;
    }
    if let Some(body) = i.strip_prefix('"') {
        return body
            .find(['"', '\n'])
            .map_or(i.len(), |e| e + 2)
            .min(i.len());
    }
    i.chars().next().map_or(0, char::len_utf8)
}

/// A short description of the token at `i`, for "found ..." messages.
pub(crate) fn describe(i: &str) -> String {
    if i.is_empty() {
        return "end of file".into();
    }
    let w = token_width(i);
    format!("`{}`", &i[..w])
}

/// A double-quoted string with `\"`, `\\`, `\n`, `\t` and `\u{...}` escapes. The caller has
/// checked that `i` starts with `"`.
pub(crate) fn string(i: &str) -> R<'_, String> {
    let mut out = String::new();
    let mut chars = i.char_indices().skip(1);
    while let Some((pos, c)) = chars.next() {
        match c {
            '"' => return Ok((&i[pos + 1..], out)),
            '\n' => break,
            '\\' => {
                let Some((epos, e)) = chars.next() else { break };
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' => {
                        let body = &i[epos + 1..];
                        let parsed = body.strip_prefix('{').and_then(|b| {
                            let end = b.find('}')?;
                            let v = u32::from_str_radix(&b[..end], 16).ok()?;
                            Some((char::from_u32(v)?, end + 2))
                        });
                        let Some((ch, used)) = parsed else {
                            return fail(
                                PErr::at(&i[pos..], 2, VALUE, "invalid unicode escape")
                                    .label("here")
                                    .help("write a code point as `\\u{1F600}`"),
                            );
                        };
                        out.push(ch);
                        for _ in 0..used {
                            chars.next();
                        }
                    }
                    _ => {
                        return fail(
                            PErr::at(&i[pos..], 1 + e.len_utf8(), VALUE, "unknown escape")
                                .label("here")
                                .help(r#"strings know \" \\ \n \t \r and \u{...}"#),
                        );
                    }
                }
            }
            c => out.push(c),
        }
    }
    fail(
        PErr::at(i, 1, UNTERMINATED, "unterminated string")
            .label("this string is never closed")
            .help("close it with `\"` on the same line"),
    )
}

/// Quotes a string so that [`string`] reads it back unchanged.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) use crate::diag::suggest;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_stop_at_comments() {
        assert_eq!(word("app//x"), Some(("//x", "app")));
        assert_eq!(
            word("kubernetes.io/metadata.name ="),
            Some((" =", "kubernetes.io/metadata.name"))
        );
        assert_eq!(word("-x"), None);
        assert!(is_bare("a/b"));
        assert!(!is_bare("a//b"));
        assert!(!is_bare(""));
        assert!(!is_bare("a b"));
    }

    #[test]
    fn strings_round_trip() {
        for s in ["", "a b", "q\"uote", "back\\slash", "nl\n", "\u{1}", "é☃"] {
            let q = quote(s);
            assert_eq!(string(&q).unwrap(), ("", s.to_string()));
        }
        assert!(matches!(string("\"abc"), Err(nom::Err::Failure(_))));
    }
}
