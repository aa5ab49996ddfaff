//! The lab: the Cilium study's network in network namespaces (spec/lab.md).
//!
//! ```text
//!   router (10.0.1.1/24, 10.0.2.1/24 on lo; 192.168.10.1, the LAN's gateway)
//!     │            vm (192.168.10.100, not in the cluster)
//!     │             │
//!   ══╪═════════════╪═══════ LAN: bridge br0 in its own namespace, 192.168.10.0/24 ═══════
//!     │                                   │
//!   node-1 (eth0 192.168.10.11)         node-2 (eth0 192.168.10.12)   ...
//!     ├ lxc0 ══ pod (10.244.1.10)         ├ lxc0 ══ pod (10.244.2.10)
//!     └ sluice_vxlan (vxlan mode)         └ sluice_vxlan
//! ```
//!
//! Everything lives in namespaces named `<prefix>-<member>` (default prefix `sluice-lab`), so
//! `ip netns exec sluice-lab-node-1 ...` and tcpdump find them and nothing touches the caller's
//! namespace. Pods are plumbed by the single-node topology's code (`topology::plumb_pods`).
//! What was made is recorded in a state file before it is made, so `down` removes exactly that,
//! also after a crash.
//!
//! [`plan`] is pure (names, addresses, pods from the inventory, node configurations); [`up`],
//! [`down`] and [`exec`] touch the kernel.

use crate::topology::{self, Pod, TopologyError, sanitize};
use serde::{Deserialize, Serialize};
use sluice_compiler::node::{MasqueradeSources, NodeConfig, Peer, Routing};
use sluice_compiler::resolve::inventory::{
    Endpoint, Inventory, InventoryFiles, Node as InventoryNode,
};
use sluice_compiler::source::ast::Cidr;
use sluice_loader::netlink::{Address, Netlink, NewLink, Route, Vxlan};
use sluice_loader::sys::netns::Netns;

mod apply;
pub use apply::apply_node;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

pub const DEFAULT_PREFIX: &str = "sluice-lab";
pub const DEFAULT_STATE_DIR: &str = "/run/sluice/lab";
/// The default pods (examples/lab/inventory.yaml), built in so `sluice lab up` works anywhere.
pub const DEFAULT_INVENTORY: &str = include_str!("../../../../examples/lab/inventory.yaml");
pub const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 0);
pub const LAN_PREFIX: u8 = 24;
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
pub const VM_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 100);
/// The study's loop1 and loop2, inside 10.0.0.0/16, owned by the router.
pub const ROUTER_LOOPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::new(10, 0, 2, 1)];
pub const MAX_NODES: usize = 50;
/// The uplink of every node and the interface of the router and the VM.
pub const UPLINK: &str = "eth0";
pub const BRIDGE: &str = "br0";
/// The VXLAN device of each node in vxlan mode (external / collect_md).
pub const VXLAN_DEV: &str = sluice_compiler::bundle::abi::node::VXLAN_IFNAME;
/// The ip-masq-agent config's name in the state directory (node configurations point at it).
pub const IP_MASQ_AGENT_FILE: &str = "ip-masq-agent";

/// What went wrong with the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lab `{0}` is already up (state in {1}); `sluice lab down` first")]
    AlreadyUp(String, String),
    #[error("no lab `{0}` is up")]
    NotUp(String),
    #[error("no member `{0}` in the lab (members: router, vm, node-N, NAMESPACE/POD)")]
    NoMember(String),
    #[error("applying the node datapath on {node}: {message}")]
    Apply { node: String, message: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Node,
    Pod,
    Router,
    Vm,
}

/// One member of the lab, as `sluice lab status` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `router`, `vm`, `node-K` or `NAMESPACE/POD`.
    pub name: String,
    pub role: Role,
    /// The node it runs on (a node names itself; the router and the VM none).
    pub node: Option<String>,
    pub addresses: Vec<String>,
    /// Its network namespace (under /run/netns).
    pub netns: String,
}

/// What `lab up` is asked for.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub prefix: String,
    pub nodes: usize,
    pub routing: Routing,
    pub inventory: Inventory,
    /// Give the router a route to each pod CIDR via its node (the study's "without masquerade"
    /// fix). Off by default: the study starts without them.
    pub router_pod_routes: bool,
    /// An ip-masq-agent config (its text) every node's configuration points at; it is checked
    /// before anything is built and written to the state directory as `ip-masq-agent`.
    pub ip_masq_agent: Option<String>,
    pub state_dir: PathBuf,
}

