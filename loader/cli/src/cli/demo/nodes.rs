//! The demo's second act: the node datapath on two nodes, and masquerade seen from the router.
//!
//! The first act shows policy on one node; this one shows where a packet goes after it. It
//! builds a two-node `sluice lab` (VXLAN) under the demo's prefix, loads the node datapath on
//! both nodes through the library (`lab::apply_node`, what `sluice apply --node-config` does),
//! and opens real TCP connections to servers that answer with the peer address they accepted
//! (`topology::peer`), so every line says what the far end saw:
//!
//! 1. pod → pod across nodes, through the tunnel: the server sees the client pod's own IP;
//! 2. pod → router 10.0.1.1, masqueraded: the router sees the node's IP;
//! 3. the same with an ip-masq-agent config listing 10.0.0.0/16 (a new generation on the
//!    node): first the router cannot answer a pod address it has no route to, then, with its
//!    routes to the pod CIDRs, it sees the pod's IP.
//!
//! A [`NodesLab`] guard unloads both nodes and removes the lab however the act ends.

use super::{BUSY, DemoError, bail_if_interrupted, cleanup_dirs, track_loaded};
use crate::lab::{self, IP_MASQ_AGENT_FILE, Lab, LabOptions, ROUTER_LOOPS};
use crate::topology::Pod;
use crate::topology::peer::{PeerEcho, tcp_peer};
use sluice_compiler::node::Routing;
use sluice_loader::generation::{self, LoadOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The port the act's servers listen on.
const PORT: u16 = 7000;
/// The exclusion list of the "without masquerade" step (the study's 10.0.0.0/16).
const IP_MASQ_AGENT: &str = "nonMasqueradeCIDRs:\n- 10.0.0.0/16\n";
/// A connection that should work gets at least this long (the first packets resolve
/// neighbours across the LAN).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the far ends saw.
#[derive(Debug, Clone)]
pub struct NodesReport {
    /// The client pod (on node-1) and the server pod (on node-2).
    pub client: Ipv4Addr,
    pub server: Ipv4Addr,
    /// node-1's IP.
    pub node_ip: Ipv4Addr,
    /// The peer the server pod accepted across nodes.
    pub cross_node: Option<SocketAddrV4>,
    /// The peer the router accepted from the masqueraded pod.
    pub masqueraded: Option<SocketAddrV4>,
    /// Without masquerade and without the router's routes back (expected: no connection).
    pub unrouted: Option<SocketAddrV4>,
    /// Without masquerade, once the router routes the pod CIDRs to the nodes.
    pub excluded: Option<SocketAddrV4>,
}

impl NodesReport {
    /// Every step did what the story says.
    pub fn agrees(&self) -> bool {
        self.cross_node.map(|p| *p.ip()) == Some(self.client)
            && self.masqueraded.map(|p| *p.ip()) == Some(self.node_ip)
            && self.unrouted.is_none()
            && self.excluded.map(|p| *p.ip()) == Some(self.client)
    }
}

/// The lab's prefix and state directory for a demo run `prefix` (namespaces carry `prefix`,
/// so the first act's cleanup by prefix finds them too).
fn lab_prefix(prefix: &str) -> String {
    format!("{prefix}-lab")
}
fn lab_state_dir(prefix: &str) -> PathBuf {
    PathBuf::from(format!("/run/sluice-demo-{prefix}-lab"))
}

/// Where node `n` (1-based) of the demo `prefix` pins and keeps its state.
pub fn node_load(prefix: &str, n: usize, netns: &str) -> LoadOptions {
    LoadOptions {
        root: PathBuf::from(sluice_loader::pin::SLUICE_ROOT)
            .join(format!("demo-{prefix}-node-{n}")),
        state_dir: PathBuf::from(format!("/run/sluice-demo-{prefix}-node-{n}")),
        node_netns: Some(netns.to_owned()),
    }
}

/// Every directory the act makes, for tests that check nothing is left behind.
pub fn made_dirs(prefix: &str) -> Vec<PathBuf> {
    let mut v = vec![lab_state_dir(prefix)];
    for n in 1..=2 {
        let l = node_load(prefix, n, "");
        v.extend([l.root, l.state_dir]);
    }
    v
}

/// The signal thread's share: the lab's state directory (its namespaces go by prefix).
pub(super) fn remove_state(prefix: &str) {
    let _ = std::fs::remove_dir_all(lab_state_dir(prefix));
}

/// The lab and the generations loaded on it; dropping it removes them all.
struct NodesLab {
    prefix: String,
    state_dir: PathBuf,
    loads: Vec<LoadOptions>,
}

impl NodesLab {
    /// Unloads every node, then removes the lab. Returns (pins removed, namespaces removed).
    fn teardown(&mut self) -> Result<(usize, usize), DemoError> {
        let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        let mut pins = 0;
        let mut first_err = None;
        for l in self.loads.drain(..) {
            match generation::unload(&l) {
                Ok(r) => pins += r.removed.len(),
                Err(e) => {
                    first_err.get_or_insert(DemoError::Apply(e.to_string()));
                }
            }
            cleanup_dirs(&l);
            track_loaded(&l, false);
        }
        let namespaces = Lab::load(&self.state_dir, &self.prefix)
            .ok()
            .flatten()
            .map_or(0, |l| l.namespaces.len());
        lab::down(&self.state_dir, &self.prefix)?;
        let _ = std::fs::remove_dir_all(&self.state_dir);
        match first_err {
            Some(e) => Err(e),
            None => Ok((pins, namespaces)),
        }
    }
}

impl Drop for NodesLab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!(error = %e, "demo: removing the two-node lab failed");
        }
    }
}

