//! `sluice demo`: sluice working end to end, on this machine, in under a minute.
//!
//! It builds a one-node cluster in a box on network namespaces (the inventory in
//! `examples/demo/inventory.yaml`, made for `policies/demo.sluice`), checks the policy,
//! compiles it and attaches the programs to the pods' veths, then opens real TCP and UDP
//! connections between pods and to the outside world. Each row of the table it prints says
//! what the reference evaluator expects, which rule decided it (`file:line` and the rule's
//! name) and what the real socket saw. Everything is removed afterwards, also on Ctrl-C,
//! unless `--keep` asks to leave it for exploration.

use sluice_compiler::resolve::InventoryFiles;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use miette::IntoDiagnostic;
use sluice_compiler::diag::{Diagnostics, Severity, render_plain};
use sluice_compiler::eval::{self, DirectionVerdict, Flow, FlowEnd, Reason, Verdict};
use sluice_compiler::ir::{self, Ir, L4, L4Match, RuleId};
use sluice_compiler::resolve::Inventory;
use sluice_compiler::source::{SourceMap, load};

use sluice_compiler::compile::{self, CompileOptions};
use sluice_compiler::datapath::{CodegenOptions, Mode};

use crate::topology::{
    self, Probe, ProbeOutcome, Proto, Servers, Topology, TopologyError, TopologySpec,
    probe::probe_many,
};
use sluice_loader::generation::{self, LoadOptions};

pub mod nodes;

/// The demo cluster (embedded, so the demo needs no file but the policy).
pub const INVENTORY: &str = include_str!("../../../../examples/demo/inventory.yaml");
/// Where the inventory came from, for messages.
pub const INVENTORY_NAME: &str = "examples/demo/inventory.yaml";
/// The policy the demo applies, relative to the repository root.
pub const POLICY: &str = "policies/demo.sluice";
/// Prefix of a box left running by `--keep` (fixed, so `--clean` finds it).
pub const KEEP_PREFIX: &str = "sldemo";

/// The external host: a generic client "on the internet", the payments provider the
/// backend may call, and an address in the provider's sandbox range it may not.
const WORLD_CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const PAYMENTS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const SANDBOX: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);

/// The connections the demo tries: (from, to, port, protocol). `world` is the external
/// host; a bare address is a server on the external host.
const PLAN: &[(&str, &str, u16, Proto)] = &[
    ("world", "x/frontend", 80, Proto::Tcp),
    ("world", "y/api", 8080, Proto::Tcp),
    ("x/frontend", "y/api", 8080, Proto::Tcp),
    ("x/frontend", "y/api", 8080, Proto::Udp),
    ("x/frontend", "y/api-legacy", 8080, Proto::Tcp),
    ("x/frontend", "z/db", 5432, Proto::Tcp),
    ("y/api", "z/db", 5432, Proto::Tcp),
    ("y/api", "x/frontend", 80, Proto::Tcp),
    ("y/api", "198.51.100.10", 443, Proto::Tcp),
    ("y/api", "198.51.100.200", 443, Proto::Tcp),
    ("y/api", "pay/vault", 8443, Proto::Tcp),
    ("pay/ledger", "pay/vault", 8443, Proto::Tcp),
    ("ops/prometheus", "y/api", 9090, Proto::Tcp),
    ("x/frontend", "kube-system/coredns", 53, Proto::Udp),
];