impl LabOptions {
    pub fn new(nodes: usize, routing: Routing) -> LabOptions {
        LabOptions {
            prefix: DEFAULT_PREFIX.into(),
            nodes,
            routing,
            inventory: Inventory::parse("examples/lab/inventory.yaml", DEFAULT_INVENTORY)
                .expect("the built-in inventory is valid"),
            router_pod_routes: false,
            ip_masq_agent: None,
            state_dir: DEFAULT_STATE_DIR.into(),
        }
    }
}

/// A node as planned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabNode {
    pub config: NodeConfig,
    pub netns: String,
    pub pods: Vec<Pod>,
}

/// The whole lab: the plan before `up`, the state file after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lab {
    pub prefix: String,
    pub routing: Routing,
    pub router_pod_routes: bool,
    /// The ip-masq-agent config the nodes use, if any (written as `ip-masq-agent`).
    pub ip_masq_agent: Option<String>,
    pub lan_netns: String,
    pub router_netns: String,
    pub vm_netns: String,
    pub nodes: Vec<LabNode>,
    /// Every namespace, in creation order (`down` removes them in reverse).
    pub namespaces: Vec<String>,
    /// The completed inventory (addresses, nodes, interfaces and namespaces filled in).
    pub inventory: Inventory,
    /// Where the state file, the node configurations and the inventory are written.
    pub dir: PathBuf,
}

