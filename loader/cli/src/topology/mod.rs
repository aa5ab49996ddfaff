//! A "cluster in a box": one node and its pods, each in its own network namespace.
//!
//! Kernel conformance, `sluice demo` and the swap-under-load tests all need real pods with
//! real sockets. This module builds them over netlink (`sluice_loader::netlink`), no `ip` processes:
//!
//! ```text
//!   pod netns (eth0, IP/32) ══ veth ══ node netns (host veth, /32 route back)
//!                                       │ forwarding on, node IP on lo
//!                                       └══ veth ══ external netns (optional, "the world":
//!                                                    the node's default route, drops what
//!                                                    it does not own)
//! ```
//!
//! Every pod has a default route via the link-local gateway 169.254.1.1 with a permanent
//! neighbour entry for the host veth's MAC (the Calico layout), and the node has a permanent
//! neighbour entry for each pod, so no ARP is ever needed. Nothing is connected to the
//! caller's own namespace: traffic stays inside the box.
//!
//! Names carry a unique prefix (`sl` + pid + counter) so parallel tests do not collide, and
//! a [`Topology`] removes everything it made when dropped, also while a test panics.
//! [`cleanup_stale`] and [`cleanup_dead_runs`] remove what a crashed run left behind.

pub mod peer;
pub mod probe;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use probe::{Probe, ProbeError, ProbeOutcome, Proto, Servers};

use sluice_loader::netlink::link::parse_mac;
use sluice_loader::netlink::{Address, Neighbour, Netlink, NetlinkError, NewLink, Peer, Route};
use sluice_loader::sys::netns::{self, Netns};

/// The pods' gateway: link-local, answered by a static neighbour entry, never on the wire.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// MAC of every node-side veth (pods only ever talk to the gateway).
pub const NODE_SIDE_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// MAC of the external host's interface.
pub const EXTERNAL_MAC: &str = "02:ee:00:00:00:01";
/// Linux's interface name limit (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// What went wrong building, using or removing a topology.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A netlink request in a namespace failed.
    #[error("netns {netns}: {source}")]
    Netlink {
        netns: String,
        #[source]
        source: NetlinkError,
    },
    /// The description asks for something impossible (duplicate IP, name too long, ...).
    #[error("invalid topology: {0}")]
    Invalid(String),
    /// Entering or configuring a namespace failed.
    #[error("netns {netns}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: std::io::Error,
    },
}

/// One pod to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// Kubernetes-style namespace (only used for naming and look-up).
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
}

/// A plain description of the box, independent of any policy types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologySpec {
    pub pods: Vec<PodSpec>,
    /// The node's own address (on the node's `lo`); the masquerade source later on.
    pub node_ip: Option<Ipv4Addr>,
    /// Addresses of an external host beyond the node. Empty: no external host.
    pub external_ips: Vec<Ipv4Addr>,
}

impl TopologySpec {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn pod(mut self, namespace: &str, name: &str, ip: Ipv4Addr) -> Self {
        self.pods.push(PodSpec {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ip,
        });
        self
    }

    pub fn node_ip(mut self, ip: Ipv4Addr) -> Self {
        self.node_ip = Some(ip);
        self
    }

    pub fn external(mut self, ip: Ipv4Addr) -> Self {
        self.external_ips.push(ip);
        self
    }

    fn validate(&self) -> Result<(), TopologyError> {
        let mut names = HashSet::new();
        let mut ips = HashSet::new();
        let bad = |ip: Ipv4Addr| {
            ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_loopback()
                || ip == GATEWAY
        };
        for p in &self.pods {
            if p.name.is_empty() || p.namespace.is_empty() {
                return Err(TopologyError::Invalid(format!(
                    "pod {}/{} needs a namespace and a name",
                    p.namespace, p.name
                )));
            }
            if !names.insert((&p.namespace, &p.name)) {
                return Err(TopologyError::Invalid(format!(
                    "pod {}/{} appears twice",
                    p.namespace, p.name
                )));
            }
            if bad(p.ip) || !ips.insert(p.ip) {
                return Err(TopologyError::Invalid(format!(
                    "pod {}/{} has a duplicate or reserved IP {}",
                    p.namespace, p.name, p.ip
                )));
            }
        }
        for &ip in self.external_ips.iter().chain(self.node_ip.iter()) {
            if bad(ip) || !ips.insert(ip) {
                return Err(TopologyError::Invalid(format!(
                    "duplicate or reserved IP {ip}"
                )));
            }
        }
        Ok(())
    }
}

