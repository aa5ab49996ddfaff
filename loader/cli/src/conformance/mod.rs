//! The kernel conformance engine: every cell of a NetworkPolicy truth table checked against
//! sluice's generated programs, loaded and attached in a real "cluster in a box".
//!
//! Per case ([`KernelEngine`] implements [`Engine`]):
//!
//! 1. **Topology.** One netns per pod, a veth from each to the node namespace, and an
//!    external host for probe destinations outside the cluster ([`crate::topology`]). Cases
//!    with the same pods (all 58 of the netpol corpus) share one box: the next case's policy
//!    is swapped in, which exercises the swap path (`spec/swap.md`) 57 times per run.
//! 2. **Compile and load.** The case's IR and inventory (each pod placed on its host veth)
//!    become a bundle ([`compile::compile`], the same driver as `sluice compile`), loaded with
//!    [`apply_bundle`], the same code as `sluice load`. Conntrack is cleared so no case sees
//!    another's flows (a generation that needs no conntrack may have no table yet).
//! 3. **BPF_PROG_TEST_RUN, every cell** (SCTP included): a crafted packet
//!    ([`packet::craft`]) runs through the source's `from_ep` (its egress policy, tcx ingress
//!    of its host veth) and, for a pod destination, the destination's `to_ep` (its ingress
//!    policy, tcx egress). The programs are opened by the ids their hooks' pinned links run
//!    right now, so the programs tested are the ones enforcing, not copies. Allowed iff both
//!    return `TC_ACT_OK`.
//! 4. **Real sockets, a sample** ([`sample::sample`]): TCP and UDP echo probes between the
//!    namespaces, run in parallel. Connected means allowed; a timeout means dropped.
//!
//! Everything the engine made (links, pins, state, namespaces) is removed when a case's box
//! is replaced, when the engine is dropped, and when a case panics (the panic is caught and
//! reported as that case's failure).

pub mod packet;
pub mod sample;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::MapData;
use sluice_compiler::bundle::{EndpointRef, TcxHook};
use sluice_compiler::compile::{self, CompileOptions};
use sluice_compiler::conformance::{Answer, Case, Engine, Probe};
use sluice_compiler::datapath::{CodegenOptions, Mode, keys};
use sluice_compiler::ir::L4;

use crate::topology::probe::{self as sockprobe, ProbeOutcome, Proto, Servers};
use crate::topology::{self, Topology, TopologySpec};
use sluice_loader::generation::{self, LoadOptions};
use sluice_loader::sys::bpf as sysbpf;
use sluice_loader::sys::netns;

/// bpffs directory under which each engine run gets its own loader root.
pub const PIN_BASE: &str = "/sys/fs/bpf/sluice-conformance";
/// Directory under which each engine run keeps its loader state (lock, state.json).
pub const STATE_BASE: &str = "/run/sluice-conformance";

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

/// How the kernel engine runs.
#[derive(Debug, Clone)]
pub struct KernelOptions {
    /// Code shape of the decisions (`--mode`).
    pub mode: Mode,
    /// Cells per case also checked with real sockets (0: none).
    pub sample: usize,
    /// Seed of the socket sample.
    pub seed: u64,
    /// How long a socket probe waits before it counts as dropped.
    pub timeout: Duration,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions {
            mode: Mode::Specialized,
            sample: 24,
            seed: 1,
            timeout: Duration::from_millis(250),
        }
    }
}

/// Where one case's time went.
#[derive(Debug, Clone, Default)]
pub struct CaseTiming {
    pub case: String,
    /// Building the box (zero when the previous case's box was reused).
    pub topology: Duration,
    pub compile: Duration,
    /// `apply_bundle`: load, verify, flip.
    pub apply: Duration,
    pub test_run: Duration,
    pub sockets: Duration,
    pub total: Duration,
    /// Hooks flipped with BPF_LINK_UPDATE (the box was reused), hooks that kept their program
    /// (same artifact as the case before), and hooks newly attached.
    pub replaced: usize,
    pub unchanged: usize,
    pub attached: usize,
    /// Distinct programs the generation loaded.
    pub programs: usize,
}

