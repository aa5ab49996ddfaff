//! YAML plumbing shared by the Kubernetes, Cilium and ip-masq-agent readers.
//!
//! serde_norway turns a document into typed values and reports syntax and type errors with a
//! line and column, but it gives no position for values that parse fine. Semantic errors found
//! later (a CIDR with host bits, an unknown protocol, a typo in a field name) must point at the
//! text too, so each file is also parsed with saphyr-parser into a small tree of [`Node`]s that
//! carry byte spans; readers look values up in it by path. Both parsers read the same text, and
//! documents are matched by position.
//!
//! This module also recognises what each document is ([`ObjectKind`]) and deserializes it,
//! including the items of a `kind: List`, so that serde's error locations survive for list
//! items too.

use super::ast::{Document, Item, SourceId, Span};
use crate::diag::{Diag, Diagnostics, suggest};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt;

/// A YAML node with the byte range of its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `plain` is false for quoted and block scalars (which are always strings).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node under `key` of a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// Element `i` of a sequence.
    pub fn at(&self, i: usize) -> Option<&Node> {
        match &self.value {
            Value::Seq(items) => items.get(i),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn entries(&self) -> &[(Node, Node)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map(_))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A plain `~`, `null` or empty scalar, as YAML 1.2's core schema reads them.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The span of the value under `key`, else this node's span: the best place to point at.
    pub fn span_of(&self, key: &str) -> Span {
        self.get(key).map_or(self.span, |n| n.span)
    }

    /// The deepest node that starts at `offset`, else the deepest that contains it.
    pub fn find_at(&self, offset: u32) -> Option<&Node> {
        if offset < self.span.start || offset > self.span.end {
            return None;
        }
        let children: Vec<&Node> = match &self.value {
            Value::Scalar { .. } => Vec::new(),
            Value::Seq(items) => items.iter().collect(),
            Value::Map(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
        };
        for c in children {
            if let Some(n) = c.find_at(offset) {
                return Some(n);
            }
        }
        Some(self)
    }
}

/// Byte offsets of line starts, to turn (line, character column) into a byte offset.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts }
    }

    /// `line` is 1-based, `col` 0-based in characters.
    fn offset(&self, line: usize, col: usize) -> usize {
        let Some(&start) = self.starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        start + rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i)
    }
}

/// Maps a byte offset in parsed text to a byte offset in the file (identity except for YAML
/// embedded in a ConfigMap value).
pub type OffsetMap<'a> = &'a dyn Fn(usize) -> usize;

/// Parses every document of `text` into a span tree. Empty documents come out as null scalars,
/// so positions match serde_norway's document iterator.
pub fn parse_tree(source: SourceId, text: &str, map: OffsetMap) -> Result<Vec<Node>, Diag> {
    enum Frame {
        Seq(u32, Vec<Node>, usize),
        Map(u32, Vec<(Node, Node)>, Option<Node>, usize),
    }
    let lines = Lines::new(text);
    let off = |m: saphyr_parser::Marker| map(lines.offset(m.line(), m.col())) as u32;
    let mut docs = Vec::new();
    let mut root: Option<Node> = None;
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();

    fn place(stack: &mut [Frame], root: &mut Option<Node>, node: Node) {
        match stack.last_mut() {
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, entries, key, _)) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => *key = Some(node),
            },
            None => *root = Some(node),
        }
    }

    for ev in Parser::new_from_str(text) {
        let (ev, sp) = ev.map_err(|e| {
            let at = off(*e.marker()) as usize;
            Diag::error(
                "sluice::yaml::syntax",
                format!("invalid YAML: {}", e.info()),
            )
            .with_label(Span::new(source, at, at), e.info())
        })?;
        let (start, end) = (off(sp.start), off(sp.end));
        let span = Span { source, start, end };
        match ev {
            Event::Scalar(v, style, anchor, _) => {
                let node = Node {
                    span,
                    value: Value::Scalar {
                        text: v.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                place(&mut stack, &mut root, node);
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().unwrap_or(Node {
                    span,
                    value: Value::Scalar {
                        text: String::new(),
                        plain: true,
                    },
                });
                place(&mut stack, &mut root, node);
            }
            Event::SequenceStart(anchor, _) => stack.push(Frame::Seq(start, Vec::new(), anchor)),
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(start, Vec::new(), None, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Seq(s, items, anchor)) => {
                        let last = items.last().map(|n| n.span.end);
                        let e = if end > start { end } else { last.unwrap_or(s) };
                        (
                            Node {
                                span: Span {
                                    source,
                                    start: s,
                                    end: e,
                                },
                                value: Value::Seq(items),
                            },
                            anchor,
                        )
                    }
                    Some(Frame::Map(s, entries, _, anchor)) => {
                        let last = entries.last().map(|(_, v)| v.span.end);
                        let e = if end > start { end } else { last.unwrap_or(s) };
                        (
                            Node {
                                span: Span {
                                    source,
                                    start: s,
                                    end: e,
                                },
                                value: Value::Map(entries),
                            },
                            anchor,
                        )
                    }
                    None => continue,
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                place(&mut stack, &mut root, node);
            }
            Event::DocumentEnd => {
                docs.push(root.take().unwrap_or(Node {
                    span,
                    value: Value::Scalar {
                        text: String::new(),
                        plain: true,
                    },
                }));
            }
            _ => {}
        }
    }
    Ok(docs)
}

