//! Kernel tests of masquerade on real traffic (needs root): the study's scenarios in a
//! `sluice lab` with the node datapath applied by `sluice apply --node-config` on both
//! nodes. The router and the VM report the peer address of every socket they accept, so
//! the tests see what the outside sees: the node's IP when the pod is masqueraded, the pod's
//! IP when the destination is excluded. Each test uses its own prefix, state directory and
//! pin roots, and removes them however it ends.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/net.rs"]
mod net;
#[path = "support/leftovers.rs"]
mod support;

use cli::{Run, Scratch, sluice};
use sluice_cli::lab::{ROUTER_LOOPS, VM_IP};
use sluice_cli::topology::peer::{self, first_line};
use sluice_cli::topology::{self, unique_prefix};
use sluice_loader::netlink::{Address, Netlink};
use sluice_loader::sys::netns::Netns;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);
const PORT: u16 = 7000;
const NODE_IPS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(192, 168, 10, 11),
    Ipv4Addr::new(192, 168, 10, 12),
];

/// A lab with the node datapath loaded on both nodes; removed on drop.
struct Lab {
    prefix: String,
    state: Scratch,
}

impl Lab {
    fn up(name: &str, routing: &str, ip_masq_agent: Option<&str>) -> Lab {
        let lab = Lab {
            prefix: unique_prefix(),
            state: Scratch::new(name),
        };
        let mut args = vec!["up", "--nodes", "2", "--routing", routing];
        let agent = lab.state.path().join("agent.yaml");
        if let Some(text) = ip_masq_agent {
            std::fs::write(&agent, text).unwrap();
            args.extend(["--ip-masq-agent", agent.to_str().unwrap()]);
        }
        let up = lab.lab(&args);
        assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
        for n in 1..=2 {
            lab.apply(n, "");
        }
        for pod in ["pod-web-frontend", "pod-web-client", "pod-web-api"] {
            net::sysctl(&lab.ns(pod), "net/ipv4/ping_group_range", "0 0");
        }
        lab
    }

    /// `sluice apply` of `policy` (DSL text) with node `n`'s configuration.
    fn apply(&self, n: usize, policy: &str) {
        let dir = self.state.path().join(&self.prefix);
        let file = self.state.path().join(format!("policy-{n}.sluice"));
        std::fs::write(&file, policy).unwrap();
        let root = self.root(n);
        let run = self.run_dir(n);
        let ns = self.ns(&format!("node-{n}"));
        let apply = sluice(
            Path::new("."),
            &[
                "apply",
                file.to_str().unwrap(),
                "--inventory",
                dir.join("inventory.yaml").to_str().unwrap(),
                "--node-config",
                dir.join(format!("node-{n}.yaml")).to_str().unwrap(),
                "--netns",
                &ns,
                "--root",
                root.to_str().unwrap(),
                "--state-dir",
                run.to_str().unwrap(),
            ],
        );
        assert_eq!(apply.code, 0, "node-{n}: {}{}", apply.stdout, apply.stderr);
    }

    fn run_dir(&self, n: usize) -> PathBuf {
        self.state.path().join(format!("run-{n}"))
    }