/// Plans the lab: names, addresses and pods. Nothing touches the kernel.
pub fn plan(o: &LabOptions) -> Result<Lab, LabError> {
    let prefix = &o.prefix;
    if prefix.is_empty()
        || prefix.len() > 40
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(LabError::Invalid(format!(
            "prefix {prefix:?} must be 1 to 40 ASCII letters, digits or dashes"
        )));
    }
    if !(1..=MAX_NODES).contains(&o.nodes) {
        return Err(LabError::Invalid(format!(
            "--nodes {} is out of range (1..={MAX_NODES})",
            o.nodes
        )));
    }
    if let Some(text) = &o.ip_masq_agent {
        let mut sources = sluice_compiler::source::SourceMap::new();
        let id = sources.add(IP_MASQ_AGENT_FILE, text.clone());
        let (_, diags) = sluice_compiler::source::ipmasq::read_with_diags(id, text);
        if diags.has_errors() {
            return Err(LabError::Invalid(format!(
                "the ip-masq-agent config is refused:\n{}",
                sluice_compiler::diag::render_plain(&diags, &sources)
            )));
        }
    }
    let network = Cidr {
        addr: LAN.into(),
        prefix: LAN_PREFIX,
    };
    let node_name = |k: usize| format!("node-{k}");
    let node_ip = |k: usize| Ipv4Addr::new(192, 168, 10, 10 + k as u8);
    let pod_cidr = |k: usize| Cidr {
        addr: Ipv4Addr::new(10, 244, k as u8, 0).into(),
        prefix: 24,
    };
    let mut inventory = o.inventory.clone();
    // Place the pods: on their `node`, else round robin.
    let mut placed: Vec<Vec<usize>> = vec![Vec::new(); o.nodes];
    for (i, ep) in inventory.endpoints.iter().enumerate() {
        let k = match &ep.node {
            Some(n) => (1..=o.nodes).find(|&k| node_name(k) == *n).ok_or_else(|| {
                LabError::Invalid(format!(
                    "pod {}/{} runs on `{n}`, but the lab's nodes are node-1..node-{}",
                    ep.namespace, ep.name, o.nodes
                ))
            })?,
            None => i % o.nodes + 1,
        };
        placed[k - 1].push(i);
    }
    let mut nodes = Vec::new();
    for k in 1..=o.nodes {
        let name = node_name(k);
        let netns = format!("{prefix}-{name}");
        let cidr = pod_cidr(k);
        let mut pods = Vec::new();
        let mut next = 10u32;
        for (j, &i) in placed[k - 1].iter().enumerate() {
            let ep: &mut Endpoint = &mut inventory.endpoints[i];
            let ip = match ep.ips.first() {
                Some(&IpAddr::V4(ip)) if cidr.contains(IpAddr::V4(ip)) => ip,
                Some(ip) => {
                    return Err(LabError::Invalid(format!(
                        "pod {}/{} has address {ip}, outside {name}'s pod CIDR {cidr}",
                        ep.namespace, ep.name
                    )));
                }
                None => loop {
                    if next > 254 {
                        return Err(LabError::Invalid(format!("{name}'s pod CIDR is full")));
                    }
                    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, k as u8, 0)) + next);
                    next += 1;
                    let taken = |e: &Endpoint| e.ips.contains(&IpAddr::V4(ip));
                    if !o.inventory.endpoints.iter().any(taken) {
                        break ip;
                    }
                },
            };
            let o4 = ip.octets();
            let mut pod_netns = format!(
                "{prefix}-pod-{}-{}",
                sanitize(&ep.namespace),
                sanitize(&ep.name)
            );
            pod_netns.truncate(200);
            let pod = Pod {
                namespace: ep.namespace.clone(),
                name: ep.name.clone(),
                ip,
                netns: pod_netns,
                host_if: format!("lxc{j}"),
                mac: format!(
                    "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
                    o4[0], o4[1], o4[2], o4[3]
                ),
            };
            ep.ips = vec![IpAddr::V4(ip)];
            ep.node = Some(name.clone());
            ep.interface = Some(pod.host_if.clone());
            ep.netns = Some(pod.netns.clone());
            pods.push(pod);
        }
        let peers = (1..=o.nodes)
            .filter(|&p| p != k)
            .map(|p| Peer {
                name: node_name(p),
                ip: node_ip(p),
                pod_cidr: pod_cidr(p),
            })
            .collect();
        let config = NodeConfig {
            name: name.clone(),
            ip: node_ip(k),
            network,
            uplink: UPLINK.into(),
            pod_cidr: cidr,
            routing: o.routing,
            vxlan_port: sluice_compiler::node::DEFAULT_VXLAN_PORT,
            mtu: sluice_compiler::node::DEFAULT_MTU,
            peers,
            masquerade: MasqueradeSources {
                ip_masq_agent: o.ip_masq_agent.as_ref().map(|_| IP_MASQ_AGENT_FILE.into()),
                ..MasqueradeSources::default()
            },
        };
        nodes.push(LabNode {
            config,
            netns,
            pods,
        });
    }
    // The inventory's nodes become the lab's (labels kept).
    inventory.nodes = nodes
        .iter()
        .map(|n| InventoryNode {
            name: n.config.name.clone(),
            labels: o
                .inventory
                .nodes
                .iter()
                .find(|x| x.name == n.config.name)
                .map(|x| x.labels.clone())
                .unwrap_or_default(),
            ips: vec![IpAddr::V4(n.config.ip)],
            pod_cidr: Some(n.config.pod_cidr),
        })
        .collect();
    inventory.validate().map_err(LabError::Invalid)?;
    let (lan_netns, router_netns, vm_netns) = (
        format!("{prefix}-lan"),
        format!("{prefix}-router"),
        format!("{prefix}-vm"),
    );
    let mut namespaces = vec![lan_netns.clone(), router_netns.clone(), vm_netns.clone()];
    namespaces.extend(nodes.iter().map(|n| n.netns.clone()));
    namespaces.extend(
        nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(|p| p.netns.clone())),
    );
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = namespaces.iter().find(|n| !seen.insert(*n)) {
        return Err(LabError::Invalid(format!(
            "two members would share the namespace {dup} (rename a pod)"
        )));
    }
    Ok(Lab {
        prefix: prefix.clone(),
        routing: o.routing,
        router_pod_routes: o.router_pod_routes,
        ip_masq_agent: o.ip_masq_agent.clone(),
        lan_netns,
        router_netns,
        vm_netns,
        nodes,
        namespaces,
        inventory,
        dir: o.state_dir.join(prefix),
    })
}

impl Lab {
    pub fn state_file(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Every member, as `status` lists them.
    pub fn members(&self) -> Vec<Member> {
        let mut out = vec![
            Member {
                name: "router".into(),
                role: Role::Router,
                node: None,
                addresses: std::iter::once(format!("{ROUTER_IP}/{LAN_PREFIX}"))
                    .chain(ROUTER_LOOPS.iter().map(|a| format!("{a}/24")))
                    .collect(),
                netns: self.router_netns.clone(),
            },
            Member {
                name: "vm".into(),
                role: Role::Vm,
                node: None,
                addresses: vec![format!("{VM_IP}/{LAN_PREFIX}")],
                netns: self.vm_netns.clone(),
            },
        ];
        for n in &self.nodes {
            out.push(Member {
                name: n.config.name.clone(),
                role: Role::Node,
                node: Some(n.config.name.clone()),
                addresses: vec![format!("{}/{LAN_PREFIX}", n.config.ip)],
                netns: n.netns.clone(),
            });
        }
        for n in &self.nodes {
            for p in &n.pods {
                out.push(Member {
                    name: format!("{}/{}", p.namespace, p.name),
                    role: Role::Pod,
                    node: Some(n.config.name.clone()),
                    addresses: vec![format!("{}/32", p.ip)],
                    netns: p.netns.clone(),
                });
            }
        }
        out
    }

    /// The namespace of the member called `name`.
    pub fn netns_of(&self, name: &str) -> Result<String, LabError> {
        self.members()
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.netns)
            .ok_or_else(|| LabError::NoMember(name.into()))
    }

