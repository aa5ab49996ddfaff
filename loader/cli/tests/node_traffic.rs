//! Real traffic through the node datapath (`spec/datapath.md`, "Nodes"): two nodes, each in
//! its own network namespace, joined by a veth pair (the underlay, 192.168.77.0/24), with
//! two pods each in their own namespaces. Every program and map comes from one compilation
//! per node; the test completes the node maps and attaches the hooks itself (what the
//! loader's generation swap will do).
//!
//! ```text
//!  a 10.1.1.10 ─┐                                          ┌─ c 10.1.2.10
//!  b 10.1.1.11 ─┤ n1 ══ u1 192.168.77.1 ══ u2 192.168.77.2 ══ n2 ├─ e 10.1.2.11
//!               └ sluice_vxlan (external, 8472)  sluice_vxlan ┘
//! ```
//!
//! `b` and `e` share labels (`app=b`); `c` admits `app=b` everywhere and `app=a` on 5000/tcp
//! only. In VXLAN mode n2 compiles an inventory without `b` (its inventory lags), so only
//! the VNI tells n2 that b's packets come from `app=b`.

#[path = "support/net.rs"]
mod net;

use sluice_cli::topology::probe::probe;
use sluice_cli::topology::{ProbeOutcome, Proto, Servers};
use sluice_compiler::bundle::abi::node::VXLAN_IFNAME;
use sluice_compiler::compile::{CompileOptions, Compiled, check_documents, compile};
use sluice_compiler::datapath::node::{Routing, config_from_inventory};
use sluice_compiler::node::{DEFAULT_VXLAN_PORT, VXLAN_OVERHEAD};
use sluice_compiler::resolve::{Inventory, InventoryFiles};
use sluice_compiler::source::{SourceMap, dsl};
use sluice_loader::generation::{self, LoadOptions};
use sluice_loader::netlink::link::Vxlan;
use sluice_loader::netlink::{Address, Neighbour, Netlink, NewLink, Peer, Route};
use sluice_loader::sys::netns::{self, Netns};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const POLICY: &str = r#"policy "c" in namespace x {
  select app = c
  ingress allow from pods { app = b }
  ingress allow from pods { app = a } ports 5000/tcp
}
"#;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
const HOST_MAC: [u8; 6] = [0xee; 6];
const UNDERLAY_MTU: u32 = 1500;
const TIMEOUT: Duration = Duration::from_secs(2);

struct PodDef {
    name: &'static str,
    app: &'static str,
    ip: Ipv4Addr,
    node: usize,
}

const PODS: [PodDef; 4] = [
    PodDef {
        name: "a",
        app: "a",
        ip: Ipv4Addr::new(10, 1, 1, 10),
        node: 1,
    },
    PodDef {
        name: "b",
        app: "b",
        ip: Ipv4Addr::new(10, 1, 1, 11),
        node: 1,
    },
    PodDef {
        name: "c",
        app: "c",
        ip: Ipv4Addr::new(10, 1, 2, 10),
        node: 2,
    },
    PodDef {
        name: "e",
        app: "b",
        ip: Ipv4Addr::new(10, 1, 2, 11),
        node: 2,
    },
];

fn node_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77, n as u8)
}

fn pod_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0, o[0], o[1], o[2], o[3]]
}

/// Two nodes in a box; dropping it detaches every hook and removes every namespace and pin.
struct Cluster {
    prefix: String,
    routing: Routing,
    /// Each node's load options (its own pin root and state directory).
    loads: Vec<LoadOptions>,
    /// Each local pod's identity, as its node's `sluice_eps` holds it.
    identities: Vec<(Ipv4Addr, u32)>,
}

