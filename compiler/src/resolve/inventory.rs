//! Reading inventory files: YAML or JSON with line and column in every error. The types
//! themselves are `sluice_policy::inventory`, shared with the runtime and the Wasm SDK.

pub use sluice_policy::inventory::*;

/// Why an inventory file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("{name}:{line}:{column}: {message}")]
    Syntax {
        name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{name}: {message}")]
    Invalid { name: String, message: String },
    #[error("{0}")]
    Io(String),
}

/// Reads an inventory from text or a file (the inventory types live in a `no_std` crate).
pub trait InventoryFiles: Sized {
    /// Parses YAML or JSON (JSON is read as YAML), then validates it.
    fn parse(name: &str, text: &str) -> Result<Self, InventoryError>;
    fn load(path: &std::path::Path) -> Result<Self, InventoryError>;
}

impl InventoryFiles for Inventory {
    fn parse(name: &str, text: &str) -> Result<Inventory, InventoryError> {
        let syntax = |line, column, message| InventoryError::Syntax {
            name: name.into(),
            line,
            column,
            message,
        };
        // The shared types ignore unknown fields (a Wasm module must keep reading a grown
        // inventory); a file written by hand is checked strictly, so a typo is an error.
        let mut unknown: Vec<Vec<String>> = Vec::new();
        let mut inv: Inventory =
            serde_ignored::deserialize(serde_norway::Deserializer::from_str(text), |path| {
                unknown.push(path_segments(&path))
            })
            .map_err(|e: serde_norway::Error| {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                syntax(line, column, e.to_string())
            })?;
        if let Some(path) = unknown.first() {
            let field = path.last().map_or("", String::as_str);
            let (line, column) = locate(text, path).unwrap_or((0, 0));
            let mut message = format!("unknown field `{field}` (at `{}`)", path.join("."));
            let expected = expected_fields(&path[..path.len().saturating_sub(1)]);
            if let Some(near) = crate::diag::suggest(field, expected) {
                message.push_str(&format!(": did you mean `{near}`?"));
            } else if !expected.is_empty() {
                message.push_str(&format!(", expected one of `{}`", expected.join("`, `")));
            }
            return Err(syntax(line, column, message));
        }
        inv.validate().map_err(|message| InventoryError::Invalid {
            name: name.into(),
            message,
        })?;
        Ok(inv)
    }

    fn load(path: &std::path::Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InventoryError::Io(format!("{}: {e}", path.display())))?;
        Inventory::parse(&path.display().to_string(), &text)
    }
}

/// The fields of the inventory type found at `path` (keys and indices from the root), as the
/// type's own `Deserialize` names them.
fn expected_fields(path: &[String]) -> &'static [&'static str] {
    let keys: Vec<&str> = path
        .iter()
        .map(String::as_str)
        .filter(|s| s.parse::<usize>().is_err())
        .collect();
    match keys.as_slice() {
        [] => fields_of::<Inventory>(),
        ["namespaces"] => fields_of::<Namespace>(),
        ["nodes"] => fields_of::<Node>(),
        ["endpoints"] => fields_of::<Endpoint>(),
        ["endpoints", "ports"] => fields_of::<ContainerPort>(),
        ["services"] => fields_of::<Service>(),
        ["services", "ports"] => fields_of::<ServicePort>(),
        _ => &[],
    }
}

/// A struct's field names, read from its derived `Deserialize`: it hands them to
/// `deserialize_struct`, which this deserializer records and then refuses.
pub(crate) fn fields_of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe(&'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Stop {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut probe = Probe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// The keys and indices of a path serde ignored, outermost first.
fn path_segments(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_segments(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(index.to_string()),
        Path::Map { key, .. } => out.push(key.clone()),
        _ => {}
    }
    out
}

/// Line and column (1-based) of the key at `path`, found in the text's YAML tree.
fn locate(text: &str, path: &[String]) -> Option<(usize, usize)> {
    use crate::source::SourceMap;
    use crate::source::yaml::{Value, parse_tree};
    let mut sources = SourceMap::new();
    let id = sources.add("inventory", text);
    let tree = parse_tree(id, text, &|o| o).ok()?;
    let mut node = tree.first()?;
    let mut at = node.span;
    for seg in path {
        match &node.value {
            Value::Seq(_) => {
                node = node.at(seg.parse().ok()?)?;
                at = node.span;
            }
            Value::Map(_) => {
                let (key, value) = node.entry(seg)?;
                at = key.span;
                node = value;
            }
            Value::Scalar { .. } => return None,
        }
    }
    let l = sources.location(at)?;
    Some((l.line, l.column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_completes() {
        let inv = Inventory::parse(
            "inv.yaml",
            "namespaces:\n- name: x\n  labels: {team: a}\nendpoints:\n- name: a\n  namespace: x\n  labels: {app: web}\n  ips: [10.0.0.1]\n  ports:\n  - {name: http, port: 80}\n- name: b\n  namespace: y\n",
        )
        .unwrap();
        assert_eq!(inv.namespaces.len(), 2);
        assert_eq!(
            inv.namespace_labels("y").unwrap()[NAMESPACE_NAME_LABEL],
            "y"
        );
        assert_eq!(inv.endpoints[0].named_port(L4::Tcp, "http"), vec![80]);
        assert_eq!(inv.endpoint_by_ip("10.0.0.1".parse().unwrap()), Some(0));
    }

    #[test]
    fn unknown_fields_say_what_was_meant_or_expected() {
        let err = Inventory::parse("inv.yaml", "endpoints:\n- name: a\n  interfce: v1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("inv.yaml:3:3: "), "{err}");
        assert!(err.ends_with("did you mean `interface`?"), "{err}");
        let err = Inventory::parse(
            "inv.yaml",
            "services:\n- name: s\n  ports:\n  - {port: 80, zz: 1}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`services.0.ports.0.zz`), expected one of `name`, `port`, `target_port`, `protocol`"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err =
            Inventory::parse("inv.yaml", "endpoints:\n- name: a\n  colour: red\n").unwrap_err();
        match err {
            InventoryError::Syntax { line, column, .. } => assert_eq!((line, column), (3, 3)),
            e => panic!("{e}"),
        }
        let err = Inventory::parse(
            "inv.yaml",
            "endpoints:\n- {name: a, ips: [10.0.0.1]}\n- {name: b, ips: [10.0.0.1]}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("belongs to both"), "{err}");
    }
}
