//! The canonical printer behind `sluice fmt`.
//!
//! [`print`] writes a [`Document`] in one fixed layout (one statement per line, two-space
//! indent, a blank line between items), so its output parses back to the same tree and printing
//! that again gives the same text. [`format`] does the same for source text and also keeps the
//! user's comments and blank lines: comments are not in the tree, so they are re-attached by
//! position, in front of the next statement that has a span (or at the end of the line they
//! trailed).

use super::lex::{is_bare, quote};
use super::parser::{KEYWORDS, action_word, on_trap_word};
use crate::diag::Diagnostics;
use crate::source::ast::*;

/// Prints a document in canonical form (no comments: the tree has none).
pub fn print(doc: &Document) -> String {
    let mut p = Printer {
        out: String::new(),
        comments: Vec::new(),
        next: 0,
        text: "",
    };
    p.document(doc);
    p.out
}

/// Parses and prints `text`, keeping its comments and (single) blank lines.
pub fn format(source: SourceId, text: &str) -> Result<String, Diagnostics> {
    let doc = super::parse(source, text)?;
    let mut p = Printer {
        out: String::new(),
        comments: comments(text),
        next: 0,
        text,
    };
    p.document(&doc);
    Ok(p.out)
}

struct Comment {
    start: usize,
    text: String,
    /// Nothing but whitespace before it on its line.
    own_line: bool,
}

/// Finds every comment outside string literals (the lexer's rules: `#`, `//`, `/* */`).
fn comments(text: &str) -> Vec<Comment> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'#' | b'/' if b[i] == b'#' || matches!(b.get(i + 1), Some(b'/' | b'*')) => {
                let block = b[i] == b'/' && b[i + 1] == b'*';
                let end = if block {
                    text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2)
                } else {
                    text[i..].find('\n').map_or(b.len(), |e| i + e)
                };
                let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
                out.push(Comment {
                    start: i,
                    text: text[i..end].trim_end().to_string(),
                    own_line: text[line_start..i].trim().is_empty(),
                });
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

struct Printer<'t> {
    out: String,
    comments: Vec<Comment>,
    next: usize,
    text: &'t str,
}

