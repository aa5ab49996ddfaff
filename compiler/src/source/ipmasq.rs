//! ip-masq-agent configuration → an AST [`Masquerade`] item.
//!
//! Clusters that run kubernetes-sigs/ip-masq-agent already say which destinations keep the pod
//! source address. This reader takes that config as it is deployed, either the bare config file
//! (`nonMasqueradeCIDRs`, `masqLinkLocal`, `masqLinkLocalIPv6`, `resyncInterval`, `cidrLimit`)
//! or the `ConfigMap` whose `config` key holds it, so sluice can replace the agent unchanged.
//!
//! Semantics follow Cilium's ip-masq-agent (`pkg/ipmasq`), which sluice replaces:
//! - an absent or empty (zero-byte) file means the 11 default CIDRs ([`DEFAULT_NON_MASQUERADE`]);
//! - a non-empty file means exactly its `nonMasqueradeCIDRs`, none when the key is left out;
//! - host bits are cleared, as Cilium does (with a warning here);
//! - link-local destinations (169.254.0.0/16, fe80::/10) are excluded unless `masqLinkLocal` /
//!   `masqLinkLocalIPv6` is true; that is applied with the other sources in `crate::masq`.
//!
//! `resyncInterval` means nothing to sluice (it applies a new config when it changes) and is
//! ignored with a note.

use super::ast::*;
use super::yaml::{self, Node, Object, Value};
use crate::diag::{Diag, Diagnostics};
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;

/// The exclusions of an absent or empty config: Cilium's `defaultNonMasqCIDRs` (the reserved
/// ranges kubernetes-sigs/ip-masq-agent uses with `--nomasq-all-reserved-ranges`).
pub const DEFAULT_NON_MASQUERADE: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
];

/// What an absent or empty config means: the default CIDRs, link-local not masqueraded.
pub fn defaults(span: Span) -> Masquerade {
    Masquerade {
        non_masquerade: DEFAULT_NON_MASQUERADE
            .iter()
            .map(|c| c.parse().expect("valid default"))
            .collect(),
        link_local: false,
        link_local_v6: false,
        egress: None,
        span,
    }
}

fn defaults_note(span: Span) -> Diag {
    Diag::note(
        "sluice::ipmasq::defaults",
        format!(
            "an empty ip-masq-agent config means the default non-masquerade CIDRs ({})",
            DEFAULT_NON_MASQUERADE.join(", ")
        ),
    )
    .with_label(span, "this config")
}

/// The agent's config file, as it parses it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Config {
    #[serde(rename = "nonMasqueradeCIDRs")]
    pub non_masquerade_cidrs: Option<Vec<String>>,
    #[serde(rename = "masqLinkLocal")]
    pub masq_link_local: Option<bool>,
    #[serde(rename = "masqLinkLocalIPv6")]
    pub masq_link_local_ipv6: Option<bool>,
    #[serde(rename = "resyncInterval")]
    pub resync_interval: Option<String>,
    #[serde(rename = "cidrLimit")]
    pub cidr_limit: Option<u32>,
}

const FIELDS: &[&str] = &[
    "nonMasqueradeCIDRs",
    "masqLinkLocal",
    "masqLinkLocalIPv6",
    "resyncInterval",
    "cidrLimit",
];

/// Reads an ip-masq-agent config file or ConfigMap (YAML or JSON).
pub fn read(source: SourceId, text: &str) -> Result<Document, Diagnostics> {
    let (doc, diags) = read_with_diags(source, text);
    diags.into_result(doc)
}

/// Like [`read`], but also returns the notes (ignored fields, defaults used).
pub fn read_with_diags(source: SourceId, text: &str) -> (Document, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut doc = Document::default();
    if text.is_empty() {
        let span = Span::new(source, 0, 0);
        diags.push(defaults_note(span));
        doc.items.push(Item::Masquerade(defaults(span)));
        return (doc, diags);
    }
    let has_kind = match yaml::parse_tree(source, text, &|o| o) {
        Ok(docs) => docs.iter().any(|d| d.get("kind").is_some()),
        Err(e) => {
            diags.push(e);
            return (doc, diags);
        }
    };
    if !has_kind {
        // The bare file, as mounted into the agent's pod.
        if let Some(m) = config_text(source, text, &|o| o, None, &mut diags) {
            doc.items.push(Item::Masquerade(m));
        }
        return (doc, diags);
    }
    yaml::read_document(source, text, |o, items, diags| match &o.object {
        Object::ConfigMap(cm) => {
            items.extend(convert_configmap(cm, &o.node, text, diags).map(Item::Masquerade));
        }
        _ => diags.push(super::k8s::unexpected(o, "an ip-masq-agent ConfigMap")),
    })
}

