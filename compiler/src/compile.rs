//! The compile driver: the one path from the user's files to checked IR and on to a bundle,
//! shared by `sluice check`, `sluice compile` and `sluice apply`.
//!
//! Each front end and pass reports into [`Diagnostics`]; this module strings them together in
//! a fixed order and stops at the first stage with errors, so a later stage never sees input an
//! earlier one rejected (and never reports noise caused by it). It also reads the inventory
//! through the [`SourceMap`], so an inventory's own errors point at its file, line and column
//! like any policy error.

use crate::bundle::{
    Attachment, Bundle, BundleBuilder, BundleError, Digest as BundleDigest, EndpointRef,
};
use crate::datapath::program::needs_conntrack;
use crate::datapath::{
    CodegenOptions, DatapathError, EndpointArtifacts, InlineVerdict, compile_endpoint_with,
};
use crate::diag::{Diag, Diagnostics, Severity};
use crate::ir::{self, Ir, VerdictId};
use crate::plan::{Classes, DecisionTable};
use crate::resolve::Inventory;
use crate::resolve::InventoryFiles;
use crate::resolve::inventory::InventoryError;
use crate::resolve::{self, DirectionPolicy, identity};
use crate::source::SourceMap;
use crate::source::ast::{Document, PolicyDirection, Span};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Reads and validates an inventory file, registering its text so errors render with a label.
pub fn load_inventory(path: &Path, sources: &mut SourceMap) -> Result<Inventory, Diag> {
    let id = sources.load(path).map_err(|e| {
        Diag::error(
            "sluice::inventory::io",
            format!("cannot read inventory {e}"),
        )
    })?;
    let file = sources.file(id);
    let (name, text) = (file.name.clone(), file.text.clone());
    Inventory::parse(&name, &text).map_err(|e| match e {
        InventoryError::Syntax {
            line,
            column,
            message,
            ..
        } => {
            let start = offset_of(&text, line, column);
            // At the end of the text there is nothing to underline; point just before it.
            let start = start.min(text.len().saturating_sub(1));
            let end = text[start..]
                .char_indices()
                .nth(1)
                .map_or(text.len(), |(i, _)| start + i);
            Diag::error(
                "sluice::inventory::syntax",
                format!("invalid inventory: {}", strip_location(&message)),
            )
            .with_label(Span::new(id, start, end), "here")
            .with_help("the inventory format is described in spec/inventory.md")
        }
        InventoryError::Invalid { message, .. } => Diag::error(
            "sluice::inventory::invalid",
            format!("invalid inventory {name}: {message}"),
        ),
        InventoryError::Io(m) => Diag::error("sluice::inventory::io", m),
    })
}

/// Byte offset of a 1-based line and column (columns count characters).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    let rest = &text[line_start..];
    let line_len = rest.find('\n').unwrap_or(rest.len());
    line_start
        + rest[..line_len]
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(line_len, |(i, _)| i)
}

/// serde's messages say "at line L column C" (at the end or mid-sentence); the rendered label
/// already says where.
fn strip_location(message: &str) -> String {
    let mut out = message.to_string();
    while let Some(i) = out.find(" at line ") {
        let rest = &out[i + 9..];
        let line_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Some(after) = rest[line_len..].strip_prefix(" column ") else {
            break;
        };
        let col_len = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        if line_len == 0 || col_len == 0 {
            break;
        }
        let end = i + 9 + line_len + " column ".len() + col_len;
        out.replace_range(i..end, "");
    }
    out
}

/// How long each stage of the front half took (shown with `-v`, and by the benchmark).
#[derive(Clone, Debug, Default)]
pub struct StageTimes {
    pub lower: Duration,
    pub check: Duration,
}

/// What the front half produced: the checked IR and everything it had to say.
#[derive(Debug)]
pub struct Checked {
    pub ir: Ir,
    pub diags: Diagnostics,
    pub times: StageTimes,
}

