//! Swap under load (issue 4, item 3): 200 generation swaps between two compiled policies
//! while real traffic runs through a four-pod box, with every packet's or connection
//! attempt's fate recorded and checked against the policy (or policies) in force around it.
//!
//! Policies A and B (DSL below, compiled with the real code generator) agree on some flows
//! and disagree on others: A lets c reach d on 81/tcp and 9001/udp and b reach a on 81/tcp;
//! B lets c reach d on 82/tcp and b reach a on 82/tcp instead. Both allow c→d 80/tcp,
//! a→d 80/tcp, b→a 80/tcp and c→d 9000/udp; both deny c→d 83/tcp, a→d 81/tcp, b→c 80/tcp
//! and a→d 9000/udp.
//!
//! Traffic, all at once, for the whole run:
//! - **long-lived TCP**: four connections (c→d:80 twice, a→d:80, b→a:80) opened under A
//!   before the first swap; each sends a numbered 16-byte message, reads its echo, repeats;
//! - **new TCP**: one thread per flow opens connection after connection (non-blocking
//!   connect from a source port used once in the run, so no conntrack entry of an earlier
//!   attempt can let a SYN skip policy), closes each with RST;
//! - **UDP stream**: one socket per flow sends sequence-numbered datagrams that d echoes;
//! - **new UDP**: c→d:9001 datagrams, each from a fresh source port.
//!
//! The swapper records, per swap, the window in which the hooks flipped
//! ([`Timings::flip_started`] .. [`Timings::flip_finished`]): before it every hook ran the old
//! generation, after it the new one. An attempt that spans `[start, end]` may have met every
//! policy in force at some moment of that span (the one in force at `start`, and the old and
//! new policy of every flip window that overlaps it). The check per class:
//! - **both allow / both deny**: every attempt must pass / be blocked, whatever the timing;
//! - **disagreeing**: an attempt whose span met only A must get A's verdict, one that met only
//!   B must get B's; one that met both (it straddles a flip) may get either;
//! - **spans**: a passed attempt spans from just before the first packet to the echo (or the
//!   connect). A blocked one has no end to observe; its span is `[start, start + 100 ms]`,
//!   i.e. the test assumes a packet crosses the two hooks of its path within 100 ms of being
//!   sent. (Blocked attempts still wait 500 ms for an answer, so a slow answer under load
//!   reads as "passed, late", with its real, longer span.)
//! - **established connections**: every long-lived connection must deliver every echo, in
//!   order, and never reset; conntrack lives outside the generations, so no swap may touch
//!   them. With tail-loss probes off and a 1 s minimum RTO in every pod, a retransmission
//!   means a packet was lost: the client's TCP_INFO must show none, and no echo may take 1 s.
//!
//! The counts (per flow: attempts, passed, blocked, spans under A only / B only / both) are
//! printed; run with `--nocapture` to see them. The teardown checks that unload and the
//! topology's removal leave no pin, state, link, program, netns or interface behind.

#[path = "support/leftovers.rs"]
mod leftovers;

use sluice_compiler::resolve::InventoryFiles;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sluice_cli::topology::{GATEWAY, Proto, Servers, Topology, TopologySpec};
use sluice_compiler::bundle::Bundle;
use sluice_compiler::compile::{self, CompileOptions};
use sluice_compiler::resolve::Inventory;
use sluice_compiler::source::{SourceMap, dsl};
use sluice_loader::generation::{self, LoadOptions, Timings};
use sluice_loader::sys::netns::Netns;

const POLICY_A: &str = r#"
policy "d-in" {
  select app = d
  isolate ingress
  ingress allow from pods { app = c } ports 80/tcp, 81/tcp, 9000/udp, 9001/udp
  ingress allow from pods { app = a } ports 80/tcp
}
policy "b-out" {
  select app = b
  isolate egress
  egress allow to pods { app = a } ports 80/tcp, 81/tcp
}
"#;