/// Turns a serde_norway error into a diagnostic labelled at the location it reports.
pub fn serde_diag(
    source: SourceId,
    text: &str,
    err: &serde_norway::Error,
    docs: &[Node],
    map: OffsetMap,
) -> Diag {
    // serde_norway writes " at line L column C" into the message; the label says where.
    let message = strip_position(&err.to_string());
    let mut d = Diag::error("sluice::yaml::invalid", message.clone());
    if let Some(loc) = err.location() {
        let lines = Lines::new(text);
        let at = map(lines.offset(loc.line(), loc.column().saturating_sub(1))) as u32;
        let span = docs
            .iter()
            .find_map(|n| n.find_at(at))
            .filter(|n| n.span.start == at)
            .map_or(
                Span {
                    source,
                    start: at,
                    end: at,
                },
                |n| n.span,
            );
        let label = message.rsplit(": ").next().unwrap_or(&message).to_string();
        d = d.with_label(span, label);
    }
    d
}

/// Removes every " at line L column C" from a message.
fn strip_position(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n = digits(after);
        let tail = after[n..].strip_prefix(" column ");
        match tail {
            Some(t) if n > 0 && digits(t) > 0 => rest = &t[digits(t)..],
            _ => {
                out.push_str(" at line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// What a YAML document (or an item of a `kind: List`) is.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectKind {
    NetworkPolicy,
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
    ConfigMap,
    /// An ip-masq-agent config file: no `kind`, but its keys.
    IpMasqConfig,
    List,
    /// An empty document.
    Empty,
    /// Something else; carries the `kind` if there was one.
    Other(Option<String>),
}

/// Keys that mark a bare ip-masq-agent config file.
pub const IPMASQ_KEYS: &[&str] = &[
    "nonMasqueradeCIDRs",
    "masqLinkLocal",
    "masqLinkLocalIPv6",
    "resyncInterval",
];

impl ObjectKind {
    pub fn of(node: &Node) -> ObjectKind {
        if node.is_null() {
            return ObjectKind::Empty;
        }
        match node.get("kind").and_then(Node::as_str) {
            Some(k) => ObjectKind::from_name(k),
            None if IPMASQ_KEYS.iter().any(|k| node.get(k).is_some()) => ObjectKind::IpMasqConfig,
            None => ObjectKind::Other(None),
        }
    }

    /// The kind named by a `kind:` value.
    pub fn from_name(kind: &str) -> ObjectKind {
        match kind {
            "NetworkPolicy" => ObjectKind::NetworkPolicy,
            "CiliumNetworkPolicy" => ObjectKind::CiliumNetworkPolicy,
            "CiliumClusterwideNetworkPolicy" => ObjectKind::CiliumClusterwideNetworkPolicy,
            "ConfigMap" => ObjectKind::ConfigMap,
            k if k.ends_with("List") => ObjectKind::List,
            k => ObjectKind::Other(Some(k.to_string())),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ObjectKind::Other(Some(k)) => format!("kind `{k}`"),
            ObjectKind::Other(None) => "a document with no `kind`".into(),
            k => format!("{k:?}"),
        }
    }
}

/// A deserialized object, typed by its kind.
#[derive(Clone, Debug)]
pub enum Object {
    NetworkPolicy(Box<NetworkPolicy>),
    Cilium(Box<super::cilium::CiliumPolicy>),
    ConfigMap(Box<ConfigMap>),
    IpMasqConfig(Box<super::ipmasq::Config>),
    /// Not deserialized: the caller reports it as unsupported.
    Other(ObjectKind),
}

/// One object with the span-tree node it came from.
#[derive(Clone, Debug)]
pub struct Located {
    pub node: Node,
    pub object: Object,
}

struct ObjectSeed<'a>(&'a ObjectKind);

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Object;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Object, D::Error> {
        Ok(match self.0 {
            ObjectKind::NetworkPolicy => {
                Object::NetworkPolicy(Box::new(Deserialize::deserialize(d)?))
            }
            ObjectKind::CiliumNetworkPolicy | ObjectKind::CiliumClusterwideNetworkPolicy => {
                Object::Cilium(Box::new(Deserialize::deserialize(d)?))
            }
            ObjectKind::ConfigMap => Object::ConfigMap(Box::new(Deserialize::deserialize(d)?)),
            ObjectKind::IpMasqConfig => {
                Object::IpMasqConfig(Box::new(Deserialize::deserialize(d)?))
            }
            k => {
                IgnoredAny::deserialize(d)?;
                Object::Other(k.clone())
            }
        })
    }
}

/// A `kind: List`: deserializes `items` element by element, each by its own kind.
struct ListSeed<'a>(&'a [ObjectKind]);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Vec<Object>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Object>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Vec<Object>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a List with `items`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Object>, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                out = map.next_value_seed(ItemsSeed(self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

struct ItemsSeed<'a>(&'a [ObjectKind]);

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = Vec<Object>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Object>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = Vec<Object>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of objects")
    }
    fn visit_unit<E>(self) -> Result<Vec<Object>, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Object>, A::Error> {
        let mut out = Vec::new();
        let other = ObjectKind::Other(None);
        while let Some(o) =
            seq.next_element_seed(ObjectSeed(self.0.get(out.len()).unwrap_or(&other)))?
        {
            out.push(o);
        }
        Ok(out)
    }
}

