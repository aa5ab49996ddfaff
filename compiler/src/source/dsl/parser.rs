//! The DSL grammar (see `spec/language.md`): text → [`Document`] with a span on every node.
//!
//! Recursive descent written with nom parsers from `lex.rs`. Syntax errors stop the parse at
//! the first one (nom `Failure`), with a message that says what was expected there. Value
//! errors (port 0, a bad CIDR, `pass` outside the admin tier) are collected and parsing goes on,
//! so one run reports all of them.

use super::lex::*;
use crate::diag::{Diag, Diagnostics};
use crate::source::ast::*;
use std::cell::RefCell;
use std::net::IpAddr;

/// Words that start a statement or clause. Label keys spelt like one are printed quoted.
pub(crate) const KEYWORDS: &[&str] = &[
    "policy",
    "masquerade",
    "ipam",
    "include",
    "tier",
    "select",
    "isolate",
    "rule",
    "ingress",
    "egress",
    "all",
    "pods",
    "namespaces",
    "in",
    "notin",
    "from",
    "to",
    "ports",
    "proto",
    "cidr",
    "except",
    "entity",
    "world",
    "host",
    "cluster",
    "pool",
    "services",
];

const ITEMS: &[&str] = &["policy", "masquerade", "ipam", "include"];
const PROTOCOLS: &[&str] = &["tcp", "udp", "sctp", "icmp", "any"];
const ENTITIES: &[&str] = &["world", "host", "cluster", "all"];
const ACTIONS: &[&str] = &["allow", "deny", "audit", "pass", "verdict"];
const ON_TRAP: &[&str] = &["deny", "allow", "pass"];

/// Parses one DSL file.
pub fn parse(source: SourceId, text: &str) -> Result<Document, Diagnostics> {
    let cx = Cx {
        len: text.len(),
        id: source,
        diags: RefCell::new(Vec::new()),
    };
    let result = document(&cx, text);
    let mut diags = Diagnostics::default();
    for d in cx.diags.into_inner() {
        diags.push(d);
    }
    match result {
        Ok(doc) if diags.is_empty() => Ok(doc),
        Ok(_) => Err(diags.sorted()),
        Err(nom::Err::Incomplete(_)) => unreachable!("complete parsers never return Incomplete"),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            diags.push(to_diag(source, text.len(), e));
            Err(diags.sorted())
        }
    }
}

fn to_diag(id: SourceId, len: usize, e: PErr) -> Diag {
    let e = e.into_inner();
    let start = len - e.rest_len;
    let mut d =
        Diag::error(e.code, e.message).with_label(Span::new(id, start, start + e.width), e.label);
    if let Some((rest, width, text)) = e.related {
        let s = len - rest;
        d = d.with_label(Span::new(id, s, s + width), text);
    }
    if let Some(h) = e.help {
        d = d.with_help(h);
    }
    d
}

struct Cx {
    len: usize,
    id: SourceId,
    diags: RefCell<Vec<Diag>>,
}

impl Cx {
    fn off(&self, i: &str) -> usize {
        self.len - i.len()
    }
    /// The span from `start` (an input position) up to `end` (a later input position).
    fn span(&self, start: &str, end: &str) -> Span {
        Span::new(self.id, self.off(start), self.off(end))
    }
    fn span_len(&self, start: &str, len: usize) -> Span {
        let s = self.off(start);
        Span::new(self.id, s, s + len)
    }
    /// Records a value error; parsing goes on.
    fn value_error(
        &self,
        at: &str,
        width: usize,
        code: &'static str,
        msg: String,
        label: &str,
        help: Option<String>,
    ) {
        let mut d = Diag::error(code, msg).with_label(self.span_len(at, width), label);
        if let Some(h) = help {
            d = d.with_help(h);
        }
        self.diags.borrow_mut().push(d);
    }
}

/// An error at the next token: "expected X, found Y".
fn expected<T>(i: &str, what: &str) -> R<'static, T> {
    fail(
        PErr::at(
            i,
            token_width(i),
            EXPECTED,
            format!("expected {what}, found {}", describe(i)),
        )
        .label(format!("expected {what}")),
    )
}

/// Skips whitespace, then returns the next bare word (without consuming it).
fn peek_word(i: &str) -> R<'_, Option<&str>> {
    let (i, ()) = sp(i)?;
    Ok((i, word(i).map(|(_, w)| w)))
}

/// Consumes keyword `kw` if it is the next word.
fn opt_kw<'a>(i: &'a str, kw: &str) -> R<'a, bool> {
    let (i, w) = peek_word(i)?;
    if w == Some(kw) {
        Ok((&i[kw.len()..], true))
    } else {
        Ok((i, false))
    }
}

fn expect_kw<'a>(i: &'a str, kw: &str) -> R<'a, ()> {
    match opt_kw(i, kw)? {
        (rest, true) => Ok((rest, ())),
        (i, false) => expected(i, &format!("`{kw}`")),
    }
}

/// Consumes the punctuation `s` if it comes next.
fn opt_sym<'a>(i: &'a str, s: &str) -> R<'a, bool> {
    let (i, ()) = sp(i)?;
    match i.strip_prefix(s) {
        Some(rest) => Ok((rest, true)),
        None => Ok((i, false)),
    }
}

/// A name: a bare word or a quoted string. Returns the text and its width in the source.
fn name<'a>(i: &'a str, what: &str) -> R<'a, (String, usize)> {
    let (i, ()) = sp(i)?;
    if i.starts_with('"') {
        let (rest, s) = string(i)?;
        return Ok((rest, (s, i.len() - rest.len())));
    }
    match word(i) {
        Some((rest, w)) => Ok((rest, (w.to_string(), w.len()))),
        None => expected(i, what),
    }
}

fn number<'a, T>(cx: &Cx, i: &'a str, what: &str, max: u64) -> R<'a, T>
where
    T: TryFrom<u64> + Default,
{
    let (i, ()) = sp(i)?;
    let n = i.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || word_len(i) != n {
        return expected(i, what);
    }
    let v = i[..n].parse::<u64>().unwrap_or(u64::MAX);
    if v > max {
        cx.value_error(
            i,
            n,
            VALUE,
            format!("{} is out of range for {what} (0-{max})", &i[..n]),
            "too large",
            None,
        );
        return Ok((&i[n..], T::default()));
    }
    Ok((&i[n..], T::try_from(v).unwrap_or_default()))
}