    /// Reads the state of the lab `prefix` under `state_dir`; None when it is not up.
    pub fn load(state_dir: &Path, prefix: &str) -> Result<Option<Lab>, LabError> {
        let file = Lab::state_file(&state_dir.join(prefix));
        match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                LabError::Invalid(format!("{}: not a lab state file: {e}", file.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("read {}", file.display()))(e)),
        }
    }
}

/// Builds the lab. The state file is written first, so whatever happens a later `down` can
/// remove what was made; on an error everything made so far is removed again.
pub fn up(o: &LabOptions) -> Result<Lab, LabError> {
    let lab = plan(o)?;
    let state = Lab::state_file(&lab.dir);
    if state.exists() {
        return Err(LabError::AlreadyUp(
            lab.prefix.clone(),
            state.display().to_string(),
        ));
    }
    // A namespace of ours that exists already belongs to someone else (or to a lab whose state
    // was lost): refuse, so that a rollback never removes what this run did not make.
    let existing = sluice_loader::sys::netns::list_named().map_err(io("list namespaces"))?;
    if let Some(taken) = lab.namespaces.iter().find(|n| existing.contains(n)) {
        return Err(LabError::Invalid(format!(
            "namespace {taken} exists already and no lab state says it is ours; remove it (ip netns del {taken}) or use another --prefix"
        )));
    }
    std::fs::create_dir_all(&lab.dir).map_err(io(format!("create {}", lab.dir.display())))?;
    let json = serde_json::to_string_pretty(&lab).expect("the lab serializes");
    std::fs::write(&state, json).map_err(io(format!("write {}", state.display())))?;
    let started = std::time::Instant::now();
    if let Err(e) = build(&lab).and_then(|()| write_files(&lab)) {
        if let Err(d) = remove(&lab) {
            tracing::warn!(error = %d, "removing a half-built lab failed");
        }
        return Err(e);
    }
    tracing::info!(
        prefix = %lab.prefix,
        nodes = lab.nodes.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "lab up"
    );
    Ok(lab)
}

/// Removes the lab `prefix`: exactly the namespaces its state file lists (and so every link
/// in them), then its state directory. Returns false when no lab was up (not an error).
pub fn down(state_dir: &Path, prefix: &str) -> Result<bool, LabError> {
    match Lab::load(state_dir, prefix)? {
        None => Ok(false),
        Some(lab) => remove(&lab).map(|()| true),
    }
}

fn remove(lab: &Lab) -> Result<(), LabError> {
    let mut doomed = lab.namespaces.clone();
    doomed.reverse();
    let removed = topology::remove_netns_named(&doomed)?;
    tracing::info!(prefix = %lab.prefix, namespaces = removed.len(), "lab down");
    match std::fs::remove_dir_all(&lab.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("remove {}", lab.dir.display()))(e)),
    }
}

/// Runs `cmd` inside the member's namespace and returns its exit status. The child is forked
/// from a thread that entered the namespace, so it starts there.
pub fn exec(lab: &Lab, member: &str, cmd: &[String]) -> Result<std::process::ExitStatus, LabError> {
    let netns = lab.netns_of(member)?;
    let (program, args) = cmd
        .split_first()
        .ok_or_else(|| LabError::Invalid("no command to run".into()))?;
    let ns = Netns::open(&netns).map_err(io(format!("open netns {netns}")))?;
    ns.run(|| std::process::Command::new(program).args(args).status())
        .map_err(io(format!("enter netns {netns}")))?
        .map_err(io(format!("run {program}")))
}

fn nl(netns: &str) -> impl Fn(sluice_loader::netlink::NetlinkError) -> LabError + '_ {
    move |e| topology::nl(netns)(e).into()
}

fn open(name: &str) -> Result<Netns, LabError> {
    Netns::open(name).map_err(io(format!("open netns {name}")))
}

