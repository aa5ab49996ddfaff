//! A conformance case compiled into a bundle for the kernel engine.
//!
//! This is the compiler's pipeline from a lowered IR and an inventory to a [`Bundle`]:
//! identities, peer classes and the ipcache, one decision table per endpoint and direction,
//! `from_ep`/`to_ep` per endpoint ([`compile_endpoint`]), and the attachments that put them on
//! the host side of each pod's veth. The kernel engine then loads it with the same
//! [`crate::generation::apply_bundle`] as `sluice load`, so the conformance run exercises the
//! real load and swap path.

use std::collections::BTreeMap;

use sluice_compiler::bundle::{
    self, Attachment, Bundle, BundleBuilder, BundleError, EndpointRef, Hook, SharedMap,
};
use sluice_compiler::datapath::{
    self, CodegenOptions, DatapathError, MapScope, Mode, ProgramArtifact, Side,
    compile_endpoint,
};
use sluice_compiler::ir::Ir;
use sluice_compiler::plan::{Classes, DecisionTable};
use sluice_compiler::resolve::{self, Inventory, identity};

/// Pin name of the conntrack map under the loader's root.
pub const CT_PIN: &str = "ct";

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("endpoint {endpoint}: {source}")]
    Codegen {
        endpoint: String,
        #[source]
        source: DatapathError,
    },
    #[error("bundle: {0}")]
    Bundle(#[from] BundleError),
    #[error("endpoint {0} has no interface or netns in the inventory")]
    Unplaced(String),
    #[error("shared map `{0}` comes out different in two programs")]
    SharedMismatch(String),
}

/// Compiles `ir` against `inv` (whose endpoints name their host-side `interface` and `netns`)
/// into a bundle; `inputs` are recorded by name and digest.
pub fn bundle(
    ir: &Ir,
    inv: &Inventory,
    mode: Mode,
    inputs: &[(&str, &[u8])],
) -> Result<Bundle, CompileError> {
    let ids = identity::allocate(inv, ir);
    let classes = Classes::build(inv, &ids, None);
    let opts = CodegenOptions {
        mode,
        ..CodegenOptions::default()
    };
    let mut b = BundleBuilder::new();
    for (name, bytes) in inputs {
        b.input(name, bytes)?;
    }
    let mut shared: BTreeMap<String, datapath::MapContents> = BTreeMap::new();
    let mut programs: Vec<(EndpointRef, Option<String>, Option<String>, ProgramArtifact)> =
        Vec::new();
    for (i, ep) in inv.endpoints.iter().enumerate() {
        let who = format!("{}/{}", ep.namespace, ep.name);
        if ep.interface.is_none() && ep.netns.is_none() {
            return Err(CompileError::Unplaced(who));
        }
        let pol = resolve::policy_for(ir, inv, &ids, i);
        let ingress = pol.ingress.as_ref().map(|p| DecisionTable::build(p, &classes));
        let egress = pol.egress.as_ref().map(|p| DecisionTable::build(p, &classes));
        let arts = compile_endpoint(ingress.as_ref(), egress.as_ref(), &classes, &opts).map_err(
            |source| CompileError::Codegen {
                endpoint: who.clone(),
                source,
            },
        )?;
        let endpoint = EndpointRef {
            namespace: ep.namespace.clone(),
            name: ep.name.clone(),
        };
        for art in [arts.from_ep, arts.to_ep] {
            for m in art.maps.iter().filter(|m| m.scope != MapScope::Program) {
                match shared.get(&m.name) {
                    Some(prev) if prev != m => {
                        return Err(CompileError::SharedMismatch(m.name.clone()));
                    }
                    Some(_) => {}
                    None => {
                        shared.insert(m.name.clone(), m.clone());
                    }
                }
            }
            programs.push((
                endpoint.clone(),
                ep.interface.clone(),
                ep.netns.clone(),
                art,
            ));
        }
    }
    for m in shared.into_values() {
        b.shared_map(match m.scope {
            MapScope::Persistent if m.name == datapath::keys::CT => SharedMap::node(m.def, CT_PIN),
            MapScope::Persistent => {
                let pin = m.name.clone();
                SharedMap::node(m.def, &pin)
            }
            _ => SharedMap::generation(m.def, m.entries),
        })?;
    }
    for (endpoint, interface, netns, art) in programs {
        let hook = match art.side {
            Side::FromEp => Hook::Ingress,
            Side::ToEp => Hook::Egress,
        };
        let maps = art
            .maps
            .into_iter()
            .filter(|m| m.scope == MapScope::Program)
            .map(|m| bundle::MapContents {
                name: m.name,
                def: m.def,
                entries: m.entries,
            })
            .collect();
        let id = b.program(
            &art.name,
            bundle::ProgramArtifact {
                elf: art.elf,
                maps,
            },
        )?;
        b.attach(Attachment {
            endpoint,
            interface,
            netns,
            hook,
            artifact: id,
        })?;
    }
    Ok(b.finish())
}