fn document(cx: &Cx, mut i: &str) -> Result<Document, nom::Err<PErr>> {
    let mut items = Vec::new();
    loop {
        let (rest, w) = peek_word(i)?;
        i = rest;
        if i.is_empty() {
            return Ok(Document { items });
        }
        let (rest, item) = match w {
            Some("policy") => policy(cx, i).map(|(r, p)| (r, Item::Policy(p)))?,
            Some("masquerade") => masquerade(cx, i).map(|(r, m)| (r, Item::Masquerade(m)))?,
            Some("ipam") => ipam(cx, i).map(|(r, m)| (r, Item::Ipam(m)))?,
            Some("include") => include(cx, i).map(|(r, m)| (r, Item::Include(m)))?,
            other => {
                let mut e = PErr::at(
                    i,
                    token_width(i),
                    EXPECTED,
                    format!(
                        "expected `policy`, `masquerade`, `ipam` or `include`, found {}",
                        describe(i)
                    ),
                )
                .label("expected an item here");
                if let Some(s) = other.and_then(|w| suggest(w, ITEMS)) {
                    e = e.help(format!("did you mean `{s}`?"));
                }
                return Err(nom::Err::Failure(e));
            }
        };
        items.push(item);
        i = rest;
    }
}

fn include<'a>(cx: &Cx, start: &'a str) -> R<'a, Include> {
    let (i, ()) = expect_kw(start, "include")?;
    let (i, ()) = sp(i)?;
    if !i.starts_with('"') {
        return expected(i, "a quoted file name");
    }
    let (i, path) = string(i)?;
    Ok((
        i,
        Include {
            path,
            span: cx.span(start, i),
        },
    ))
}

/// Opens a block: `{`, returning the input at the brace (for "unclosed" errors).
fn open_brace<'a>(i: &'a str, what: &str) -> R<'a, &'a str> {
    let (i, ()) = sp(i)?;
    match i.strip_prefix('{') {
        Some(rest) => Ok((rest, i)),
        None => expected(i, &format!("`{{` to start {what}")),
    }
}

/// The error for a block whose `}` never came: points at the opening brace.
fn unclosed<T>(brace: &str, at: &str, what: &str) -> R<'static, T> {
    fail(
        PErr::at(
            brace,
            1,
            UNCLOSED,
            format!("missing `}}`: {what} is not closed"),
        )
        .label("this `{` is never closed")
        .related(
            at,
            token_width(at),
            format!("expected `}}` before {}", describe(at)),
        )
        .help("add `}` at the end of the block"),
    )
}

/// True when the block must have ended: end of file or a new top-level item.
fn at_item_start(i: &str) -> bool {
    i.is_empty() || word(i).is_some_and(|(_, w)| ITEMS.contains(&w))
}

fn policy<'a>(cx: &Cx, start: &'a str) -> R<'a, Policy> {
    let (i, ()) = expect_kw(start, "policy")?;
    let (i, ()) = sp(i)?;
    let name_at = i;
    let (i, (pname, name_w)) = name(i, "a policy name")?;
    let name_span = cx.span_len(name_at, name_w);
    let (i, has_ns) = opt_kw(i, "in")?;
    let (i, namespace) = if has_ns {
        let (i, ()) = expect_kw(i, "namespace")?;
        let (i, (ns, _)) = name(i, "a namespace name")?;
        (i, Some(ns))
    } else {
        (i, None)
    };
    let (mut i, brace) = open_brace(i, "the policy body")?;

    let mut tier: Option<(Tier, &str)> = None;
    let mut subject: Option<(Subject, &str)> = None;
    let mut isolate: Option<(Vec<PolicyDirection>, &str)> = None;
    let mut rules = Vec::new();
    let mut verdicts = Vec::new();
    let mut passes = Vec::new();
    loop {
        let (rest, w) = peek_word(i)?;
        i = rest;
        if let Some(rest) = i.strip_prefix('}') {
            i = rest;
            break;
        }
        let stmt = i;
        match w {
            Some("tier") => {
                let (rest, t) = tier_stmt(cx, i)?;
                dup(&tier, "tier", stmt)?;
                tier = Some((t, stmt));
                i = rest;
            }
            Some("select") => {
                let (rest, s) = select_stmt(cx, i)?;
                dup(&subject, "select", stmt)?;
                subject = Some((s, stmt));
                i = rest;
            }
            Some("isolate") => {
                let (rest, d) = isolate_stmt(cx, i)?;
                dup(&isolate, "isolate", stmt)?;
                isolate = Some((d, stmt));
                i = rest;
            }
            Some("rule" | "ingress" | "egress") => {
                let (rest, (r, action_at)) = rule(cx, i)?;
                match r {
                    RuleStmt::Rule(r) => {
                        if r.action == Action::Pass {
                            passes.push(action_at);
                        }
                        rules.push(r);
                    }
                    RuleStmt::Verdict(v) => verdicts.push(v),
                }
                i = rest;
            }
            _ if at_item_start(i) => return unclosed(brace, i, "the policy body"),
            other => {
                let mut e = PErr::at(
                    i,
                    token_width(i),
                    EXPECTED,
                    format!(
                        "expected a rule, `select`, `isolate`, `tier` or `}}`, found {}",
                        describe(i)
                    ),
                )
                .label("not a policy statement");
                if let Some(s) = other.and_then(|w| {
                    suggest(
                        w,
                        &["select", "isolate", "tier", "rule", "ingress", "egress"],
                    )
                }) {
                    e = e.help(format!("did you mean `{s}`?"));
                }
                return fail(e);
            }
        }
    }
    let tier = tier.map_or(Tier::Default, |t| t.0);
    if !matches!(tier, Tier::Admin { .. }) {
        for at in passes {
            cx.value_error(
                at,
                4,
                PASS,
                "`pass` is only allowed in the admin tier".into(),
                "pass outside the admin tier",
                Some("add `tier admin priority N` to the policy, or use allow/deny".into()),
            );
        }
    }
    let Some((subject, _)) = subject else {
        return fail(
            PErr::at(
                name_at,
                name_w,
                EXPECTED,
                format!("policy {} has no `select`", quote(&pname)),
            )
            .label("this policy selects nothing")
            .help("say which endpoints it applies to, e.g. `select app = web`, or `select all`"),
        );
    };
    Ok((
        i,
        Policy {
            name: pname,
            namespace,
            tier,
            subject,
            isolate: isolate.map(|d| d.0),
            rules,
            verdicts,
            span: cx.span(start, i),
            name_span,
        },
    ))
}