fn build(lab: &Lab) -> Result<(), LabError> {
    let mut spaces = std::collections::HashMap::new();
    for name in &lab.namespaces {
        let ns = Netns::create(name).map_err(io(format!("create netns {name}")))?;
        spaces.insert(name.clone(), ns);
    }
    // Only the router and the nodes forward; new namespaces copy the setting from the
    // caller's, so it is set everywhere.
    let forwarders: Vec<&String> = std::iter::once(&lab.router_netns)
        .chain(lab.nodes.iter().map(|n| &n.netns))
        .collect();
    for name in &lab.namespaces {
        let on = if forwarders.contains(&name) { "1" } else { "0" };
        topology::sysctl(name, "net/ipv4/ip_forward", on)?;
    }

    // The LAN: a bridge, and a veth from it into the router, the VM and every node.
    let mut lan = Netlink::open_in(&spaces[&lab.lan_netns]).map_err(nl(&lab.lan_netns))?;
    lan.set_up("lo", true).map_err(nl(&lab.lan_netns))?;
    lan.add_link(&NewLink::bridge(BRIDGE).up())
        .map_err(nl(&lab.lan_netns))?;
    let br = lan.index_of(BRIDGE).map_err(nl(&lab.lan_netns))?;
    let lan_members: Vec<(String, &String)> = [
        ("router".to_owned(), &lab.router_netns),
        ("vm".to_owned(), &lab.vm_netns),
    ]
    .into_iter()
    .chain(lab.nodes.iter().map(|n| (n.config.name.clone(), &n.netns)))
    .collect();
    for (port, netns) in &lan_members {
        let veth = NewLink::veth(
            port,
            sluice_loader::netlink::Peer::new(UPLINK).netns(&spaces[*netns]),
        )
        .master(br)
        .up();
        lan.add_link(&veth).map_err(nl(&lab.lan_netns))?;
    }

    // The router: the LAN's gateway, owning the study's two /24s on its lo.
    let lan_addr =
        |nl: &mut Netlink, ip: Ipv4Addr| -> Result<u32, sluice_loader::netlink::NetlinkError> {
            nl.set_up("lo", true)?;
            nl.set_up(UPLINK, true)?;
            let dev = nl.index_of(UPLINK)?;
            nl.add_address(&Address::new(dev, ip.into(), LAN_PREFIX))?;
            Ok(dev)
        };
    let default_via =
        |dev| Route::via_onlink(Ipv4Addr::UNSPECIFIED.into(), 0, ROUTER_IP.into(), dev);
    let rn = &lab.router_netns;
    let mut router = Netlink::open_in(&spaces[rn]).map_err(nl(rn))?;
    let dev = lan_addr(&mut router, ROUTER_IP).map_err(nl(rn))?;
    let lo = router.index_of("lo").map_err(nl(rn))?;
    for a in ROUTER_LOOPS {
        router
            .add_address(&Address::new(lo, a.into(), 24))
            .map_err(nl(rn))?;
    }
    if lab.router_pod_routes {
        route_pod_cidrs(lab, &mut router, dev)?;
    }

    // The VM: a host on the LAN, its gateway the router.
    let vn = &lab.vm_netns;
    let mut vm = Netlink::open_in(&spaces[vn]).map_err(nl(vn))?;
    let dev = lan_addr(&mut vm, VM_IP).map_err(nl(vn))?;
    vm.add_route(&default_via(dev)).map_err(nl(vn))?;

    // The nodes: uplink on the LAN, default route via the router, their pods, and the route
    // (native) or the VXLAN device (vxlan) towards the other nodes' pods.
    for n in &lab.nodes {
        let c = &n.config;
        let mut node = Netlink::open_in(&spaces[&n.netns]).map_err(nl(&n.netns))?;
        let dev = lan_addr(&mut node, c.ip).map_err(nl(&n.netns))?;
        node.add_route(&default_via(dev)).map_err(nl(&n.netns))?;
        match c.routing {
            Routing::Native => {
                for p in &c.peers {
                    node.add_route(&Route::via_onlink(
                        p.pod_cidr.addr,
                        p.pod_cidr.prefix,
                        p.ip.into(),
                        dev,
                    ))
                    .map_err(nl(&n.netns))?;
                }
            }
            Routing::Vxlan => {
                let v = Vxlan {
                    vni: None,
                    port: c.vxlan_port,
                    external: true,
                    learning: false,
                    local: Some(c.ip.into()),
                    dev: Some(dev),
                };
                node.add_link(&NewLink::vxlan(VXLAN_DEV, &v).mtu(c.pod_mtu()).up())
                    .map_err(nl(&n.netns))?;
            }
        }
        let pod_ns: Vec<Netns> = n
            .pods
            .iter()
            .map(|p| open(&p.netns))
            .collect::<Result<_, _>>()?;
        let mtu = (c.routing == Routing::Vxlan).then(|| c.pod_mtu());
        topology::plumb_pods(&mut node, &n.netns, &n.pods, &pod_ns, mtu)?;
        node.wait_oper_up(UPLINK, topology::LINK_UP_TIMEOUT)
            .map_err(nl(&n.netns))?;
    }
    Ok(())
}

