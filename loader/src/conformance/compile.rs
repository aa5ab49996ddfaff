//! A conformance case compiled into a bundle for the kernel engine.
//!
//! This is the compiler's pipeline from a lowered IR and an inventory to a [`Bundle`]:
//! identities, peer classes and the ipcache, one decision table per endpoint and direction,
//! `from_ep`/`to_ep` per endpoint ([`compile_endpoint`]), and the attachments that put them on
//! the host side of each pod's veth. The kernel engine then loads it with the same
//! [`crate::generation::apply_bundle`] as `sluice load`, so the conformance run exercises the
//! real load and swap path.

use sluice_compiler::bundle::{Attachment, Bundle, BundleBuilder, BundleError, EndpointRef};
use sluice_compiler::datapath::{CodegenOptions, DatapathError, Mode, compile_endpoint};
use sluice_compiler::ir::Ir;
use sluice_compiler::plan::{Classes, DecisionTable};
use sluice_compiler::resolve::{self, Inventory, identity};

/// Pin name of the conntrack map under the loader's root (`sluice_ct` without the prefix,
/// as the bundle names persistent maps).
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
    for (i, ep) in inv.endpoints.iter().enumerate() {
        let who = format!("{}/{}", ep.namespace, ep.name);
        if ep.interface.is_none() && ep.netns.is_none() {
            return Err(CompileError::Unplaced(who));
        }
        let pol = resolve::policy_for(ir, inv, &ids, i);
        let ingress = pol
            .ingress
            .as_ref()
            .map(|p| DecisionTable::build(p, &classes));
        let egress = pol
            .egress
            .as_ref()
            .map(|p| DecisionTable::build(p, &classes));
        let arts = compile_endpoint(ingress.as_ref(), egress.as_ref(), &classes, &opts).map_err(
            |source| CompileError::Codegen {
                endpoint: who.clone(),
                source,
            },
        )?;
        for art in [arts.from_ep, arts.to_ep] {
            let hook = art.attach.into();
            let artifact = b.program(art)?;
            b.attach(Attachment {
                endpoint: EndpointRef {
                    namespace: ep.namespace.clone(),
                    name: ep.name.clone(),
                },
                interface: ep.interface.clone(),
                netns: ep.netns.clone(),
                hook,
                artifact,
            })?;
        }
    }
    Ok(b.finish())
}
