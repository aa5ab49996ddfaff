//! What `sluice trace` needs from the compiler besides the programs: which source rule a
//! verdict code's rule number is, and which addresses belong to which endpoint.
//!
//! Generated programs record only a number (`RuleId` index + 1, see `spec/datapath.md`);
//! turning it back into `policy.sluice:12:5`, a policy and a rule name needs the IR and the
//! source map, which are gone once the bundle is written. So the compile driver builds a
//! [`TraceInfo`] ([`build`], or [`rule_table`] for the rules alone) and the bundle
//! carries it as one content-addressed JSON file (`spec/bundle.md`). It is data about the
//! generation, like DWARF for an object: the loader never reads it to enforce anything.
//!
//! It must stay reproducible: rules are listed by id, endpoints by namespace and name, and
//! file names are the names the source map was given (the same ones the bundle's `inputs`
//! use), never absolute paths made up here.

use cranelift_entity::EntityRef;

use crate::ir::{Ir, RuleId};
use crate::resolve::Inventory;
use crate::source::SourceMap;
use crate::source::ast::{Action, Span};
pub use sluice_bundle::trace_info::*;

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Audit => "audit",
        Action::Pass => "pass",
    }
}

fn locate(sources: &SourceMap, span: Span) -> Option<SourceLocation> {
    sources.location(span).map(|l| SourceLocation {
        file: l.file,
        line: l.line as u32,
        column: l.column as u32,
    })
}

/// The rule table of a compilation: every rule of `ir`, then every verdict rule (numbered
/// after the rules, `Ir::verdict_rule_number`), located in `sources`.
pub fn rule_table(ir: &Ir, sources: &SourceMap) -> RuleTable {
    let verdicts = ir.verdicts.iter().map(|(v, d)| {
        let policy = &ir.policies[d.policy];
        RuleEntry {
            id: ir.verdict_rule_number(v),
            policy: policy.name.clone(),
            name: d.name.clone(),
            index: policy.verdicts.iter().position(|x| *x == v).unwrap_or(0) as u32 + 1,
            direction: d.direction.as_str().to_owned(),
            action: "verdict".to_owned(),
            tier: policy.tier.name(),
            location: locate(sources, d.span),
            verdict: Some(VerdictEntry {
                module: d.path.clone(),
                sha256: crate::ir::verdict::hex(&d.sha256),
                on_trap: crate::source::dsl::on_trap_word(d.on_trap).to_owned(),
            }),
        }
    });
    RuleTable(
        ir.rules
            .iter()
            .map(|(id, r): (RuleId, _)| {
                let policy = &ir.policies[ir.policy_of(id)];
                let location = locate(sources, ir.rule_span(id));
                RuleEntry {
                    id: id.index() as u32 + 1,
                    policy: policy.name.clone(),
                    name: r.name.clone(),
                    index: r.index + 1,
                    direction: r.direction.as_str().to_owned(),
                    action: action_name(r.action).to_owned(),
                    tier: policy.tier.name(),
                    location,
                    verdict: None,
                }
            })
            .chain(verdicts)
            .collect(),
    )
}

/// The endpoint table of an inventory.
pub fn endpoint_table(inv: &Inventory) -> Vec<EndpointEntry> {
    let mut out: Vec<EndpointEntry> = inv
        .endpoints
        .iter()
        .map(|e| EndpointEntry {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            ips: e.ips.iter().map(|ip| ip.to_string()).collect(),
        })
        .collect();
    out.sort();
    out
}
/// The trace info of one compilation (`rule_recording`: the `CodegenOptions::trace` the
/// programs were built with).
pub fn build(ir: &Ir, sources: &SourceMap, inv: &Inventory, rule_recording: bool) -> TraceInfo {
    TraceInfo {
        format: TRACE_INFO_FORMAT,
        rule_recording,
        rules: rule_table(ir, sources),
        endpoints: endpoint_table(inv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::InventoryFiles;
    use crate::source::dsl;

    const POLICY: &str = r#"policy "web" in namespace x {
  select app = web
  ingress allow from pods { app = client } ports 80/tcp
  ingress deny from cidr 10.9.0.0/16
}
"#;

    fn table() -> RuleTable {
        let mut sm = SourceMap::new();
        let id = sm.add("policies/web.sluice", POLICY);
        let doc = dsl::parse(id, POLICY).unwrap();
        let (ir, d) = crate::ir::lower(&[doc]);
        assert!(!d.has_errors(), "{d:?}");
        rule_table(&ir, &sm)
    }

    #[test]
    fn rules_point_at_their_source() {
        let t = table();
        assert_eq!(t.0.len(), 2);
        let r = t.get(1).unwrap();
        assert_eq!(
            r.location.as_ref().unwrap().to_string(),
            "policies/web.sluice:3:3"
        );
        assert_eq!(
            (r.action.as_str(), r.direction.as_str(), r.tier.as_str()),
            ("allow", "ingress", "default")
        );
        assert_eq!(r.describe(), "rule 1 of policy `web`");
        let r = t.get(2).unwrap();
        assert_eq!(r.location.as_ref().unwrap().line, 4);
        assert_eq!(r.action, "deny");
        assert!(t.get(0).is_none() && t.get(3).is_none());
    }

    #[test]
    fn bytes_round_trip_and_are_stable() {
        let inv = Inventory::parse(
            "inv",
            "endpoints:\n- {name: b, namespace: x, labels: {}, ips: [10.0.0.2]}\n- {name: a, namespace: x, labels: {}, ips: [10.0.0.1]}\n",
        )
        .unwrap();
        let info = TraceInfo {
            format: TRACE_INFO_FORMAT,
            rule_recording: true,
            rules: table(),
            endpoints: endpoint_table(&inv),
        };
        assert_eq!(info.endpoints[0].name, "a", "sorted");
        let bytes = info.to_bytes();
        assert_eq!(TraceInfo::from_bytes(&bytes).unwrap(), info);
        assert_eq!(info.to_bytes(), bytes);
        let mut other = info.clone();
        other.format = 9;
        assert!(TraceInfo::from_bytes(&other.to_bytes()).is_err());
    }
}