impl Cluster {
    fn node_ns(&self, n: usize) -> String {
        format!("{}-n{n}", self.prefix)
    }
    fn pod_ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
    fn host_if(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
    fn all_ns(&self) -> Vec<String> {
        let mut v = vec![self.node_ns(1), self.node_ns(2)];
        v.extend(PODS.iter().map(|p| self.pod_ns(p.name)));
        v
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for l in &self.loads {
            if let Err(e) = generation::unload(l) {
                eprintln!("unload {}: {e}", l.root.display());
            }
            let _ = std::fs::remove_dir_all(&l.state_dir);
        }
        for ns in self.all_ns() {
            let _ = netns::remove_named(&ns);
        }
    }
}

fn inventory(prefix: &str, with_b: bool) -> String {
    let mut s = String::from(
        "nodes:\n- {name: n1, ips: [192.168.77.1], pod_cidr: 10.1.1.0/24}\n\
         - {name: n2, ips: [192.168.77.2], pod_cidr: 10.1.2.0/24}\nendpoints:\n",
    );
    for p in &PODS {
        if p.name == "b" && !with_b {
            continue;
        }
        s.push_str(&format!(
            "- {{name: {n}, namespace: x, labels: {{app: {}}}, ips: [{}], node: n{}, \
             interface: {prefix}{n}, netns: {prefix}-{n}}}\n",
            p.app,
            p.ip,
            p.node,
            n = p.name
        ));
    }
    s
}

fn build(prefix: &str, node: usize, routing: Routing, with_b: bool) -> Compiled {
    build_policy(POLICY, prefix, node, routing, with_b)
}

fn build_policy(
    policy: &str,
    prefix: &str,
    node: usize,
    routing: Routing,
    with_b: bool,
) -> Compiled {
    let mut sm = SourceMap::new();
    let id = sm.add("c.sluice", policy);
    let doc = dsl::parse(id, policy).unwrap();
    let inv = Inventory::parse("inv.yaml", &inventory(prefix, with_b)).unwrap();
    let checked = check_documents(&[doc], Some(&inv));
    assert!(!checked.diags.has_errors(), "{:?}", checked.diags);
    let opts = CompileOptions {
        node: Some(format!("n{node}")),
        datapath: config_from_inventory(
            &inv,
            &format!("n{node}"),
            "192.168.77.0/24".parse().unwrap(),
            &format!("{prefix}u{node}"),
            routing,
        ),
        // The ip-masq-agent defaults, as a node without a config file has them: the
        // underlay (192.168.0.0/16) keeps the pods' addresses and goes through the stack.
        masquerade: vec![sluice_compiler::source::ipmasq::defaults(
            sluice_compiler::source::ast::Span::NONE,
        )],
        ..CompileOptions::default()
    };
    compile(&checked.ir, &inv, &sm, &[], &opts, &mut |_| {}).unwrap()
}

fn up(prefix: &str, routing: Routing) -> Cluster {
    let route_mtu = match routing {
        Routing::Vxlan => UNDERLAY_MTU - VXLAN_OVERHEAD,
        Routing::Native => UNDERLAY_MTU,
    };
    up_with_mtu(prefix, routing, route_mtu)
}

/// [`up`] with the pods' default route at `route_mtu`.
fn up_with_mtu(prefix: &str, routing: Routing, route_mtu: u32) -> Cluster {
    static N: AtomicU32 = AtomicU32::new(0);
    let prefix = format!(
        "sn{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    ) + prefix;
    let mut c = Cluster {
        prefix,
        routing,
        loads: Vec::new(),
        identities: Vec::new(),
    };
    for ns in c.all_ns() {
        let _ = netns::remove_named(&ns);
    }
    let spaces: Vec<Netns> = c
        .all_ns()
        .iter()
        .map(|n| Netns::create(n).unwrap_or_else(|e| panic!("netns {n}: {e}")))
        .collect();
    let (n1, n2) = (&spaces[0], &spaces[1]);
    let mut nl = [Netlink::open_in(n1).unwrap(), Netlink::open_in(n2).unwrap()];
    let uplink = |n: usize| format!("{}u{n}", c.prefix);
    nl[0]
        .add_link(&NewLink::veth(&uplink(1), Peer::new(&uplink(2)).netns(n2)).up())
        .unwrap();
    for n in [1, 2] {
        let l = &mut nl[n - 1];
        l.set_up("lo", true).unwrap();
        l.set_up(&uplink(n), true).unwrap();
        let u = l.index_of(&uplink(n)).unwrap();
        l.add_address(&Address::new(u, node_ip(n).into(), 24))
            .unwrap();
        if routing == Routing::Vxlan {
            let v = Vxlan {
                vni: None,
                port: DEFAULT_VXLAN_PORT,
                external: true,
                learning: false,
                local: Some(node_ip(n).into()),
                dev: Some(u),
            };
            l.add_link(
                &NewLink::vxlan(VXLAN_IFNAME, &v)
                    .mtu(UNDERLAY_MTU - VXLAN_OVERHEAD)
                    .up(),
            )
            .unwrap();
            // The route through the tunnel, with its MTU (as `sluice lab` makes it): what the
            // host stack uses for a packet too big for the tunnel.
            let other = 3 - n;
            let vx = l.index_of(VXLAN_IFNAME).unwrap();
            l.add_route(
                &Route::dev(Ipv4Addr::new(10, 1, other as u8, 0).into(), 24, vx)
                    .mtu(UNDERLAY_MTU - VXLAN_OVERHEAD),
            )
            .unwrap();
        } else {
            // Native routing: the other node's pod CIDR through it.
            let other = 3 - n;
            l.add_route(&Route::via_onlink(
                Ipv4Addr::new(10, 1, other as u8, 0).into(),
                24,
                node_ip(other).into(),
                u,
            ))
            .unwrap();
        }
    }
    // Pods: veth to their node, /32 on eth0, default route via the link-local gateway.
    for (p, ns) in PODS.iter().zip(&spaces[2..]) {
        let l = &mut nl[p.node - 1];
        l.add_link(
            &NewLink::veth(
                &c.host_if(p.name),
                Peer::new("eth0").mac(pod_mac(p.ip)).netns(ns),
            )
            .mac(HOST_MAC)
            .up(),
        )
        .unwrap();
        let dev = l.index_of(&c.host_if(p.name)).unwrap();
        l.add_route(&Route::dev(p.ip.into(), 32, dev)).unwrap();
        l.replace_neighbour(&Neighbour::permanent(dev, p.ip.into(), pod_mac(p.ip)))
            .unwrap();
        let mut pl = Netlink::open_in(ns).unwrap();
        pl.set_up("lo", true).unwrap();
        pl.set_up("eth0", true).unwrap();
        let eth0 = pl.index_of("eth0").unwrap();
        pl.add_address(&Address::new(eth0, p.ip.into(), 32))
            .unwrap();
        pl.replace_neighbour(&Neighbour::permanent(eth0, GATEWAY.into(), HOST_MAC))
            .unwrap();
        pl.add_route(&Route::dev(GATEWAY.into(), 32, eth0)).unwrap();
        pl.add_route(
            &Route::via_onlink(Ipv4Addr::UNSPECIFIED.into(), 0, GATEWAY.into(), eth0)
                .mtu(route_mtu),
        )
        .unwrap();
        pl.wait_oper_up("eth0", Duration::from_secs(5)).unwrap();
    }
    for ns in c.all_ns() {
        let on = if ns.ends_with("-n1") || ns.ends_with("-n2") {
            "1"
        } else {
            "0"
        };
        net::sysctl(&ns, "net/ipv4/ip_forward", on);
        // Ping sockets for root, so the test can ping without raw sockets.
        net::sysctl(&ns, "net/ipv4/ping_group_range", "0 0");
    }

    // One compilation per node; n2's inventory lacks b under VXLAN (the VNI must say it).
    drop(nl);
    for n in [1, 2] {
        let with_b = !(routing == Routing::Vxlan && n == 2);
        let compiled = build(&c.prefix, n, routing, with_b);
        let opts = LoadOptions {
            root: PathBuf::from(format!("/sys/fs/bpf/{}-n{n}", c.prefix)),
            state_dir: std::env::temp_dir().join(format!("{}-n{n}", c.prefix)),
            node_netns: Some(c.node_ns(n)),
        };
        c.loads.push(opts.clone());
        let eps = &compiled.node.as_ref().unwrap().maps.endpoints;
        c.identities.extend(eps.entries.iter().map(|(k, v)| {
            let ip = Ipv4Addr::new(k[0], k[1], k[2], k[3]);
            (ip, u32::from_le_bytes(v[4..8].try_into().unwrap()))
        }));
        let report = generation::apply_bundle(&compiled.bundle, &opts)
            .unwrap_or_else(|e| panic!("n{n}: {e}"));
        // Both programs of each pod, and the node's devices.
        let devices = compiled.node.as_ref().unwrap().devices.len();
        assert_eq!(
            report.hooks.len(),
            2 * compiled.endpoints.len() + devices,
            "n{n}"
        );
    }
    c
}

/// `Ip: ForwDatagrams` of a namespace (`/proc/thread-self/net/snmp`: `/proc/net` is the
/// main thread's namespace, not the one this thread entered).
fn forwarded(ns: &str) -> u64 {
    let text = Netns::open(ns)
        .unwrap()
        .run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))
        .unwrap()
        .unwrap();
    let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// What the underlay saw of one VXLAN packet: its outer UDP checksum and its VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OnTheWire {
    udp_checksum: u16,
    vni: u32,
}