/// The box one or more cases run in, and the loader state in it. Dropping it unloads the
/// generation, stops the servers and removes the namespaces, in that order.
struct Cluster {
    spec: TopologySpec,
    load: LoadOptions,
    servers: Vec<Servers>,
    served: BTreeSet<(String, u16, Proto)>,
    topo: Topology,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = generation::unload(&self.load) {
            tracing::warn!(error = %e, "unloading the conformance generation failed");
        }
        let _ = std::fs::remove_dir_all(&self.load.root);
        let _ = std::fs::remove_dir_all(&self.load.state_dir);
        self.servers.clear();
        // `topo` removes the namespaces when it drops, after this.
    }
}

/// The kernel engine; see the module docs.
pub struct KernelEngine {
    opts: KernelOptions,
    cluster: Option<Cluster>,
    /// Every case's timings, in run order.
    pub timings: Vec<CaseTiming>,
}

impl KernelEngine {
    /// A new engine. Removes what crashed earlier runs left (their pid is gone).
    pub fn new(opts: KernelOptions) -> KernelEngine {
        if let Err(e) = topology::cleanup_dead_runs() {
            tracing::warn!(error = %e, "removing namespaces of dead runs failed");
        }
        for base in [PIN_BASE, STATE_BASE] {
            remove_dead_dirs(Path::new(base));
        }
        KernelEngine {
            opts,
            cluster: None,
            timings: Vec::new(),
        }
    }

    /// Removes the box now (also done on drop).
    pub fn finish(&mut self) {
        self.cluster = None;
        for base in [PIN_BASE, STATE_BASE] {
            let _ = std::fs::remove_dir(base); // only when no other run uses it
        }
    }

    fn run(
        &mut self,
        case: &Case,
        prep: &sluice_compiler::conformance::Prepared,
        cells: &[&Probe],
    ) -> Result<Vec<Vec<Option<Answer>>>, String> {
        let started = Instant::now();
        let mut t = CaseTiming {
            case: case.name.clone(),
            ..Default::default()
        };

        // 1. The box: reuse it when the pods and external hosts are the same.
        let spec = topology_spec(case, cells)?;
        if self.cluster.as_ref().is_some_and(|c| c.spec != spec) {
            self.cluster = None;
        }
        if self.cluster.is_none() {
            let t0 = Instant::now();
            self.cluster = Some(build_cluster(spec)?);
            t.topology = t0.elapsed();
        }
        let cluster = self.cluster.as_mut().expect("built above");

        // 2. Compile with every pod placed on its host veth, and load.
        let mut inv = prep.inventory.clone();
        for ep in &mut inv.endpoints {
            let pod = cluster
                .topo
                .pod(&ep.namespace, &ep.name)
                .ok_or_else(|| format!("pod {}/{} is not in the box", ep.namespace, ep.name))?;
            ep.interface = Some(pod.host_if.clone());
            ep.netns = Some(pod.netns.clone());
        }
        let t0 = Instant::now();
        let opts = CompileOptions {
            codegen: CodegenOptions {
                mode: self.opts.mode,
                ..CodegenOptions::default()
            },
            node: None,
            ..CompileOptions::default()
        };
        let inputs = [(format!("{}.yaml", case.name), case.name.as_bytes().to_vec())];
        let bundle = compile::compile(&prep.ir, &inv, &prep.sources, &inputs, &opts, &mut |_| {})
            .map_err(|e| format!("compile: {e}"))?
            .bundle;
        t.compile = t0.elapsed();
        let t0 = Instant::now();
        let report = generation::apply_bundle(&bundle, &cluster.load).map_err(|e| e.to_string())?;
        t.apply = t0.elapsed();
        t.programs = report.programs_loaded;
        for h in &report.hooks {
            match h.action {
                generation::HookAction::Replaced { .. } => t.replaced += 1,
                generation::HookAction::Unchanged => t.unchanged += 1,
                generation::HookAction::Attached => t.attached += 1,
            }
        }
        let hooks = hook_programs(&cluster.load, &report)?;

        // 3. Every cell through the attached programs.
        let t0 = Instant::now();
        let uses_ct = bundle
            .shared_maps
            .iter()
            .any(|m| m.pin.as_deref() == Some(keys::CT_PIN));
        let ct = ct_map(&cluster.load, uses_ct)?;
        clear_map(ct.as_ref())?;
        let ports = cells.iter().map(|p| p.port);
        let mut sports = packet::SourcePorts::new(ports);
        let test_runs: Vec<Option<Answer>> = cells
            .iter()
            .map(|p| Some(test_run_cell(&cluster.topo, &hooks, p, sports.next_port())))
            .collect();
        t.test_run = t0.elapsed();

        // 4. A sample over real sockets.
        let t0 = Instant::now();
        clear_map(ct.as_ref())?;
        let sockets = socket_cells(cluster, cells, &self.opts, &case.name)?;
        t.sockets = t0.elapsed();
        t.total = started.elapsed();
        self.timings.push(t);
        Ok(vec![test_runs, sockets])
    }
}