fn dup<T>(seen: &Option<(T, &str)>, what: &str, here: &str) -> R<'static, ()> {
    match seen {
        Some((_, first)) => fail(
            PErr::at(
                here,
                what.len(),
                DUPLICATE,
                format!("a policy has one `{what}`"),
            )
            .label("second one here")
            .related(first, what.len(), "first one here")
            .help(format!("merge the two `{what}` lines")),
        ),
        None => Ok(("", ())),
    }
}

fn tier_stmt<'a>(cx: &Cx, i: &'a str) -> R<'a, Tier> {
    let (i, ()) = expect_kw(i, "tier")?;
    let (i, w) = peek_word(i)?;
    match w {
        Some("admin") => {
            let (i, ()) = expect_kw(&i[5..], "priority")?;
            let (i, p) = number::<u32>(cx, i, "a priority", u32::MAX as u64)?;
            Ok((i, Tier::Admin { priority: p }))
        }
        Some("default") => Ok((&i[7..], Tier::Default)),
        Some("baseline") => Ok((&i[8..], Tier::Baseline)),
        _ => expected(i, "`admin priority N`, `default` or `baseline`"),
    }
}

fn isolate_stmt<'a>(cx: &Cx, i: &'a str) -> R<'a, Vec<PolicyDirection>> {
    let (i, ()) = expect_kw(i, "isolate")?;
    let (i, none) = opt_kw(i, "none")?;
    if none {
        return Ok((i, Vec::new()));
    }
    let mut dirs = Vec::new();
    let mut i = i;
    loop {
        let (rest, w) = peek_word(i)?;
        let d = match w {
            Some("ingress") => PolicyDirection::Ingress,
            Some("egress") => PolicyDirection::Egress,
            _ => return expected(rest, "`ingress`, `egress` or `none`"),
        };
        if dirs.contains(&d) {
            cx.value_error(
                rest,
                w.unwrap().len(),
                DUPLICATE,
                "direction listed twice".into(),
                "again here",
                None,
            );
        } else {
            dirs.push(d);
        }
        i = &rest[w.unwrap().len()..];
        let (rest, comma) = opt_sym(i, ",")?;
        if !comma {
            return Ok((i, dirs));
        }
        i = rest;
    }
}

/// `select` followed by a subject: `all`, bare label expressions, `pods {..}`, optionally
/// `in namespaces {..}`, or `namespaces {..}` alone.
fn select_stmt<'a>(cx: &Cx, i: &'a str) -> R<'a, Subject> {
    let (i, ()) = expect_kw(i, "select")?;
    let (i, ()) = sp(i)?;
    let start = i;
    let (i, (pods, namespaces)) = endpoint_selectors(cx, i, true)?;
    Ok((
        i,
        Subject {
            namespaces,
            pods: pods.unwrap_or_else(|| Selector {
                exprs: Vec::new(),
                span: cx.span_len(start, 0),
            }),
            span: cx.span(start, i),
        },
    ))
}

/// `pods {..} [in namespaces {..}]` | `namespaces {..}` | (subject only) `all [in ..]` or bare
/// label expressions `[in ..]`. Returns (pods, namespaces); pods is `None` when not written.
#[allow(clippy::type_complexity)]
fn endpoint_selectors<'a>(
    cx: &Cx,
    i: &'a str,
    subject: bool,
) -> R<'a, (Option<Selector>, Option<Selector>)> {
    let (i, w) = peek_word(i)?;
    let (i, pods) = match w {
        Some("namespaces") => {
            let (i, ns) = braced_selector(cx, &i[10..])?;
            return Ok((i, (None, Some(ns))));
        }
        Some("pods") => {
            let (after, ()) = sp(&i[4..])?;
            if after.starts_with('{') {
                let (i, s) = braced_selector(cx, after)?;
                (i, Some(s))
            } else {
                (&i[4..], None)
            }
        }
        Some("all") if subject => (
            &i[3..],
            Some(Selector {
                exprs: Vec::new(),
                span: cx.span_len(i, 3),
            }),
        ),
        _ if subject => {
            if !(i.starts_with(['"', '!']) || word(i).is_some()) {
                return expected(
                    i,
                    "a selector (`all`, `app = web`, `pods {..}` or `namespaces {..}`)",
                );
            }
            let (rest, s) = bare_selector(cx, i)?;
            (rest, Some(s))
        }
        _ => return expected(i, "`pods`, `namespaces`"),
    };
    let (after_in, has_in) = opt_kw(i, "in")?;
    if !has_in {
        return Ok((i, (pods, None)));
    }
    let (after_ns, ()) = expect_kw(after_in, "namespaces")?;
    let (i, ns) = braced_selector(cx, after_ns)?;
    Ok((i, (pods, Some(ns))))
}

/// `{ expr, expr }`: a selector in braces. `{}` matches everything.
fn braced_selector<'a>(cx: &Cx, i: &'a str) -> R<'a, Selector> {
    let (i, ()) = sp(i)?;
    let start = i;
    let Some(mut i) = i.strip_prefix('{') else {
        return expected(i, "`{` and label expressions, like `{ app = web }`");
    };
    let mut exprs = Vec::new();
    loop {
        let (rest, ()) = sp(i)?;
        i = rest;
        if let Some(rest) = i.strip_prefix('}') {
            return Ok((
                rest,
                Selector {
                    exprs,
                    span: cx.span(start, rest),
                },
            ));
        }
        if i.is_empty() {
            return unclosed(start, i, "the selector");
        }
        let (rest, e) = label_expr(cx, i, false)?;
        exprs.push(e);
        let (rest, comma) = opt_sym(rest, ",")?;
        i = rest;
        if !comma {
            let (rest, ()) = sp(i)?;
            if let Some(rest) = rest.strip_prefix('}') {
                return Ok((
                    rest,
                    Selector {
                        exprs,
                        span: cx.span(start, rest),
                    },
                ));
            }
            if at_item_start(rest) {
                return unclosed(start, rest, "the selector");
            }
            return fail(
                PErr::at(
                    rest,
                    token_width(rest),
                    EXPECTED,
                    format!("expected `,` or `}}`, found {}", describe(rest)),
                )
                .label("expected `,` or `}`")
                .related(start, 1, "the selector starts here")
                .help("separate label expressions with `,` and close the selector with `}`"),
            );
        }
    }
}

