//! DSL text + inventory → bundle, for the kernel tests and benches that need real compiled
//! policies (`swap_under_load`, `benches/swap.rs`).
//!
//! The compiler has no driver to bundles yet, so this strings the stages together the way
//! one would: parse, lower, identities, peer classes, one decision table per endpoint and
//! direction, [`compile_endpoint`], and one attachment per program on the endpoint's
//! interface (or its netns's eth0 peer). Included with `#[path]`, not a crate module.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use sluice_compiler::bundle::{Attachment, Bundle, BundleBuilder, EndpointRef, Hook};
use sluice_compiler::datapath::{CodegenOptions, compile_endpoint};
use sluice_compiler::plan::{Classes, DecisionTable};
use sluice_compiler::resolve::{self, Inventory, identity};
use sluice_compiler::source::{SourceMap, dsl};

/// Where the time of one compile went.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileTimings {
    /// Parse, lower, identities, classes, decision tables.
    pub front: Duration,
    /// Code generation (every endpoint's two programs).
    pub codegen: Duration,
    /// Bundle building (sha256 of every artifact, dedup).
    pub bundle: Duration,
}

impl CompileTimings {
    pub fn total(&self) -> Duration {
        self.front + self.codegen + self.bundle
    }
}

/// Compiles `policy` (DSL) against `inv` into a bundle whose attachments follow the
/// inventory's `interface`/`netns` fields.
pub fn compile(
    name: &str,
    policy: &str,
    inv: &Inventory,
    opts: &CodegenOptions,
) -> Result<(Bundle, CompileTimings), String> {
    let t0 = Instant::now();
    let mut sources = SourceMap::new();
    let id = sources.add(name, policy);
    let doc = dsl::parse(id, policy).map_err(|d| format!("parse {name}: {d:?}"))?;
    let (ir, diags) = sluice_compiler::ir::lower(&[doc]);
    if diags.has_errors() {
        return Err(format!("lower {name}: {diags:?}"));
    }
    let ids = identity::allocate(inv, &ir);
    let classes = Classes::build(inv, &ids, None);
    let tables: Vec<_> = (0..inv.endpoints.len())
        .map(|e| {
            let p = resolve::policy_for(&ir, inv, &ids, e);
            (
                p.ingress
                    .as_ref()
                    .map(|d| DecisionTable::build(d, &classes)),
                p.egress.as_ref().map(|d| DecisionTable::build(d, &classes)),
            )
        })
        .collect();
    let t1 = Instant::now();
    let mut arts = Vec::with_capacity(tables.len());
    for (e, (ing, eg)) in tables.iter().enumerate() {
        let a = compile_endpoint(ing.as_ref(), eg.as_ref(), &classes, opts)
            .map_err(|err| format!("codegen {}: {err}", inv.endpoints[e].name))?;
        arts.push(a);
    }
    let t2 = Instant::now();
    let mut bb = BundleBuilder::new();
    bb.input(name, policy.as_bytes())
        .map_err(|e| e.to_string())?;
    for (ep, a) in inv.endpoints.iter().zip(arts) {
        let endpoint = EndpointRef {
            namespace: ep.namespace.clone(),
            name: ep.name.clone(),
        };
        for art in [a.from_ep, a.to_ep] {
            let hook = Hook::from(art.attach);
            let id = bb.program(art).map_err(|e| e.to_string())?;
            bb.attach(Attachment {
                endpoint: endpoint.clone(),
                interface: ep.interface.clone(),
                netns: ep.netns.clone(),
                hook,
                artifact: id,
            })
            .map_err(|e| e.to_string())?;
        }
    }
    let bundle = bb.finish();
    let t3 = Instant::now();
    Ok((
        bundle,
        CompileTimings {
            front: t1 - t0,
            codegen: t2 - t1,
            bundle: t3 - t2,
        },
    ))
}