/// Reads every object of a YAML or JSON file: documents, and the items of `kind: List`
/// documents. Empty documents are skipped. Errors carry the file position.
pub fn read_objects(source: SourceId, text: &str) -> Result<Vec<Located>, Diag> {
    read_objects_mapped(source, text, &|o| o)
}

/// Reads every object of a file (as [`read_objects`]) into one document: `convert` adds each
/// object's items and reports its problems (including a kind it does not take). The readers'
/// `read_with_diags` are this with their own `convert`.
pub fn read_document(
    source: SourceId,
    text: &str,
    mut convert: impl FnMut(&Located, &mut Vec<Item>, &mut Diagnostics),
) -> (Document, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut doc = Document::default();
    match read_objects(source, text) {
        Ok(objects) => {
            for o in &objects {
                convert(o, &mut doc.items, &mut diags);
            }
        }
        Err(d) => diags.push(d),
    }
    (doc, diags)
}

/// [`read_objects`] for YAML embedded in another file's string, with offsets mapped back.
pub fn read_objects_mapped(
    source: SourceId,
    text: &str,
    map: OffsetMap,
) -> Result<Vec<Located>, Diag> {
    let tree = parse_tree(source, text, map);
    let docs = match tree {
        Ok(d) => d,
        Err(saphyr_err) => {
            // Prefer serde_norway's report of a syntax error; it is the reference parser.
            for d in serde_norway::Deserializer::from_str(text) {
                if let Err(e) = IgnoredAny::deserialize(d) {
                    return Err(serde_diag(source, text, &e, &[], map));
                }
            }
            return Err(saphyr_err);
        }
    };
    let mut out = Vec::new();
    let mut serde_docs = serde_norway::Deserializer::from_str(text);
    for node in &docs {
        let Some(de) = serde_docs.next() else {
            break;
        };
        let kind = ObjectKind::of(node);
        match kind {
            ObjectKind::Empty => {
                IgnoredAny::deserialize(de)
                    .map_err(|e| serde_diag(source, text, &e, &docs, map))?;
            }
            ObjectKind::List => {
                let empty = Node {
                    span: node.span,
                    value: Value::Seq(Vec::new()),
                };
                let items = node.get("items").unwrap_or(&empty).items();
                // `kubectl get X -o yaml` gives an `XList` whose items carry no kind.
                let implied = node
                    .get("kind")
                    .and_then(Node::as_str)
                    .and_then(|k| k.strip_suffix("List"))
                    .filter(|k| !k.is_empty())
                    .map(ObjectKind::from_name);
                let kinds: Vec<ObjectKind> = items
                    .iter()
                    .map(|n| match (ObjectKind::of(n), &implied) {
                        (ObjectKind::Other(None), Some(k)) => k.clone(),
                        (k, _) => k,
                    })
                    .collect();
                let objects = ListSeed(&kinds)
                    .deserialize(de)
                    .map_err(|e| serde_diag(source, text, &e, &docs, map))?;
                for (n, o) in items.iter().zip(objects) {
                    out.push(Located {
                        node: n.clone(),
                        object: o,
                    });
                }
            }
            _ => {
                let object = ObjectSeed(&kind)
                    .deserialize(de)
                    .map_err(|e| serde_diag(source, text, &e, &docs, map))?;
                out.push(Located {
                    node: node.clone(),
                    object,
                });
            }
        }
    }
    Ok(out)
}