fn pod<'a>(lab: &'a Lab, node: usize, name: &str) -> Result<&'a Pod, DemoError> {
    lab.nodes[node]
        .pods
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| DemoError::Plan(format!("{name} on {}", lab.nodes[node].config.name)))
}

/// `sees A (what it is) ✓`, or what went wrong.
fn seen(peer: Option<SocketAddrV4>, want: Option<Ipv4Addr>, what: &str) -> String {
    let mark = |ok: bool| if ok { "✓" } else { "✗" };
    match (peer, want) {
        (Some(p), Some(w)) => format!("sees {} ({what}) {}", p.ip(), mark(*p.ip() == w)),
        (Some(p), None) => format!("sees {} {}", p.ip(), mark(false)),
        (None, Some(_)) => format!("gets no connection {}", mark(false)),
        (None, None) => format!("gets no connection ({what}) {}", mark(true)),
    }
}

/// Runs the act under the demo's `prefix`, writing its lines to `out`.
pub fn run(prefix: &str, timeout: Duration, out: &mut dyn Write) -> Result<NodesReport, DemoError> {
    let started = Instant::now();
    let mut guard = NodesLab {
        prefix: lab_prefix(prefix),
        state_dir: lab_state_dir(prefix),
        loads: Vec::new(),
    };
    let lab = {
        let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        bail_if_interrupted()?;
        let mut o = LabOptions::new(2, Routing::Vxlan);
        o.prefix = guard.prefix.clone();
        o.state_dir = guard.state_dir.clone();
        lab::up(&o)?
    };
    writeln!(
        out,
        "\nsluice demo, second act: two nodes on a LAN, the node datapath, masquerade\n\n\
         [6] sluice lab up --nodes 2 --routing vxlan ({} ms); the router owns {} and {}",
        started.elapsed().as_millis(),
        ROUTER_LOOPS[0],
        ROUTER_LOOPS[1]
    )?;
    for n in &lab.nodes {
        let pods: Vec<String> = n
            .pods
            .iter()
            .map(|p| format!("{}/{} {}", p.namespace, p.name, p.ip))
            .collect();
        writeln!(
            out,
            "    {:<7} {:<14} pods {} ({}), netns {}",
            n.config.name,
            n.config.ip,
            n.config.pod_cidr,
            pods.join(", "),
            n.netns
        )?;
    }

    // Load the node datapath on both nodes (every flow allowed: no policy this time).
    let t = Instant::now();
    let mut generations = Vec::new();
    for (i, n) in lab.nodes.iter().enumerate() {
        let load = node_load(prefix, i + 1, &n.netns);
        let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        bail_if_interrupted()?;
        track_loaded(&load, true);
        guard.loads.push(load.clone());
        generations.push(lab::apply_node(&lab, &n.config, &load)?.generation);
    }
    writeln!(
        out,
        "[7] node datapath applied on both nodes ({} ms): from-pod, uplink and VXLAN programs",
        t.elapsed().as_millis()
    )?;

    let client = pod(&lab, 0, "frontend")?;
    let server = pod(&lab, 1, "api")?;
    let node_ip = lab.nodes[0].config.ip;
    let router_ns = &lab.router_netns;
    let label = |p: &Pod| format!("{}/{} {}", p.namespace, p.name, p.ip);
    let _router = PeerEcho::serve(router_ns, PORT, &[], false)?;
    let _server = PeerEcho::serve(&server.netns, PORT, &[], false)?;
    let connect = |to: Ipv4Addr, timeout: Duration| -> Result<_, DemoError> {
        bail_if_interrupted()?;
        Ok(tcp_peer(&client.netns, to, PORT, timeout)?)
    };

    let cross_node = connect(server.ip, CONNECT_TIMEOUT.max(timeout))?;
    writeln!(
        out,
        "    {:<13} {} → {}:{PORT} (node-1 → VXLAN → node-2): the pod {}",
        "cross-node",
        label(client),
        label(server),
        seen(cross_node, Some(client.ip), "the client pod's own IP")
    )?;
    let masqueraded = connect(ROUTER_LOOPS[0], CONNECT_TIMEOUT.max(timeout))?;
    writeln!(
        out,
        "    {:<13} {} → router {}:{PORT}: the router {}",
        "masquerade",
        label(client),
        ROUTER_LOOPS[0],
        seen(masqueraded, Some(node_ip), "node-1's IP")
    )?;

    // Without masquerade for 10.0.0.0/16: node-1 gets a new generation that reads the
    // ip-masq-agent file next to its configuration.
    let t = Instant::now();
    let agent = lab.dir.join(IP_MASQ_AGENT_FILE);
    std::fs::write(&agent, IP_MASQ_AGENT)?;
    let mut config = lab.nodes[0].config.clone();
    config.masquerade.ip_masq_agent = Some(IP_MASQ_AGENT_FILE.into());
    let generation = {
        let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        bail_if_interrupted()?;
        lab::apply_node(&lab, &config, &guard.loads[0])?.generation
    };
    writeln!(
        out,
        "\n[8] without masquerade: node-1 reapplied with an ip-masq-agent config \
         (nonMasqueradeCIDRs: [10.0.0.0/16]), generation {} → {generation} ({} ms)",
        generations[0],
        t.elapsed().as_millis()
    )?;
    let unrouted = connect(ROUTER_LOOPS[0], timeout)?;
    writeln!(
        out,
        "    {:<13} {} → router {}:{PORT}: the router {}",
        "no route",
        label(client),
        ROUTER_LOOPS[0],
        seen(unrouted, None, "it has no route back to the pod CIDR")
    )?;
    {
        let _busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        bail_if_interrupted()?;
        lab::add_router_pod_routes(&lab)?;
    }
    let routes: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| format!("{} via {}", n.config.pod_cidr, n.config.ip))
        .collect();
    writeln!(out, "    {:<13} {}", "router routes", routes.join(", "))?;
    let excluded = connect(ROUTER_LOOPS[0], CONNECT_TIMEOUT.max(timeout))?;
    writeln!(
        out,
        "    {:<13} {} → router {}:{PORT}: the router {}",
        "no masquerade",
        label(client),
        ROUTER_LOOPS[0],
        seen(excluded, Some(client.ip), "the pod's IP")
    )?;
    drop((_router, _server));

    let report = NodesReport {
        client: client.ip,
        server: server.ip,
        node_ip,
        cross_node,
        masqueraded,
        unrouted,
        excluded,
    };
    let t = Instant::now();
    let (pins, namespaces) = guard.teardown()?;
    writeln!(
        out,
        "\n[9] removed the lab: both nodes unloaded ({pins} pins), {namespaces} namespaces ({} ms). \
         Act two took {:.1} s.",
        t.elapsed().as_millis(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(report)
}