const POLICY_B: &str = r#"
policy "d-in" {
  select app = d
  isolate ingress
  ingress allow from pods { app = c } ports 80/tcp, 82/tcp, 9000/udp
  ingress allow from pods { app = a } ports 80/tcp
}
policy "b-out" {
  select app = b
  isolate egress
  egress allow to pods { app = a } ports 80/tcp, 82/tcp
}
"#;

const SWAPS: usize = 200;

/// Time between two swaps: uniform in this range (ms).
const DWELL_MS: (u64, u64) = (120, 220);
/// How long a blocked attempt's verdict may take to be made (see the module doc).
const DECIDE: Duration = Duration::from_millis(100);
/// How long an attempt waits for an answer (below the 1 s initial SYN retransmission).
const WAIT: Duration = Duration::from_millis(500);
/// Pause between two attempts of one thread.
const PACE: Duration = Duration::from_millis(15);
/// Pause between two messages of a long-lived connection or a UDP stream.
const STREAM_PACE: Duration = Duration::from_millis(3);
/// Source ports handed out explicitly, one per attempt, per source pod.
const PORTS: (u32, u32) = (10_000, 32_000);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    TcpLong,
    TcpNew,
    UdpStream,
    UdpNew,
}

#[derive(Clone, Copy, Debug)]
struct Flow {
    kind: Kind,
    from: &'static str,
    to: &'static str,
    port: u16,
    /// Verdict of A and of B.
    a: bool,
    b: bool,
}

const fn f(kind: Kind, from: &'static str, to: &'static str, port: u16, a: bool, b: bool) -> Flow {
    Flow {
        kind,
        from,
        to,
        port,
        a,
        b,
    }
}