/// Label expressions without braces, after `select`: `app = web, !legacy`.
fn bare_selector<'a>(cx: &Cx, i: &'a str) -> R<'a, Selector> {
    let (mut i, ()) = sp(i)?;
    let start = i;
    let mut exprs = Vec::new();
    loop {
        let (rest, e) = label_expr(cx, i, true)?;
        exprs.push(e);
        let (after, comma) = opt_sym(rest, ",")?;
        if !comma {
            return Ok((
                rest,
                Selector {
                    exprs,
                    span: cx.span(start, rest),
                },
            ));
        }
        i = after;
    }
}

/// A label key and whether it was quoted.
fn label_key<'a>(i: &'a str) -> R<'a, (String, bool)> {
    let (i, ()) = sp(i)?;
    if i.starts_with('"') {
        let (rest, s) = string(i)?;
        return Ok((rest, (s, true)));
    }
    match word(i) {
        Some((rest, w)) => Ok((rest, (w.to_string(), false))),
        None => expected(
            i,
            "a label expression (`key = value`, `key in (a, b)`, `key` or `!key`)",
        ),
    }
}

fn label_value<'a>(i: &'a str) -> R<'a, String> {
    let (i, ()) = sp(i)?;
    if i.starts_with('"') {
        return string(i);
    }
    match word(i) {
        Some((rest, w)) => Ok((rest, w.to_string())),
        None => expected(i, "a label value"),
    }
}

fn label_expr<'a>(cx: &Cx, i: &'a str, bare: bool) -> R<'a, LabelExpr> {
    let (i, ()) = sp(i)?;
    let start = i;
    if let Some(rest) = i.strip_prefix('!') {
        let (rest, (key, _)) = label_key(rest)?;
        return Ok((
            rest,
            LabelExpr {
                key,
                op: LabelOp::DoesNotExist,
                values: Vec::new(),
                span: cx.span(start, rest),
            },
        ));
    }
    let (i, (key, quoted)) = label_key(i)?;
    let (j, ()) = sp(i)?;
    let (rest, op) = if let Some(r) = j.strip_prefix("!=") {
        (r, LabelOp::NotEq)
    } else if let Some(r) = j.strip_prefix("==") {
        return fail(
            PErr::at(j, 2, EXPECTED, "labels compare with `=`, not `==`")
                .label("write `=`")
                .help(format!(
                    "write `{key} = {}`",
                    word(r.trim_start()).map_or("value", |w| w.1)
                )),
        );
    } else if let Some(r) = j.strip_prefix('=') {
        (r, LabelOp::Eq)
    } else if let Some((r, w @ ("in" | "notin"))) = word(j) {
        let (after, open) = opt_sym(r, "(")?;
        if !open {
            if bare && w == "in" {
                // `select app in namespaces {..}`: `app` exists, `in` belongs to the subject.
                return Ok((
                    i,
                    LabelExpr {
                        key,
                        op: LabelOp::Exists,
                        values: Vec::new(),
                        span: cx.span(start, i),
                    },
                ));
            }
            return expected(after, &format!("`(` and a list of values after `{w}`"));
        }
        let (rest, values) = value_list(after, j)?;
        let op = if w == "in" {
            LabelOp::In
        } else {
            LabelOp::NotIn
        };
        return Ok((
            rest,
            LabelExpr {
                key,
                op,
                values,
                span: cx.span(start, rest),
            },
        ));
    } else {
        if bare && !quoted && KEYWORDS.contains(&key.as_str()) {
            // `select` followed directly by a statement: the selector is missing.
            return expected(
                start,
                "a selector (`all`, `app = web`, `pods {..}` or `namespaces {..}`)",
            );
        }
        return Ok((
            i,
            LabelExpr {
                key,
                op: LabelOp::Exists,
                values: Vec::new(),
                span: cx.span(start, i),
            },
        ));
    };
    let (rest, v) = label_value(rest)?;
    Ok((
        rest,
        LabelExpr {
            key,
            op,
            values: vec![v],
            span: cx.span(start, rest),
        },
    ))
}

/// `a, b, c)` after an opening parenthesis.
fn value_list<'a>(mut i: &'a str, op_at: &str) -> R<'a, Vec<String>> {
    let mut values = Vec::new();
    loop {
        let (rest, close) = opt_sym(i, ")")?;
        if close {
            if values.is_empty() {
                return fail(
                    PErr::at(
                        op_at,
                        token_width(op_at),
                        EXPECTED,
                        "an empty value list matches nothing",
                    )
                    .label("needs at least one value")
                    .help("list values like `in (a, b)`, or use `key` / `!key` to test presence"),
                );
            }
            return Ok((rest, values));
        }
        let (rest, v) = label_value(i)?;
        values.push(v);
        let (rest, comma) = opt_sym(rest, ",")?;
        if !comma {
            let (rest, close) = opt_sym(rest, ")")?;
            if !close {
                return expected(rest, "`,` or `)`");
            }
            return Ok((rest, values));
        }
        i = rest;
    }
}

/// A statement that starts like a rule: a rule, or a verdict rule.
enum RuleStmt {
    Rule(Rule),
    Verdict(VerdictRule),
}