/// Converts a deserialized ip-masq-agent ConfigMap: parses its `config` value, with positions
/// mapped back into the file when the value is a plain or literal (`|`) block.
pub fn convert_configmap(
    cm: &ConfigMap,
    node: &Node,
    file_text: &str,
    diags: &mut Diagnostics,
) -> Option<Masquerade> {
    let source = node.span.source;
    let config_node = node.get("data").and_then(|d| d.get("config"));
    let (Some(text), Some(cn)) = (cm.data.as_ref().and_then(|d| d.get("config")), config_node)
    else {
        let span = node.get("data").map_or(node.span, |n| n.span);
        diags.push(
            Diag::error(
                "sluice::ipmasq::no-config",
                "this ConfigMap has no `config` key, so it is not an ip-masq-agent config",
            )
            .with_label(span, "expected `config` here")
            .with_help("ip-masq-agent reads its config from the ConfigMap key `config`"),
        );
        return None;
    };
    let lines = embedded_lines(file_text, cn, text);
    let start = cn.span.start as usize;
    let map = move |o: usize| match &lines {
        Some(lines) => {
            let i = lines
                .partition_point(|(inner, _)| *inner <= o)
                .saturating_sub(1);
            let (inner, outer) = lines[i];
            outer + (o - inner)
        }
        None => start,
    };
    config_text(source, text, &map, Some(cn.span), diags)
}

/// For a value written as a plain, quoted (without escapes) or literal block scalar: pairs of
/// (offset of a line in the value, offset of that line in the file). `None` when the value's
/// text cannot be found verbatim (folded scalars, escapes): positions then fall back to the
/// start of the value.
fn embedded_lines(file: &str, node: &Node, value: &str) -> Option<Vec<(usize, usize)>> {
    let (start, end) = (node.span.start as usize, node.span.end as usize);
    let raw = file.get(start..end)?;
    if raw == value {
        return Some(vec![(0, start)]);
    }
    if (raw.starts_with('"') || raw.starts_with('\'')) && raw.get(1..raw.len() - 1) == Some(value) {
        return Some(vec![(0, start + 1)]);
    }
    // A block scalar: its lines start at the line of its first content character.
    let body_start = match raw.strip_prefix('|') {
        Some(_) => start + raw.find('\n')? + 1,
        None => file[..start].rfind('\n').map_or(0, |i| i + 1),
    };
    let body = file.get(body_start..end.max(body_start))?;
    let indent = body
        .lines()
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| l.len() - l.trim_start_matches(' ').len());
    let mut out = Vec::new();
    let mut rebuilt = String::new();
    let mut at = body_start;
    for line in body.split_inclusive('\n') {
        let skip = indent.min(line.len() - line.trim_start_matches(' ').len());
        out.push((rebuilt.len(), at + skip));
        rebuilt.push_str(&line[skip..]);
        at += line.len();
    }
    // Only trust the map when the rebuilt text is the value (chomping aside).
    (rebuilt.trim_end() == value.trim_end()).then_some(out)
}

/// Parses the config text itself. `outer` is the span of the ConfigMap value, if any.
fn config_text(
    source: SourceId,
    text: &str,
    map: yaml::OffsetMap,
    outer: Option<Span>,
    diags: &mut Diagnostics,
) -> Option<Masquerade> {
    let whole = outer.unwrap_or(Span::new(source, 0, text.len()));
    if text.is_empty() {
        // Cilium tests the file's length, not its content: only zero bytes mean the defaults.
        diags.push(defaults_note(whole));
        return Some(defaults(whole));
    }
    let docs = match yaml::parse_tree(source, text, map) {
        Ok(d) => d,
        Err(e) => {
            diags.push(e);
            return None;
        }
    };
    let config: Config = if docs.iter().all(Node::is_null) {
        Config::default()
    } else {
        match serde_norway::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                diags.push(yaml::serde_diag(source, text, &e, &docs, map));
                return None;
            }
        }
    };
    let node = docs.first().cloned().unwrap_or(Node {
        span: whole,
        value: Value::Map(Vec::new()),
    });
    convert(&config, &node, outer, diags)
}