/// Listens on every interface of `ns` (a packet socket) while `send` runs, for the first
/// VXLAN frame to port 8472 whose inner IPv4 source is `inner_src`.
fn capture_vxlan(ns: &str, inner_src: Ipv4Addr, send: impl FnOnce()) -> Option<OnTheWire> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, setsockopt, socket,
        sockopt,
    };
    use std::os::fd::AsRawFd;
    let sock = Netns::open(ns)
        .unwrap()
        .run(|| {
            socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::empty(),
                SockProtocol::EthAll,
            )
        })
        .unwrap()
        .unwrap();
    let tv = nix::sys::time::TimeVal::new(0, 200_000);
    setsockopt(&sock, sockopt::ReceiveTimeout, &tv).unwrap();
    send();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 2048];
    let be16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    while Instant::now() < deadline {
        let Ok(n) = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue;
        };
        let f = &buf[..n];
        if n < 34 || be16(f, 12) != 0x0800 || f[23] != 17 {
            continue;
        }
        let udp = 14 + usize::from(f[14] & 0xf) * 4;
        // UDP 8, VXLAN 8, inner Ethernet 14, inner IPv4 source at 12.
        let inner = udp + 8 + 8 + 14;
        if n < inner + 20 || be16(f, udp + 2) != DEFAULT_VXLAN_PORT {
            continue;
        }
        if f[inner + 12..inner + 16] != inner_src.octets() {
            continue;
        }
        let v = udp + 8;
        return Some(OnTheWire {
            udp_checksum: be16(f, udp + 6),
            vni: u32::from_be_bytes([0, f[v + 4], f[v + 5], f[v + 6]]),
        });
    }
    None
}