impl Printer<'_> {
    /// True when the source line above `pos` is blank: the user separated a group there.
    fn blank_above(&self, pos: usize) -> bool {
        let Some(line_start) = self.text.get(..pos).and_then(|t| t.rfind('\n')) else {
            return false;
        };
        let before = &self.text[..line_start];
        let prev_start = before.rfind('\n').map_or(0, |n| n + 1);
        before[prev_start..].trim().is_empty() && !before.trim().is_empty()
    }

    fn at_block_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with("{\n") || self.out.ends_with("\n\n")
    }

    fn maybe_blank(&mut self, pos: usize) {
        if !self.at_block_start() && self.blank_above(pos) {
            self.out.push('\n');
        }
    }

    /// Emits the comments that come before source offset `pos`.
    fn comments_before(&mut self, pos: usize, indent: usize) {
        while let Some(c) = self.comments.get(self.next).filter(|c| c.start < pos) {
            let (own_line, text, start) = (c.own_line, c.text.clone(), c.start);
            self.next += 1;
            if own_line || self.out.is_empty() {
                self.maybe_blank(start);
                self.push_indent(indent);
                self.out.push_str(&text);
                self.out.push('\n');
            } else {
                // A trailing comment: back onto the end of the previous line.
                self.out.pop();
                self.out.push(' ');
                self.out.push_str(&text);
                self.out.push('\n');
            }
        }
    }

    /// Emits the trailing comments (same line as code) that come before `pos`.
    fn trailing_before(&mut self, pos: usize) {
        while self
            .comments
            .get(self.next)
            .is_some_and(|c| c.start < pos && !c.own_line)
        {
            self.comments_before(self.comments[self.next].start + 1, 0);
        }
    }

    fn push_indent(&mut self, indent: usize) {
        for _ in 0..indent {
            self.out.push_str("  ");
        }
    }

    /// One output line for a node that starts at `span`.
    fn line(&mut self, indent: usize, span: Span, text: &str) {
        if !span.is_none() {
            self.comments_before(span.start as usize, indent);
            self.maybe_blank(span.start as usize);
        }
        self.push_indent(indent);
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Closes a block that ended at `span.end` (comments inside it stay inside).
    fn close(&mut self, indent: usize, span: Span) {
        if !span.is_none() {
            self.comments_before(span.end.saturating_sub(1) as usize, indent + 1);
        }
        self.push_indent(indent);
        self.out.push_str("}\n");
    }

    fn document(&mut self, doc: &Document) {
        for (n, item) in doc.items.iter().enumerate() {
            if n > 0 {
                self.trailing_before(item_span(item).start as usize);
                // A run of includes stays together; other items get a blank line between.
                let includes = matches!(
                    (&doc.items[n - 1], item),
                    (Item::Include(_), Item::Include(_))
                );
                if !includes {
                    self.out.push('\n');
                }
            }
            match item {
                Item::Include(inc) => {
                    self.line(0, inc.span, &format!("include {}", quote(&inc.path)))
                }
                Item::Policy(p) => self.policy(p),
                Item::Masquerade(m) => self.masquerade(m),
                Item::Ipam(i) => self.ipam(i),
            }
        }
        self.comments_before(usize::MAX, 0);
    }

    fn policy(&mut self, p: &Policy) {
        let mut head = format!("policy {}", quote(&p.name));
        if let Some(ns) = &p.namespace {
            head.push_str(" in namespace ");
            head.push_str(&bare_or_quoted(ns));
        }
        head.push_str(" {");
        self.line(0, p.span, &head);
        match p.tier {
            Tier::Admin { priority } => {
                self.line(1, Span::NONE, &format!("tier admin priority {priority}"))
            }
            Tier::Baseline => self.line(1, Span::NONE, "tier baseline"),
            Tier::Default => {}
        }
        self.line(
            1,
            p.subject.span,
            &format!("select {}", subject(&p.subject)),
        );
        if let Some(dirs) = &p.isolate {
            let text = if dirs.is_empty() {
                "none".to_string()
            } else {
                dirs.iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            self.line(1, Span::NONE, &format!("isolate {text}"));
        }
        // Verdict rules and rules keep the order they were written in; without positions
        // (a document built in code) verdict rules come first, as they are evaluated first.
        let mut stmts: Vec<(Span, Vec<String>)> = p
            .verdicts
            .iter()
            .map(|v| (v.span, verdict_rule(v)))
            .chain(p.rules.iter().map(|r| (r.span, rule(r))))
            .collect();
        stmts.sort_by_key(|(span, _)| (!span.is_none()).then_some(span.start));
        for (span, parts) in stmts {
            let one = parts.concat();
            if one.len() + 2 <= WIDTH {
                self.line(1, span, &one);
            } else {
                // Too long: fill lines with whole clauses, continuation lines indented.
                // The peers stay on the first line: `egress allow` alone says little.
                let first = if parts.get(1).is_some_and(|p| is_peers(p)) {
                    2
                } else {
                    1
                };
                let mut text = parts[..first].concat();
                let mut len = 2 + text.len();
                for part in &parts[first..] {
                    if len + part.len() > WIDTH {
                        text.push_str("\n      ");
                        text.push_str(part.trim_start());
                        len = 6 + part.len() - 1;
                    } else {
                        text.push_str(part);
                        len += part.len();
                    }
                }
                self.line(1, span, &text);
            }
        }
        self.close(0, p.span);
    }

    fn masquerade(&mut self, m: &Masquerade) {
        self.line(0, m.span, "masquerade {");
        if !m.non_masquerade.is_empty() {
            let items: Vec<String> = m.non_masquerade.iter().map(|c| c.to_string()).collect();
            self.out.push_str(&wrap("  except ", &items, WIDTH));
        }
        let on = |b: bool| if b { "on" } else { "off" };
        self.line(1, Span::NONE, &format!("link-local {}", on(m.link_local)));
        self.line(
            1,
            Span::NONE,
            &format!("link-local-v6 {}", on(m.link_local_v6)),
        );
        match &m.egress {
            Some(Egress::Interface(n)) => self.line(
                1,
                Span::NONE,
                &format!("source interface {}", bare_or_quoted(n)),
            ),
            Some(Egress::Address(a)) => self.line(1, Span::NONE, &format!("source address {a}")),
            None => {}
        }
        self.close(0, m.span);
    }

    fn ipam(&mut self, ipam: &Ipam) {
        self.line(0, ipam.span, "ipam {");
        for pool in &ipam.pools {
            self.line(1, pool.span, &pool_line(pool));
        }
        self.close(0, ipam.span);
    }
}

fn item_span(item: &Item) -> Span {
    match item {
        Item::Policy(p) => p.span,
        Item::Masquerade(m) => m.span,
        Item::Ipam(i) => i.span,
        Item::Include(i) => i.span,
    }
}

/// `except a, b, c` broken at commas so lines stay under `width`.
fn wrap(prefix: &str, items: &[String], width: usize) -> String {
    let cont = " ".repeat(prefix.len());
    let mut out = String::from(prefix);
    let mut line_len = prefix.len();
    for (n, item) in items.iter().enumerate() {
        let last = n + 1 == items.len();
        let piece = if last {
            item.clone()
        } else {
            format!("{item},")
        };
        if n > 0 {
            if line_len + 1 + piece.len() > width {
                out.push('\n');
                out.push_str(&cont);
                line_len = cont.len();
            } else {
                out.push(' ');
                line_len += 1;
            }
        }
        out.push_str(&piece);
        line_len += piece.len();
    }
    out.push('\n');
    out
}

fn bare_or_quoted(s: &str) -> String {
    if is_bare(s) { s.to_string() } else { quote(s) }
}

fn key(k: &str, op: LabelOp, force_quote: bool) -> String {
    // A bare keyword on its own would read as the keyword.
    if force_quote || op == LabelOp::Exists && KEYWORDS.contains(&k) {
        quote(k)
    } else {
        bare_or_quoted(k)
    }
}

fn label_expr(e: &LabelExpr, force_quote: bool) -> String {
    let vals = || {
        e.values
            .iter()
            .map(|v| bare_or_quoted(v))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let k = key(&e.key, e.op, force_quote);
    let first = || {
        e.values
            .first()
            .map_or_else(|| quote(""), |v| bare_or_quoted(v))
    };
    match e.op {
        LabelOp::Eq => format!("{k} = {}", first()),
        LabelOp::NotEq => format!("{k} != {}", first()),
        LabelOp::In => format!("{k} in ({})", vals()),
        LabelOp::NotIn => format!("{k} notin ({})", vals()),
        LabelOp::Exists => k,
        LabelOp::DoesNotExist => format!("!{}", bare_or_quoted(&e.key)),
    }
}

/// Label expressions joined by commas. In the bare form after `select`, a first key spelt
/// `all`, `pods` or `namespaces` would read as that keyword, so it is quoted.
fn exprs(s: &Selector, after_select: bool) -> String {
    s.exprs
        .iter()
        .enumerate()
        .map(|(n, e)| {
            let clash =
                after_select && n == 0 && matches!(e.key.as_str(), "all" | "pods" | "namespaces");
            label_expr(e, clash)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn braced(s: &Selector) -> String {
    if s.exprs.is_empty() {
        "{}".into()
    } else {
        format!("{{ {} }}", exprs(s, false))
    }
}

fn bare(s: &Selector) -> String {
    exprs(s, true)
}

fn subject(s: &Subject) -> String {
    match (&s.namespaces, s.pods.exprs.is_empty()) {
        (None, true) => "all".into(),
        (None, false) => bare(&s.pods),
        (Some(ns), true) => format!("namespaces {}", braced(ns)),
        (Some(ns), false) => format!("{} in namespaces {}", bare(&s.pods), braced(ns)),
    }
}

fn endpoints(pods: Option<&Selector>, namespaces: Option<&Selector>) -> String {
    match (pods, namespaces) {
        (None, None) => "pods".into(),
        (Some(p), None) => format!("pods {}", braced(p)),
        (None, Some(n)) => format!("namespaces {}", braced(n)),
        (Some(p), Some(n)) => format!("pods {} in namespaces {}", braced(p), braced(n)),
    }
}

fn peer(p: &Peer) -> String {
    match p {
        Peer::Endpoints {
            namespaces, pods, ..
        } => endpoints(pods.as_ref(), namespaces.as_ref()),
        Peer::Cidr { cidr, except, .. } => {
            let mut s = format!("cidr {cidr}");
            if !except.is_empty() {
                s.push_str(" except ");
                s.push_str(
                    &except
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                );
            }
            s
        }
        Peer::Entity { entity, .. } => match entity {
            Entity::World => "world",
            Entity::Host => "host",
            Entity::Cluster => "cluster",
            Entity::All => "all",
        }
        .into(),
    }
}

fn proto_name(p: &Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
        Protocol::Icmp { .. } => "icmp",
        Protocol::Any => "any",
    }
}

fn port_spec(p: &PortSpec) -> String {
    match &p.port {
        Some(port) => {
            let port = match port {
                PortMatch::Number(n) => n.to_string(),
                PortMatch::Range(a, b) => format!("{a}-{b}"),
                PortMatch::Named(n) => n.clone(),
            };
            format!("{port}/{}", proto_name(&p.protocol))
        }
        None => match p.protocol {
            Protocol::Icmp { icmp_type, code } => {
                let mut s = String::from("icmp");
                if let Some(t) = icmp_type {
                    s.push_str(&format!(" type {t}"));
                }
                if let Some(c) = code {
                    s.push_str(&format!(" code {c}"));
                }
                s
            }
            other => proto_name(&other).into(),
        },
    }
}

/// Output lines stay under this width where the printer can break them.
const WIDTH: usize = 100;

/// True for the peers part of a rule (it stays on the rule's first line).
fn is_peers(part: &str) -> bool {
    part.starts_with(" from ") || part.starts_with(" to ")
}

/// A verdict rule as its parts: `[rule "n"] ingress verdict "file"`, ` sha256 "…"`,
/// ` on-trap …` (always written: what a trap does should be visible).
fn verdict_rule(v: &VerdictRule) -> Vec<String> {
    let mut head = String::new();
    if let Some(n) = &v.name {
        head.push_str(&format!("rule {} ", quote(n)));
    }
    head.push_str(&format!(
        "{} verdict {}",
        v.direction.as_str(),
        quote(&v.module)
    ));
    vec![
        head,
        format!(" sha256 {}", quote(&v.sha256)),
        format!(" on-trap {}", on_trap_word(v.on_trap)),
    ]
}

/// A rule as its parts: `[rule "n"] ingress allow`, ` from ...`, ` ports ...`, ` proto ...`.
fn rule(r: &Rule) -> Vec<String> {
    let mut parts = Vec::new();
    let mut s = String::new();
    if let Some(n) = &r.name {
        s.push_str(&format!("rule {} ", quote(n)));
    }
    s.push_str(r.direction.as_str());
    s.push(' ');
    s.push_str(action_word(r.action));
    parts.push(std::mem::take(&mut s));
    if !r.peers.is_empty() {
        s.push_str(match r.direction {
            PolicyDirection::Ingress => " from ",
            PolicyDirection::Egress => " to ",
        });
        s.push_str(&r.peers.iter().map(peer).collect::<Vec<_>>().join(", "));
        parts.push(std::mem::take(&mut s));
    }
    // Consecutive specs with ports go in one `ports` clause, without in one `proto` clause.
    let mut n = 0;
    while n < r.ports.len() {
        let with_port = r.ports[n].port.is_some();
        let run: Vec<String> = r.ports[n..]
            .iter()
            .take_while(|p| p.port.is_some() == with_port)
            .map(port_spec)
            .collect();
        n += run.len();
        s.push_str(if with_port { " ports " } else { " proto " });
        s.push_str(&run.join(", "));
        parts.push(std::mem::take(&mut s));
    }
    parts
}

fn pool_line(p: &Pool) -> String {
    let cidrs = |c: &[Cidr]| {
        c.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name = quote(&p.name);
    match &p.kind {
        PoolKind::Cluster {
            cidrs: c,
            node_mask,
        } => format!("pool {name} cluster {} per-node /{node_mask}", cidrs(c)),
        PoolKind::Multi {
            cidrs: c,
            node_mask,
            pods,
            namespaces,
        } => {
            let mut s = format!("pool {name} multi {} per-node /{node_mask}", cidrs(c));
            let pods = (!pods.exprs.is_empty()).then_some(pods);
            if pods.is_some() || namespaces.is_some() {
                s.push(' ');
                s.push_str(&endpoints(pods, namespaces.as_ref()));
            }
            s
        }
        PoolKind::Lb { blocks, services } => {
            let b: Vec<String> = blocks
                .iter()
                .map(|b| match b {
                    LbBlock::Cidr(c) => c.to_string(),
                    LbBlock::Range(a, z) => format!("{a}-{z}"),
                })
                .collect();
            let mut s = format!("pool {name} lb {}", b.join(", "));
            if !services.exprs.is_empty() {
                s.push_str(&format!(" services {}", braced(services)));
            }
            s
        }
        PoolKind::HostScope => format!("pool {name} host-scope"),
    }
}