/// Converts a parsed config; `node` is its span tree.
pub fn convert(
    c: &Config,
    node: &Node,
    outer: Option<Span>,
    diags: &mut Diagnostics,
) -> Option<Masquerade> {
    let span = outer.unwrap_or(node.span);
    let mut errs = Vec::new();
    yaml::check_fields(node, "the ip-masq-agent config", FIELDS, &mut errs);
    let mut failed = !errs.is_empty();
    for d in errs {
        diags.push(d);
    }
    let mut non_masquerade = Vec::new();
    match &c.non_masquerade_cidrs {
        Some(list) => {
            let items = node.get("nonMasqueradeCIDRs");
            for (i, text) in list.iter().enumerate() {
                let s = items.and_then(|n| n.at(i)).map_or(span, |n| n.span);
                match text.trim().parse::<Cidr>() {
                    Ok(c) if c.is_canonical() => non_masquerade.push(c),
                    Ok(c) => {
                        diags.push(
                            Diag::warning(
                                "sluice::ipmasq::host-bits",
                                format!("`{c}` has host bits set; read as {}", c.canonical()),
                            )
                            .with_label(s, format!("read as {}", c.canonical()))
                            .with_help(
                                "Cilium's ip-masq-agent clears them too; write the network address",
                            ),
                        );
                        non_masquerade.push(c.canonical());
                    }
                    Err(e) => {
                        failed = true;
                        diags.push(
                            Diag::error(
                                "sluice::ipmasq::cidr",
                                format!("invalid CIDR `{text}`: {e}"),
                            )
                            .with_label(s, e.to_string()),
                        );
                    }
                }
            }
            let limit = c.cidr_limit.unwrap_or(64) as usize;
            if list.len() > limit {
                failed = true;
                diags.push(
                    Diag::error(
                        "sluice::ipmasq::cidr-limit",
                        format!("{} CIDRs exceed cidrLimit {limit}", list.len()),
                    )
                    .with_label(items.map_or(span, |n| n.span), "too many CIDRs")
                    .with_help(
                        "ip-masq-agent rejects this config; raise cidrLimit or merge ranges",
                    ),
                );
            }
        }
        None => {
            let what = if c.masq_link_local == Some(true) {
                "every destination is masqueraded"
            } else {
                "every destination but link-local ones is masqueraded"
            };
            diags.push(
                Diag::note(
                    "sluice::ipmasq::no-cidrs",
                    format!("no nonMasqueradeCIDRs in a non-empty config: {what} (as in Cilium, only an absent or empty file means the default CIDRs)"),
                )
                .with_label(span, "this config"),
            );
        }
    }
    if let Some((k, _)) = node.entry("resyncInterval") {
        diags.push(
            Diag::note(
                "sluice::ipmasq::resync-ignored",
                "resyncInterval is ignored: sluice applies a config when it changes",
            )
            .with_label(k.span, "ignored"),
        );
    }
    if failed {
        return None;
    }
    Some(Masquerade {
        non_masquerade,
        link_local: c.masq_link_local.unwrap_or(false),
        link_local_v6: c.masq_link_local_ipv6.unwrap_or(false),
        egress: None,
        span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Severity, render_plain};
    use crate::source::SourceMap;
    use serde_json::json;

    fn run(text: &str) -> (SourceMap, Document, Diagnostics) {
        let mut sm = SourceMap::new();
        let id = sm.add("masq.yaml", text);
        let (doc, diags) = read_with_diags(id, text);
        (sm, doc, diags)
    }

    #[test]
    fn bare_config_file() {
        let text = "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - fd00::/8\nmasqLinkLocal: true\nresyncInterval: 60s\n";
        let (sm, doc, diags) = run(text);
        assert!(!diags.has_errors(), "{}", render_plain(&diags, &sm));
        assert_eq!(
            serde_json::to_value(&doc).unwrap(),
            json!({"items": [{"kind": "masquerade", "non_masquerade": ["10.0.0.0/8", "fd00::/8"],
                               "link_local": true, "link_local_v6": false}]})
        );
        let notes: Vec<_> = diags
            .items
            .iter()
            .filter(|d| d.severity == Severity::Note)
            .collect();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].code, "sluice::ipmasq::resync-ignored");
        assert_eq!(sm.snippet(notes[0].labels[0].span), "resyncInterval");
    }

    #[test]
    fn configmap_with_literal_block_maps_positions() {
        let text = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: ip-masq-agent
  namespace: kube-system
data:
  config: |
    nonMasqueradeCIDRs:
      - 10.0.0.0/8
      - 192.168.0.0/33
    masqLinkLocalIPv6: true
"#;
        let (sm, _, diags) = run(text);
        assert!(diags.has_errors());
        let out = render_plain(&diags, &sm);
        assert!(out.contains("invalid CIDR `192.168.0.0/33`"), "{out}");
        assert!(out.contains("masq.yaml:10:9"), "{out}");
        let d = &diags.items[0];
        assert_eq!(sm.snippet(d.labels[0].span), "192.168.0.0/33");
    }

    fn cidrs(doc: &Document) -> (Vec<String>, bool) {
        let Item::Masquerade(m) = &doc.items[0] else {
            panic!("{doc:?}")
        };
        let c = m.non_masquerade.iter().map(|c| c.to_string()).collect();
        (c, m.link_local)
    }

    #[test]
    fn cilium_semantics_empty_means_defaults_non_empty_means_exactly_its_list() {
        // Zero bytes: the 11 defaults.
        let (sm, doc, diags) = run("");
        assert!(!diags.has_errors(), "{}", render_plain(&diags, &sm));
        assert_eq!(cidrs(&doc).0, DEFAULT_NON_MASQUERADE);
        assert_eq!(DEFAULT_NON_MASQUERADE.len(), 11);
        assert_eq!(diags.items[0].code, "sluice::ipmasq::defaults");
        // Non-empty without the key: nothing excluded (link-local is added later, unless on).
        let (_, doc, diags) = run("masqLinkLocal: true\n");
        assert_eq!(cidrs(&doc), (vec![], true));
        assert_eq!(diags.items[0].code, "sluice::ipmasq::no-cidrs");
        let (_, doc, _) = run("# only a comment\n");
        assert_eq!(cidrs(&doc), (vec![], false));
        let (_, doc, _) = run("nonMasqueradeCIDRs: []\n");
        assert!(cidrs(&doc).0.is_empty());
        // Exactly its list, host bits cleared with a warning.
        let (sm, doc, diags) = run("nonMasqueradeCIDRs: [10.0.0.0/16, 192.168.10.7/24]\n");
        assert!(!diags.has_errors());
        assert_eq!(cidrs(&doc).0, ["10.0.0.0/16", "192.168.10.0/24"]);
        assert_eq!(diags.items[0].code, "sluice::ipmasq::host-bits");
        assert_eq!(sm.snippet(diags.items[0].labels[0].span), "192.168.10.7/24");
    }

    #[test]
    fn configmap_empty_config_and_json() {
        let cm = |config: &str| {
            format!(
                r#"{{"apiVersion": "v1", "kind": "ConfigMap",
 "metadata": {{"name": "ip-masq-agent"}},
 "data": {{"config": "{config}"}}}}"#
            )
        };
        let (sm, doc, diags) = run(&cm(""));
        assert!(!diags.has_errors(), "{}", render_plain(&diags, &sm));
        assert_eq!(cidrs(&doc).0, DEFAULT_NON_MASQUERADE);
        let (sm, doc, diags) = run(&cm(r#"{\"masqLinkLocalIPv6\": true}"#));
        assert!(!diags.has_errors(), "{}", render_plain(&diags, &sm));
        let Item::Masquerade(m) = &doc.items[0] else {
            panic!()
        };
        assert!(m.non_masquerade.is_empty());
        assert!(m.link_local_v6 && !m.link_local);
    }

    #[test]
    fn errors() {
        let (sm, _, diags) = run("nonMasqueradeCIDR: [10.0.0.0/8]\n");
        let out = render_plain(&diags, &sm);
        assert!(out.contains("unknown field `nonMasqueradeCIDR`"), "{out}");
        assert!(out.contains("did you mean `nonMasqueradeCIDRs`?"), "{out}");
        let (sm, _, diags) = run("nonMasqueradeCIDRs: [10.0.0.0/8]\nmasqLinkLocal: maybe\n");
        let out = render_plain(&diags, &sm);
        assert!(out.contains("masqLinkLocal: invalid type"), "{out}");
        assert!(out.contains("masq.yaml:2:16"), "{out}");
        let (sm, _, diags) =
            run("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {other: y}\n");
        let out = render_plain(&diags, &sm);
        assert!(out.contains("has no `config` key"), "{out}");
    }
}