use Kind::*;
const FLOWS: &[Flow] = &[
    f(TcpLong, "c", "d", 80, true, true),
    f(TcpLong, "c", "d", 80, true, true),
    f(TcpLong, "a", "d", 80, true, true),
    f(TcpLong, "b", "a", 80, true, true),
    f(TcpNew, "c", "d", 80, true, true),
    f(TcpNew, "a", "d", 80, true, true),
    f(TcpNew, "b", "a", 80, true, true),
    f(TcpNew, "c", "d", 81, true, false),
    f(TcpNew, "c", "d", 82, false, true),
    f(TcpNew, "b", "a", 81, true, false),
    f(TcpNew, "b", "a", 82, false, true),
    f(TcpNew, "c", "d", 83, false, false),
    f(TcpNew, "a", "d", 81, false, false),
    f(TcpNew, "b", "c", 80, false, false),
    f(UdpStream, "c", "d", 9000, true, true),
    f(UdpStream, "a", "d", 9000, false, false),
    f(UdpNew, "c", "d", 9001, true, false),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pol {
    A,
    B,
}

/// One packet's or attempt's fate.
#[derive(Clone, Copy, Debug)]
struct Rec {
    start: Instant,
    end: Instant,
    passed: bool,
}

/// One swap as the swapper saw it.
#[derive(Clone, Copy, Debug)]
struct Flip {
    generation: u64,
    to: Pol,
    timings: Timings,
    apply: Duration,
}

/// What one traffic thread brings back.
#[derive(Debug, Default)]
struct Out {
    recs: Vec<Rec>,
    /// Long-lived connections: why it broke, if it did.
    broken: Option<String>,
    /// Long-lived connections: TCP retransmissions (TCP_INFO) and the slowest echo.
    retrans: u32,
    max_rtt: Duration,
}

/// The box, its servers, the pin root; torn down (and checked) even when the test panics.
struct Rig {
    topo: Option<Topology>,
    servers: Vec<Servers>,
    opts: LoadOptions,
    made: leftovers::Made,
}

impl Rig {
    fn new() -> Rig {
        let pods = ["a", "b", "c", "d"];
        let mut spec = TopologySpec::new();
        for (i, p) in pods.iter().enumerate() {
            spec = spec.pod("default", p, Ipv4Addr::new(10, 222, 0, i as u8 + 1));
        }
        let topo = Topology::build(&spec).expect("build topology");
        let opts = LoadOptions {
            root: PathBuf::from(format!("/sys/fs/bpf/{}-sluice", topo.prefix())),
            state_dir: PathBuf::from(format!("/run/{}-sluice", topo.prefix())),
            node_netns: Some(topo.node_netns().to_owned()),
        };
        let made = leftovers::Made {
            prefix: topo.prefix().to_owned(),
            dirs: vec![opts.root.clone(), opts.state_dir.clone()],
            ..Default::default()
        };
        let mut rig = Rig {
            topo: Some(topo),
            servers: Vec::new(),
            opts,
            made,
        };
        let t = rig.topo();
        let serve = |pod: &str, ports: &[(u16, Proto)]| {
            t.serve(&t.pod("default", pod).unwrap().netns, ports)
                .expect("servers")
        };
        let tcp = |ps: &[u16]| ps.iter().map(|&p| (p, Proto::Tcp)).collect::<Vec<_>>();
        let mut d = tcp(&[80, 81, 82, 83]);
        d.extend([(9000, Proto::Udp), (9001, Proto::Udp)]);
        let servers = vec![
            serve("d", &d),
            serve("a", &tcp(&[80, 81, 82, 83])),
            serve("c", &tcp(&[80])),
        ];
        // A retransmission must mean a lost packet, not a slow scheduler: no tail-loss
        // probes, and a minimum RTO of 1 s.
        for p in t.pods() {
            Netns::open(&p.netns)
                .unwrap()
                .run(|| std::fs::write("/proc/sys/net/ipv4/tcp_early_retrans", "0"))
                .unwrap()
                .expect("tcp_early_retrans");
            let gw = GATEWAY.to_string();
            let st = std::process::Command::new("ip")
                .args(["-n", &p.netns, "route", "change", "default", "via", &gw])
                .args(["dev", "eth0", "onlink", "rto_min", "1000ms"])
                .status()
                .unwrap();
            assert!(st.success(), "setting rto_min in {}", p.netns);
        }
        rig.servers = servers;
        rig
    }

    fn topo(&self) -> &Topology {
        self.topo.as_ref().expect("built")
    }

    fn inventory(&self) -> Inventory {
        let mut y = String::from("endpoints:\n");
        for p in self.topo().pods() {
            y.push_str(&format!(
                "- name: {}\n  namespace: default\n  labels: {{app: {}}}\n  ips: [{}]\n  interface: {}\n  netns: {}\n",
                p.name, p.name, p.ip, p.host_if, p.netns
            ));
        }
        Inventory::parse("inventory.yaml", &y).expect("inventory")
    }

    fn ip(&self, pod: &str) -> Ipv4Addr {
        self.topo().pod("default", pod).unwrap().ip
    }

    fn netns(&self, pod: &str) -> Netns {
        Netns::open(&self.topo().pod("default", pod).unwrap().netns).unwrap()
    }

    fn note(&mut self, r: &generation::GenerationReport) {
        for h in &r.hooks {
            self.made.links.push(h.link_id);
            self.made.programs.push(h.program_id);
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let unloaded = generation::unload(&self.opts);
        self.servers.clear();
        let torn = self.topo.take().map(Topology::teardown);
        if std::thread::panicking() {
            return;
        }
        unloaded.expect("unload");
        torn.expect("topology").expect("topology teardown");
        self.made.links.sort();
        self.made.links.dedup();
        self.made.programs.sort();
        self.made.programs.dedup();
        leftovers::assert_clean(&self.made);
    }
}

// --- sockets --------------------------------------------------------------------------

/// One TCP connection attempt from source port `sport`: the moment it connected, or None
/// when nothing answered within [`WAIT`]. The socket is closed with RST.
fn tcp_attempt(sport: u16, to: Ipv4Addr, port: u16) -> io::Result<Option<Instant>> {
    use nix::errno::Errno;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{self as sock, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};
    use std::os::fd::AsFd;
    let fd = sock::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    sock::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    sock::setsockopt(&fd, sockopt::Linger, &linger)?;
    let local = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, sport));
    sock::bind(fd.as_raw_fd(), &local)?;
    let remote = SockaddrIn::from(SocketAddrV4::new(to, port));
    match sock::connect(fd.as_raw_fd(), &remote) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        if poll(&mut p, PollTimeout::from(ms))? == 0 {
            continue;
        }
        let now = Instant::now();
        return match sock::getsockopt(&fd, sockopt::SocketError)? {
            0 => Ok(Some(now)),
            err => Err(io::Error::from_raw_os_error(err)),
        };
    }
}