/// A pod as built: where it lives and what its interfaces are called.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    /// Network namespace name (under /run/netns).
    pub netns: String,
    /// Host-side veth, in the node namespace: where from-/to-endpoint programs attach.
    pub host_if: String,
    /// The pod's eth0 MAC.
    pub mac: String,
}

/// The external host, if the spec asked for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub netns: String,
    /// The node's uplink veth towards it (in the node namespace).
    pub host_if: String,
    pub ips: Vec<Ipv4Addr>,
}

/// Everything a built box consists of. Dropping it removes it all.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    node: String,
    node_ip: Option<Ipv4Addr>,
    pods: Vec<Pod>,
    external: Option<External>,
    torn_down: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn base36(mut n: u32, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).expect("ascii")
}

/// Every prefix starts with this.
pub const PREFIX_BASE: &str = "sl";
const PID_DIGITS: usize = 5; // 36^5 > 2^22, the largest pid_max
const COUNTER_DIGITS: usize = 2;

/// A fresh prefix: `sl` + pid (5 base-36 digits) + per-process counter (2 digits), 9 chars.
pub fn unique_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 36u32.pow(COUNTER_DIGITS as u32);
    format!(
        "{PREFIX_BASE}{}{}",
        base36(std::process::id(), PID_DIGITS),
        base36(n, COUNTER_DIGITS)
    )
}

/// The pid encoded in a name made with [`unique_prefix`], if it has that shape.
fn prefix_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX_BASE)?;
    let digits = rest.get(..PID_DIGITS + COUNTER_DIGITS)?;
    // Every namespace a Topology makes is `<prefix>-...`; demand the dash so that a
    // stranger's namespace that merely starts with "sl" is never taken for ours.
    if rest.as_bytes().get(PID_DIGITS + COUNTER_DIGITS) != Some(&b'-') {
        return None;
    }
    if !digits
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return None;
    }
    let pid = u32::from_str_radix(&digits[..PID_DIGITS], 36).ok()?;
    (pid > 0 && pid <= netns::pid_max()).then_some(pid)
}

pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Topology {
    /// Builds the box under a fresh unique prefix.
    pub fn build(spec: &TopologySpec) -> Result<Self, TopologyError> {
        Self::build_with_prefix(spec, &unique_prefix())
    }

    /// Builds the box under `prefix` (removing any leftovers with that prefix first).
    pub fn build_with_prefix(spec: &TopologySpec, prefix: &str) -> Result<Self, TopologyError> {
        spec.validate()?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TopologyError::Invalid(format!(
                "prefix {prefix:?} must be non-empty ASCII letters and digits"
            )));
        }
        let longest = format!("{prefix}p{}", spec.pods.len().saturating_sub(1));
        if longest.len() > MAX_IFNAME {
            return Err(TopologyError::Invalid(format!(
                "interface name {longest} would be longer than {MAX_IFNAME} characters"
            )));
        }
        let started = std::time::Instant::now();
        cleanup_stale(prefix)?;

        let pods: Vec<Pod> = spec
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let o = p.ip.octets();
                let mut netns = format!(
                    "{prefix}-p{i}-{}-{}",
                    sanitize(&p.namespace),
                    sanitize(&p.name)
                );
                netns.truncate(200);
                Pod {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    ip: p.ip,
                    netns,
                    host_if: format!("{prefix}p{i}"),
                    mac: format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]),
                }
            })
            .collect();
        let external = (!spec.external_ips.is_empty()).then(|| External {
            netns: format!("{prefix}-ext"),
            host_if: format!("{prefix}x"),
            ips: spec.external_ips.clone(),
        });
        // From here on the guard owns whatever exists, so an error or panic cleans up.
        let topo = Topology {
            prefix: prefix.to_owned(),
            node: format!("{prefix}-node"),
            node_ip: spec.node_ip,
            pods,
            external,
            torn_down: false,
        };
        topo.create()?;
        tracing::info!(
            prefix,
            pods = topo.pods.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "topology built"
        );
        Ok(topo)
    }

    fn all_netns(&self) -> Vec<&str> {
        let mut v = vec![self.node.as_str()];
        v.extend(self.pods.iter().map(|p| p.netns.as_str()));
        v.extend(self.external.iter().map(|e| e.netns.as_str()));
        v
    }

    fn create(&self) -> Result<(), TopologyError> {
        // 1. Namespaces, then the veth pairs, each end created directly in its namespace.
        let mut spaces = Vec::new();
        for name in self.all_netns() {
            let ns = Netns::create(name).map_err(|source| TopologyError::Netns {
                netns: name.to_owned(),
                source,
            })?;
            spaces.push(ns);
        }
        let (node_ns, rest) = spaces
            .split_first()
            .expect("the node namespace comes first");
        let mut node = Netlink::open_in(node_ns).map_err(nl(&self.node))?;
        if let Some(e) = &self.external {
            let ns = rest.last().expect("the external namespace comes last");
            let veth = NewLink::veth(
                &e.host_if,
                Peer::new("eth0").mac(mac(EXTERNAL_MAC)).netns(ns),
            )
            .mac(mac(NODE_SIDE_MAC))
            .up();
            node.add_link(&veth).map_err(nl(&self.node))?;
        }

        // 2. Addresses, routes and neighbours: the node's over its socket, then each pod's
        //    and the external host's over one socket per namespace.
        node.set_up("lo", true).map_err(nl(&self.node))?;
        if let Some(ip) = self.node_ip {
            let lo = node.index_of("lo").map_err(nl(&self.node))?;
            node.add_address(&Address::new(lo, ip.into(), 32))
                .map_err(nl(&self.node))?;
        }
        plumb_pods(&mut node, &self.node, &self.pods, rest, None)?;
        if let Some(e) = &self.external {
            let dev = node.index_of(&e.host_if).map_err(nl(&self.node))?;
            let ext_mac = mac(EXTERNAL_MAC);
            for &ip in &e.ips {
                node.add_route(&Route::dev(ip.into(), 32, dev))
                    .and_then(|()| {
                        node.replace_neighbour(&Neighbour::permanent(dev, ip.into(), ext_mac))
                    })
                    .map_err(nl(&self.node))?;
            }
            // Everything else leaves through the external host too, which does not
            // forward: like the internet not answering, probes there time out.
            node.replace_neighbour(&Neighbour::permanent(dev, GATEWAY.into(), ext_mac))
                .and_then(|()| {
                    node.add_route(&Route::via_onlink(
                        Ipv4Addr::UNSPECIFIED.into(),
                        0,
                        GATEWAY.into(),
                        dev,
                    ))
                })
                .map_err(nl(&self.node))?;
            let ns = rest.last().expect("the external namespace comes last");
            endpoint(ns, &e.ips, None).map_err(nl(&e.netns))?;
        }
        if let Some(e) = &self.external {
            node.wait_oper_up(&e.host_if, LINK_UP_TIMEOUT)
                .map_err(nl(&self.node))?;
        }

        // 3. Only the node routes. New namespaces copy forwarding from the host's, so
        //    switch it off explicitly everywhere else (an external host that forwarded
        //    would bounce unknown destinations back to the node until the TTL ran out).
        for ns in self.all_netns() {
            let on = if ns == self.node { "1" } else { "0" };
            sysctl(ns, "net/ipv4/ip_forward", on)?;
        }
        Ok(())
    }

    /// Writes a sysctl under /proc/sys inside the node namespace (e.g. `net/ipv4/ip_forward`).
    pub fn node_sysctl(&self, key: &str, value: &str) -> Result<(), TopologyError> {
        sysctl(&self.node, key, value)
    }

    /// The unique prefix of every name this box uses.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The node's namespace name.
    pub fn node_netns(&self) -> &str {
        &self.node
    }

    pub fn node_ip(&self) -> Option<Ipv4Addr> {
        self.node_ip
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Looks a pod up by namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    pub fn external(&self) -> Option<&External> {
        self.external.as_ref()
    }

    /// Opens the node namespace (to attach programs from a thread inside it).
    pub fn open_node(&self) -> Result<Netns, TopologyError> {
        Netns::open(&self.node).map_err(|source| TopologyError::Netns {
            netns: self.node.clone(),
            source,
        })
    }

    /// Starts echo servers for `ports` inside `netns` (a pod's, the external host's, ...).
    pub fn serve(&self, netns: &str, ports: &[(u16, Proto)]) -> Result<Servers, ProbeError> {
        Servers::start(netns, ports)
    }

    /// [`serve`](Self::serve) in every pod.
    pub fn serve_pods(&self, ports: &[(u16, Proto)]) -> Result<Vec<Servers>, ProbeError> {
        self.pods()
            .iter()
            .map(|p| self.serve(&p.netns, ports))
            .collect()
    }

    /// One probe from `from_netns` to `to:port`.
    pub fn probe(
        &self,
        from_netns: &str,
        to: Ipv4Addr,
        port: u16,
        proto: Proto,
        timeout: Duration,
    ) -> Result<ProbeOutcome, ProbeError> {
        probe::probe(from_netns, to, port, proto, timeout)
    }

    /// Removes everything, reporting the first failure. Drop does the same, silently.
    pub fn teardown(mut self) -> Result<(), TopologyError> {
        self.torn_down = true;
        self.remove()
    }

    fn remove(&self) -> Result<(), TopologyError> {
        let existing = netns::list_named().map_err(|source| TopologyError::Netns {
            netns: netns::NETNS_RUN_DIR.to_owned(),
            source,
        })?;
        let mut first_err = None;
        // Delete the veths first: a socket or thread still inside a pod namespace would
        // otherwise keep that namespace, and so its veth pair, alive after `netns del`.
        if existing.iter().any(|n| n == &self.node) {
            let host_ifs = self
                .pods
                .iter()
                .map(|p| p.host_if.as_str())
                .chain(self.external.iter().map(|e| e.host_if.as_str()));
            if let Err(e) = del_links(&self.node, host_ifs) {
                first_err.get_or_insert(e);
            }
        }
        for ns in self.all_netns() {
            if existing.iter().any(|n| n == ns)
                && let Err(source) = netns::remove_named(ns)
            {
                first_err.get_or_insert(TopologyError::Netns {
                    netns: ns.to_owned(),
                    source,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Parses one of the MAC constants or a pod's MAC (all made here, so well-formed).
pub(crate) fn mac(s: &str) -> [u8; 6] {
    parse_mac(s).unwrap_or_else(|| panic!("malformed MAC {s}"))
}

pub(crate) fn nl(netns: &str) -> impl Fn(NetlinkError) -> TopologyError + '_ {
    move |source| TopologyError::Netlink {
        netns: netns.to_owned(),
        source,
    }
}

/// Connects pods to a node: for each pod a veth pair (the host side `host_if` in the node's
/// namespace, `eth0` created in `pod_ns[i]`), a /32 route and a permanent neighbour entry on
/// the node, and the pod's side set up by [`endpoint`]. `mtu` caps the pods' default route
/// (the tunnel's overhead). Shared by [`Topology`] and the lab (`crate::lab`), which put
/// several nodes side by side.
pub(crate) fn plumb_pods(
    node: &mut Netlink,
    node_netns: &str,
    pods: &[Pod],
    pod_ns: &[Netns],
    mtu: Option<u32>,
) -> Result<(), TopologyError> {
    let node_mac = mac(NODE_SIDE_MAC);
    for (p, ns) in pods.iter().zip(pod_ns) {
        let veth = NewLink::veth(&p.host_if, Peer::new("eth0").mac(mac(&p.mac)).netns(ns))
            .mac(node_mac)
            .up();
        node.add_link(&veth).map_err(nl(node_netns))?;
        let dev = node.index_of(&p.host_if).map_err(nl(node_netns))?;
        node.add_route(&Route::dev(p.ip.into(), 32, dev))
            .and_then(|()| {
                node.replace_neighbour(&Neighbour::permanent(dev, p.ip.into(), mac(&p.mac)))
            })
            .map_err(nl(node_netns))?;
    }
    for (p, ns) in pods.iter().zip(pod_ns) {
        endpoint(ns, &[p.ip], mtu).map_err(nl(&p.netns))?;
    }
    for p in pods {
        node.wait_oper_up(&p.host_if, LINK_UP_TIMEOUT)
            .map_err(nl(node_netns))?;
    }
    Ok(())
}

/// A pod's or the external host's side: lo and eth0 up, its /32 addresses on eth0, and the
/// Calico-style default route (a link-local gateway with a permanent neighbour entry).
fn endpoint(ns: &Netns, ips: &[Ipv4Addr], mtu: Option<u32>) -> Result<(), NetlinkError> {
    let mut nl = Netlink::open_in(ns)?;
    nl.set_up("lo", true)?;
    nl.set_up("eth0", true)?;
    let eth0 = nl.index_of("eth0")?;
    for &ip in ips {
        nl.add_address(&Address::new(eth0, ip.into(), 32))?;
    }
    nl.replace_neighbour(&Neighbour::permanent(
        eth0,
        GATEWAY.into(),
        mac(NODE_SIDE_MAC),
    ))?;
    nl.add_route(&Route::dev(GATEWAY.into(), 32, eth0))?;
    let default = Route::via_onlink(Ipv4Addr::UNSPECIFIED.into(), 0, GATEWAY.into(), eth0);
    nl.add_route(&match mtu {
        Some(m) => default.mtu(m),
        None => default,
    })?;
    nl.wait_oper_up("eth0", LINK_UP_TIMEOUT)
}

/// How long a new veth may take to become operational (the kernel's link watcher).
pub(crate) const LINK_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// Deletes the named devices in `netns`; one already gone (a veth whose peer went first)
/// is not an error.
pub(crate) fn del_links<'a>(
    netns: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), TopologyError> {
    let mut nl = Netlink::open_named(Some(netns)).map_err(nl(netns))?;
    let mut first_err = None;
    for name in names {
        match nl.del_link(name) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                first_err.get_or_insert(TopologyError::Netlink {
                    netns: netns.to_owned(),
                    source: e,
                });
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Writes `/proc/sys/KEY` inside `netns` (sysctls under net/ are per namespace).
pub(crate) fn sysctl(netns: &str, key: &str, value: &str) -> Result<(), TopologyError> {
    let err = |source| TopologyError::Netns {
        netns: netns.to_owned(),
        source,
    };
    let ns = Netns::open(netns).map_err(err)?;
    let path = format!("/proc/sys/{key}");
    ns.run(|| std::fs::write(&path, value))
        .map_err(err)?
        .map_err(|e| {
            err(std::io::Error::new(
                e.kind(),
                format!("write {value} to {path}: {e}"),
            ))
        })
}

impl Drop for Topology {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if let Err(e) = self.remove() {
            tracing::warn!(prefix = %self.prefix, error = %e, "topology teardown failed");
        }
    }
}

/// Removes every namespace whose name starts with `prefix` (and the veths in them), e.g.
/// what a crashed run left. Anything with that prefix goes, so pass a specific one.
pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>, TopologyError> {
    remove_netns_matching(|name| name.starts_with(prefix))
}

/// Removes leftovers of runs whose process is gone: names made by [`unique_prefix`] whose
/// pid no longer exists. Safe while other runs are building their own boxes.
pub fn cleanup_dead_runs() -> Result<Vec<String>, TopologyError> {
    remove_netns_matching(|name| prefix_pid(name).is_some_and(|pid| !netns::pid_alive(pid)))
}

/// Removes the named namespaces that exist (veths in them first) and returns their names; a
/// name that does not exist is skipped.
pub(crate) fn remove_netns_named(names: &[String]) -> Result<Vec<String>, TopologyError> {
    remove_netns_matching(|n| names.iter().any(|m| m == n))
}

fn remove_netns_matching(pred: impl Fn(&str) -> bool) -> Result<Vec<String>, TopologyError> {
    let doomed: Vec<String> = netns::list_named()
        .map_err(|source| TopologyError::Netns {
            netns: netns::NETNS_RUN_DIR.to_owned(),
            source,
        })?
        .into_iter()
        .filter(|n| pred(n))
        .collect();
    if doomed.is_empty() {
        return Ok(doomed);
    }
    tracing::info!(?doomed, "removing stale namespaces");
    // Veths first, for the same reason as in Topology::remove; failures are ignored (a
    // veth whose peer was deleted with an earlier namespace is gone already).
    for ns in &doomed {
        let veths = Netlink::open_named(Some(ns)).and_then(|mut nl| {
            Ok(nl
                .links()?
                .into_iter()
                .filter(|l| l.kind.as_deref() == Some("veth"))
                .map(|l| l.name)
                .collect::<Vec<_>>())
        });
        if let Ok(veths) = veths {
            let _ = del_links(ns, veths.iter().map(String::as_str));
        }
    }
    let mut first_err = None;
    for ns in &doomed {
        if let Err(source) = netns::remove_named(ns) {
            first_err.get_or_insert(TopologyError::Netns {
                netns: ns.clone(),
                source,
            });
        }
    }
    first_err.map_or(Ok(doomed), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_short_unique_and_parse_back() {
        let a = unique_prefix();
        let b = unique_prefix();
        assert_ne!(a, b);
        assert_eq!(a.len(), 9);
        assert_eq!(prefix_pid(&format!("{a}-node")), Some(std::process::id()));
        assert_eq!(prefix_pid("slx"), None);
        assert_eq!(
            prefix_pid(&a),
            None,
            "no dash: not a namespace name of ours"
        );
        assert_eq!(prefix_pid("slackbot1-foo"), None, "pid beyond pid_max");
        assert_eq!(prefix_pid("something-else"), None);
        assert_eq!(base36(4_194_304, 5), "2hwcg");
    }

    #[test]
    fn spec_rejects_duplicates_and_reserved_addresses() {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let dup = TopologySpec::new().pod("a", "x", ip).pod("a", "y", ip);
        assert!(matches!(dup.validate(), Err(TopologyError::Invalid(_))));
        let twice = TopologySpec::new()
            .pod("a", "x", ip)
            .pod("a", "x", Ipv4Addr::new(10, 0, 0, 2));
        assert!(matches!(twice.validate(), Err(TopologyError::Invalid(_))));
        let gw = TopologySpec::new().pod("a", "x", GATEWAY);
        assert!(matches!(gw.validate(), Err(TopologyError::Invalid(_))));
        let ext = TopologySpec::new().pod("a", "x", ip).external(ip);
        assert!(matches!(ext.validate(), Err(TopologyError::Invalid(_))));
        assert!(TopologySpec::new().pod("a", "x", ip).validate().is_ok());
    }

    #[test]
    fn too_long_prefix_is_refused_before_touching_the_kernel() {
        let spec = TopologySpec::new().pod("a", "x", Ipv4Addr::new(10, 0, 0, 1));
        let err = Topology::build_with_prefix(&spec, "slaaaaaaaaaaaaaa").unwrap_err();
        assert!(err.to_string().contains("longer than 15"), "{err}");
    }
}
