//! service-egress: derives egress rules from service labels.
//!
//! A service labelled `sluice.io/clients: <value>` declares who may call it: pods labelled
//! `app=<value>` in the service's namespace. For every client value this emits one policy in
//! that namespace that isolates the clients' egress and allows it only to the backends of the
//! services that name them (the service's selector), on the services' target ports, plus DNS.
//! So the egress allow-list of an app is exactly the set of services that accept it.
//!
//! Parameters (optional): `{"clients_label": "sluice.io/clients", "app_label": "app"}`.

#![no_std]

extern crate alloc;

use alloc::collections::BTreeMap;
use serde::Deserialize;
use sluice_wasm_sdk::log;
use sluice_wasm_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Params {
    clients_label: String,
    app_label: String,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            clients_label: "sluice.io/clients".into(),
            app_label: "app".into(),
        }
    }
}

pub fn generate(input: &Input) -> Result<Document, String> {
    let params: Params = input.params()?;
    // (namespace, client app) → rules, in a stable order.
    let mut by_client: BTreeMap<(&str, &str), Vec<Rule>> = BTreeMap::new();
    for svc in &input.inventory.services {
        let Some(client) = svc.labels.get(&params.clients_label) else {
            continue;
        };
        if svc.selector.is_empty() {
            log::warn(&format!(
                "service {}/{} has no selector; skipped",
                svc.namespace, svc.name
            ));
            continue;
        }
        let mut rule = Rule::egress()
            .named(format!("to-{}", svc.name))
            .peer(Peer::pods(Selector::labels(&svc.selector)));
        for p in &svc.ports {
            let proto = Protocol::from(p.protocol);
            rule = rule.port(match &p.target_port {
                Some(TargetPort::Number(n)) => PortSpec::new(proto, PortMatch::Number(*n)),
                Some(TargetPort::Name(name)) => PortSpec::named(proto, name),
                None => PortSpec::new(proto, PortMatch::Number(p.port)),
            });
        }
        by_client
            .entry((svc.namespace.as_str(), client.as_str()))
            .or_default()
            .push(rule);
    }

    let mut doc = Document::new();
    for ((ns, client), rules) in by_client {
        let mut policy = Policy::new(format!("egress-{client}"))
            .namespace(ns)
            .pods(Selector::label(&params.app_label, client))
            .isolate(&[PolicyDirection::Egress]);
        for r in rules {
            policy = policy.rule(r);
        }
        policy = policy.rule(
            Rule::egress()
                .named("dns")
                .peer(Peer::namespace_named("kube-system"))
                .port(PortSpec::udp(53))
                .port(PortSpec::tcp(53)),
        );
        doc.push(policy);
    }
    Ok(doc)
}

sluice_wasm_sdk::export_generator!(generate, name = "service-egress", version = "0.3.0");