/// Source ports per source pod, each handed out once.
struct Ports(HashMap<&'static str, AtomicU32>);

impl Ports {
    fn next(&self, pod: &str) -> u16 {
        let p = self.0[pod].fetch_add(1, Ordering::Relaxed);
        assert!(p < PORTS.1, "{pod} ran out of source ports");
        p as u16
    }
}

// --- traffic ----------------------------------------------------------------------------

fn long_lived(mut s: TcpStream, stop: &AtomicBool) -> Out {
    let mut out = Out::default();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let msg = format!("{seq:015}\n");
        let start = Instant::now();
        let mut buf = [0u8; 16];
        let r = s
            .write_all(msg.as_bytes())
            .and_then(|()| s.read_exact(&mut buf));
        let end = Instant::now();
        match r {
            Ok(()) if buf == msg.as_bytes() => {
                out.max_rtt = out.max_rtt.max(end - start);
                out.recs.push(Rec {
                    start,
                    end,
                    passed: true,
                });
            }
            Ok(()) => {
                out.broken = Some(format!("message {seq}: echo {buf:?} out of order"));
                break;
            }
            Err(e) => {
                out.broken = Some(format!("message {seq}: {e}"));
                out.recs.push(Rec {
                    start,
                    end,
                    passed: false,
                });
                break;
            }
        }
        seq += 1;
        std::thread::sleep(STREAM_PACE);
    }
    out.retrans = sluice_loader::sys::socket::tcp_total_retrans(&s).unwrap_or(u32::MAX);
    out
}

fn tcp_new(flow: &Flow, to: Ipv4Addr, ports: &Ports, stop: &AtomicBool) -> Out {
    let mut out = Out::default();
    while !stop.load(Ordering::Relaxed) {
        let sport = ports.next(flow.from);
        let start = Instant::now();
        let r = tcp_attempt(sport, to, flow.port)
            .unwrap_or_else(|e| panic!("{flow:?} from port {sport}: {e}"));
        out.recs.push(Rec {
            start,
            end: r.unwrap_or(start + DECIDE),
            passed: r.is_some(),
        });
        std::thread::sleep(PACE);
    }
    out
}