/// `[rule "name"] ingress|egress ACTION [from|to PEERS] [ports ..] [proto ..]`, or
/// `[rule "name"] ingress|egress verdict "FILE" sha256 "HEX" [on-trap deny|allow|pass]`.
/// Also returns where the action word is (for the `pass` check).
fn rule<'a>(cx: &Cx, start: &'a str) -> R<'a, (RuleStmt, &'a str)> {
    let (i, named) = opt_kw(start, "rule")?;
    let (i, name) = if named {
        let (i, ()) = sp(i)?;
        if !i.starts_with('"') {
            return expected(i, "a quoted rule name");
        }
        let (i, s) = string(i)?;
        (i, Some(s))
    } else {
        (i, None)
    };
    let (i, w) = peek_word(i)?;
    let direction = match w {
        Some("ingress") => PolicyDirection::Ingress,
        Some("egress") => PolicyDirection::Egress,
        _ => return expected(i, "`ingress` or `egress`"),
    };
    let i = &i[w.unwrap().len()..];
    let (i, w) = peek_word(i)?;
    let action_at = i;
    if w == Some("verdict") {
        let (i, v) = verdict_rule(cx, start, name, direction, &i[7..])?;
        return Ok((i, (RuleStmt::Verdict(v), action_at)));
    }
    let action = match w {
        Some("allow") => Action::Allow,
        Some("deny") => Action::Deny,
        Some("audit") => Action::Audit,
        Some("pass") => Action::Pass,
        other => {
            let mut e = PErr::at(
                i,
                token_width(i),
                EXPECTED,
                format!("expected an action, found {}", describe(i)),
            )
            .label("expected `allow`, `deny`, `audit`, `pass` or `verdict`");
            if let Some(s) = other.and_then(|w| suggest(w, ACTIONS)) {
                e = e.help(format!("did you mean `{s}`?"));
            }
            return fail(e);
        }
    };
    let mut i = &i[w.unwrap().len()..];
    let mut peers = Vec::new();
    let (rest, w) = peek_word(i)?;
    let (right, wrong) = match direction {
        PolicyDirection::Ingress => ("from", "to"),
        PolicyDirection::Egress => ("to", "from"),
    };
    if w == Some(wrong) {
        return fail(
            PErr::at(
                rest,
                wrong.len(),
                EXPECTED,
                format!("{} rules name peers with `{right}`", direction.as_str()),
            )
            .label(format!("expected `{right}`"))
            .help(format!(
                "write `{} {} {right} ...`",
                direction.as_str(),
                action_word(action)
            )),
        );
    }
    if w == Some(right) {
        i = &rest[right.len()..];
        loop {
            let (rest, p) = peer(cx, i)?;
            peers.push(p);
            let (after, comma) = opt_sym(rest, ",")?;
            i = rest;
            if !comma {
                break;
            }
            i = after;
        }
    }
    let mut ports = Vec::new();
    loop {
        let (rest, w) = peek_word(i)?;
        match w {
            Some("ports") => i = port_list(cx, &rest[5..], &mut ports)?.0,
            Some("proto") => i = proto_list(cx, &rest[5..], &mut ports)?.0,
            _ => break,
        }
    }
    let span = cx.span(start, i);
    Ok((
        i,
        (
            RuleStmt::Rule(Rule {
                name,
                direction,
                action,
                peers,
                ports,
                span,
            }),
            action_at,
        ),
    ))
}

/// The rest of a verdict rule, after `verdict`: `"FILE" sha256 "HEX" [on-trap ACTION]`.
/// The digest's form is checked in lowering, with the file (it applies to module output too).
fn verdict_rule<'a>(
    cx: &Cx,
    start: &'a str,
    name: Option<String>,
    direction: PolicyDirection,
    i: &'a str,
) -> R<'a, VerdictRule> {
    let (i, ()) = sp(i)?;
    if !i.starts_with('"') {
        return expected(i, "the verdict module's file name, quoted");
    }
    let (i, module) = string(i)?;
    let (i, ()) = expect_kw(i, "sha256")?;
    let (i, ()) = sp(i)?;
    if !i.starts_with('"') {
        return expected(i, "the module's sha256, quoted (64 hex digits)");
    }
    let (mut i, sha256) = string(i)?;
    let mut on_trap = OnTrap::Deny;
    let (rest, trap) = opt_kw(i, "on-trap")?;
    if trap {
        let (rest, w) = peek_word(rest)?;
        on_trap = match w {
            Some("deny") => OnTrap::Deny,
            Some("allow") => OnTrap::Allow,
            Some("pass") => OnTrap::Pass,
            other => {
                let mut e = PErr::at(
                    rest,
                    token_width(rest),
                    EXPECTED,
                    format!("expected what a trap means, found {}", describe(rest)),
                )
                .label("expected `deny`, `allow` or `pass`");
                if let Some(s) = other.and_then(|w| suggest(w, ON_TRAP)) {
                    e = e.help(format!("did you mean `{s}`?"));
                }
                return fail(e);
            }
        };
        i = &rest[w.unwrap().len()..];
    }
    Ok((
        i,
        VerdictRule {
            name,
            direction,
            module,
            sha256,
            on_trap,
            span: cx.span(start, i),
        },
    ))
}

pub(crate) fn on_trap_word(t: OnTrap) -> &'static str {
    match t {
        OnTrap::Deny => "deny",
        OnTrap::Allow => "allow",
        OnTrap::Pass => "pass",
    }
}

pub(crate) fn action_word(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Audit => "audit",
        Action::Pass => "pass",
    }
}

