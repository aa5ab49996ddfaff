//! namespace-isolation: every namespace with a given label (default `tier=pci`) is closed off.
//!
//! For each such namespace it emits one policy selecting all its pods that isolates both
//! directions and allows only:
//! - ingress from pods of the same namespace;
//! - egress to pods of the same namespace;
//! - egress to the CIDRs in `params.egress_cidrs` (e.g. the payment processor), optionally
//!   restricted to `params.egress_ports` (TCP);
//! - DNS (UDP and TCP 53) to kube-system, unless `params.allow_dns` is false.
//!
//! Parameters (all optional):
//! `{"label": {"key": "tier", "value": "pci"}, "egress_cidrs": ["203.0.113.0/24"],
//!   "egress_ports": [443], "allow_dns": true}`

#![no_std]

extern crate alloc;

use serde::Deserialize;
use sluice_wasm_sdk::log;
use sluice_wasm_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Params {
    label: LabelParam,
    egress_cidrs: Vec<String>,
    egress_ports: Vec<u16>,
    allow_dns: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelParam {
    key: String,
    value: String,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            label: LabelParam {
                key: "tier".into(),
                value: "pci".into(),
            },
            egress_cidrs: Vec::new(),
            egress_ports: Vec::new(),
            allow_dns: true,
        }
    }
}

pub fn generate(input: &Input) -> Result<Document, String> {
    let params: Params = input.params()?;
    let cidrs = params
        .egress_cidrs
        .iter()
        .map(|c| cidr(c).map_err(|e| format!("params.egress_cidrs: {e}")))
        .collect::<Result<Vec<_>, _>>()?;

    let mut doc = Document::new();
    let (key, value) = (&params.label.key, &params.label.value);
    for ns in input.inventory.namespaces_labelled(key, value) {
        let mut policy = Policy::new(format!("isolate-{}", ns.name))
            .namespace(&ns.name)
            .isolate_both()
            .rule(
                Rule::ingress()
                    .named("same-namespace-in")
                    .peer(Peer::same_namespace()),
            )
            .rule(
                Rule::egress()
                    .named("same-namespace-out")
                    .peer(Peer::same_namespace()),
            );
        if !cidrs.is_empty() {
            let mut rule = Rule::egress().named("egress-cidrs");
            for c in &cidrs {
                rule = rule.peer(Peer::cidr(*c));
            }
            for p in &params.egress_ports {
                rule = rule.port(PortSpec::tcp(*p));
            }
            policy = policy.rule(rule);
        }
        if params.allow_dns {
            policy = policy.rule(
                Rule::egress()
                    .named("dns")
                    .peer(Peer::namespace_named("kube-system"))
                    .port(PortSpec::udp(53))
                    .port(PortSpec::tcp(53)),
            );
        }
        doc.push(policy);
    }
    log::info(&format!(
        "isolated {} namespace(s) labelled {key}={value}",
        doc.items.len()
    ));
    Ok(doc)
}

sluice_wasm_sdk::export_generator!(generate);