fn ping(ns: &str, to: Ipv4Addr) -> bool {
    net::ping(ns, to, TIMEOUT)
}

fn tcp_udp(c: &Cluster, from: &str, to: Ipv4Addr, port: u16) -> [ProbeOutcome; 2] {
    [Proto::Tcp, Proto::Udp].map(|proto| {
        probe(&c.pod_ns(from), to, port, proto, TIMEOUT)
            .unwrap_or_else(|e| panic!("{from} -> {to}:{port}/{proto}: {e}"))
    })
}

fn ip_of(name: &str) -> Ipv4Addr {
    PODS.iter().find(|p| p.name == name).unwrap().ip
}

/// `bytes` over TCP from `from` to `to:port`; returns what the receiver counted and the
/// sender's path MTU afterwards (`IP_MTU`).
fn transfer(c: &Cluster, from: &str, to: &str, port: u16, bytes: usize) -> (usize, u32) {
    let listener: TcpListener = Netns::open(&c.pod_ns(to))
        .unwrap()
        .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap()
        .unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut n = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break n,
                Ok(k) => n += k,
                Err(e) => panic!("receiving after {n} bytes: {e}"),
            }
        }
    });
    let dst = ip_of(to);
    let mut s: TcpStream = Netns::open(&c.pod_ns(from))
        .unwrap()
        .run(|| TcpStream::connect_timeout(&(dst, port).into(), TIMEOUT))
        .unwrap()
        .unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let chunk = vec![0x5au8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let k = left.min(chunk.len());
        s.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    let mtu = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::IpMtu).unwrap();
    drop(s);
    (reader.join().unwrap(), mtu as u32)
}