fn peer<'a>(cx: &Cx, i: &'a str) -> R<'a, Peer> {
    let (i, w) = peek_word(i)?;
    let start = i;
    match w {
        Some("pods" | "namespaces") => {
            let (rest, (pods, namespaces)) = endpoint_selectors(cx, i, false)?;
            Ok((
                rest,
                Peer::Endpoints {
                    namespaces,
                    pods,
                    span: cx.span(start, rest),
                },
            ))
        }
        Some("cidr") => {
            let (mut i, first) = cidr(cx, &i[4..])?;
            let mut except = Vec::new();
            let (rest, has_except) = opt_kw(i, "except")?;
            if has_except {
                i = rest;
                loop {
                    let (rest, c) = cidr(cx, i)?;
                    except.push(c);
                    i = rest;
                    // A comma continues the except list unless a new peer starts after it.
                    let (after, comma) = opt_sym(i, ",")?;
                    if !comma {
                        break;
                    }
                    let (after, next) = peek_word(after)?;
                    if next.is_some_and(|w| KEYWORDS.contains(&w)) || after.starts_with('"') {
                        break;
                    }
                    i = after;
                }
            }
            Ok((
                i,
                Peer::Cidr {
                    cidr: first,
                    except,
                    span: cx.span(start, i),
                },
            ))
        }
        Some("entity") => {
            let (i, w) = peek_word(&i[6..])?;
            match w.and_then(entity) {
                Some(e) => {
                    let rest = &i[w.unwrap().len()..];
                    Ok((
                        rest,
                        Peer::Entity {
                            entity: e,
                            span: cx.span(start, rest),
                        },
                    ))
                }
                None => unknown_entity(i, w),
            }
        }
        Some(w) if entity(w).is_some() => {
            let rest = &i[w.len()..];
            Ok((
                rest,
                Peer::Entity {
                    entity: entity(w).unwrap(),
                    span: cx.span(start, rest),
                },
            ))
        }
        other => {
            if let Some(s) = other.and_then(|w| {
                suggest(
                    w,
                    &["pods", "namespaces", "cidr", "world", "host", "cluster"],
                )
            }) {
                return fail(
                    PErr::at(
                        i,
                        token_width(i),
                        EXPECTED,
                        format!("expected a peer, found {}", describe(i)),
                    )
                    .label("not a peer")
                    .help(format!("did you mean `{s}`?")),
                );
            }
            fail(
                PErr::at(i, token_width(i), EXPECTED, format!("expected a peer, found {}", describe(i)))
                    .label("expected a peer")
                    .help("peers are `pods {..}`, `namespaces {..}`, `cidr 10.0.0.0/8`, `world`, `host`, `cluster` or `all`"),
            )
        }
    }
}

fn entity(w: &str) -> Option<Entity> {
    Some(match w {
        "world" => Entity::World,
        "host" => Entity::Host,
        "cluster" => Entity::Cluster,
        "all" => Entity::All,
        _ => return None,
    })
}

fn unknown_entity<T>(i: &str, w: Option<&str>) -> R<'static, T> {
    let mut e = PErr::at(
        i,
        token_width(i),
        UNKNOWN,
        format!("unknown entity {}", describe(i)),
    )
    .label("expected `world`, `host`, `cluster` or `all`");
    if let Some(s) = w.and_then(|w| suggest(w, ENTITIES)) {
        e = e.help(format!("did you mean `{s}`?"));
    }
    fail(e)
}

fn is_addr_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '/' | '_' | '-')
}

/// A CIDR: value errors (bad address, prefix out of range) are reported and parsing goes on.
fn cidr<'a>(cx: &Cx, i: &'a str) -> R<'a, Cidr> {
    let (i, ()) = sp(i)?;
    let n = word_len_with(i, |c| is_addr_char(c) && c != '-');
    if n == 0 {
        return expected(i, "a CIDR like 10.0.0.0/8");
    }
    Ok((&i[n..], check_cidr(cx, i, &i[..n])))
}

fn check_cidr(cx: &Cx, at: &str, text: &str) -> Cidr {
    let placeholder = Cidr {
        addr: IpAddr::from([0, 0, 0, 0]),
        prefix: 0,
    };
    match text.parse::<Cidr>() {
        Ok(c) => c,
        Err(CidrError::MissingPrefix) => {
            let help = text.parse::<IpAddr>().ok().map(|a| {
                format!(
                    "for a single address write `{text}/{}`",
                    if a.is_ipv4() { 32 } else { 128 }
                )
            });
            cx.value_error(
                at,
                text.len(),
                CIDR,
                format!("`{text}` is not a CIDR"),
                "expected an address followed by /prefix",
                help,
            );
            placeholder
        }
        Err(CidrError::BadAddress(a)) => {
            cx.value_error(
                at,
                a.len(),
                CIDR,
                format!("`{a}` is not an IP address"),
                "not an IP address",
                None,
            );
            placeholder
        }
        Err(CidrError::BadPrefix { prefix, max }) => {
            let slash = text.find('/').unwrap_or(0);
            cx.value_error(
                &at[slash + 1..],
                prefix.len(),
                CIDR,
                format!("prefix length {prefix} is out of range"),
                &format!("must be 0 to {max}"),
                None,
            );
            placeholder
        }
    }
}

fn port_list<'a>(cx: &Cx, mut i: &'a str, out: &mut Vec<PortSpec>) -> R<'a, ()> {
    loop {
        let (rest, p) = port_spec(cx, i)?;
        out.push(p);
        let (after, comma) = opt_sym(rest, ",")?;
        if !comma {
            return Ok((rest, ()));
        }
        i = after;
    }
}

const PORT_EXPECTED: &str = "a port number, range (80-90) or port name";

/// `80`, `80/udp`, `8000-8080/tcp`, `http`, `http/tcp`, `53/any`. No protocol means TCP.
fn port_spec<'a>(cx: &Cx, i: &'a str) -> R<'a, PortSpec> {
    let (i, ()) = sp(i)?;
    let start = i;
    let n = word_len_with(i, |c| {
        c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
    });
    if n == 0 {
        return expected(i, PORT_EXPECTED);
    }
    let text = &i[..n];
    let port = if text.bytes().all(|b| b.is_ascii_digit()) {
        PortMatch::Number(port_number(cx, i, text))
    } else if let Some((a, b)) = text.split_once('-').filter(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    }) {
        let lo = port_number(cx, i, a);
        let hi = port_number(cx, &i[a.len() + 1..], b);
        if lo > hi && hi != 0 {
            cx.value_error(
                i,
                n,
                PORT,
                format!("port range {text} is empty: {lo} > {hi}"),
                "start is after end",
                Some(format!("write `{hi}-{lo}`")),
            );
        }
        PortMatch::Range(lo, hi)
    } else if text.bytes().any(|b| b.is_ascii_alphabetic())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
    {
        if n > 15 {
            cx.value_error(
                i,
                n,
                PORT,
                format!("port name `{text}` is longer than 15 characters"),
                "too long",
                None,
            );
        }
        PortMatch::Named(text.to_string())
    } else {
        return fail(
            PErr::at(
                i,
                n,
                EXPECTED,
                format!("expected {PORT_EXPECTED}, found `{text}`"),
            )
            .label(format!("expected {PORT_EXPECTED}")),
        );
    };
    let mut i = &i[n..];
    let mut protocol = Protocol::Tcp;
    if let Some(rest) = i.strip_prefix('/') {
        let pn = word_len(rest);
        let w = &rest[..pn];
        protocol = match w {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            "any" => Protocol::Any,
            "icmp" => {
                return fail(
                    PErr::at(rest, pn, VALUE, "ICMP has no ports")
                        .label("not a port protocol")
                        .help("match ICMP with `proto icmp type 8 code 0`"),
                );
            }
            _ => return unknown_protocol(rest, w, "expected tcp, udp, sctp or any"),
        };
        i = &rest[pn..];
    }
    Ok((
        i,
        PortSpec {
            protocol,
            port: Some(port),
            span: cx.span(start, i),
        },
    ))
}