    /// The program each hook of node `n` runs, by endpoint and hook (`sluice status`).
    fn programs(&self, n: usize) -> Vec<(String, String, u64)> {
        let root = self.root(n);
        let run = self.run_dir(n);
        let st = sluice(
            Path::new("."),
            &[
                "status",
                "--json",
                "--root",
                root.to_str().unwrap(),
                "--state-dir",
                run.to_str().unwrap(),
            ],
        );
        assert_eq!(st.code, 0, "{}", st.stderr);
        let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
        v["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["endpoint"].as_str().unwrap().to_owned(),
                    h["hook"].as_str().unwrap().to_owned(),
                    h["program_id"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    fn lab(&self, args: &[&str]) -> Run {
        let dir = self.state.path().to_str().unwrap().to_owned();
        let mut all = vec!["lab", "--prefix", &self.prefix, "--state-dir", &dir];
        all.extend_from_slice(args);
        sluice(Path::new("."), &all)
    }

    fn ns(&self, member: &str) -> String {
        format!("{}-{member}", self.prefix)
    }

    fn root(&self, node: usize) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/{}-node-{node}", self.prefix))
    }

    /// `sluice nat` of a node, as JSON.
    fn nat(&self, node: usize) -> serde_json::Value {
        let root = self.root(node);
        let run = sluice(
            Path::new("."),
            &["nat", "--root", root.to_str().unwrap(), "--output", "json"],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str(&run.stdout).unwrap()
    }

    /// A pod's address, from `sluice lab status`.
    fn pod_ip(&self, name: &str) -> Ipv4Addr {
        let st = self.lab(&["status", "--output", "json"]);
        assert_eq!(st.code, 0, "{}", st.stderr);
        let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
        let m = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap();
        let addr = m["addresses"][0].as_str().unwrap();
        addr.trim_end_matches("/32").parse().unwrap()
    }

    /// Routes on the router to each node's pod CIDR through the node (the study's "without
    /// masquerade" setup).
    fn router_pod_routes(&self) {
        let lab = sluice_cli::lab::Lab::load(self.state.path(), &self.prefix)
            .unwrap()
            .expect("the lab is up");
        sluice_cli::lab::add_router_pod_routes(&lab).unwrap();
    }
}

impl Drop for Lab {
    /// `sluice unload` on both nodes and `lab down` must leave nothing (the NAT pins
    /// included); whatever is left is removed anyway, then reported.
    fn drop(&mut self) {
        for n in 1..=2 {
            let root = self.root(n);
            let run = self.run_dir(n);
            let _ = sluice(
                Path::new("."),
                &[
                    "unload",
                    "--root",
                    root.to_str().unwrap(),
                    "--state-dir",
                    run.to_str().unwrap(),
                ],
            );
        }
        let _ = self.lab(&["down"]);
        let made = support::Made {
            prefix: self.prefix.clone(),
            dirs: vec![self.root(1), self.root(2)],
            ..Default::default()
        };
        let left = support::leftovers(&made);
        let _ = topology::cleanup_stale(&format!("{}-", self.prefix));
        for n in 1..=2 {
            let _ = std::fs::remove_dir_all(self.root(n));
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    }
}

/// The peer-reporting servers of `sluice_cli::topology::peer`, on the tests' port.
struct PeerEcho;

impl PeerEcho {
    fn start(ns: &str, udp_on: &[Ipv4Addr]) -> peer::PeerEcho {
        PeerEcho::serve(ns, udp_on, false)
    }

    fn serve(ns: &str, udp_on: &[Ipv4Addr], echo: bool) -> peer::PeerEcho {
        peer::PeerEcho::serve(ns, PORT, udp_on, echo).unwrap()
    }
}

/// What `to` saw as this TCP connection's peer (None: no connection).
fn tcp_peer(ns: &str, to: Ipv4Addr) -> Option<SocketAddrV4> {
    peer::tcp_peer(ns, to, PORT, TIMEOUT).unwrap()
}

/// A TCP connection from `ns` to `to`'s echo server, and the peer address it saw.
fn tcp_open(ns: &str, to: Ipv4Addr) -> Option<(TcpStream, SocketAddrV4)> {
    peer::tcp_open(ns, to, PORT, TIMEOUT).unwrap()
}

/// What `to` saw as the peer of a UDP datagram sent from `sport` (0: any port).
fn udp_peer(ns: &str, to: Ipv4Addr, sport: u16) -> Option<SocketAddrV4> {
    Netns::open(ns)
        .unwrap()
        .run(|| {
            let s = UdpSocket::bind(("0.0.0.0", sport)).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s.send_to(b"who", (to, PORT)).unwrap();
            let mut buf = [0u8; 64];
            let (n, _) = s.recv_from(&mut buf).ok()?;
            std::str::from_utf8(&buf[..n]).ok()?.parse().ok()
        })
        .unwrap()
}

/// Whether a UDP datagram from `ns` to a closed port of `to` comes back as "connection
/// refused" (the ICMP port unreachable reached the socket).
fn udp_refused(ns: &str, to: Ipv4Addr) -> bool {
    Netns::open(ns)
        .unwrap()
        .run(|| {
            let s = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s.connect((to, PORT + 999)).unwrap();
            s.send(b"anyone").unwrap();
            let mut buf = [0u8; 16];
            matches!(s.recv(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        })
        .unwrap()
}

/// Pod -> router (both loops) and pod -> VM, TCP, UDP and ping: the outside sees the node's
/// IP, and an ICMP port unreachable reaches the pod; two pods of one node on the same source
/// port to the same destination both work.
fn masqueraded(routing: &str) {
    let lab = Lab::up(&format!("masq-{routing}"), routing, None);
    let _router = PeerEcho::start(&lab.ns("router"), &ROUTER_LOOPS);
    let _vm = PeerEcho::start(&lab.ns("vm"), &[VM_IP]);
    let frontend = lab.ns("pod-web-frontend");
    let client = lab.ns("pod-web-client");
    let api = lab.ns("pod-web-api");
    for to in [ROUTER_LOOPS[0], ROUTER_LOOPS[1], VM_IP] {
        let seen = tcp_peer(&frontend, to).unwrap_or_else(|| panic!("{routing}: tcp to {to}"));
        assert_eq!(*seen.ip(), NODE_IPS[0], "{routing}: {to} sees the node");
        let seen = udp_peer(&frontend, to, 0).unwrap_or_else(|| panic!("{routing}: udp {to}"));
        assert_eq!(
            *seen.ip(),
            NODE_IPS[0],
            "{routing}: {to} sees the node (udp)"
        );
        assert!(net::ping(&frontend, to, TIMEOUT), "{routing}: ping {to}");
        // The port unreachable comes back to the node and is translated for the pod.
        assert!(
            udp_refused(&frontend, to),
            "{routing}: port unreachable from {to}"
        );
        // The other node's pods leave by their own node.
        let seen = tcp_peer(&api, to).unwrap_or_else(|| panic!("{routing}: api tcp to {to}"));
        assert_eq!(*seen.ip(), NODE_IPS[1], "{routing}: {to} sees node-2");
    }
    // Same node, same source port, same destination: two mappings, two node ports.
    let a = udp_peer(&frontend, ROUTER_LOOPS[0], 40000).expect("frontend from port 40000");
    let b = udp_peer(&client, ROUTER_LOOPS[0], 40000).expect("client from port 40000");
    assert_eq!((*a.ip(), *b.ip()), (NODE_IPS[0], NODE_IPS[0]));
    assert_ne!(a.port(), b.port(), "{routing}: one node port per pod");
    assert!(
        [a.port(), b.port()].contains(&40000),
        "{routing}: the first keeps its port: {a} {b}"
    );
    // The counters: mappings made, one retry at least (the second 40000), no drops.
    let nat = lab.nat(1);
    let c = &nat["counters"];
    assert!(c["mapped"].as_u64().unwrap() >= 8, "{c}");
    assert!(c["retries"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(c["no_mapping"], 0, "{c}");
    assert!(c["reversed"].as_u64().unwrap() > 0, "{c}");
    // A forward and a reverse entry per mapping.
    let entries = nat["entries"].as_array().unwrap();
    assert_eq!(entries.len() as u64, 2 * c["mapped"].as_u64().unwrap());
}

#[test]
fn vxlan_pods_are_masqueraded_to_the_node_ip() {
    masqueraded("vxlan");
}

#[test]
fn native_pods_are_masqueraded_to_the_node_ip() {
    masqueraded("native");
}

/// The ip-masq-agent file lists 10.0.0.0/16: the router sees the pod's IP, which works
/// only once the router routes the pod CIDRs through the nodes; the VM is still
/// masqueraded.
fn excluded_keep_the_pod_ip(routing: &str) {
    let agent = "nonMasqueradeCIDRs:\n- 10.0.0.0/16\n";
    let lab = Lab::up(&format!("masq-excluded-{routing}"), routing, Some(agent));
    let _router = PeerEcho::start(&lab.ns("router"), &ROUTER_LOOPS);
    let _vm = PeerEcho::start(&lab.ns("vm"), &[VM_IP]);
    let frontend = lab.ns("pod-web-frontend");
    assert_eq!(
        tcp_peer(&frontend, ROUTER_LOOPS[0]),
        None,
        "{routing}: the router cannot answer a pod address it has no route to"
    );
    let seen = tcp_peer(&frontend, VM_IP).expect("vm");
    assert_eq!(*seen.ip(), NODE_IPS[0], "{routing}: the VM is not excluded");
    lab.router_pod_routes();
    let pod_ip = |s: SocketAddrV4| *s.ip();
    for to in ROUTER_LOOPS {
        let seen = tcp_peer(&frontend, to).expect("router with pod routes");
        assert_eq!(
            seen.ip().octets()[..3],
            [10, 244, 1],
            "{to} sees the pod: {seen}"
        );
        let udp = udp_peer(&frontend, to, 0).expect("udp");
        assert_eq!(pod_ip(udp), pod_ip(seen));
    }
    // The VM connects to the pod (routed by the router): the pod's answer is not
    // masqueraded (a TCP segment other than a SYN takes no new mapping), so it works.
    let _pod = PeerEcho::start(&frontend, &[]);
    let seen = tcp_peer(&lab.ns("vm"), lab.pod_ip("web/frontend")).expect("vm -> pod");
    assert_eq!(*seen.ip(), VM_IP, "the pod sees the VM");
}

#[test]
fn native_excluded_destinations_keep_the_pod_ip() {
    excluded_keep_the_pod_ip("native");
}

#[test]
fn vxlan_excluded_destinations_keep_the_pod_ip() {
    excluded_keep_the_pod_ip("vxlan");
}

/// Many short connections through NAT: none fails, and after the closing timeout the GC
/// (`sluice nat gc`, with a 1 s closing timeout instead of 10 s) brings the table back to
/// its baseline: every closed mapping freed, both entries, while an open connection that
/// sat idle through it all keeps its mapping and still carries data both ways.
#[test]
fn many_short_connections_through_nat() {
    const N: usize = 20_000;
    let lab = Lab::up("masq-many", "vxlan", None);
    let _router = PeerEcho::start(&lab.ns("router"), &ROUTER_LOOPS);
    let frontend = lab.ns("pod-web-frontend");
    // The idle, open connection: pod → VM, masqueraded.
    let listener = Netns::open(&lab.ns("vm"))
        .unwrap()
        .run(|| TcpListener::bind((VM_IP, PORT + 1)).unwrap())
        .unwrap();
    let mut held = Netns::open(&frontend)
        .unwrap()
        .run(|| TcpStream::connect_timeout(&SocketAddr::from((VM_IP, PORT + 1)), TIMEOUT))
        .unwrap()
        .unwrap();
    let (mut far, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), NODE_IPS[0], "the held connection is masqueraded");
    let entries = |lab: &Lab| lab.nat(1)["entries"].as_array().unwrap().len();
    let baseline = entries(&lab);
    assert_eq!(
        baseline, 2,
        "the held connection's forward and reverse entries"
    );
    let t = std::time::Instant::now();
    let failures = Netns::open(&frontend)
        .unwrap()
        .run(|| {
            (0..N)
                .filter(|_| {
                    let c = TcpStream::connect_timeout(
                        &SocketAddr::from((ROUTER_LOOPS[1], PORT)),
                        TIMEOUT,
                    );
                    let Ok(c) = c else { return true };
                    let _ = c.set_read_timeout(Some(TIMEOUT));
                    let ok =
                        first_line(&c).is_some_and(|s| s.starts_with(&NODE_IPS[0].to_string()));
                    // The server closes first, so TIME_WAIT stays on its side and the pod
                    // reuses its ports at once, as a client normally does.
                    let _ = c.shutdown(std::net::Shutdown::Write);
                    let _ = (&c).read_to_end(&mut Vec::new());
                    !ok
                })
                .count()
        })
        .unwrap();
    assert_eq!(failures, 0, "of {N}");
    // The pod reuses its ephemeral ports: a reused one finds its mapping again.
    let c = &lab.nat(1)["counters"];
    eprintln!("{N} connections through NAT in {:?}: {c}", t.elapsed());
    assert_eq!(c["no_mapping"], 0, "{c}");
    assert!(c["mapped"].as_u64().unwrap() >= (N / 2) as u64, "{c}");
    assert!(c["reversed"].as_u64().unwrap() >= 2 * N as u64, "{c}");

    // The GC, past the closing timeout.
    let before = entries(&lab);
    assert!(before > baseline + N / 10, "{before} entries before the GC");
    std::thread::sleep(Duration::from_millis(1500));
    let root = lab.root(1);
    let run = sluice(
        Path::new("."),
        &[
            "nat",
            "gc",
            "--root",
            root.to_str().unwrap(),
            "--closing-timeout",
            "1",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let gc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    eprintln!("GC: {gc}");
    assert_eq!(gc["freed"], before - baseline, "{gc}");
    assert_eq!(entries(&lab), baseline, "back at the baseline");
    // The held flow kept its mapping: data still goes both ways.
    let mut b = [0u8; 4];
    held.write_all(b"ping").unwrap();
    far.set_read_timeout(Some(TIMEOUT)).unwrap();
    far.read_exact(&mut b).unwrap();
    far.write_all(b"pong").unwrap();
    held.set_read_timeout(Some(TIMEOUT)).unwrap();
    held.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"pong");
}

/// A link-local destination (an address on the router's loopback): excluded unless the
/// ip-masq-agent file says `masqLinkLocal: true`.
fn link_local(masq_link_local: bool) {
    const LL: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);
    let agent = format!("nonMasqueradeCIDRs: []\nmasqLinkLocal: {masq_link_local}\n");
    let lab = Lab::up(
        &format!("masq-ll-{masq_link_local}"),
        "native",
        Some(&agent),
    );
    {
        let mut nl = Netlink::open_in(&Netns::open(&lab.ns("router")).unwrap()).unwrap();
        let lo = nl.index_of("lo").unwrap();
        nl.add_address(&Address::new(lo, LL.into(), 32)).unwrap();
    }
    lab.router_pod_routes();
    let _router = PeerEcho::start(&lab.ns("router"), &[LL]);
    let frontend = lab.ns("pod-web-frontend");
    let seen = tcp_peer(&frontend, LL).expect("tcp to the link-local address");
    let udp = udp_peer(&frontend, LL, 0).expect("udp to the link-local address");
    let want = if masq_link_local {
        NODE_IPS[0]
    } else {
        lab.pod_ip("web/frontend")
    };
    assert_eq!(
        (*seen.ip(), *udp.ip()),
        (want, want),
        "masqLinkLocal {masq_link_local}"
    );
}

#[test]
fn link_local_is_excluded_by_default() {
    link_local(false);
}

#[test]
fn link_local_is_masqueraded_with_masq_link_local() {
    link_local(true);
}

/// A masqueraded connection survives a new generation on its node (the NAT table is pinned
/// and shared across generations, like conntrack), and a new connection after the swap is
/// masqueraded as before.
#[test]
fn a_masqueraded_connection_survives_a_swap() {
    let lab = Lab::up("masq-swap", "vxlan", None);
    let _router = PeerEcho::serve(&lab.ns("router"), &[], true);
    let frontend = lab.ns("pod-web-frontend");
    let (mut c, seen) = tcp_open(&frontend, ROUTER_LOOPS[0]).expect("connect");
    assert_eq!(*seen.ip(), NODE_IPS[0]);
    let echo = |c: &mut TcpStream, msg: &str| {
        let mut back = vec![0u8; msg.len()];
        c.write_all(msg.as_bytes()).is_ok()
            && c.read_exact(&mut back).is_ok()
            && back == msg.as_bytes()
    };
    assert!(echo(&mut c, "before\n"));
    let before = lab.programs(1);
    lab.apply(
        1,
        "policy \"c\" in namespace web {\n  select app = client\n  \
         ingress allow from pods { app = frontend } ports 80/tcp\n}\n",
    );
    let after = lab.programs(1);
    let frontend_egress = |p: &[(String, String, u64)]| {
        p.iter()
            .find(|(e, h, _)| e == "web/frontend" && h == "ingress")
            .map(|x| x.2)
    };
    assert_ne!(
        frontend_egress(&before),
        frontend_egress(&after),
        "the frontend's from-pod program was replaced: {before:?} {after:?}"
    );
    assert!(
        echo(&mut c, "after the swap\n"),
        "the flow survived the swap"
    );
    let seen = tcp_peer(&frontend, ROUTER_LOOPS[1]).expect("a new connection");
    assert_eq!(*seen.ip(), NODE_IPS[0]);
}