/// The one-line summary `sluice check` prints on success: what was read, and how many
/// warnings `diags` (everything reported, not only the checks) holds.
pub fn summary(ir: &Ir, diags: &Diagnostics) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut s = format!(
        "{}, {}",
        plural(ir.policies.len(), "policy", "policies"),
        plural(ir.rules.len(), "rule", "rules"),
    );
    if !ir.verdicts.is_empty() {
        s.push_str(&format!(
            ", {}",
            plural(ir.verdicts.len(), "verdict rule", "verdict rules")
        ));
    }
    if ir.masquerade.is_some() {
        s.push_str(", masquerade");
    }
    if !ir.pools.is_empty() {
        s.push_str(&format!(
            ", {}",
            plural(ir.pools.len(), "IPAM pool", "IPAM pools")
        ));
    }
    s.push_str(&format!(
        ", {}",
        plural(diags.count(Severity::Warning), "warning", "warnings")
    ));
    s
}

/// Lowers documents to IR and runs the semantic checks; with an inventory, named ports are
/// checked against it. The checks run only when lowering found no errors. Verdict modules
/// are read relative to the working directory: [`check_documents_in`] reads them relative to
/// the files that name them.
pub fn check_documents(docs: &[Document], inventory: Option<&Inventory>) -> Checked {
    check_documents_in(docs, inventory, None)
}

/// [`check_documents`], reading each verdict rule's module relative to the file in `sources`
/// that names it (`ir::verdict`), so code generation gets translated modules only.
pub fn check_documents_in(
    docs: &[Document],
    inventory: Option<&Inventory>,
    sources: Option<&SourceMap>,
) -> Checked {
    let mut times = StageTimes::default();
    let t = Instant::now();
    let (mut ir, mut diags) = ir::lower(docs);
    if !diags.has_errors() && !ir.verdicts.is_empty() {
        ir::verdict::load(
            &mut ir,
            &|id| ir::verdict::base_dir(sources, id),
            &mut diags,
        );
    }
    times.lower = t.elapsed();
    tracing::debug!(
        policies = ir.policies.len(),
        rules = ir.rules.len(),
        elapsed = ?times.lower,
        "lowered"
    );
    if diags.has_errors() {
        return Checked {
            ir,
            diags: diags.sorted(),
            times,
        };
    }
    let t = Instant::now();
    let named = inventory.map(Inventory::named_ports);
    let ir = ir::check::check(ir, named.as_deref(), &mut diags);
    times.check = t.elapsed();
    tracing::debug!(elapsed = ?times.check, "checked");
    Checked {
        ir,
        diags: diags.sorted(),
        times,
    }
}

/// Why [`check_and_compile`] produced no bundle.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The front half found errors; every finding (warnings too), sorted.
    #[error("the policy has errors")]
    Rejected(Diagnostics),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// The whole pipeline from read documents to a bundle: the checks (stopping at errors), then
/// [`compile`]. `sluice apply` and the agent both go through here; verdict modules are read
/// relative to the file in `sources` that names them. Returns the front half's
/// findings (warnings, notes) with the result.
pub fn check_and_compile(
    docs: &[Document],
    inventory: &Inventory,
    sources: &SourceMap,
    inputs: &[(String, Vec<u8>)],
    opts: &CompileOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Compiled, Diagnostics), BuildError> {
    let checked = check_documents_in(docs, Some(inventory), Some(sources));
    if checked.diags.has_errors() {
        return Err(BuildError::Rejected(checked.diags));
    }
    // The manifest records every input by sha256, the verdict modules the rules read too.
    let mut inputs = inputs.to_vec();
    inputs.extend(checked.ir.verdicts.values().filter_map(|v| {
        let (m, f) = (v.module.as_ref()?, v.file.as_ref()?);
        Some((f.display().to_string(), m.bytes().to_vec()))
    }));
    inputs.sort();
    inputs.dedup_by(|a, b| a.0 == b.0);
    let compiled = compile(&checked.ir, inventory, sources, &inputs, opts, progress)?;
    Ok((compiled, checked.diags))
}