/// Cross-node traffic both ways, policy on the receiving node, and pod to pod on one node.
fn check(c: &Cluster) {
    let _servers: Vec<Servers> = PODS
        .iter()
        .map(|p| Servers::start(&c.pod_ns(p.name), &[(80, Proto::Tcp), (80, Proto::Udp)]).unwrap())
        .collect();
    let mode = format!("{:?}", c.routing);
    use ProbeOutcome::*;

    // Same node: delivered by bpf_redirect_peer, so n1's stack forwards nothing.
    let before = forwarded(&c.node_ns(1));
    for _ in 0..3 {
        assert_eq!(
            tcp_udp(c, "a", ip_of("b"), 80),
            [Connected; 2],
            "{mode} a -> b"
        );
    }
    assert!(ping(&c.pod_ns("a"), ip_of("b")), "{mode} ping a -> b");
    assert_eq!(
        forwarded(&c.node_ns(1)),
        before,
        "{mode}: n1 forwarded a same-node packet"
    );
    // The counter is live: a packet to the underlay goes through n1's stack.
    let _ = probe(
        &c.pod_ns("a"),
        node_ip(2),
        9,
        Proto::Udp,
        Duration::from_millis(300),
    );
    assert!(
        forwarded(&c.node_ns(1)) > before,
        "{mode}: ForwDatagrams never moves"
    );
    assert_eq!(
        tcp_udp(c, "e", ip_of("c"), 80),
        [Connected; 2],
        "{mode} e -> c"
    );

    // Cross node, both directions (c's replies go back the same way). Neither node's
    // stack forwards: the sender redirects to the tunnel (or the neighbour), the receiver's
    // from_overlay (or from_netdev on the uplink) redirects into the pod.
    let before = [forwarded(&c.node_ns(1)), forwarded(&c.node_ns(2))];
    assert_eq!(
        tcp_udp(c, "b", ip_of("c"), 80),
        [Connected; 2],
        "{mode} b -> c"
    );
    assert!(ping(&c.pod_ns("b"), ip_of("c")), "{mode} ping b -> c");
    assert_eq!(
        tcp_udp(c, "c", ip_of("a"), 80),
        [Connected; 2],
        "{mode} c -> a"
    );
    assert!(ping(&c.pod_ns("e"), ip_of("a")), "{mode} ping e -> a");
    let after = [forwarded(&c.node_ns(1)), forwarded(&c.node_ns(2))];
    assert_eq!(
        after, before,
        "{mode}: a node forwarded cross-node pod traffic"
    );
    // Policy on the receiving node: c admits app=a on 5000/tcp only.
    assert_eq!(
        tcp_udp(c, "a", ip_of("c"), 80),
        [TimedOut; 2],
        "{mode} a -> c denied"
    );
    assert!(
        !ping(&c.pod_ns("a"), ip_of("c")),
        "{mode} ping a -> c denied"
    );

    // A multi-megabyte transfer across the nodes.
    let bytes = 16 << 20;
    let t = Instant::now();
    assert_eq!(transfer(c, "a", "c", 5000, bytes).0, bytes, "{mode}");
    eprintln!("{mode}: 16 MiB a -> c in {:?}", t.elapsed());
}

