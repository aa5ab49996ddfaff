//! spec/*.schema.json must describe what the compiler's AST actually reads and writes. No JSON
//! Schema validator is linked in; instead these tests tie the schema to the AST: the enums
//! list exactly the AST's serde names, and every key of a document that uses every shape
//! (spec/policy-document.example.json, which round-trips through the AST unchanged) is a
//! property the schema declares.

use serde_json::Value;
use sluice_policy::ast::{self, Action, Entity, LabelOp, OnTrap, PolicyDirection};
use std::collections::BTreeSet;
use std::path::Path;

fn spec(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../spec")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn def<'a>(schema: &'a Value, name: &str) -> &'a Value {
    &schema["$defs"][name]
}

fn enum_of(v: &Value) -> BTreeSet<String> {
    v["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("no enum in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn names<T: serde::Serialize>(variants: &[T]) -> BTreeSet<String> {
    variants
        .iter()
        .map(|v| {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn enums_match_the_ast() {
    let s = spec("policy-document.schema.json");
    use LabelOp::*;
    assert_eq!(
        enum_of(&def(&s, "label_expr")["properties"]["op"]),
        names(&[Eq, NotEq, In, NotIn, Exists, DoesNotExist])
    );
    assert_eq!(
        enum_of(def(&s, "direction")),
        names(&[PolicyDirection::Ingress, PolicyDirection::Egress])
    );
    assert_eq!(
        enum_of(def(&s, "action")),
        names(&[Action::Allow, Action::Deny, Action::Audit, Action::Pass])
    );
    assert_eq!(
        enum_of(def(&s, "entity")),
        names(&[Entity::World, Entity::Host, Entity::Cluster, Entity::All])
    );
    assert_eq!(
        enum_of(def(&s, "on_trap")),
        names(&[OnTrap::Deny, OnTrap::Allow, OnTrap::Pass])
    );
}

/// Every property name declared anywhere in the schema.
fn declared(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                out.extend(props.keys().cloned());
            }
            m.values().for_each(|x| declared(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| declared(x, out)),
        _ => {}
    }
}

/// Every object key used in a document.
fn used(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            out.extend(m.keys().cloned());
            m.values().for_each(|x| used(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| used(x, out)),
        _ => {}
    }
}

#[test]
fn every_shape_round_trips_and_is_declared() {
    let example = spec("policy-document.example.json");
    let doc: ast::Document = serde_json::from_value(example.clone()).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), example);
    let kinds: BTreeSet<_> = doc
        .items
        .iter()
        .map(|i| match i {
            ast::Item::Policy(_) => "policy",
            ast::Item::Masquerade(_) => "masquerade",
            ast::Item::Ipam(_) => "ipam",
            ast::Item::Include(_) => "include",
        })
        .collect();
    assert_eq!(kinds, BTreeSet::from(["policy", "masquerade", "ipam"]));

    let mut keys = BTreeSet::new();
    used(&example, &mut keys);
    let mut props = BTreeSet::new();
    declared(&spec("policy-document.schema.json"), &mut props);
    let missing: Vec<_> = keys.difference(&props).collect();
    assert!(missing.is_empty(), "schema lacks properties {missing:?}");
}

#[test]
fn input_schema_covers_the_example_inventory() {
    let inv: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm/inventory.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut keys = BTreeSet::new();
    used(&inv, &mut keys);
    let mut props = BTreeSet::new();
    declared(&spec("wasm-input.schema.json"), &mut props);
    // Label keys are data, not schema.
    let labels: BTreeSet<String> = [
        "kubernetes.io/metadata.name",
        "tier",
        "k8s-app",
        "app",
        "sluice.io/clients",
    ]
    .map(String::from)
    .into();
    let missing: Vec<_> = keys
        .difference(&props)
        .filter(|k| !labels.contains(*k))
        .collect();
    assert!(missing.is_empty(), "input schema lacks {missing:?}");
}