fn port_number(cx: &Cx, at: &str, text: &str) -> u16 {
    match text.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        _ => {
            cx.value_error(
                at,
                text.len(),
                PORT,
                format!("port {text} is out of range"),
                "ports are 1 to 65535",
                Some("omit `ports` to match every port".into()),
            );
            1
        }
    }
}

fn unknown_protocol<T>(at: &str, w: &str, label: &str) -> R<'static, T> {
    if w.is_empty() {
        return expected(at, "a protocol (tcp, udp, sctp, icmp or any)");
    }
    let mut e = PErr::at(at, w.len(), UNKNOWN, format!("unknown protocol \"{w}\"")).label(label);
    if let Some(s) = suggest(w, PROTOCOLS) {
        e = e.help(format!("did you mean {s}?"));
    }
    fail(e)
}

/// `tcp`, `udp, sctp`, `icmp type 8 code 0`, `any`: protocols without ports.
fn proto_list<'a>(cx: &Cx, mut i: &'a str, out: &mut Vec<PortSpec>) -> R<'a, ()> {
    loop {
        let (rest, ()) = sp(i)?;
        let start = rest;
        let w = word(rest).map_or("", |(_, w)| w);
        let mut j = &rest[w.len()..];
        let protocol = match w {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            "any" => Protocol::Any,
            "icmp" => {
                let (r, has_type) = opt_kw(j, "type")?;
                let (r, icmp_type) = if has_type {
                    let (r, t) = number::<u8>(cx, r, "an ICMP type", 255)?;
                    (r, Some(t))
                } else {
                    (j, None)
                };
                let (r2, has_code) = opt_kw(r, "code")?;
                let (r, code) = if has_code {
                    if !has_type {
                        let (at, ()) = sp(r)?;
                        return fail(
                            PErr::at(at, 4, EXPECTED, "an ICMP code needs a type")
                                .label("code without type")
                                .help("write `icmp type 3 code 1`"),
                        );
                    }
                    let (r, c) = number::<u8>(cx, r2, "an ICMP code", 255)?;
                    (r, Some(c))
                } else {
                    (r, None)
                };
                j = r;
                Protocol::Icmp { icmp_type, code }
            }
            _ => return unknown_protocol(rest, w, "expected tcp, udp, sctp, icmp or any"),
        };
        out.push(PortSpec {
            protocol,
            port: None,
            span: cx.span(start, j),
        });
        let (after, comma) = opt_sym(j, ",")?;
        if !comma {
            return Ok((j, ()));
        }
        i = after;
    }
}

/// `masquerade { except CIDR, .. ; link-local on|off ; link-local-v6 on|off ; source .. }`.
fn masquerade<'a>(cx: &Cx, start: &'a str) -> R<'a, Masquerade> {
    let (i, ()) = expect_kw(start, "masquerade")?;
    let (mut i, brace) = open_brace(i, "the masquerade block")?;
    let mut m = Masquerade {
        non_masquerade: Vec::new(),
        link_local: false,
        link_local_v6: false,
        egress: None,
        span: Span::NONE,
    };
    let mut seen: Vec<&str> = Vec::new();
    loop {
        let (rest, w) = peek_word(i)?;
        i = rest;
        if let Some(rest) = i.strip_prefix('}') {
            i = rest;
            break;
        }
        let stmt = i;
        if let Some(w @ ("link-local" | "link-local-v6" | "source")) = w {
            if seen.contains(&w) {
                return fail(
                    PErr::at(stmt, w.len(), DUPLICATE, format!("`{w}` is set twice"))
                        .label("second one here")
                        .help("keep one"),
                );
            }
            seen.push(w);
        }
        match w {
            Some("except") => {
                let mut j = &i[6..];
                loop {
                    let (rest, c) = cidr(cx, j)?;
                    m.non_masquerade.push(c);
                    let (after, comma) = opt_sym(rest, ",")?;
                    j = if comma { after } else { rest };
                    if !comma {
                        break;
                    }
                }
                i = j;
            }
            Some(w @ ("link-local" | "link-local-v6")) => {
                let (rest, v) = on_off(&i[w.len()..])?;
                if w == "link-local" {
                    m.link_local = v;
                } else {
                    m.link_local_v6 = v;
                }
                i = rest;
            }
            Some("source") => {
                let (rest, kind) = peek_word(&i[6..])?;
                match kind {
                    Some("interface") => {
                        let (rest, (n, _)) = name(&rest[9..], "an interface name")?;
                        m.egress = Some(Egress::Interface(n));
                        i = rest;
                    }
                    Some("address") => {
                        let (at, ()) = sp(&rest[7..])?;
                        let n = word_len_with(at, |c| is_addr_char(c) && c != '/' && c != '-');
                        match at[..n].parse::<IpAddr>() {
                            Ok(a) if n > 0 => m.egress = Some(Egress::Address(a)),
                            _ if n > 0 => {
                                cx.value_error(
                                    at,
                                    n,
                                    VALUE,
                                    format!("`{}` is not an IP address", &at[..n]),
                                    "not an IP address",
                                    None,
                                );
                            }
                            _ => return expected(at, "an IP address"),
                        }
                        i = &at[n..];
                    }
                    _ => return expected(rest, "`interface NAME` or `address IP`"),
                }
            }
            _ if at_item_start(i) => return unclosed(brace, i, "the masquerade block"),
            other => {
                let mut e = PErr::at(i, token_width(i), EXPECTED, format!("expected `except`, `link-local`, `link-local-v6`, `source` or `}}`, found {}", describe(i)))
                    .label("not a masquerade setting");
                if let Some(s) = other
                    .and_then(|w| suggest(w, &["except", "link-local", "link-local-v6", "source"]))
                {
                    e = e.help(format!("did you mean `{s}`?"));
                }
                return fail(e);
            }
        }
    }
    m.span = cx.span(start, i);
    Ok((i, m))
}