/// Reports keys of `node` that are not in `known`: a typo must not silently widen a policy.
pub fn check_fields(node: &Node, what: &str, known: &[&str], out: &mut Vec<Diag>) {
    for (k, _) in node.entries() {
        let Some(key) = k.as_str() else { continue };
        if !known.contains(&key) {
            let mut d = Diag::error(
                "sluice::yaml::unknown-field",
                format!("unknown field `{key}` in {what}"),
            )
            .with_label(k.span, "unknown field");
            d = match suggest(key, known) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("expected one of: {}", known.join(", "))),
            };
            out.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snip<'a>(text: &'a str, n: &Node) -> &'a str {
        &text[n.span.start as usize..n.span.end as usize]
    }

    #[test]
    fn spans_are_bytes_and_cover_values() {
        let text =
            "# c\n---\nmetadata:\n  name: \"héllo\"\nspec: {a: [1, 2], b: x}\n---\n---\nk: v\n";
        let docs = parse_tree(SourceId(0), text, &|o| o).unwrap();
        assert_eq!(docs.len(), 3);
        assert!(docs[1].is_null());
        let name = docs[0].get("metadata").unwrap().get("name").unwrap();
        assert_eq!(name.as_str(), Some("héllo"));
        assert_eq!(snip(text, name), "\"héllo\"");
        let spec = docs[0].get("spec").unwrap();
        assert_eq!(snip(text, spec), "{a: [1, 2], b: x}");
        assert_eq!(snip(text, spec.get("a").unwrap()), "[1, 2]");
        assert_eq!(snip(text, spec.get("a").unwrap().at(1).unwrap()), "2");
        assert_eq!(snip(text, docs[2].get("k").unwrap()), "v");
    }

    #[test]
    fn block_containers_end_at_last_child() {
        let text = "a:\n  - x: 1\n    y: 2\n  - z\nb: 3\n";
        let docs = parse_tree(SourceId(0), text, &|o| o).unwrap();
        assert_eq!(
            snip(text, docs[0].get("a").unwrap()),
            "- x: 1\n    y: 2\n  - z"
        );
        assert_eq!(
            snip(text, docs[0].get("a").unwrap().at(0).unwrap()),
            "x: 1\n    y: 2"
        );
    }

    #[test]
    fn positions_are_stripped_from_messages() {
        assert_eq!(
            strip_position("did not find ',' at line 7 column 3, while parsing a flow mapping"),
            "did not find ',', while parsing a flow mapping"
        );
        assert_eq!(strip_position("x: bad at line 2 column 16"), "x: bad");
        assert_eq!(strip_position("stops at line end"), "stops at line end");
    }
}