impl Drop for KernelEngine {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Engine for KernelEngine {
    fn checks(&self) -> Vec<String> {
        vec!["test-run".into(), "sockets".into()]
    }

    fn run_case(
        &mut self,
        case: &Case,
        prep: &sluice_compiler::conformance::Prepared,
        cells: &[&Probe],
    ) -> Result<Vec<Vec<Option<Answer>>>, String> {
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(case, prep, cells)));
        match res {
            Ok(Ok(answers)) => Ok(answers),
            Ok(Err(e)) => {
                // The box may be half-way through something: start the next case afresh.
                self.cluster = None;
                Err(e)
            }
            Err(panic) => {
                self.cluster = None;
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                Err(format!("the kernel engine panicked: {msg}"))
            }
        }
    }
}

/// The box a case needs: its pods, and an external host owning every probe destination
/// that is an address outside the cluster.
fn topology_spec(case: &Case, cells: &[&Probe]) -> Result<TopologySpec, String> {
    let mut spec = TopologySpec::new();
    let mut pod_ips = BTreeSet::new();
    for (key, pod) in &case.pods {
        let (ns, name) = key
            .split_once('/')
            .ok_or_else(|| format!("pod `{key}` is not ns/name"))?;
        let IpAddr::V4(ip) = pod.ip else {
            return Err(format!(
                "pod {key} has IPv6 address {}; the kernel engine enforces IPv4 only",
                pod.ip
            ));
        };
        pod_ips.insert(ip);
        spec = spec.pod(ns, name, ip);
    }
    let mut external = BTreeSet::new();
    for p in cells {
        match p.to.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if !pod_ips.contains(&ip) => {
                external.insert(ip);
            }
            Ok(IpAddr::V6(ip)) => {
                return Err(format!(
                    "probe to {ip}: the kernel engine enforces IPv4 only"
                ));
            }
            _ => {}
        }
    }
    for ip in external {
        spec = spec.external(ip);
    }
    Ok(spec)
}

fn build_cluster(spec: TopologySpec) -> Result<Cluster, String> {
    let topo = Topology::build(&spec).map_err(|e| format!("topology: {e}"))?;
    let load = LoadOptions {
        root: Path::new(PIN_BASE).join(topo.prefix()),
        state_dir: Path::new(STATE_BASE).join(topo.prefix()),
        node_netns: Some(topo.node_netns().to_owned()),
    };
    Ok(Cluster {
        spec,
        load,
        servers: Vec::new(),
        served: BTreeSet::new(),
        topo,
    })
}

/// Removes entries of `base` named after a run prefix whose process is gone.
fn remove_dead_dirs(base: &Path) {
    let Ok(dir) = std::fs::read_dir(base) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = prefix_pid(&name)
            && !netns::pid_alive(pid)
        {
            tracing::info!(path = %e.path().display(), "removing a dead run's loader state");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The pid in a [`topology::unique_prefix`] (`sl` + 5 base-36 digits + 2).
fn prefix_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(topology::PREFIX_BASE)?;
    if rest.len() != 7
        || !rest
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return None;
    }
    u32::from_str_radix(&rest[..5], 36).ok()
}

/// The program each hook runs now, opened by the id its pinned link reports (and checked
/// against what `apply_bundle` says it attached).
fn hook_programs(
    load: &LoadOptions,
    report: &generation::GenerationReport,
) -> Result<BTreeMap<(EndpointRef, TcxHook), OwnedFd>, String> {
    let state = generation::read_state(&load.state_dir)
        .map_err(|e| e.to_string())?
        .ok_or("no generation recorded after apply")?;
    let mut out = BTreeMap::new();
    for h in &state.hooks {
        let live = generation::pinned_link_info(&h.pin)
            .map_err(|e| format!("link {}: {e}", h.pin.display()))?;
        let reported = report
            .hooks
            .iter()
            .find(|r| r.endpoint == h.endpoint && r.link_id == h.link_id)
            .map(|r| r.program_id);
        if live.prog_id != h.program_id || reported != Some(h.program_id) {
            return Err(format!(
                "{} {}: the link runs program {}, the loader reported {:?}",
                h.endpoint,
                h.hook.as_str(),
                live.prog_id,
                reported
            ));
        }
        let fd = sysbpf::prog_fd_by_id(live.prog_id)
            .map_err(|e| format!("opening program {}: {e}", live.prog_id))?;
        out.insert((h.endpoint.clone(), h.hook), fd);
    }
    Ok(out)
}

