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
use crate::datapath::{CodegenOptions, DatapathError, EndpointArtifacts, compile_endpoint};
use crate::diag::{Diag, Diagnostics, Severity};
use crate::ir::{self, Ir};
use crate::plan::{Classes, DecisionTable};
use crate::resolve::Inventory;
use crate::resolve::InventoryFiles;
use crate::resolve::inventory::InventoryError;
use crate::resolve::{self, DirectionPolicy, identity};
use crate::source::SourceMap;
use crate::source::ast::{Document, Span};
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
/// checked against it. The checks run only when lowering found no errors.
pub fn check_documents(docs: &[Document], inventory: Option<&Inventory>) -> Checked {
    let mut times = StageTimes::default();
    let t = Instant::now();
    let (ir, mut diags) = ir::lower(docs);
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
/// [`compile`]. `sluice apply` and the agent both go through here. Returns the front half's
/// findings (warnings, notes) with the result.
pub fn check_and_compile(
    docs: &[Document],
    inventory: &Inventory,
    sources: &SourceMap,
    inputs: &[(String, Vec<u8>)],
    opts: &CompileOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Compiled, Diagnostics), BuildError> {
    let checked = check_documents(docs, Some(inventory));
    if checked.diags.has_errors() {
        return Err(BuildError::Rejected(checked.diags));
    }
    let compiled = compile(&checked.ir, inventory, sources, inputs, opts, progress)?;
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
    #[error(transparent)]
    Bundle(#[from] BundleError),
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
    // once per distinct (ingress, egress) pair. Large clusters have few distinct policies.
    type PolicyPair = (Option<DirectionPolicy>, Option<DirectionPolicy>);
    // Distinct pair → (its number, the first endpoint that runs it).
    let mut built: HashMap<PolicyPair, (usize, usize)> = HashMap::new();
    // `distinct_of[i]`: which distinct program pair endpoint `i` (of `endpoints`) runs.
    let mut distinct_of: Vec<usize> = Vec::with_capacity(selected.len());
    for (done, &e) in selected.iter().enumerate() {
        let ep = &inventory.endpoints[e];
        let endpoint = EndpointRef {
            namespace: ep.namespace.clone(),
            name: ep.name.clone(),
        };
        let t = Instant::now();
        let policy = resolve::policy_for(ir, inventory, &ids, e);
        let pair = (policy.ingress, policy.egress);
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
                let programs =
                    compile_endpoint(ingress.as_ref(), egress.as_ref(), &classes, &opts.codegen)
                        .map_err(|source| CompileError::Codegen {
                            endpoint: endpoint.clone(),
                            source,
                        })?;
                times.codegen += t.elapsed();
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