fn udp_new(flow: &Flow, to: Ipv4Addr, ports: &Ports, stop: &AtomicBool) -> Out {
    let mut out = Out::default();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let sport = ports.next(flow.from);
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, sport)).unwrap();
        s.connect((to, flow.port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let msg = format!("udp-new {sport}");
        let start = Instant::now();
        s.send(msg.as_bytes()).unwrap();
        let end = match s.recv(&mut buf) {
            Ok(n) if &buf[..n] == msg.as_bytes() => Some(Instant::now()),
            Ok(_) => panic!("{flow:?}: foreign datagram"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("{flow:?}: {e}"),
        };
        out.recs.push(Rec {
            start,
            end: end.unwrap_or(start + DECIDE),
            passed: end.is_some(),
        });
        std::thread::sleep(PACE);
    }
    out
}

fn udp_stream(flow: &Flow, to: Ipv4Addr, stop: &AtomicBool) -> Out {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    s.connect((to, flow.port)).unwrap();
    s.set_nonblocking(true).unwrap();
    let mut sent: Vec<Instant> = Vec::new();
    let mut got: Vec<Option<Instant>> = Vec::new();
    let mut buf = [0u8; 64];
    let mut drain = |got: &mut Vec<Option<Instant>>| {
        while let Ok(n) = s.recv(&mut buf) {
            let seq = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
            assert_eq!(n, 8);
            assert!(got[seq].is_none(), "datagram {seq} echoed twice");
            got[seq] = Some(Instant::now());
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let seq = sent.len() as u64;
        sent.push(Instant::now());
        got.push(None);
        s.send(&seq.to_le_bytes()).unwrap();
        std::thread::sleep(STREAM_PACE);
        drain(&mut got);
    }
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
        drain(&mut got);
    }
    Out {
        recs: sent
            .iter()
            .zip(&got)
            .map(|(&start, g)| Rec {
                start,
                end: g.unwrap_or(start + DECIDE),
                passed: g.is_some(),
            })
            .collect(),
        ..Out::default()
    }
}

// --- analysis ---------------------------------------------------------------------------

/// Which policies an attempt spanning `[s, e]` may have met: (A, B).
fn met(flips: &[Flip], s: Instant, e: Instant) -> (bool, bool) {
    let mut cur = Pol::A;
    let mut set = (false, false);
    let add = |p: Pol, set: &mut (bool, bool)| match p {
        Pol::A => set.0 = true,
        Pol::B => set.1 = true,
    };
    for f in flips {
        if f.timings.flip_finished < s {
            cur = f.to;
        } else if f.timings.flip_started <= e {
            add(f.to, &mut set); // overlaps: the old one is `cur` or an earlier overlap's
        }
    }
    add(cur, &mut set);
    set
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// DSL text → bundle through the compile driver (the path of `sluice compile`), and how long
/// that took. Every pod has an interface, so every endpoint is in the bundle.
fn compile_policy(name: &str, policy: &str, inv: &Inventory) -> (Bundle, Duration) {
    let t = Instant::now();
    let mut sources = SourceMap::new();
    let id = sources.add(name, policy);
    let doc = dsl::parse(id, policy).unwrap_or_else(|d| panic!("parse {name}: {d:?}"));
    let checked = compile::check_documents(&[doc], Some(inv));
    assert!(!checked.diags.has_errors(), "{name}: {:?}", checked.diags);
    let inputs = [(name.to_string(), policy.as_bytes().to_vec())];
    let out = compile::compile(
        &checked.ir,
        inv,
        &sources,
        &inputs,
        &CompileOptions::default(),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("compile {name}: {e}"));
    assert!(out.unattached.is_empty(), "{:?}", out.unattached);
    (out.bundle, t.elapsed())
}

fn verdict(b: bool) -> &'static str {
    if b { "allow" } else { "deny" }
}

#[test]
fn two_hundred_swaps_under_load_give_only_a_or_b_verdicts() {
    let t0 = Instant::now();
    let mut rig = Rig::new();
    let inv = rig.inventory();
    let (a, ta) = compile_policy("a.sluice", POLICY_A, &inv);
    let (b, _) = compile_policy("b.sluice", POLICY_B, &inv);
    assert_ne!(a.digest(), b.digest());
    let bundle = |p: Pol| -> &Bundle {
        match p {
            Pol::A => &a,
            Pol::B => &b,
        }
    };
    let first = generation::apply_bundle(&a, &rig.opts).expect("generation A");
    rig.note(&first);
    eprintln!(
        "compiled A in {:?}; {} programs on {} hooks",
        ta,
        first.programs_loaded,
        first.hooks.len()
    );

    // Long-lived connections, opened under A before any swap.
    let long: Vec<(usize, TcpStream)> = FLOWS
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == TcpLong)
        .map(|(i, f)| {
            let dst = SocketAddr::V4(SocketAddrV4::new(rig.ip(f.to), f.port));
            let s = rig
                .netns(f.from)
                .run(|| TcpStream::connect_timeout(&dst, Duration::from_secs(2)))
                .unwrap()
                .unwrap_or_else(|e| panic!("{f:?}: {e}"));
            (i, s)
        })
        .collect();
    let ports = Ports(
        ["a", "b", "c", "d"]
            .into_iter()
            .map(|p| (p, AtomicU32::new(PORTS.0)))
            .collect(),
    );
    let stop = AtomicBool::new(false);
    let traffic_start = Instant::now();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let (outs, flips) = std::thread::scope(|sc| {
        let mut handles = Vec::new();
        for (i, s) in long {
            let stop = &stop;
            handles.push((i, sc.spawn(move || long_lived(s, stop))));
        }
        for (i, flow) in FLOWS.iter().enumerate().filter(|(_, f)| f.kind != TcpLong) {
            let (ns, to) = (rig.netns(flow.from), rig.ip(flow.to));
            let (stop, ports) = (&stop, &ports);
            handles.push((
                i,
                sc.spawn(move || {
                    ns.enter().unwrap();
                    match flow.kind {
                        TcpNew => tcp_new(flow, to, ports, stop),
                        UdpNew => udp_new(flow, to, ports, stop),
                        UdpStream => udp_stream(flow, to, stop),
                        TcpLong => unreachable!(),
                    }
                }),
            ));
        }
        // The swapper: B, A, B, ... with a random dwell before each swap.
        let mut flips = Vec::with_capacity(SWAPS);
        let swapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for i in 0..SWAPS {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let dwell = DWELL_MS.0 + rng % (DWELL_MS.1 - DWELL_MS.0);
                std::thread::sleep(Duration::from_millis(dwell));
                let to = if i % 2 == 0 { Pol::B } else { Pol::A };
                let t = Instant::now();
                let r = generation::apply_bundle(bundle(to), &rig.opts)
                    .unwrap_or_else(|e| panic!("swap {i}: {e}"));
                flips.push(Flip {
                    generation: r.generation,
                    to,
                    timings: r.timings,
                    apply: t.elapsed(),
                });
                rig.note(&r);
            }
            std::thread::sleep(Duration::from_millis(300));
        }));
        stop.store(true, Ordering::Relaxed);
        let outs: Vec<(usize, Out)> = handles
            .into_iter()
            .map(|(i, h)| (i, h.join().expect("traffic thread")))
            .collect();
        if let Err(p) = swapped {
            std::panic::resume_unwind(p);
        }
        (outs, flips)
    });
    let traffic_time = traffic_start.elapsed();

    // Check every record against the policies in force around it.
    let mut violations = Vec::new();
    let mut table = String::new();
    table.push_str("| flow | kind | A | B | records | passed | blocked | under A only | under B only | straddling | violations |\n");
    table.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let (mut total, mut total_bad) = (0usize, 0usize);
    let mut too_few = Vec::new();
    for (i, out) in &outs {
        let flow = &FLOWS[*i];
        let (mut only_a, mut only_b, mut both, mut bad, mut passed) = (0, 0, 0, 0, 0);
        let mut seen = (0, 0); // disagreeing flows: (passed under A only, passed under B only)
        for r in &out.recs {
            let (ma, mb) = met(&flips, r.start, r.end);
            match (ma, mb) {
                (true, false) => only_a += 1,
                (false, true) => only_b += 1,
                _ => both += 1,
            }
            let ok = (ma && r.passed == flow.a) || (mb && r.passed == flow.b);
            passed += r.passed as usize;
            if r.passed == flow.a && ma && !mb {
                seen.0 += 1;
            }
            if r.passed == flow.b && mb && !ma {
                seen.1 += 1;
            }
            if !ok {
                bad += 1;
                if violations.len() < 20 {
                    violations.push(format!(
                        "{}→{} {}/{:?}: {} at +{:?}..+{:?}, met A {ma} B {mb}",
                        flow.from,
                        flow.to,
                        flow.port,
                        flow.kind,
                        if r.passed { "passed" } else { "blocked" },
                        r.start - traffic_start,
                        r.end - traffic_start
                    ));
                }
            }
        }
        total += out.recs.len();
        total_bad += bad;
        table.push_str(&format!(
            "| {}→{}:{} | {:?} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            flow.from,
            flow.to,
            flow.port,
            flow.kind,
            verdict(flow.a),
            verdict(flow.b),
            out.recs.len(),
            passed,
            out.recs.len() - passed,
            only_a,
            only_b,
            both,
            bad
        ));
        if out.recs.len() < 10 {
            too_few.push(format!("{flow:?}: only {} records", out.recs.len()));
        }
        // A disagreeing flow: both policies were seen enforcing it, each with its verdict.
        if flow.a != flow.b && (seen.0 < 3 || seen.1 < 3) {
            too_few.push(format!(
                "{flow:?}: A's verdict seen {} times under A alone, B's {} under B alone",
                seen.0, seen.1
            ));
        }
    }
    let flip_windows: Vec<Duration> = flips.iter().map(|f| f.timings.flip).collect();
    let applies: Vec<Duration> = flips.iter().map(|f| f.apply).collect();
    println!(
        "\nswap under load: {} swaps in {traffic_time:.1?} of traffic ({:.1?} in all), generations {}..={}",
        flips.len(),
        t0.elapsed(),
        first.generation,
        flips.last().map_or(0, |f| f.generation)
    );
    println!(
        "apply p50 {:?} max {:?}; flip window p50 {:?} max {:?}; {total} records, {total_bad} violations\n",
        pct(applies.clone(), 0.5),
        pct(applies, 1.0),
        pct(flip_windows.clone(), 0.5),
        pct(flip_windows, 1.0)
    );
    let step =
        |f: fn(&Timings) -> Duration| pct(flips.iter().map(|x| f(&x.timings)).collect(), 0.5);
    println!(
        "apply p50 by step: prepare {:?}, map create {:?}, map fill {:?}, program load {:?}, flip {:?}, after {:?}\n",
        step(|t| t.prepare),
        step(|t| t.map_create),
        step(|t| t.map_fill),
        step(|t| t.program_load),
        step(|t| t.flip),
        step(|t| t.after)
    );
    println!("{table}");
    println!("long-lived connections:");
    for (i, out) in outs.iter().filter(|(i, _)| FLOWS[*i].kind == TcpLong) {
        let fl = &FLOWS[*i];
        println!(
            "  {}→{}:{}  {} echoes, slowest {:?}, {} retransmissions{}",
            fl.from,
            fl.to,
            fl.port,
            out.recs.len(),
            out.max_rtt,
            out.retrans,
            out.broken
                .as_ref()
                .map(|b| format!(", BROKEN: {b}"))
                .unwrap_or_default()
        );
    }

    assert_eq!(flips.len(), SWAPS);
    assert!(too_few.is_empty(), "{too_few:#?}");
    assert!(
        violations.is_empty(),
        "{total_bad} records got a verdict neither A nor B gives, e.g.:\n{}",
        violations.join("\n")
    );
    for (i, out) in outs.iter().filter(|(i, _)| FLOWS[*i].kind == TcpLong) {
        let fl = &FLOWS[*i];
        assert_eq!(out.broken, None, "{fl:?}");
        assert_eq!(
            out.retrans, 0,
            "{fl:?}: a packet of an established flow was lost"
        );
        assert!(
            out.max_rtt < Duration::from_secs(1),
            "{fl:?}: an echo took {:?}",
            out.max_rtt
        );
    }
    generation::unload(&rig.opts).expect("unload");
}