/// The pinned conntrack table. It outlives generations, so it exists once any case needed
/// it; a generation whose programs need none (no policy, or nothing that can deny) may run
/// before that, and then there is no table and nothing to clear. One that uses it must
/// find it.
fn ct_map(load: &LoadOptions, used: bool) -> Result<Option<MapData>, String> {
    let path: PathBuf = load.root.join(keys::CT_PIN);
    if !used && !path.exists() {
        return Ok(None);
    }
    MapData::from_pin(&path)
        .map(Some)
        .map_err(|e| format!("conntrack {}: {e}", path.display()))
}

/// Deletes every entry (conntrack, between cases and checks).
fn clear_map(map: Option<&MapData>) -> Result<(), String> {
    let Some(map) = map else {
        return Ok(());
    };
    let map =
        sysbpf::MapElems::new(map.fd().as_fd()).map_err(|e| format!("conntrack info: {e}"))?;
    for k in map.keys().map_err(|e| format!("conntrack keys: {e}"))? {
        map.delete(&k)
            .map_err(|e| format!("conntrack delete: {e}"))?;
    }
    Ok(())
}

fn endpoint_ref(s: &str) -> Option<EndpointRef> {
    let (ns, name) = s.split_once('/')?;
    Some(EndpointRef {
        namespace: ns.into(),
        name: name.into(),
    })
}

/// `(ns/name or IP) → (address, the pod if it is one)`.
fn resolve_end(topo: &Topology, s: &str) -> Result<(Ipv4Addr, Option<EndpointRef>), String> {
    if let Ok(ip) = s.parse::<Ipv4Addr>() {
        let pod = topo
            .pods()
            .iter()
            .find(|p| p.ip == ip)
            .map(|p| EndpointRef {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
            });
        return Ok((ip, pod));
    }
    let r = endpoint_ref(s).ok_or_else(|| format!("bad probe end `{s}`"))?;
    let pod = topo
        .pod(&r.namespace, &r.name)
        .ok_or_else(|| format!("no pod `{s}` in the box"))?;
    Ok((pod.ip, Some(r)))
}

fn verdict(retval: u32) -> Result<bool, String> {
    match retval {
        TC_ACT_OK => Ok(true),
        TC_ACT_SHOT => Ok(false),
        other => Err(format!(
            "the program returned {other}, not TC_ACT_OK or TC_ACT_SHOT"
        )),
    }
}

/// One cell through BPF_PROG_TEST_RUN: the source's `from_ep`, then (for a pod
/// destination) the destination's `to_ep`.
fn test_run_cell(
    topo: &Topology,
    hooks: &BTreeMap<(EndpointRef, TcxHook), OwnedFd>,
    p: &Probe,
    sport: u16,
) -> Answer {
    let (src_ip, src) = resolve_end(topo, &p.from)?;
    let src = src.ok_or_else(|| format!("probe source {} is not a pod", p.from))?;
    let (dst_ip, dst) = resolve_end(topo, &p.to)?;
    let pkt = packet::craft(src_ip, dst_ip, p.protocol, sport, p.port);
    let run = |ep: &EndpointRef, hook: TcxHook| -> Result<bool, String> {
        let fd = hooks
            .get(&(ep.clone(), hook))
            .ok_or_else(|| format!("no program on {ep} {}", hook.as_str()))?;
        let (ret, _) = sysbpf::prog_test_run(fd.as_fd(), &pkt, 1)
            .map_err(|e| format!("BPF_PROG_TEST_RUN on {ep} {}: {e}", hook.as_str()))?;
        verdict(ret)
    };
    let word = |b: bool| if b { "allow" } else { "deny" };
    let egress = run(&src, TcxHook::Ingress)?;
    match dst {
        Some(dst) => {
            let ingress = run(&dst, TcxHook::Egress)?;
            Ok((
                egress && ingress,
                format!(
                    "from_ep {src} (egress) {}, to_ep {dst} (ingress) {}",
                    word(egress),
                    word(ingress)
                ),
            ))
        }
        None => Ok((egress, format!("from_ep {src} (egress) {}", word(egress)))),
    }
}