fn on_off(i: &str) -> R<'_, bool> {
    let (i, w) = peek_word(i)?;
    match w {
        Some("on") => Ok((&i[2..], true)),
        Some("off") => Ok((&i[3..], false)),
        _ => expected(i, "`on` or `off`"),
    }
}

/// `ipam { pool NAME KIND ... }`.
fn ipam<'a>(cx: &Cx, start: &'a str) -> R<'a, Ipam> {
    let (i, ()) = expect_kw(start, "ipam")?;
    let (mut i, brace) = open_brace(i, "the ipam block")?;
    let mut pools = Vec::new();
    loop {
        let (rest, w) = peek_word(i)?;
        i = rest;
        if let Some(rest) = i.strip_prefix('}') {
            i = rest;
            break;
        }
        match w {
            Some("pool") => {
                let (rest, p) = pool(cx, i)?;
                pools.push(p);
                i = rest;
            }
            _ if at_item_start(i) => return unclosed(brace, i, "the ipam block"),
            _ => return expected(i, "`pool` or `}`"),
        }
    }
    Ok((
        i,
        Ipam {
            pools,
            span: cx.span(start, i),
        },
    ))
}

fn pool<'a>(cx: &Cx, start: &'a str) -> R<'a, Pool> {
    let (i, ()) = expect_kw(start, "pool")?;
    let (i, (name, _)) = name(i, "a pool name")?;
    let (i, w) = peek_word(i)?;
    let (i, kind) = match w {
        Some(k @ ("cluster" | "multi")) => {
            let mut j = &i[k.len()..];
            let mut cidrs = Vec::new();
            loop {
                let (rest, c) = cidr(cx, j)?;
                cidrs.push(c);
                let (after, comma) = opt_sym(rest, ",")?;
                j = if comma { after } else { rest };
                if !comma {
                    break;
                }
            }
            let (j, ()) = expect_kw(j, "per-node")?;
            let (j, slash) = opt_sym(j, "/")?;
            if !slash {
                return expected(j, "a per-node prefix length like `/24`");
            }
            let (j, node_mask) = number::<u8>(cx, j, "a prefix length", 128)?;
            if k == "cluster" {
                (j, PoolKind::Cluster { cidrs, node_mask })
            } else {
                let (after, w) = peek_word(j)?;
                let (j, (pods, namespaces)) = if matches!(w, Some("pods" | "namespaces")) {
                    endpoint_selectors(cx, after, false)?
                } else {
                    (j, (None, None))
                };
                let pods = pods.unwrap_or_default();
                (
                    j,
                    PoolKind::Multi {
                        cidrs,
                        node_mask,
                        pods,
                        namespaces,
                    },
                )
            }
        }
        Some("lb") => {
            let mut j = &i[2..];
            let mut blocks = Vec::new();
            loop {
                let (rest, b) = lb_block(cx, j)?;
                blocks.push(b);
                let (after, comma) = opt_sym(rest, ",")?;
                j = if comma { after } else { rest };
                if !comma {
                    break;
                }
            }
            let (after, has) = opt_kw(j, "services")?;
            let (j, services) = if has {
                braced_selector(cx, after)?
            } else {
                (j, Selector::default())
            };
            (j, PoolKind::Lb { blocks, services })
        }
        Some("host-scope") => (&i[10..], PoolKind::HostScope),
        other => {
            let mut e = PErr::at(
                i,
                token_width(i),
                EXPECTED,
                format!("expected a pool kind, found {}", describe(i)),
            )
            .label("expected `cluster`, `multi`, `lb` or `host-scope`");
            if let Some(s) =
                other.and_then(|w| suggest(w, &["cluster", "multi", "lb", "host-scope"]))
            {
                e = e.help(format!("did you mean `{s}`?"));
            }
            return fail(e);
        }
    };
    Ok((
        i,
        Pool {
            name,
            kind,
            span: cx.span(start, i),
        },
    ))
}

/// `203.0.113.0/24` or `198.51.100.10-198.51.100.20`.
fn lb_block<'a>(cx: &Cx, i: &'a str) -> R<'a, LbBlock> {
    let (i, ()) = sp(i)?;
    let n = word_len_with(i, is_addr_char);
    if n == 0 {
        return expected(i, "a CIDR or an address range (start-stop)");
    }
    let text = &i[..n];
    let rest = &i[n..];
    if let Some((a, b)) = text.split_once('-') {
        let (Ok(lo), Ok(hi)) = (a.parse::<IpAddr>(), b.parse::<IpAddr>()) else {
            cx.value_error(
                i,
                n,
                VALUE,
                format!("`{text}` is not an address range"),
                "expected START-STOP addresses",
                None,
            );
            return Ok((
                rest,
                LbBlock::Range(IpAddr::from([0, 0, 0, 0]), IpAddr::from([0, 0, 0, 0])),
            ));
        };
        if lo.is_ipv4() != hi.is_ipv4() {
            cx.value_error(
                i,
                n,
                VALUE,
                "range mixes IPv4 and IPv6".into(),
                "mixed address families",
                None,
            );
        } else if lo > hi {
            cx.value_error(
                i,
                n,
                VALUE,
                format!("address range {text} is empty"),
                "start is after end",
                Some(format!("write `{hi}-{lo}`")),
            );
        }
        return Ok((rest, LbBlock::Range(lo, hi)));
    }
    Ok((rest, LbBlock::Cidr(check_cidr(cx, i, text))))
}
