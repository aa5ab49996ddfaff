//! The NetworkPolicy conformance corpus: its file format and a runner over any engine.
//!
//! The corpus (`shared/conformance/netpol/*.yaml`, translated from the Kubernetes e2e suite by
//! people outside this project; see its README) gives, per case, a cluster (namespaces, pods
//! with labels, IPs and container ports), a set of NetworkPolicies and the expected verdict of
//! every (from, to, port, protocol) probe. A case becomes an [`Inventory`] and an [`Ir`] (the
//! policies go through the ordinary NetworkPolicy reader), and each probe becomes an
//! [`eval::Flow`]. The runner takes the engine as an [`Engine`], so the reference evaluator and
//! the kernel datapath (loader, `sluice conformance run --engine kernel`) are judged by the
//! same table.

use crate::diag::Diagnostics;
use crate::eval::{self, Flow, FlowEnd};
use crate::ir::{self, Ir, L4, L4Match};
use crate::resolve::Inventory;
use crate::resolve::inventory::{ContainerPort, Endpoint, Labels, Namespace};
use crate::source::{SourceMap, k8s};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// One case file.
#[derive(Clone, Debug, Deserialize)]
pub struct Case {
    /// The file name without `.yaml` (filled in by [`Case::load`]).
    #[serde(skip)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub notes: Option<String>,
    pub namespaces: BTreeMap<String, Labels>,
    pub pods: BTreeMap<String, Pod>,
    /// NetworkPolicy manifests, kept as YAML values for the reader.
    #[serde(default)]
    pub policies: Vec<serde_norway::Value>,
    pub probes: Vec<Probe>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Pod {
    #[serde(default)]
    pub labels: Labels,
    pub ip: IpAddr,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Probe {
    /// `ns/pod`.
    pub from: String,
    /// `ns/pod`, or an IP address outside the cluster model.
    pub to: String,
    pub port: u16,
    pub protocol: L4,
    pub expect: Expect,
    #[serde(default)]
    pub loopback: bool,
    #[serde(default)]
    pub asserted: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{name}:{line}:{column}: {message}")]
    Format {
        name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}: {1}")]
    Invalid(String, String),
}

impl Case {
    pub fn load(path: &Path) -> Result<Case, CaseError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CaseError::Io(path.display().to_string(), e))?;
        let mut case: Case = serde_norway::from_str(&text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            CaseError::Format {
                name: path.display().to_string(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        case.name = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        Ok(case)
    }

    /// The cluster of the case as an inventory: one endpoint per pod.
    pub fn inventory(&self) -> Result<Inventory, CaseError> {
        let mut inv = Inventory {
            namespaces: self
                .namespaces
                .iter()
                .map(|(name, labels)| Namespace {
                    name: name.clone(),
                    labels: labels.clone(),
                })
                .collect(),
            ..Default::default()
        };
        for (key, pod) in &self.pods {
            let (ns, name) = key.split_once('/').ok_or_else(|| {
                CaseError::Invalid(self.name.clone(), format!("pod `{key}` is not ns/name"))
            })?;
            inv.endpoints.push(Endpoint {
                name: name.into(),
                namespace: ns.into(),
                labels: pod.labels.clone(),
                ips: vec![pod.ip],
                ports: pod.ports.clone(),
                ..Default::default()
            });
        }
        inv.validate()
            .map_err(|m| CaseError::Invalid(self.name.clone(), m))?;
        Ok(inv)
    }
}

/// All `case-*.yaml` files of a directory, sorted by name.
/// The corpus directory: `$SLUICE_CONFORMANCE_DIR`, else `shared/conformance/netpol` beside
/// `start` or beside one of its ancestors (the project sits next to `shared/`; worktrees and
/// nested checkouts sit deeper).
pub fn corpus_dir(start: &std::path::Path) -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_CONFORMANCE_DIR") {
        return Some(dir.into());
    }
    start
        .ancestors()
        .map(|a| a.join("shared/conformance/netpol"))
        .find(|p| p.is_dir())
}

pub fn case_files(dir: &Path) -> Result<Vec<PathBuf>, CaseError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CaseError::Io(dir.display().to_string(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("case-") && n.ends_with(".yaml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A case made ready to run: inventory, policies read and lowered.
pub struct Prepared {
    pub inventory: Inventory,
    pub ir: Ir,
    pub sources: SourceMap,
    /// Everything the reader, lowering and checks said (no errors, or `prepare` fails).
    pub diags: Diagnostics,
}

/// Reads the case's policies through the NetworkPolicy reader (as one multi-document file)
/// and lowers them. Errors come back with the source map to render them.
pub fn prepare(case: &Case) -> Result<Prepared, (CaseError, Option<(SourceMap, Diagnostics)>)> {
    let inventory = case.inventory().map_err(|e| (e, None))?;
    let mut text = String::new();
    for p in &case.policies {
        let yaml = serde_norway::to_string(p)
            .map_err(|e| (CaseError::Invalid(case.name.clone(), e.to_string()), None))?;
        text.push_str("---\n");
        text.push_str(&yaml);
    }
    let mut sources = SourceMap::new();
    let id = sources.add(format!("{}.yaml#policies", case.name), text.clone());
    let (doc, mut diags) = k8s::read_with_diags(id, &text);
    let (ir, lower_diags) = ir::lower(&[doc]);
    diags.extend(lower_diags);
    let named = inventory.named_ports();
    let ir = ir::check::check(ir, Some(&named), &mut diags);
    if diags.has_errors() {
        let err = CaseError::Invalid(case.name.clone(), "policies rejected".into());
        return Err((err, Some((sources, diags))));
    }
    Ok(Prepared {
        inventory,
        ir,
        sources,
        diags,
    })
}

impl Prepared {
    /// The flow a probe describes.
    pub fn flow(&self, probe: &Probe) -> Result<Flow, String> {
        let end = |s: &str| -> Result<FlowEnd, String> {
            if let Ok(ip) = s.parse::<IpAddr>() {
                return Ok(FlowEnd::Ip(ip));
            }
            let (ns, name) = s.split_once('/').ok_or(format!("bad probe end `{s}`"))?;
            self.inventory
                .endpoint_index(ns, name)
                .map(FlowEnd::Endpoint)
                .ok_or(format!("no pod `{s}` in the case"))
        };
        let l4 = match probe.protocol {
            L4::Icmp => L4Match::Icmp {
                icmp_type: 8,
                code: 0,
            },
            proto => L4Match::Port {
                proto,
                port: probe.port,
            },
        };
        Ok(Flow {
            src: end(&probe.from)?,
            dst: end(&probe.to)?,
            l4,
        })
    }

    /// The reference evaluator's verdict, with the deciding rules as `file:line` for reports.
    pub fn reference(&self, flow: &Flow) -> Result<(bool, String), String> {
        let v = eval::evaluate(&self.ir, &self.inventory, flow).map_err(|e| e.to_string())?;
        let mut why = Vec::new();
        for d in [&v.egress, &v.ingress].into_iter().flatten() {
            let rules: Vec<String> = d
                .deciding
                .iter()
                .map(|r| {
                    let at = self
                        .sources
                        .location(self.ir.rule_span(*r))
                        .map_or_else(String::new, |l| format!(" at {l}"));
                    format!("{}{at}", self.ir.describe_rule(*r))
                })
                .collect();
            let dir = d.direction.as_str();
            let verdict = if d.allow { "allow" } else { "deny" };
            let detail = match d.reason {
                eval::Reason::Isolated => {
                    let by: Vec<String> = d
                        .isolated_by
                        .iter()
                        .map(|p| format!("`{}`", self.ir.policies[*p].name))
                        .collect();
                    format!("isolated by {}, no rule matched", by.join(", "))
                }
                eval::Reason::Unrestricted => "no policy applies".into(),
                _ => rules.join(", "),
            };
            why.push(format!("{dir} {verdict}: {detail}"));
        }
        Ok((v.allow, why.join("; ")))
    }
}

/// One probe the engine got wrong (or could not run).
#[derive(Clone, Debug)]
pub struct CellFailure {
    pub probe: Probe,
    /// What the engine said; `Err` when it failed to answer.
    pub got: Result<bool, String>,
    /// The engine's explanation, if any.
    pub why: String,
}

impl std::fmt::Display for CellFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.probe;
        let want = match p.expect {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        };
        let got = match &self.got {
            Ok(true) => "allow".to_string(),
            Ok(false) => "deny".to_string(),
            Err(e) => format!("error: {e}"),
        };
        write!(
            f,
            "{} -> {} {}/{}: expected {want}, got {got}",
            p.from, p.to, p.port, p.protocol
        )?;
        if !self.why.is_empty() {
            write!(f, " [{}]", self.why)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
pub struct CaseReport {
    pub name: String,
    /// Which check of the engine this is (see [`Engine::checks`]).
    pub check: String,
    pub passed: usize,
    pub failed: Vec<CellFailure>,
    pub skipped_loopback: usize,
    /// The case could not be prepared or run (then every cell it would run counts as failed).
    pub error: Option<String>,
}

/// What an engine answers for one cell: allowed?, and an explanation for reports; `Err`
/// when it could not answer.
pub type Answer = Result<(bool, String), String>;

/// Something that answers probe cells. An engine may make several independent checks per
/// case (the kernel engine runs the attached programs on crafted packets for every cell, and
/// real sockets for a sample), each tallied on its own.
pub trait Engine {
    /// The checks, in the order [`Engine::run_case`] returns their answers.
    fn checks(&self) -> Vec<String>;

    /// Answers `cells` (the case's probes, loopback cells already left out unless asked
    /// for): one `Vec` per check, aligned with `cells`, `None` where that check did not
    /// look at the cell. `Err` when the case could not be run at all.
    fn run_case(
        &mut self,
        case: &Case,
        prep: &Prepared,
        cells: &[&Probe],
    ) -> Result<Vec<Vec<Option<Answer>>>, String>;
}

/// Any per-cell function is an engine with one check, `verdict` (the reference evaluator is
/// one: [`reference_engine`]).
impl<F: FnMut(&Prepared, &Flow) -> Answer> Engine for F {
    fn checks(&self) -> Vec<String> {
        vec!["verdict".into()]
    }

    fn run_case(
        &mut self,
        _case: &Case,
        prep: &Prepared,
        cells: &[&Probe],
    ) -> Result<Vec<Vec<Option<Answer>>>, String> {
        Ok(vec![
            cells
                .iter()
                .map(|p| Some(prep.flow(p).and_then(|flow| self(prep, &flow))))
                .collect(),
        ])
    }
}

impl CaseReport {
    /// Counts one answer against the probe's expectation.
    pub fn tally(&mut self, probe: &Probe, answer: Answer) {
        let want = probe.expect == Expect::Allow;
        match answer {
            Ok((got, _)) if got == want => self.passed += 1,
            Ok((got, why)) => self.failed.push(CellFailure {
                probe: probe.clone(),
                got: Ok(got),
                why,
            }),
            Err(e) => self.failed.push(CellFailure {
                probe: probe.clone(),
                got: Err(e),
                why: String::new(),
            }),
        }
    }
}

/// The cells of a case an engine runs: loopback cells (a pod to itself; undefined in
/// Kubernetes) are left out unless `include_loopback`. Also returns how many were left out.
pub fn cells(case: &Case, include_loopback: bool) -> (Vec<&Probe>, usize) {
    let cells: Vec<&Probe> = case
        .probes
        .iter()
        .filter(|p| include_loopback || !p.loopback)
        .collect();
    let skipped = case.probes.len() - cells.len();
    (cells, skipped)
}

/// Runs every cell of a prepared case through `engine`: one report per check.
pub fn run_prepared_checks(
    case: &Case,
    prep: &Prepared,
    include_loopback: bool,
    engine: &mut dyn Engine,
) -> Vec<CaseReport> {
    let (cells, skipped) = cells(case, include_loopback);
    let checks = engine.checks();
    let mut reports: Vec<CaseReport> = checks
        .iter()
        .map(|c| CaseReport {
            name: case.name.clone(),
            check: c.clone(),
            skipped_loopback: skipped,
            ..Default::default()
        })
        .collect();
    match engine.run_case(case, prep, &cells) {
        Ok(answers) => {
            for (report, answers) in reports.iter_mut().zip(answers) {
                for (probe, answer) in cells.iter().zip(answers) {
                    if let Some(a) = answer {
                        report.tally(probe, a);
                    }
                }
            }
        }
        Err(e) => {
            // Every cell fails the first check; the others (samples of it) only carry the
            // error, so the cell counts stay honest.
            for (k, report) in reports.iter_mut().enumerate() {
                if k == 0 {
                    for probe in &cells {
                        report.tally(probe, Err("case not run".into()));
                    }
                }
                report.error = Some(e.clone());
            }
        }
    }
    reports
}

/// Runs every probe of a prepared case through a one-check engine (the first check of any
/// engine).
pub fn run_prepared(
    case: &Case,
    prep: &Prepared,
    include_loopback: bool,
    engine: &mut dyn Engine,
) -> CaseReport {
    run_prepared_checks(case, prep, include_loopback, engine)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// The reference engine: [`Prepared::reference`].
pub fn reference_engine(prep: &Prepared, flow: &Flow) -> Answer {
    prep.reference(flow)
}

/// Loads, prepares and runs one case file with `engine`: one report per check. A case that
/// cannot be loaded or prepared reports every cell it would have run as failed.
pub fn run_file_checks(
    path: &Path,
    include_loopback: bool,
    engine: &mut dyn Engine,
) -> Vec<CaseReport> {
    let checks = engine.checks();
    let failed_all = |name: String, error: String, case: Option<&Case>| -> Vec<CaseReport> {
        checks
            .iter()
            .enumerate()
            .map(|(k, check)| {
                let mut r = CaseReport {
                    name: name.clone(),
                    check: check.clone(),
                    error: Some(error.clone()),
                    ..Default::default()
                };
                if let Some(case) = case {
                    let (cells, skipped) = cells(case, include_loopback);
                    r.skipped_loopback = skipped;
                    for p in cells.into_iter().filter(|_| k == 0) {
                        r.tally(p, Err("case not prepared".into()));
                    }
                }
                r
            })
            .collect()
    };
    let case = match Case::load(path) {
        Ok(c) => c,
        Err(e) => return failed_all(path.display().to_string(), e.to_string(), None),
    };
    match prepare(&case) {
        Ok(prep) => run_prepared_checks(&case, &prep, include_loopback, engine),
        Err((e, diags)) => {
            let mut msg = e.to_string();
            if let Some((sm, d)) = diags {
                msg.push('\n');
                msg.push_str(&crate::diag::render_plain(&d, &sm));
            }
            failed_all(case.name.clone(), msg, Some(&case))
        }
    }
}

/// [`run_file_checks`] for a one-check engine (the first check of any engine).
pub fn run_file(path: &Path, include_loopback: bool, engine: &mut dyn Engine) -> CaseReport {
    run_file_checks(path, include_loopback, engine)
        .into_iter()
        .next()
        .unwrap_or_default()
}