/// The socket check: sampled cells, servers for every TCP/UDP port the case probes, all
/// probes in parallel. An allowed cell that timed out is tried once more with a longer
/// timeout (a loaded machine should not read as a drop); a denied cell is never retried.
fn socket_cells(
    cluster: &mut Cluster,
    cells: &[&Probe],
    opts: &KernelOptions,
    case: &str,
) -> Result<Vec<Option<Answer>>, String> {
    let mut out: Vec<Option<Answer>> = vec![None; cells.len()];
    if opts.sample == 0 {
        return Ok(out);
    }
    let proto = |l4: L4| match l4 {
        L4::Tcp => Some(Proto::Tcp),
        L4::Udp => Some(Proto::Udp),
        _ => None,
    };
    // Servers: every destination serves every TCP/UDP port the case probes it on.
    let mut want: BTreeMap<String, Vec<(u16, Proto)>> = BTreeMap::new();
    for p in cells.iter().filter(|p| sample::socket_eligible(p)) {
        let netns = dest_netns(&cluster.topo, &p.to)?;
        let pr = proto(p.protocol).expect("eligible cells are TCP or UDP");
        if !cluster.served.contains(&(netns.clone(), p.port, pr)) {
            let v = want.entry(netns).or_default();
            if !v.contains(&(p.port, pr)) {
                v.push((p.port, pr));
            }
        }
    }
    for (netns, ports) in want {
        let s = Servers::start(&netns, &ports).map_err(|e| format!("servers: {e}"))?;
        for &(port, pr) in &ports {
            cluster.served.insert((netns.clone(), port, pr));
        }
        cluster.servers.push(s);
    }

    let picked = sample::sample(cells, opts.sample, opts.seed, case);
    let mut probes = Vec::with_capacity(picked.len());
    for &i in &picked {
        let p = cells[i];
        let (from, _) = resolve_end(&cluster.topo, &p.from)?;
        let from_netns = cluster
            .topo
            .pods()
            .iter()
            .find(|q| q.ip == from)
            .map(|q| q.netns.clone())
            .ok_or_else(|| format!("probe source {} is not a pod", p.from))?;
        let (to, _) = resolve_end(&cluster.topo, &p.to)?;
        probes.push(sockprobe::Probe {
            from_netns,
            to,
            port: p.port,
            proto: proto(p.protocol).expect("sampled cells are TCP or UDP"),
        });
    }
    let mut results = sockprobe::probe_many(&probes, opts.timeout);
    let retry: Vec<usize> = (0..picked.len())
        .filter(|&k| {
            cells[picked[k]].expect == sluice_compiler::conformance::Expect::Allow
                && matches!(results[k], Ok(ProbeOutcome::TimedOut))
        })
        .collect();
    if !retry.is_empty() {
        let again: Vec<sockprobe::Probe> = retry.iter().map(|&k| probes[k].clone()).collect();
        for (k, r) in retry
            .iter()
            .zip(sockprobe::probe_many(&again, opts.timeout * 5))
        {
            results[*k] = r;
        }
    }
    for (k, r) in results.into_iter().enumerate() {
        let ans: Answer = match r {
            Ok(ProbeOutcome::Connected) => Ok((true, "connected".into())),
            Ok(ProbeOutcome::TimedOut) => Ok((false, "timed out (dropped)".into())),
            Ok(o @ (ProbeOutcome::Refused | ProbeOutcome::Reset)) => {
                Ok((true, format!("reached the destination but {o:?}")))
            }
            Ok(ProbeOutcome::Unreachable) => Err("unreachable (routing, not policy)".into()),
            Err(e) => Err(e.to_string()),
        };
        out[picked[k]] = Some(ans);
    }
    Ok(out)
}

/// The namespace that answers for a probe destination.
fn dest_netns(topo: &Topology, to: &str) -> Result<String, String> {
    let (ip, pod) = resolve_end(topo, to)?;
    if let Some(r) = pod {
        return Ok(topo
            .pod(&r.namespace, &r.name)
            .expect("resolved above")
            .netns
            .clone());
    }
    topo.external()
        .filter(|e| e.ips.contains(&ip))
        .map(|e| e.netns.clone())
        .ok_or_else(|| format!("no host owns {ip} in the box"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_pids_parse() {
        let p = topology::unique_prefix();
        assert_eq!(prefix_pid(&p), Some(std::process::id()));
        assert_eq!(prefix_pid("slzz"), None);
        assert_eq!(prefix_pid("other"), None);
    }
}