#[test]
fn vxlan_carries_pods_and_identities_between_nodes() {
    let c = up("x", Routing::Vxlan);
    check(&c);
    // On the underlay: b's identity in the VNI, and a zero outer UDP checksum (calico#3145).
    let b = ip_of("b");
    let wire = capture_vxlan(&c.node_ns(2), b, || {
        let _ = tcp_udp(&c, "b", ip_of("c"), 80);
    })
    .expect("no VXLAN frame from b on n2's underlay");
    let id_b = c.identities.iter().find(|(ip, _)| *ip == b).unwrap().1;
    assert!(id_b >= 256, "a label identity");
    assert_eq!(
        wire,
        OnTheWire {
            udp_checksum: 0,
            vni: id_b
        }
    );
}

#[test]
fn native_routing_carries_pods_between_nodes() {
    let c = up("r", Routing::Native);
    check(&c);
}

/// Path-MTU discovery: pods whose route does not know about the tunnel (MTU 1500) send
/// full-size segments with DF; the from-pod program hands what does not fit the tunnel to
/// the host stack, whose route through the tunnel answers "fragmentation needed", and the
/// transfer completes with the pod's path MTU at the tunnel's.
#[test]
fn vxlan_path_mtu_discovery() {
    let c = up_with_mtu("m", Routing::Vxlan, UNDERLAY_MTU);
    let bytes = 4 << 20;
    assert_eq!(
        transfer(&c, "a", "c", 5000, bytes),
        (bytes, UNDERLAY_MTU - VXLAN_OVERHEAD)
    );
}

/// A policy change on the receiving node is one more generation there: every hook of n2,
/// its VXLAN device's included, flips to programs and maps of the new policy, so a new flow
/// from b meets it, while an unchanged bundle applied again keeps every hook as it is.
#[test]
fn a_policy_change_swaps_the_node_datapath_in_one_generation() {
    use sluice_loader::generation::HookAction;
    let c = up("g", Routing::Vxlan);
    let _servers = Servers::start(&c.pod_ns("c"), &[(80, Proto::Tcp)]).unwrap();
    let tcp = |from: &str| probe(&c.pod_ns(from), ip_of("c"), 80, Proto::Tcp, TIMEOUT).unwrap();
    assert_eq!(tcp("b"), ProbeOutcome::Connected);
    const ONLY_A: &str = r#"policy "c" in namespace x {
  select app = c
  ingress allow from pods { app = a } ports 80/tcp
}
"#;
    let n2 = &c.loads[1];
    let stricter = build_policy(ONLY_A, &c.prefix, 2, Routing::Vxlan, false);
    let r = generation::apply_bundle(&stricter.bundle, n2).unwrap();
    assert_eq!(r.generation, 2);
    let device = r
        .hooks
        .iter()
        .find(|h| h.endpoint.namespace.is_empty())
        .expect("the VXLAN device's hook");
    assert!(
        matches!(device.action, HookAction::Replaced { .. }),
        "{:?}",
        device.action
    );
    assert_eq!(tcp("b"), ProbeOutcome::TimedOut, "b is no longer admitted");
    assert_eq!(tcp("a"), ProbeOutcome::Connected, "a is");
    // The same bundle again: nothing to load, nothing to flip.
    let again = generation::apply_bundle(&stricter.bundle, n2).unwrap();
    assert_eq!(again.generation, 3);
    assert!(
        again
            .hooks
            .iter()
            .all(|h| h.action == HookAction::Unchanged),
        "{:?}",
        again.hooks
    );
    assert_eq!(tcp("a"), ProbeOutcome::Connected);
}