// ---- the back half: checked IR + inventory → bundle --------------------------------------

/// How to compile.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    pub codegen: CodegenOptions,
    /// Compile for the endpoints of this node only, with its view of `host` (`None`: every
    /// endpoint, as one node).
    pub node: Option<String>,
    /// Generate the node datapath too, for the node `node` names (which must be the
    /// configuration's): spec/datapath.md, "Nodes"; spec/node.md.
    pub datapath: Option<crate::datapath::node::NodeConfig>,
    /// The masquerade exclusion sources of the node datapath, already read
    /// (`crate::masq::load`); none: only the link-local ranges are excluded.
    pub masquerade: Vec<crate::source::ast::Masquerade>,
}

/// What the driver reports as it goes, for progress bars and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Identities and peer classes are ready; `endpoints` programs pairs are to be built.
    Planned { endpoints: usize },
    /// One more endpoint's programs are built.
    Endpoint { done: usize, total: usize },
}

/// Time per stage of [`compile`].
#[derive(Clone, Debug, Default)]
pub struct CompileTimes {
    /// Identities and peer classes.
    pub resolve: Duration,
    /// Per-endpoint policies and decision tables.
    pub plan: Duration,
    pub codegen: Duration,
    pub bundle: Duration,
}

/// One endpoint's programs, as generated.
#[derive(Clone, Debug)]
pub struct EndpointPrograms {
    pub endpoint: EndpointRef,
    /// Shared by every endpoint with the same resolved policy (copying them per endpoint
    /// cost ~170 ms at 1k endpoints).
    pub programs: std::sync::Arc<EndpointArtifacts>,
    /// Their ids in the bundle (`None`: the endpoint has nowhere to attach; not in the bundle).
    pub artifacts: Option<[BundleDigest; 2]>,
}

/// A compilation's result.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub bundle: Bundle,
    pub endpoints: Vec<EndpointPrograms>,
    /// Endpoints left out of the bundle: neither an interface nor a netns to attach to.
    pub unattached: Vec<EndpointRef>,
    /// Identities allocated (endpoint label sets and CIDR prefixes).
    pub identities: usize,
    /// The node datapath, when it was asked for (its from-pod programs are already the
    /// endpoints' `from_ep`).
    pub node: Option<crate::datapath::node::NodeDatapath>,
    pub times: CompileTimes,
}