/// What can stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0} has errors (shown above)")]
    Check(String),
    #[error("the demo inventory: {0}")]
    Inventory(String),
    #[error("building the cluster in a box: {0}")]
    Topology(#[from] TopologyError),
    #[error("starting servers or probes: {0}")]
    Probe(#[from] topology::ProbeError),
    #[error("the demo plan names `{0}`, which is not in the inventory")]
    Plan(String),
    #[error("evaluating a flow: {0}")]
    Eval(#[from] eval::EvalError),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("compiling: {0}")]
    Compile(String),
    #[error("applying the generation: {0}")]
    Apply(String),
    #[error("the two-node lab: {0}")]
    Lab(#[from] crate::lab::LabError),
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Leave the cluster (and the attached policy) running for exploration.
    #[arg(long)]
    pub keep: bool,
    /// Remove a cluster left by `sluice demo --keep`, then exit.
    #[arg(long, conflicts_with = "keep")]
    pub clean: bool,
    /// The policy to apply (its includes are followed).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Compile generic (map-only) programs instead of specialized ones.
    #[arg(long)]
    pub generic: bool,
    /// How long a connection may take before it counts as dropped.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Skip the second act (two nodes, a cross-node connection, masquerade).
    #[arg(long)]
    pub no_nodes: bool,
}

/// How to run the demo (the CLI's arguments, or a test's).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub policy: PathBuf,
    /// Name prefix of everything built; `None` picks a unique one.
    pub prefix: Option<String>,
    pub keep: bool,
    pub timeout: Duration,
    /// Take Ctrl-C/SIGTERM and tear down on them (the CLI; not inside a test harness).
    pub handle_signals: bool,
    /// Specialized programs, or the generic map-only shape.
    pub mode: Mode,
    /// Run the second act: the node datapath on a two-node lab (`nodes`).
    pub nodes: bool,
}

/// One connection tried.
#[derive(Debug, Clone)]
pub struct Row {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub proto: Proto,
    /// The reference evaluator's verdict.
    pub expected: Verdict,
    /// Why, as `file:line policy/rule` (or the isolating policies).
    pub why: String,
    /// What the real socket saw.
    pub observed: ProbeOutcome,
}

impl Row {
    /// A real connection agrees with the expectation: an allowed flow connects, a denied
    /// one is dropped (the probe times out).
    pub fn agrees(&self) -> bool {
        if self.expected.allow {
            self.observed == ProbeOutcome::Connected
        } else {
            self.observed == ProbeOutcome::TimedOut
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct DemoReport {
    pub prefix: String,
    pub rows: Vec<Row>,
    /// Whether compiled programs were attached (else observed is the unenforced network).
    pub enforced: bool,
    /// Network namespaces of the box (all gone after the run unless kept).
    pub netns: Vec<String>,
    /// What the second act saw, when it ran.
    pub nodes: Option<nodes::NodesReport>,
}

/// Set once a termination signal arrived; the signal thread then owns the exit.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Held while the main thread creates or removes kernel state, so that the signal thread
/// cleans up only between those steps, never halfway through one.
static BUSY: Mutex<()> = Mutex::new(());
/// Where the current generations are loaded, for the signal thread to unload.
static LOADED: Mutex<Vec<LoadOptions>> = Mutex::new(Vec::new());

/// Records (or forgets) a loaded generation for the signal thread.
fn track_loaded(opts: &LoadOptions, loaded: bool) {
    let mut l = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    l.retain(|o| o.root != opts.root);
    if loaded {
        l.push(opts.clone());
    }
}

pub fn run(args: DemoArgs) -> miette::Result<ExitCode> {
    if args.clean {
        let gone = topology::cleanup_stale(KEEP_PREFIX).into_diagnostic()?;
        println!(
            "removed {} namespace(s) of a kept demo{}",
            gone.len(),
            if gone.is_empty() { " (none found)" } else { "" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let opts = DemoOptions {
        policy: args.policy.unwrap_or_else(default_policy),
        prefix: args.keep.then(|| KEEP_PREFIX.to_owned()),
        keep: args.keep,
        timeout: Duration::from_millis(args.timeout_ms),
        handle_signals: true,
        mode: if args.generic {
            Mode::Generic
        } else {
            Mode::Specialized
        },
        nodes: !args.no_nodes,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run_demo(&opts, &mut out) {
        Ok(report) => {
            let bad = report.rows.iter().filter(|r| !r.agrees()).count();
            if report.enforced && bad > 0 {
                eprintln!("{bad} connection(s) disagreed with the reference evaluator");
                return Ok(ExitCode::FAILURE);
            }
            if report.nodes.as_ref().is_some_and(|n| !n.agrees()) {
                eprintln!("the second act saw something other than the story says (✗ above)");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(DemoError::Check(_)) => Ok(ExitCode::FAILURE),
        Err(e) => Err(miette::miette!("{e}")),
    }
}

/// `policies/demo.sluice`, relative to the working directory when run from the repository
/// root (so messages say `policies/demo.sluice:17`), else where the source tree is.
fn default_policy() -> PathBuf {
    let rel = Path::new(POLICY);
    if rel.is_file() {
        return rel.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(POLICY)
}

/// Runs the whole demo, writing the story to `out`.
pub fn run_demo(opts: &DemoOptions, out: &mut dyn Write) -> Result<DemoReport, DemoError> {
    let prefix = opts.prefix.clone().unwrap_or_else(topology::unique_prefix);
    if opts.handle_signals {
        install_signal_cleanup(prefix.clone())?;
    }
    let started = Instant::now();
    writeln!(
        out,
        "sluice demo: a one-node cluster in a box, on network namespaces\n"
    )?;

    // 1. Check.
    let (ir, sources, mut inv) = check(opts, out)?;

    // 2. Build the box.
    let t = Instant::now();
    let spec = spec_of(&inv)?;
    let topo = {
        let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        bail_if_interrupted()?;
        Topology::build_with_prefix(&spec, &prefix)?
    };
    for ep in inv.endpoints.iter_mut() {
        if let Some(p) = topo.pod(&ep.namespace, &ep.name) {
            ep.interface = Some(p.host_if.clone());
            ep.netns = Some(p.netns.clone());
        }
    }
    writeln!(
        out,
        "[2] built node {} with {} pods and an external host ({} ms)",
        topo.node_netns(),
        topo.pods().len(),
        t.elapsed().as_millis()
    )?;
    for p in topo.pods() {
        writeln!(
            out,
            "    {:<22} {:<13} netns {:<28} veth {}",
            format!("{}/{}", p.namespace, p.name),
            p.ip,
            p.netns,
            p.host_if
        )?;
    }
    if let Some(e) = topo.external() {
        let ips: Vec<String> = e.ips.iter().map(|i| i.to_string()).collect();
        writeln!(
            out,
            "    {:<22} {:<13} netns {:<28} veth {}\n    {:<22} {}",
            "world",
            "(ext. host)",
            e.netns,
            e.host_if,
            "",
            ips.join(", "),
        )?;
    }

    // 3. Compile and attach.
    let applied = enforce(&topo, &ir, &inv, &sources, opts, out)?;
    let enforced = true;

    // 4. Connections.
    let rows = connections(&topo, &ir, &sources, &inv, opts.timeout)?;
    print_table(out, &rows, enforced)?;

    // 5. Clean up (or keep).
    let generation = applied.generation;
    let netns: Vec<String> = topo
        .pods()
        .iter()
        .map(|p| p.netns.clone())
        .chain(topo.external().map(|e| e.netns.clone()))
        .chain([topo.node_netns().to_owned()])
        .collect();
    if opts.keep {
        print_keep_hints(out, &topo, applied.generation)?;
        // The box and the generation outlive this process; `sluice unload` and
        // `sluice demo --clean` remove them.
        applied.keep();
        std::mem::forget(topo);
    } else {
        let t = Instant::now();
        let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        let pins = applied.unload()?;
        topo.teardown()?;
        writeln!(
            out,
            "\n[5] removed everything: generation {} ({pins} pins, its links and programs), \
             {} namespaces and their veths ({} ms). Total {:.1} s.",
            generation,
            netns.len(),
            t.elapsed().as_millis(),
            started.elapsed().as_secs_f64()
        )?;
        writeln!(
            out,
            "    Run `sluice demo --keep` to leave it running and explore."
        )?;
    }
    // 6-9. The second act: two nodes, with the node datapath.
    let nodes = if opts.nodes {
        Some(nodes::run(&prefix, opts.timeout, out)?)
    } else {
        None
    };
    Ok(DemoReport {
        prefix,
        rows,
        enforced,
        netns,
        nodes,
    })
}

/// Step 1: read, lower and check the policy against the demo inventory.
fn check(opts: &DemoOptions, out: &mut dyn Write) -> Result<(Ir, SourceMap, Inventory), DemoError> {
    let inv = Inventory::parse(INVENTORY_NAME, INVENTORY)
        .map_err(|e| DemoError::Inventory(e.to_string()))?;
    let mut sources = SourceMap::new();
    let (docs, mut diags) = load::load_paths(std::slice::from_ref(&opts.policy), &mut sources);
    let name = opts.policy.display().to_string();
    let ir = if diags.has_errors() {
        None
    } else {
        let docs: Vec<_> = docs.into_iter().map(|(_, d)| d).collect();
        let (ir, lower_diags) = ir::lower(&docs);
        diags.extend(lower_diags);
        let named = inv.named_ports();
        Some(ir::check::check(ir, Some(&named), &mut diags))
    };
    let diags: Diagnostics = diags.sorted();
    let files = sources.ids().count();
    writeln!(
        out,
        "[1] sluice check {name}{}",
        match files {
            0 | 1 => String::new(),
            n => format!(" (and {} included file(s))", n - 1),
        }
    )?;
    let notes = diags.count(Severity::Note);
    let shown = Diagnostics {
        items: diags
            .items
            .iter()
            .filter(|d| d.severity != Severity::Note)
            .cloned()
            .collect(),
    };
    if !shown.is_empty() {
        for line in render_plain(&shown, &sources).lines() {
            writeln!(out, "    {line}")?;
        }
    }
    let (errors, warnings) = (diags.count(Severity::Error), diags.count(Severity::Warning));
    let ir = match ir {
        Some(ir) if errors == 0 => ir,
        _ => {
            writeln!(out, "    {errors} error(s), {warnings} warning(s)")?;
            return Err(DemoError::Check(name));
        }
    };
    writeln!(
        out,
        "    ok: {} policies, {} rules{}{}; {} warning(s), {} note(s)",
        ir.policies.len(),
        ir.rules.len(),
        if ir.masquerade.is_some() {
            ", masquerade"
        } else {
            ""
        },
        match ir.pools.len() {
            0 => String::new(),
            n => format!(", {n} IPAM pools"),
        },
        warnings,
        notes
    )?;
    Ok((ir, sources, inv))
}

/// The box for an inventory: a pod per endpoint (first IPv4), the first node's address on
/// the node, and the external host.
fn spec_of(inv: &Inventory) -> Result<TopologySpec, DemoError> {
    let mut spec = TopologySpec::new();
    for ep in &inv.endpoints {
        let ip = ep
            .ips
            .iter()
            .find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .ok_or_else(|| {
                DemoError::Inventory(format!("{}/{} has no IPv4 address", ep.namespace, ep.name))
            })?;
        spec = spec.pod(&ep.namespace, &ep.name, ip);
    }
    if let Some(IpAddr::V4(ip)) = inv.nodes.first().and_then(|n| n.ips.first()) {
        spec = spec.node_ip(*ip);
    }
    // The world client first: the kernel picks the first address as the source.
    Ok(spec
        .external(WORLD_CLIENT)
        .external(PAYMENTS)
        .external(SANDBOX))
}

/// Step 3: compile the policy for the box and attach it as one generation.
fn enforce(
    topo: &Topology,
    ir: &Ir,
    inv: &Inventory,
    sources: &SourceMap,
    opts: &DemoOptions,
    out: &mut dyn Write,
) -> Result<Applied, DemoError> {
    let t = Instant::now();
    let inputs: Vec<(String, Vec<u8>)> = sources
        .ids()
        .map(|id| {
            let f = sources.file(id);
            (f.name.clone(), f.text.clone().into_bytes())
        })
        .chain([(INVENTORY_NAME.to_owned(), INVENTORY.as_bytes().to_vec())])
        .collect();
    let copts = CompileOptions {
        codegen: CodegenOptions {
            mode: opts.mode,
            ..CodegenOptions::default()
        },
        node: None,
        ..CompileOptions::default()
    };
    let bundle = compile::compile(ir, inv, sources, &inputs, &copts, &mut |_| {})
        .map_err(|e| DemoError::Compile(e.to_string()))?
        .bundle;
    let compiled = t.elapsed();
    let load = if opts.keep {
        // `sluice unload` (default paths) removes what a kept demo leaves.
        LoadOptions::default()
    } else {
        LoadOptions {
            root: PathBuf::from(sluice_loader::pin::SLUICE_ROOT)
                .join(format!("demo-{}", topo.prefix())),
            state_dir: PathBuf::from(format!("/run/sluice-demo-{}", topo.prefix())),
            node_netns: None,
        }
    };
    let load = LoadOptions {
        node_netns: Some(topo.node_netns().to_owned()),
        ..load
    };
    let t = Instant::now();
    let report = {
        let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        bail_if_interrupted()?;
        track_loaded(&load, true);
        generation::apply_bundle(&bundle, &load).map_err(|e| {
            track_loaded(&load, false);
            DemoError::Apply(e.to_string())
        })?
    };
    let applied = Applied {
        opts: Some(load),
        generation: report.generation,
    };
    writeln!(
        out,
        "[3] compiled ({:?} mode) in {} ms: {} programs for {} hooks ({} distinct after dedup)\n    \
         applied generation {} in {} ms: every hook flipped with one tcx link each",
        opts.mode,
        compiled.as_millis(),
        2 * inv.endpoints.len(),
        report.hooks.len(),
        report.programs_loaded,
        report.generation,
        t.elapsed().as_millis()
    )?;
    Ok(applied)
}

/// A loaded generation; dropping it unloads it (before the topology goes).
struct Applied {
    opts: Option<LoadOptions>,
    generation: u64,
}

impl Applied {
    fn unload(mut self) -> Result<usize, DemoError> {
        let Some(opts) = self.opts.take() else {
            return Ok(0);
        };
        let r = generation::unload(&opts).map_err(|e| DemoError::Apply(e.to_string()))?;
        cleanup_dirs(&opts);
        track_loaded(&opts, false);
        Ok(r.removed.len())
    }

    /// Leaves the generation loaded (`--keep`).
    fn keep(mut self) {
        self.opts = None;
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        if let Some(opts) = self.opts.take() {
            if let Err(e) = generation::unload(&opts) {
                tracing::warn!(error = %e, "demo: unloading the generation failed");
            }
            cleanup_dirs(&opts);
        }
    }
}

/// The demo's own pin root and state directory go once unloaded (never the defaults).
fn cleanup_dirs(opts: &LoadOptions) {
    if opts.root != Path::new(sluice_loader::pin::SLUICE_ROOT) {
        let _ = std::fs::remove_dir_all(&opts.root);
    }
    if opts.state_dir != Path::new("/run/sluice") {
        let _ = std::fs::remove_dir_all(&opts.state_dir);
    }
}

/// An end of a planned connection, resolved against the box and the inventory.
struct End {
    label: String,
    /// The namespace its sockets live in.
    netns: String,
    ip: Ipv4Addr,
    flow: FlowEnd,
}

fn resolve_end(name: &str, topo: &Topology, inv: &Inventory) -> Result<End, DemoError> {
    let ext = topo
        .external()
        .ok_or_else(|| DemoError::Plan("the external host".into()))?;
    if name == "world" {
        return Ok(End {
            label: format!("world ({WORLD_CLIENT})"),
            netns: ext.netns.clone(),
            ip: WORLD_CLIENT,
            flow: FlowEnd::Ip(IpAddr::V4(WORLD_CLIENT)),
        });
    }
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(End {
            label: name.to_owned(),
            netns: ext.netns.clone(),
            ip,
            flow: FlowEnd::Ip(IpAddr::V4(ip)),
        });
    }
    let (ns, pod) = name
        .split_once('/')
        .ok_or_else(|| DemoError::Plan(name.into()))?;
    let idx = inv
        .endpoint_index(ns, pod)
        .ok_or_else(|| DemoError::Plan(name.into()))?;
    let p = topo
        .pod(ns, pod)
        .ok_or_else(|| DemoError::Plan(name.into()))?;
    Ok(End {
        label: name.to_owned(),
        netns: p.netns.clone(),
        ip: p.ip,
        flow: FlowEnd::Endpoint(idx),
    })
}

/// Step 4: servers where the plan connects to, then every probe at once.
fn connections(
    topo: &Topology,
    ir: &Ir,
    sources: &SourceMap,
    inv: &Inventory,
    timeout: Duration,
) -> Result<Vec<Row>, DemoError> {
    let mut planned = Vec::new();
    let mut serve: BTreeMap<String, BTreeSet<(u16, Proto)>> = BTreeMap::new();
    for &(from, to, port, proto) in PLAN {
        let (from, to) = (resolve_end(from, topo, inv)?, resolve_end(to, topo, inv)?);
        serve
            .entry(to.netns.clone())
            .or_default()
            .insert((port, proto));
        let l4 = match proto {
            Proto::Tcp => L4::Tcp,
            Proto::Udp => L4::Udp,
        };
        let flow = Flow {
            src: from.flow.clone(),
            dst: to.flow.clone(),
            l4: L4Match::Port { proto: l4, port },
        };
        let expected = eval::evaluate(ir, inv, &flow)?;
        planned.push((from, to, port, proto, expected));
    }
    let _servers: Vec<Servers> = serve
        .iter()
        .map(|(netns, ports)| {
            let ports: Vec<(u16, Proto)> = ports.iter().copied().collect();
            topo.serve(netns, &ports)
        })
        .collect::<Result<_, _>>()?;
    let probes: Vec<Probe> = planned
        .iter()
        .map(|(from, to, port, proto, _)| Probe {
            from_netns: from.netns.clone(),
            to: to.ip,
            port: *port,
            proto: *proto,
        })
        .collect();
    bail_if_interrupted()?;
    let outcomes = probe_many(&probes, timeout);
    planned
        .into_iter()
        .zip(outcomes)
        .map(|((from, to, port, proto, expected), observed)| {
            Ok(Row {
                why: why(ir, sources, &expected),
                from: from.label,
                to: to.label,
                port,
                proto,
                expected,
                observed: observed?,
            })
        })
        .collect()
}

/// `file:line` of a span's start.
fn loc(sources: &SourceMap, span: sluice_compiler::source::ast::Span) -> String {
    sources
        .location(span)
        .map_or_else(|| "?".into(), |l| format!("{}:{}", l.file, l.line))
}

/// `policies/demo.sluice:17 frontend/#1` (a named rule shows its name).
fn rule_ref(ir: &Ir, sources: &SourceMap, r: RuleId) -> String {
    let rule = &ir.rules[r];
    let policy = &ir.policies[ir.policy_of(r)];
    let name = rule
        .name
        .clone()
        .unwrap_or_else(|| format!("#{}", rule.index + 1));
    format!("{} {}/{name}", loc(sources, ir.rule_span(r)), policy.name)
}

/// The reason for a verdict: the deciding rules, and for a direction that denies without
/// any rule, the policies that isolate it.
fn why(ir: &Ir, sources: &SourceMap, v: &Verdict) -> String {
    let mut parts: Vec<String> = v
        .deciding_rules()
        .into_iter()
        .map(|r| rule_ref(ir, sources, r))
        .collect();
    let dirs: [&Option<DirectionVerdict>; 2] = [&v.egress, &v.ingress];
    for d in dirs.into_iter().flatten() {
        if d.allow || d.reason != Reason::Isolated {
            continue;
        }
        let dir = d.direction.as_str();
        // The first isolating policy with its place; the others by name.
        let mut by = String::new();
        for (i, p) in d.isolated_by.iter().enumerate() {
            let p = &ir.policies[*p];
            match i {
                0 => by.push_str(&format!("{} {}", p.name, loc(sources, p.name_span))),
                1 => by.push_str(&format!(" (+ {}", p.name)),
                _ => by.push_str(&format!(", {}", p.name)),
            }
        }
        if d.isolated_by.len() > 1 {
            by.push(')');
        }
        let passed = d
            .passed_by
            .map(|r| format!("passed by {}, ", rule_ref(ir, sources, r)))
            .unwrap_or_default();
        parts.push(format!("{dir}: {passed}isolated by {by}"));
    }
    if parts.is_empty() {
        return "no policy restricts it".into();
    }
    let mut s = parts.join("; ");
    if v.allow && v.audited {
        s.push_str(" (audited)");
    }
    s
}

fn verdict_word(v: &Verdict) -> &'static str {
    match (v.allow, v.audited) {
        (true, true) => "allow+audit",
        (true, false) => "allow",
        (false, _) => "deny",
    }
}

fn observed_word(o: ProbeOutcome) -> &'static str {
    match o {
        ProbeOutcome::Connected => "allow",
        ProbeOutcome::TimedOut => "deny",
        ProbeOutcome::Refused => "refused",
        ProbeOutcome::Reset => "reset",
        ProbeOutcome::Unreachable => "unreachable",
    }
}

fn print_table(out: &mut dyn Write, rows: &[Row], enforced: bool) -> Result<(), DemoError> {
    writeln!(
        out,
        "\n[4] {} real connections (TCP handshake + echo, UDP echo); a dropped one times out",
        rows.len()
    )?;
    let observed_head = if enforced { "OBSERVED" } else { "UNENFORCED" };
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let mark = if !enforced {
                ""
            } else if r.agrees() {
                " ✓"
            } else {
                " ✗"
            };
            [
                r.from.clone(),
                r.to.clone(),
                format!("{}/{}", r.port, r.proto),
                verdict_word(&r.expected).to_owned(),
                format!("{}{mark}", observed_word(r.observed)),
            ]
        })
        .collect();
    let head = ["FROM", "TO", "PORT", "EXPECTED", observed_head];
    let mut w = head.map(|h| h.chars().count());
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let line = |c: &[&str; 5]| -> String {
        c.iter()
            .enumerate()
            .map(|(i, s)| format!("{s}{}", " ".repeat(w[i] - s.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "    {}  WHY (deciding rule)", line(&head))?;
    for (c, r) in cells.iter().zip(rows) {
        let c: [&str; 5] = [&c[0], &c[1], &c[2], &c[3], &c[4]];
        writeln!(out, "    {}  {}", line(&c), r.why)?;
    }
    let agree = rows.iter().filter(|r| r.agrees()).count();
    if enforced {
        writeln!(
            out,
            "    {agree}/{} connections did what the reference evaluator expects",
            rows.len()
        )?;
    } else {
        writeln!(
            out,
            "    (no policy attached: {agree}/{} agree by chance; every connection is allowed)",
            rows.len()
        )?;
    }
    Ok(())
}

fn print_keep_hints(
    out: &mut dyn Write,
    topo: &Topology,
    generation: u64,
) -> Result<(), DemoError> {
    let pod = |ns: &str, name: &str| topo.pod(ns, name).map(|p| (p.netns.clone(), p.ip));
    writeln!(
        out,
        "\n[5] kept running (generation {generation} stays attached). Explore:"
    )?;
    let mut hints: Vec<(String, &str)> = Vec::new();
    if let (Some((fe, _)), Some((_, api))) = (pod("x", "frontend"), pod("y", "api")) {
        hints.push((
            format!("ip netns exec {fe} curl -m1 http://{api}:8080/"),
            "frontend → api (allowed; no server listens now)",
        ));
        hints.push((format!("ip netns exec {fe} ip addr"), "a pod's view"));
    }
    hints.push(("sluice status".into(), "the generation and its hooks"));
    hints.push((
        format!("ip netns list | grep {}", topo.prefix()),
        "every namespace of the box",
    ));
    hints.push((
        format!("ip -n {} link", topo.node_netns()),
        "the pods' host-side veths",
    ));
    hints.push((
        "sluice unload && sluice demo --clean".into(),
        "detach the policy, remove the box",
    ));
    let width = hints
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0);
    for (cmd, what) in hints {
        writeln!(out, "    {cmd:<width$}  # {what}")?;
    }
    Ok(())
}

fn bail_if_interrupted() -> Result<(), DemoError> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        // The signal thread is cleaning up and will exit the process.
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

/// On Ctrl-C or SIGTERM: wait until no kernel step is half done, remove everything with
/// our prefix, and exit with 130.
fn install_signal_cleanup(prefix: String) -> Result<(), DemoError> {
    sluice_loader::sys::signal::on_termination(move |sig| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\nsluice demo: signal {sig}, removing the cluster ...");
        let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = std::mem::take(&mut *LOADED.lock().unwrap_or_else(|e| e.into_inner()));
        for opts in loaded {
            match generation::unload(&opts) {
                Ok(r) => eprintln!("sluice demo: unloaded ({} pins)", r.removed.len()),
                Err(e) => eprintln!("sluice demo: unload failed: {e}"),
            }
            cleanup_dirs(&opts);
        }
        nodes::remove_state(&prefix);
        match topology::cleanup_stale(&prefix) {
            Ok(gone) => eprintln!("sluice demo: removed {} namespace(s)", gone.len()),
            Err(e) => eprintln!("sluice demo: cleanup failed: {e}"),
        }
        std::process::exit(130);
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_names_only_inventory_endpoints_and_the_policy_checks_clean() {
        let opts = DemoOptions {
            policy: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(POLICY),
            prefix: None,
            keep: false,
            timeout: Duration::from_millis(1),
            handle_signals: false,
            mode: Mode::Specialized,
            nodes: false,
        };
        let mut out = Vec::new();
        let (ir, sources, inv) = check(&opts, &mut out).expect("demo policy checks");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("ok: "), "{text}");
        for &(from, to, port, proto) in PLAN {
            for end in [from, to] {
                if end == "world" || end.parse::<Ipv4Addr>().is_ok() {
                    continue;
                }
                let (ns, name) = end.split_once('/').unwrap();
                assert!(inv.endpoint_index(ns, name).is_some(), "{end}");
            }
            let _ = (port, proto);
        }
        // Every row's reason names a file:line, and the plan has allowed and denied flows.
        let spec = spec_of(&inv).unwrap();
        assert_eq!(spec.pods.len(), inv.endpoints.len());
        let mut allowed = 0;
        for &(from, to, port, proto) in PLAN {
            let end = |s: &str| -> FlowEnd {
                if s == "world" {
                    return FlowEnd::Ip(IpAddr::V4(WORLD_CLIENT));
                }
                if let Ok(ip) = s.parse::<Ipv4Addr>() {
                    return FlowEnd::Ip(IpAddr::V4(ip));
                }
                let (ns, name) = s.split_once('/').unwrap();
                FlowEnd::Endpoint(inv.endpoint_index(ns, name).unwrap())
            };
            let l4 = if proto == Proto::Tcp {
                L4::Tcp
            } else {
                L4::Udp
            };
            let flow = Flow {
                src: end(from),
                dst: end(to),
                l4: L4Match::Port { proto: l4, port },
            };
            let v = eval::evaluate(&ir, &inv, &flow).unwrap();
            allowed += usize::from(v.allow);
            let reason = why(&ir, &sources, &v);
            assert!(reason.contains(".sluice:"), "{from} → {to}: {reason}");
        }
        assert!(allowed >= 3 && allowed < PLAN.len(), "{allowed} allowed");
    }
}