/// The router's route to each node's pod CIDR through that node.
fn route_pod_cidrs(lab: &Lab, router: &mut Netlink, dev: u32) -> Result<(), LabError> {
    for n in &lab.nodes {
        router
            .add_route(&Route::via_onlink(
                n.config.pod_cidr.addr,
                n.config.pod_cidr.prefix,
                n.config.ip.into(),
                dev,
            ))
            .map_err(nl(&lab.router_netns))?;
    }
    Ok(())
}

/// Gives a running lab's router its routes to the pod CIDRs (what `up` does with
/// `router_pod_routes`): the study's fix that lets unmasqueraded pods be answered.
pub fn add_router_pod_routes(lab: &Lab) -> Result<(), LabError> {
    let mut router = Netlink::open_in(&open(&lab.router_netns)?).map_err(nl(&lab.router_netns))?;
    let dev = router.index_of(UPLINK).map_err(nl(&lab.router_netns))?;
    route_pod_cidrs(lab, &mut router, dev)
}

/// Writes each node's configuration, the ip-masq-agent config they name, and the completed
/// inventory next to the state file.
/// Each configuration is read back through the checker (`sluice node check`'s), so the lab
/// never hands out a file the node would refuse.
fn write_files(lab: &Lab) -> Result<(), LabError> {
    if let Some(text) = &lab.ip_masq_agent {
        let path = lab.dir.join(IP_MASQ_AGENT_FILE);
        std::fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
    }
    for n in &lab.nodes {
        let path = lab.dir.join(format!("{}.yaml", n.config.name));
        let text = serde_norway::to_string(&n.config).expect("a node config serializes");
        let (back, diags) =
            sluice_compiler::node::read(sluice_compiler::source::ast::SourceId(0), &text);
        if back.as_ref() != Some(&n.config) {
            return Err(LabError::Invalid(format!(
                "the lab's own node configuration for {} does not check: {:?}",
                n.config.name, diags.items
            )));
        }
        std::fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
    }
    let path = lab.dir.join("inventory.yaml");
    let text = serde_norway::to_string(&lab.inventory).expect("an inventory serializes");
    std::fs::write(&path, text).map_err(io(format!("write {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_places_pods_and_addresses_nodes() {
        let mut o = LabOptions::new(2, Routing::Native);
        o.prefix = "t".into();
        let lab = plan(&o).unwrap();
        assert_eq!(lab.nodes[0].config.ip, Ipv4Addr::new(192, 168, 10, 11));
        assert_eq!(lab.nodes[1].config.pod_cidr.to_string(), "10.244.2.0/24");
        assert_eq!(lab.nodes[0].config.peers[0].name, "node-2");
        let fe = &lab.nodes[0].pods[0];
        assert_eq!(
            (fe.name.as_str(), fe.ip),
            ("frontend", Ipv4Addr::new(10, 244, 1, 10))
        );
        assert_eq!(fe.netns, "t-pod-web-frontend");
        assert_eq!(lab.netns_of("node-2").unwrap(), "t-node-2");
        assert_eq!(lab.netns_of("db/postgres").unwrap(), "t-pod-db-postgres");
        assert!(lab.netns_of("node-3").is_err());
        let members = lab.members();
        assert_eq!(members.len(), 2 + 2 + 4);
        assert_eq!(lab.namespaces.len(), members.len() + 1, "+ the LAN");
        let ep = &lab.inventory.endpoints[0];
        assert_eq!(ep.netns.as_deref(), Some("t-pod-web-frontend"));
        // One node: a pod pinned to node-2 has nowhere to run.
        o.nodes = 1;
        assert!(plan(&o).unwrap_err().to_string().contains("node-1..node-1"));
        o.nodes = 2;
        o.prefix = "bad/prefix".into();
        assert!(plan(&o).is_err());
    }
}