/// Why the back half failed (the front half reports through diagnostics instead).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("generating the programs of endpoint {endpoint}: {source}")]
    Codegen {
        endpoint: EndpointRef,
        #[source]
        source: DatapathError,
    },
    #[error("node `{0}` is not in the inventory")]
    UnknownNode(String),
    /// A label identity above 2^24 - 1 could not travel in a VXLAN VNI (spec/datapath.md,
    /// "Nodes").
    #[error("{0} distinct label sets: label identities would not fit the 24-bit VNI")]
    TooManyIdentities(usize),
    #[error("the node datapath of `{0}`: {1}")]
    Node(String, crate::datapath::node::NodeError),
    #[error("the module of {0} was not read and checked (compile::check_documents_in does it)")]
    VerdictNotLoaded(String),
    /// The node datapath delivers through one per-node ingress lookup, which cannot run
    /// inlined modules: refused rather than bypassed (spec/wasm-verdict.md).
    #[error(
        "{0} runs a Wasm verdict module, which the node datapath (--node-config) does not run yet"
    )]
    VerdictWithNodeDatapath(String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// Reads and checks a node configuration file (`spec/node.md`) for the node datapath, and
/// records its text among `inputs` (name, bytes) for the manifest.
pub fn node_config(
    sources: &mut SourceMap,
    path: &Path,
    inputs: &mut Vec<(String, Vec<u8>)>,
) -> (Option<crate::node::NodeConfig>, Diagnostics) {
    let (config, diags) = crate::node::load(sources, path);
    if config.is_some()
        && let Some(id) = sources.ids().last()
    {
        let f = sources.file(id);
        inputs.push((f.name.clone(), f.text.clone().into_bytes()));
    }
    (config, diags)
}

/// Per distinct program pair: ingress and egress tables, and whether it tracks flows.
type NodeTables = (Option<DecisionTable>, Option<DecisionTable>, bool);

/// The verdict rules that judge `ep` in `dir`, as its program runs them; `Err` names one
/// whose module was never loaded (fail closed: no program without its verdict code).
fn inline_verdicts(
    ir: &Ir,
    ep: &crate::ir::EndpointView<'_>,
    dir: PolicyDirection,
) -> Result<Vec<InlineVerdict>, VerdictId> {
    ir.verdicts_for(ep, dir)
        .into_iter()
        .map(|v| {
            let d = &ir.verdicts[v];
            Ok(InlineVerdict {
                module: d.module.clone().ok_or(v)?,
                on_trap: d.on_trap,
                rule: ir.verdict_rule_number(v),
            })
        })
        .collect()
}

/// Compiles checked IR against an inventory into a bundle: identities, peer classes and the
/// ipcache, one decision table per endpoint and direction, both programs of every endpoint,
/// one attachment per program, and the trace info (`sluice trace`'s rule table, located in
/// `sources`, and the endpoints' addresses). `inputs` (name, bytes) are recorded in the
/// manifest by sha256. Deterministic: the same arguments give a byte-identical bundle.
pub fn compile(
    ir: &Ir,
    inventory: &Inventory,
    sources: &SourceMap,
    inputs: &[(String, Vec<u8>)],
    opts: &CompileOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Compiled, CompileError> {
    let mut times = CompileTimes::default();
    if let Some(n) = &opts.node
        && !inventory.nodes.iter().any(|x| &x.name == n)
    {
        return Err(CompileError::UnknownNode(n.clone()));
    }
    let t = Instant::now();
    let ids = identity::allocate(inventory, ir);
    if ids
        .endpoints
        .last()
        .is_some_and(|e| e.id > crate::datapath::node::wire::MAX_WIRE_IDENTITY)
    {
        return Err(CompileError::TooManyIdentities(ids.endpoints.len()));
    }
    let classes = Classes::build(inventory, &ids, opts.node.as_deref());
    times.resolve = t.elapsed();
    let selected: Vec<usize> = (0..inventory.endpoints.len())
        .filter(|&e| {
            opts.node.is_none() || inventory.endpoints[e].node.as_deref() == opts.node.as_deref()
        })
        .collect();
    tracing::info!(
        identities = ids.endpoints.len() + ids.cidrs.len(),
        endpoints = selected.len(),
        elapsed = ?times.resolve,
        "resolved"
    );
    progress(Progress::Planned {
        endpoints: selected.len(),
    });

    let mut endpoints: Vec<EndpointPrograms> = Vec::with_capacity(selected.len());
    // Endpoints with the same resolved policy get the same programs: plan and generate them
    // once per distinct (ingress, egress) pair, with the verdict rules of each direction.
    // Large clusters have few distinct policies.
    type PolicyPair = (
        Option<DirectionPolicy>,
        Option<DirectionPolicy>,
        [Vec<InlineVerdict>; 2],
    );
    // Distinct pair → (its number, the first endpoint that runs it).
    let mut built: HashMap<PolicyPair, (usize, usize)> = HashMap::new();
    // `distinct_of[i]`: which distinct program pair endpoint `i` (of `endpoints`) runs.
    let mut distinct_of: Vec<usize> = Vec::with_capacity(selected.len());
    // Per distinct pair: its ingress table and whether it tracks (the node datapath's view).
    let mut node_tables: Vec<NodeTables> = Vec::new();
    for (done, &e) in selected.iter().enumerate() {
        let ep = &inventory.endpoints[e];
        let endpoint = EndpointRef {
            namespace: ep.namespace.clone(),
            name: ep.name.clone(),
        };
        let t = Instant::now();
        let policy = resolve::policy_for(ir, inventory, &ids, e);
        let verdicts = [PolicyDirection::Ingress, PolicyDirection::Egress]
            .map(|dir| inline_verdicts(ir, &inventory.view(e), dir));
        let [vin, veg] = match verdicts {
            [Ok(i), Ok(e)] => [i, e],
            [Err(v), _] | [_, Err(v)] => {
                return Err(CompileError::VerdictNotLoaded(ir.describe_verdict(v)));
            }
        };
        if opts.datapath.is_some() && !(vin.is_empty() && veg.is_empty()) {
            return Err(CompileError::VerdictWithNodeDatapath(format!(
                "{}/{}",
                ep.namespace, ep.name
            )));
        }
        let pair = (policy.ingress, policy.egress, [vin, veg]);
        times.plan += t.elapsed();
        let programs = match built.get(&pair) {
            Some(&(d, first)) => {
                distinct_of.push(d);
                endpoints[first].programs.clone()
            }
            None => {
                let t = Instant::now();
                let ingress = pair.0.as_ref().map(|d| DecisionTable::build(d, &classes));
                let egress = pair.1.as_ref().map(|d| DecisionTable::build(d, &classes));
                times.plan += t.elapsed();
                let t = Instant::now();
                let [vin, veg] = &pair.2;
                let programs = compile_endpoint_with(
                    ingress.as_ref(),
                    egress.as_ref(),
                    [vin, veg],
                    &classes,
                    &opts.codegen,
                )
                .map_err(|source| CompileError::Codegen {
                    endpoint: endpoint.clone(),
                    source,
                })?;
                times.codegen += t.elapsed();
                if opts.datapath.is_some() {
                    let ct = needs_conntrack(ingress.as_ref(), egress.as_ref());
                    node_tables.push((ingress.clone(), egress.clone(), ct));
                }
                distinct_of.push(built.len());
                built.insert(pair, (built.len(), endpoints.len()));
                std::sync::Arc::new(programs)
            }
        };
        endpoints.push(EndpointPrograms {
            endpoint,
            programs,
            artifacts: None,
        });
        progress(Progress::Endpoint {
            done: done + 1,
            total: selected.len(),
        });
    }
    tracing::info!(plan = ?times.plan, codegen = ?times.codegen, "programs built");
    // The node datapath: its maps need every local endpoint's tables, and each from-pod
    // program reads them, so these come after every policy is planned.
    let node = match (&opts.datapath, &opts.node) {
        (Some(cfg), Some(node)) => {
            let t = Instant::now();
            let built = crate::datapath::node::compile_node(
                inventory,
                &ids,
                &classes,
                node,
                cfg,
                &selected,
                &distinct_of,
                &node_tables,
                &opts.codegen,
                &crate::masq::MasqPlan::new(cfg, &opts.masquerade),
            )
            .map_err(|source| CompileError::Node(node.clone(), source))?;
            // One new pair per distinct program pair, shared again by its endpoints.
            let mut with_node: Vec<Option<std::sync::Arc<EndpointArtifacts>>> =
                vec![None; built.from_pod.len()];
            for (ep, &d) in endpoints.iter_mut().zip(&distinct_of) {
                let pair = with_node[d].get_or_insert_with(|| {
                    std::sync::Arc::new(EndpointArtifacts {
                        from_ep: built.from_pod[d].clone(),
                        to_ep: ep.programs.to_ep.clone(),
                    })
                });
                ep.programs = pair.clone();
            }
            times.codegen += t.elapsed();
            Some(built)
        }
        _ => None,
    };

    let t = Instant::now();
    let mut bb = BundleBuilder::new();
    for (name, bytes) in inputs {
        bb.input(name, bytes)?;
    }
    let mut unattached = Vec::new();
    // Each distinct program goes into the builder once (hashing it, and the generation's
    // ipcache it carries, is the costly part); its endpoints attach the same artifact.
    let mut artifact_ids: HashMap<(usize, usize), BundleDigest> = HashMap::new();
    for ((ep, built), &d) in selected
        .iter()
        .map(|&e| &inventory.endpoints[e])
        .zip(&mut endpoints)
        .zip(&distinct_of)
    {
        if ep.interface.is_none() && ep.netns.is_none() {
            unattached.push(built.endpoint.clone());
            continue;
        }
        let mut ids = Vec::with_capacity(2);
        for (side, art) in [&built.programs.from_ep, &built.programs.to_ep]
            .into_iter()
            .enumerate()
        {
            let hook = art.hook;
            let id = match artifact_ids.get(&(d, side)) {
                Some(id) => *id,
                None => {
                    let id = bb.program(art.clone())?;
                    artifact_ids.insert((d, side), id);
                    id
                }
            };
            bb.attach(Attachment {
                endpoint: built.endpoint.clone(),
                interface: ep.interface.clone(),
                netns: ep.netns.clone(),
                hook,
                artifact: id,
            })?;
            ids.push(id);
        }
        built.artifacts = Some([ids[0], ids[1]]);
    }
    if let Some(node) = &node {
        for m in node.maps.all() {
            let mut shared = sluice_bundle::SharedMap::generation(m.def, m.entries);
            shared.scope = m.scope;
            bb.shared_map(shared)?;
        }
        let cfg = opts
            .datapath
            .as_ref()
            .expect("a node datapath was asked for");
        for art in &node.devices {
            let id = bb.program(art.clone())?;
            // The node's own device: an attachment whose endpoint is the device's role.
            let (role, device) = crate::datapath::node::device(cfg, &art.name);
            bb.attach(Attachment {
                endpoint: EndpointRef {
                    namespace: sluice_bundle::abi::node::DEVICE_NAMESPACE.to_owned(),
                    name: role.to_owned(),
                },
                interface: Some(device.to_owned()),
                netns: None,
                hook: art.hook,
                artifact: id,
            })?;
        }
    }
    bb.trace_info(crate::trace_info::build(
        ir,
        sources,
        inventory,
        opts.codegen.trace,
    ));
    let bundle = bb.finish();
    times.bundle = t.elapsed();
    tracing::info!(
        artifacts = bundle.artifacts.len(),
        attachments = bundle.attachments.len(),
        elapsed = ?times.bundle,
        "bundle built"
    );
    Ok(Compiled {
        bundle,
        endpoints,
        unattached,
        identities: ids.endpoints.len() + ids.cidrs.len(),
        node,
        times,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::render_plain;

    fn inventory_diag(text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("sluice-compile-inv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("inv-{}.yaml", text.len()));
        std::fs::write(&path, text).unwrap();
        let mut sm = SourceMap::new();
        let d = load_inventory(&path, &mut sm).unwrap_err();
        let out = render_plain(&Diagnostics { items: vec![d] }, &sm);
        std::fs::remove_file(&path).unwrap();
        out
    }

    #[test]
    fn inventory_syntax_errors_point_at_the_text() {
        let out = inventory_diag("endpoints:\n- name: a\n  colour: red\n");
        assert!(out.contains("unknown field `colour`"), "{out}");
        assert!(out.contains(":3:3]"), "{out}");
        assert!(!out.contains("at line"), "{out}");
        let out = inventory_diag("endpoints: [\n");
        assert!(out.contains("invalid inventory"), "{out}");
        assert!(out.contains(".yaml:"), "{out}");
    }

    const POLICY: &str = r#"policy "web" in namespace shop {
  select app = web
  ingress allow from pods { app = lb } ports 80/tcp
  egress allow to cidr 10.0.0.0/8 ports 5432/tcp
}
"#;

    const INVENTORY: &str = r#"
nodes: [{name: n1, ips: [192.168.0.1]}, {name: n2, ips: [192.168.0.2]}]
endpoints:
- {name: web-1, namespace: shop, labels: {app: web}, ips: [10.0.0.1], node: n1, interface: v-web1}
- {name: web-2, namespace: shop, labels: {app: web}, ips: [10.0.0.2], node: n1, netns: web2}
- {name: lb-1, namespace: shop, labels: {app: lb}, ips: [10.0.0.3], node: n2}
"#;

    fn build(opts: &CompileOptions) -> Result<Compiled, CompileError> {
        let mut sm = SourceMap::new();
        let id = sm.add("web.sluice", POLICY);
        let doc = crate::source::dsl::parse(id, POLICY).unwrap();
        let inv = Inventory::parse("inv.yaml", INVENTORY).unwrap();
        let checked = check_documents(&[doc], Some(&inv));
        assert!(!checked.diags.has_errors(), "{:?}", checked.diags);
        let inputs = vec![("web.sluice".to_string(), POLICY.as_bytes().to_vec())];
        let mut seen = Vec::new();
        let out = compile(&checked.ir, &inv, &sm, &inputs, opts, &mut |p| seen.push(p));
        if let Ok(c) = &out {
            // One `Planned`, then one `Endpoint` per endpoint.
            assert_eq!(
                seen.first(),
                Some(&Progress::Planned {
                    endpoints: c.endpoints.len()
                })
            );
            assert_eq!(seen.len(), 1 + c.endpoints.len());
        }
        out
    }

    #[test]
    fn compiles_every_endpoint_reproducibly() {
        let a = build(&CompileOptions::default()).unwrap();
        let b = build(&CompileOptions::default()).unwrap();
        assert_eq!(a.bundle.manifest_bytes(), b.bundle.manifest_bytes());
        assert_eq!(a.endpoints.len(), 3);
        // lb-1 has nowhere to attach: compiled, but not in the bundle.
        assert_eq!(a.unattached.len(), 1);
        assert_eq!(a.unattached[0].name, "lb-1");
        assert_eq!(a.bundle.attachments.len(), 4);
        // web-1 and web-2 have the same policy: their programs are stored once.
        assert_eq!(a.endpoints[0].artifacts, a.endpoints[1].artifacts);
        assert!(
            a.bundle.artifacts.len() <= 2,
            "{}",
            a.bundle.artifacts.len()
        );
        assert_eq!(a.bundle.inputs.len(), 1);
        // The generic shape is a different program.
        let generic = build(&CompileOptions {
            codegen: CodegenOptions {
                mode: crate::datapath::Mode::Generic,
                ..CodegenOptions::default()
            },
            ..CompileOptions::default()
        })
        .unwrap();
        assert_ne!(generic.bundle.digest(), a.bundle.digest());
    }

    #[test]
    fn the_bundle_carries_the_rule_table() {
        let c = build(&CompileOptions {
            codegen: CodegenOptions {
                trace: true,
                ..CodegenOptions::default()
            },
            ..CompileOptions::default()
        })
        .unwrap();
        let info = c.bundle.trace.as_ref().expect("trace info");
        assert!(info.rule_recording);
        let r = info.rules.get(1).unwrap();
        assert_eq!(
            r.location.as_ref().unwrap().to_string(),
            "web.sluice:3:3",
            "{r:?}"
        );
        assert_eq!((r.policy.as_str(), r.action.as_str()), ("web", "allow"));
        assert_eq!(
            info.rules.get(2).unwrap().location.as_ref().unwrap().line,
            4
        );
        assert_eq!(info.endpoints.len(), 3, "every endpoint's addresses");
        let plain = build(&CompileOptions::default()).unwrap();
        assert!(!plain.bundle.trace.as_ref().unwrap().rule_recording);
        assert_ne!(plain.bundle.digest(), c.bundle.digest());
    }

    /// A verdict rule's translated code is part of the program: the endpoints it selects get
    /// another `to_ep` (another sha256), still shared between them; the rule table numbers it
    /// after the rules and names its module. A rule whose module was never loaded does not
    /// compile.
    #[test]
    fn verdict_code_is_in_the_program_and_the_rule_table() {
        const PASS: &str = "a3d74436c7dd34344cb99790f24940fa603e7d9f90325ccbb73a9df0019c6552";
        let guard = format!(
            "policy \"g\" {{ tier admin priority 1 select app = web\n  ingress verdict \"tests/golden/verdict/pass.wasm\" sha256 \"{PASS}\" }}\n"
        );
        let mut sm = SourceMap::new();
        let docs: Vec<Document> = [("web.sluice", POLICY), ("g.sluice", guard.as_str())]
            .iter()
            .map(|(name, text)| {
                let id = sm.add(*name, *text);
                crate::source::dsl::parse(id, text).unwrap()
            })
            .collect();
        let inv = Inventory::parse("inv.yaml", INVENTORY).unwrap();
        let opts = CompileOptions {
            codegen: CodegenOptions {
                trace: true,
                ..CodegenOptions::default()
            },
            ..CompileOptions::default()
        };
        // Paths without a file are relative to the working directory (the crate's, in tests).
        let checked = check_documents(&docs, Some(&inv));
        assert!(!checked.diags.has_errors(), "{:?}", checked.diags);
        let with = compile(&checked.ir, &inv, &sm, &[], &opts, &mut |_| {}).unwrap();
        let plain = build(&opts).unwrap();
        let (w, p) = (&with.endpoints[0], &plain.endpoints[0]);
        assert_eq!(w.artifacts, with.endpoints[1].artifacts, "dedup");
        let [wf, wt] = w.artifacts.unwrap();
        let [pf, pt] = p.artifacts.unwrap();
        assert_eq!(wf, pf, "egress has no verdict rule: the same program");
        assert_ne!(wt, pt, "ingress runs the module: another program");
        assert!(w.programs.to_ep.elf.len() > p.programs.to_ep.elf.len());
        let info = with.bundle.trace.as_ref().unwrap();
        let n = checked.ir.rules.len() as u32 + 1;
        let e = info.rules.get(n).expect("the verdict rule's entry");
        assert_eq!(e.action, "verdict");
        let v = e.verdict.as_ref().unwrap();
        assert_eq!((v.sha256.as_str(), v.on_trap.as_str()), (PASS, "deny"));
        assert_eq!(e.location.as_ref().unwrap().to_string(), "g.sluice:2:3");

        let (unloaded, d) = ir::lower(&docs);
        assert!(!d.has_errors());
        let err = compile(&unloaded, &inv, &sm, &[], &opts, &mut |_| {}).unwrap_err();
        assert!(
            matches!(&err, CompileError::VerdictNotLoaded(r) if r.contains("policy `g`")),
            "{err}"
        );
    }

    #[test]
    fn node_selects_its_endpoints() {
        let n2 = build(&CompileOptions {
            node: Some("n2".into()),
            ..CompileOptions::default()
        })
        .unwrap();
        assert_eq!(n2.endpoints.len(), 1);
        assert_eq!(n2.endpoints[0].endpoint.name, "lb-1");
        let err = build(&CompileOptions {
            node: Some("n3".into()),
            ..CompileOptions::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "node `n3` is not in the inventory");
    }

    #[test]
    fn offsets() {
        let t = "ab\ncdé\nf";
        assert_eq!(offset_of(t, 1, 1), 0);
        assert_eq!(offset_of(t, 2, 3), 5);
        assert_eq!(offset_of(t, 3, 1), t.len() - 1);
        assert_eq!(offset_of(t, 9, 9), t.len());
        assert_eq!(strip_location("bad at line 3 column 4"), "bad");
        assert_eq!(strip_location("bad at line three"), "bad at line three");
        assert_eq!(
            strip_location("expected ',' at line 3 column 1, while parsing"),
            "expected ',', while parsing"
        );
    }
}
