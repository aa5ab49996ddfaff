//! Kernel tests of the generated policy programs: real policies (DSL → IR → resolve → plan →
//! codegen) loaded into the kernel and run with BPF_PROG_TEST_RUN on crafted packets. Every
//! verdict, and with rule recording the deciding rule, must be the reference evaluator's
//! (`compiler/src/eval.rs`), in both the specialized and the generic mode. Plus conntrack
//! (replies pass the other direction), a differential property test, and a 100k-rule policy.
//!
//! Each loaded object gets its own pin directory, so its conntrack table is its own (unless a
//! test shares one on purpose): conntrack cannot let a packet skip policy across checks.

mod common;

use common::*;
use sluice_compiler::datapath::keys::{self, Stage};
use sluice_compiler::datapath::{
    CodegenOptions, EndpointArtifacts, Mode, ProgramArtifact, TcxHook, compile_endpoint, cost,
};
use sluice_compiler::eval::{self, Flow, FlowEnd};
use sluice_compiler::ir::{Ir, L4, L4Match};
use sluice_compiler::plan::{Classes, DecisionTable};
use sluice_compiler::resolve::InventoryFiles;
use sluice_compiler::resolve::{self, Identities, Inventory};
use sluice_compiler::source::{SourceMap, dsl};
use sluice_loader::load::{LoadOptions, LoadedObject};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

// --- fixtures -----------------------------------------------------------------------------

/// A pin directory on bpffs, removed on drop (also when the test panics).
struct PinDir(PathBuf);

impl PinDir {
    fn new(tag: &str) -> PinDir {
        static N: AtomicU32 = AtomicU32::new(0);
        sluice_loader::pin::ensure_bpffs().expect("bpffs");
        let p = PathBuf::from(format!(
            "/sys/fs/bpf/sluice-t{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("pin dir");
        PinDir(p)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A policy resolved against an inventory, with every endpoint's tables.
struct World {
    ir: Ir,
    inv: Inventory,
    classes: Classes,
    /// Per endpoint: (ingress, egress).
    tables: Vec<(Option<DecisionTable>, Option<DecisionTable>)>,
}

fn world(policy: &str, inventory: &str) -> World {
    let mut sources = SourceMap::new();
    let id = sources.add("test.sluice", policy);
    let doc = dsl::parse(id, policy).unwrap_or_else(|d| panic!("parse: {d:?}\n{policy}"));
    let (ir, diags) = sluice_compiler::ir::lower(&[doc]);
    assert!(!diags.has_errors(), "{diags:?}\n{policy}");
    let inv = Inventory::parse("inv.yaml", inventory).expect("inventory");
    let ids: Identities = resolve::identity::allocate(&inv, &ir);
    let classes = Classes::build(&inv, &ids, None);
    let tables = (0..inv.endpoints.len())
        .map(|e| {
            let p = resolve::policy_for(&ir, &inv, &ids, e);
            (
                p.ingress
                    .as_ref()
                    .map(|d| DecisionTable::build(d, &classes)),
                p.egress.as_ref().map(|d| DecisionTable::build(d, &classes)),
            )
        })
        .collect();
    World {
        ir,
        inv,
        classes,
        tables,
    }
}

fn ep_ip(w: &World, e: usize) -> Ipv4Addr {
    match w.inv.endpoints[e].ips[0] {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => panic!("IPv4 endpoints only"),
    }
}

/// One program loaded, with its maps filled.
struct Loaded {
    obj: LoadedObject,
    name: String,
    traced: bool,
}

fn load(art: &ProgramArtifact, pins: &PinDir) -> Loaded {
    let obj = LoadedObject::load_with(
        &art.elf,
        &LoadOptions {
            pin_dir: Some(pins.0.clone()),
            map_pins: Vec::new(),
        },
    )
    .unwrap_or_else(|e| panic!("loading {}: {e:?}", art.name));
    obj.fill(&art.maps).expect("fill maps");
    Loaded {
        obj,
        name: art.name.clone(),
        traced: records(art),
    }
}

/// Both programs of an endpoint, each with its own conntrack table (`shared_ct`: one).
struct EndpointProgs {
    from: Loaded,
    to: Loaded,
    _pins: Vec<PinDir>,
}

fn load_endpoint(arts: &EndpointArtifacts, shared_ct: bool) -> EndpointProgs {
    let a = PinDir::new("ep");
    let b = if shared_ct {
        None
    } else {
        Some(PinDir::new("ep"))
    };
    let from = load(&arts.from_ep, &a);
    let to = load(&arts.to_ep, b.as_ref().unwrap_or(&a));
    EndpointProgs {
        from,
        to,
        _pins: std::iter::once(a).chain(b).collect(),
    }
}

/// Whether a program records verdicts (its tail stores the code into `skb->cb[0]`).
fn records(art: &ProgramArtifact) -> bool {
    sluice_compiler::datapath::emit_asm(art)
        .expect("disassembles")
        .contains("*(u32 *)(r1 + 48) = r")
}

/// Runs a program on a packet as a real packet (conntrack inserts happen): its return value
/// and, with rule recording, the verdict it recorded in `cb[0]`.
fn run(l: &Loaded, pkt: &[u8]) -> (u32, Option<keys::Decoded>) {
    let fd = l.obj.program_fd(&l.name).expect("program fd");
    let (ret, trace) = sluice_loader::trace::run_recorded(fd, pkt, false).expect("test run");
    assert_eq!(trace.is_some(), l.traced, "recorded iff compiled to record");
    (ret, trace)
}

/// What a probe sends.
#[derive(Clone, Copy, Debug)]
enum Probe {
    Tcp(u16),
    Udp(u16),
    Sctp(u16),
    Icmp(u8, u8),
    /// A protocol without ports.
    Other(u8),
}

impl Probe {
    fn l4(self) -> Option<L4Match> {
        Some(match self {
            Probe::Tcp(port) => L4Match::Port {
                proto: L4::Tcp,
                port,
            },
            Probe::Udp(port) => L4Match::Port {
                proto: L4::Udp,
                port,
            },
            Probe::Sctp(port) => L4Match::Port {
                proto: L4::Sctp,
                port,
            },
            Probe::Icmp(icmp_type, code) => L4Match::Icmp { icmp_type, code },
            Probe::Other(_) => return None,
        })
    }

    fn packet(self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16) -> Vec<u8> {
        let (proto, l4) = match self {
            Probe::Tcp(p) => (6, tcp(sport, p)),
            Probe::Udp(p) => (17, udp(sport, p)),
            Probe::Sctp(p) => (132, sctp(sport, p)),
            Probe::Icmp(t, c) => (1, icmp(t, c)),
            Probe::Other(p) => (p, vec![0; 8]),
        };
        eth(ETH_P_IP, &ipv4(proto, src, dst, 0, &l4))
    }
}

/// A source port no earlier packet of this process used, so no conntrack entry matches.
fn fresh_sport() -> u16 {
    static N: AtomicU32 = AtomicU32::new(0);
    1024 + (N.fetch_add(1, Ordering::Relaxed) % 64000) as u16
}

/// What the reference says: (allow, audited, deciding rules as index + 1; empty: implicit).
fn expected(
    w: &World,
    e: usize,
    hook: TcxHook,
    peer: Ipv4Addr,
    probe: Probe,
) -> (bool, bool, Vec<u32>) {
    let Some(l4) = probe.l4() else {
        // The evaluator has no port-less protocols: the plan's own `other` verdict.
        let (ing, egr) = &w.tables[e];
        let table = match hook {
            TcxHook::Ingress => egr,
            TcxHook::Egress => ing,
        };
        return match table {
            None => (true, false, vec![]),
            Some(t) => {
                let c = w.classes.class_of_ip(IpAddr::V4(peer)).expect("class");
                let v = t.profile_of(c).other;
                let rule = v
                    .rule
                    .map(|r| cranelift_entity::EntityRef::index(r) as u32 + 1);
                (v.allow, v.audited, rule.into_iter().collect())
            }
        };
    };
    let (src, dst) = match hook {
        TcxHook::Ingress => (FlowEnd::Endpoint(e), FlowEnd::Ip(IpAddr::V4(peer))),
        TcxHook::Egress => (FlowEnd::Ip(IpAddr::V4(peer)), FlowEnd::Endpoint(e)),
    };
    let v = eval::evaluate(&w.ir, &w.inv, &Flow { src, dst, l4 }).expect("eval");
    let d = match hook {
        TcxHook::Ingress => v.egress,
        TcxHook::Egress => v.ingress,
    }
    .expect("a managed endpoint has a verdict");
    let rules = d
        .deciding
        .iter()
        .map(|r| cranelift_entity::EntityRef::index(*r) as u32 + 1)
        .collect();
    (d.allow, d.audited, rules)
}

/// Runs one probe and compares with the reference; returns the kernel's allow.
fn check(
    w: &World,
    e: usize,
    progs: &EndpointProgs,
    hook: TcxHook,
    peer: Ipv4Addr,
    probe: Probe,
    what: &str,
) -> bool {
    let me = ep_ip(w, e);
    let (src, dst, prog) = match hook {
        TcxHook::Ingress => (me, peer, &progs.from),
        TcxHook::Egress => (peer, me, &progs.to),
    };
    let pkt = probe.packet(src, dst, fresh_sport());
    let (ret, trace) = run(prog, &pkt);
    let (allow, audited, rules) = expected(w, e, hook, peer, probe);
    let ctx = format!(
        "{what}: endpoint {} {hook:?} peer {peer} {probe:?}",
        w.inv.endpoints[e].name
    );
    assert_eq!(
        ret,
        if allow { 0 } else { 2 },
        "{ctx}: verdict (trace {trace:?})"
    );
    if let Some(t) = trace {
        assert_eq!(t.allow, allow, "{ctx}: traced verdict");
        if t.stage == Some(Stage::Policy) {
            assert_eq!(t.audited, audited, "{ctx}: audited");
            if rules.is_empty() {
                assert_eq!(t.rule, 0, "{ctx}: implicit verdict");
            } else {
                assert!(
                    rules.contains(&t.rule),
                    "{ctx}: rule {} not in {rules:?}",
                    t.rule
                );
            }
        } else {
            // Only conntrack can decide otherwise here, and only to allow what policy allowed.
            assert!(t.allow, "{ctx}: {t:?}");
        }
    }
    allow
}

fn compile(w: &World, e: usize, opts: &CodegenOptions) -> EndpointArtifacts {
    let (ing, egr) = &w.tables[e];
    compile_endpoint(ing.as_ref(), egr.as_ref(), &w.classes, opts).expect("compile")
}

// --- a real policy ------------------------------------------------------------------------

const DEMO_INVENTORY: &str = "
namespaces:
- {name: x, labels: {compliance: pci}}
- {name: y, labels: {team: ops}}
- {name: z}
- {name: kube-system}
- {name: w, labels: {compliance: pci}}
nodes:
- {name: n1, ips: [192.168.0.1]}
endpoints:
- {name: web, namespace: x, labels: {app: frontend}, ips: [10.1.0.10], node: n1}
- {name: api, namespace: y, labels: {app: api, tier: backend}, ips: [10.2.0.20], node: n1,
   ports: [{name: metrics, port: 9100}]}
- {name: legacy, namespace: y, labels: {app: api, tier: backend, legacy: 'true'}, ips: [10.2.0.21], node: n1}
- {name: db, namespace: z, labels: {app: db}, ips: [10.3.0.30], node: n1}
- {name: dns, namespace: kube-system, labels: {k8s-app: kube-dns}, ips: [10.4.0.53], node: n1}
- {name: pay, namespace: w, labels: {app: pay}, ips: [10.5.0.5], node: n1}
";

fn demo_policy() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/demo.sluice"
    ))
    .expect("policies/demo.sluice")
}

fn demo_peers(w: &World) -> Vec<Ipv4Addr> {
    let mut peers: Vec<Ipv4Addr> = (0..w.inv.endpoints.len()).map(|e| ep_ip(w, e)).collect();
    peers.extend(
        [
            "192.168.0.1",
            "8.8.8.8",
            "10.9.9.9",
            "10.1.5.5",
            "10.2.7.7",
            "10.255.255.255",
            "172.16.0.1",
            "255.255.255.255",
            "0.0.0.1",
        ]
        .map(|s| s.parse::<Ipv4Addr>().unwrap()),
    );
    peers
}

fn demo_probes() -> Vec<Probe> {
    let mut v: Vec<Probe> = [
        0u16, 1, 53, 79, 80, 81, 443, 5432, 7999, 8000, 8005, 8010, 8011, 8080, 9090, 9100, 65535,
    ]
    .map(Probe::Tcp)
    .to_vec();
    v.extend([53u16, 54, 9100].map(Probe::Udp));
    v.extend([80u16, 5432].map(Probe::Sctp));
    v.extend([(8, 0), (8, 1), (0, 0), (3, 1)].map(|(t, c)| Probe::Icmp(t, c)));
    v.push(Probe::Other(47));
    v
}

fn demo_in_mode(mode: Mode, limits: cost::Limits) {
    let w = world(&demo_policy(), DEMO_INVENTORY);
    let opts = CodegenOptions {
        mode,
        trace: true,
        limits,
    };
    let peers = demo_peers(&w);
    let probes = demo_probes();
    let (mut allowed, mut denied) = (0, 0);
    for e in 0..w.inv.endpoints.len() {
        let progs = load_endpoint(&compile(&w, e, &opts), false);
        for hook in [TcxHook::Ingress, TcxHook::Egress] {
            for &peer in peers.iter().filter(|p| **p != ep_ip(&w, e)) {
                for &probe in &probes {
                    if check(&w, e, &progs, hook, peer, probe, &format!("{mode:?}")) {
                        allowed += 1;
                    } else {
                        denied += 1;
                    }
                }
            }
        }
    }
    // The demo policy must exercise both outcomes.
    assert!(
        allowed > 100 && denied > 100,
        "allowed {allowed} denied {denied}"
    );
}

#[test]
fn demo_policy_specialized_matches_the_evaluator() {
    demo_in_mode(Mode::Specialized, cost::Limits::default());
}

#[test]
fn demo_policy_generic_matches_the_evaluator() {
    demo_in_mode(Mode::Generic, cost::Limits::default());
}

/// Every threshold at its minimum: the specialized mode takes its map shapes (ipcache,
/// class → profile array, port map).
fn map_shapes() -> cost::Limits {
    cost::Limits {
        inline_budget: 40,
        addr_inline_max: 1,
        class_inline_max: 1,
        ports_inline_max: 1,
        profiles_inline_max: 2,
    }
}

#[test]
fn demo_policy_specialized_with_maps_matches_the_evaluator() {
    demo_in_mode(Mode::Specialized, map_shapes());
}

#[test]
fn without_rule_recording_nothing_is_recorded_and_verdicts_hold() {
    let w = world(&demo_policy(), DEMO_INVENTORY);
    let opts = CodegenOptions::default();
    let e = 0;
    let arts = compile(&w, e, &opts);
    let progs = load_endpoint(&arts, false);
    assert!(!progs.from.traced && !progs.to.traced);
    for peer in demo_peers(&w) {
        for probe in demo_probes() {
            check(&w, e, &progs, TcxHook::Ingress, peer, probe, "untraced");
        }
    }
}

// --- conntrack ----------------------------------------------------------------------------

const CT_INVENTORY: &str = "
endpoints:
- {name: a, namespace: x, labels: {app: a}, ips: [10.0.0.1]}
- {name: b, namespace: x, labels: {app: b}, ips: [10.0.0.2]}
";

/// `a` may only reach `b` on 80/tcp and ping it; nobody may reach `a`.
const CT_POLICY: &str = r#"
policy "a" in namespace x {
  select app = a
  isolate ingress, egress
  egress allow to pods { app = b } ports 80/tcp
  egress allow to pods { app = b } proto icmp type 8
}
"#;

#[test]
fn replies_of_allowed_flows_pass_the_other_direction() {
    let w = world(CT_POLICY, CT_INVENTORY);
    for mode in [Mode::Specialized, Mode::Generic] {
        let opts = CodegenOptions {
            mode,
            trace: true,
            ..Default::default()
        };
        let progs = load_endpoint(&compile(&w, 0, &opts), true);
        let (a, b) = (ep_ip(&w, 0), ep_ip(&w, 1));
        let sport = fresh_sport();

        // Before any request, b → a is denied by a's ingress.
        let reply = eth(ETH_P_IP, &ipv4(6, b, a, 0, &tcp(80, sport)));
        assert_eq!(run(&progs.to, &reply).0, 2, "{mode:?}: unsolicited");
        // a → b:80 is allowed by policy and recorded.
        let req = eth(ETH_P_IP, &ipv4(6, a, b, 0, &tcp(sport, 80)));
        let (ret, t) = run(&progs.from, &req);
        assert_eq!(
            (ret, t.unwrap().stage),
            (0, Some(Stage::Policy)),
            "{mode:?}"
        );
        // The reply passes a's ingress as a reply; the next request is established.
        let (ret, t) = run(&progs.to, &reply);
        assert_eq!(
            (ret, t.unwrap().stage),
            (0, Some(Stage::Reply)),
            "{mode:?}: reply"
        );
        let (ret, t) = run(&progs.from, &req);
        assert_eq!(
            (ret, t.unwrap().stage),
            (0, Some(Stage::Established)),
            "{mode:?}"
        );
        // Another port of b from the same source port is still policy's business.
        let other = eth(ETH_P_IP, &ipv4(6, a, b, 0, &tcp(sport, 81)));
        assert_eq!(run(&progs.from, &other).0, 2, "{mode:?}: port 81");
        // A "reply" from a port the request did not go to is not a reply.
        let fake = eth(ETH_P_IP, &ipv4(6, b, a, 0, &tcp(81, sport)));
        assert_eq!(run(&progs.to, &fake).0, 2, "{mode:?}: fake reply");

        // ICMP: the echo reply answers the echo request.
        let echo_reply = eth(ETH_P_IP, &ipv4(1, b, a, 0, &icmp(0, 0)));
        assert_eq!(
            run(&progs.to, &echo_reply).0,
            2,
            "{mode:?}: unsolicited echo reply"
        );
        let echo = eth(ETH_P_IP, &ipv4(1, a, b, 0, &icmp(8, 0)));
        assert_eq!(run(&progs.from, &echo).0, 0, "{mode:?}: echo");
        let (ret, t) = run(&progs.to, &echo_reply);
        assert_eq!(
            (ret, t.unwrap().stage),
            (0, Some(Stage::Reply)),
            "{mode:?}: echo reply"
        );
        // A reply carries its request's identifier: another one answers nothing.
        let other_id = eth(ETH_P_IP, &ipv4(1, b, a, 0, &icmp_query(0, 2)));
        assert_eq!(
            run(&progs.to, &other_id).0,
            2,
            "{mode:?}: echo reply to another ping"
        );
        // But not any ICMP from b.
        let unreach = eth(ETH_P_IP, &ipv4(1, b, a, 0, &icmp(13, 0)));
        assert_eq!(run(&progs.to, &unreach).0, 2, "{mode:?}: timestamp request");
    }
}

/// `a` lets `b` in on 80/tcp and 53/udp and lets it ping; then `a` denies everything in.
const SWAP_BEFORE: &str = r#"
policy "a" in namespace x {
  select app = a
  isolate ingress
  ingress allow from pods { app = b } ports 80/tcp, 53/udp
  ingress allow from pods { app = b } proto icmp type 8
}
"#;
const SWAP_AFTER: &str = r#"
policy "a" in namespace x {
  select app = a
  isolate ingress
}
"#;

/// What a policy change does to established flows (`spec/datapath.md`, "Policy changes"):
/// conntrack is shared across generations, so after a swap to a policy that denies the peer
/// the flows it holds keep passing (TCP and UDP by their 5-tuple, ICMP echo by its
/// identifier), and every new flow is decided by the new policy, a new ping (another
/// identifier) included. The two generations share one conntrack table by name, as the
/// loader's pin makes them.
#[test]
fn after_a_swap_that_denies_a_peer_only_established_flows_pass() {
    let (before, after) = (
        world(SWAP_BEFORE, CT_INVENTORY),
        world(SWAP_AFTER, CT_INVENTORY),
    );
    for mode in [Mode::Specialized, Mode::Generic] {
        let opts = CodegenOptions {
            mode,
            trace: true,
            ..Default::default()
        };
        let pins = PinDir::new("swap");
        let old = load(&compile(&before, 0, &opts).to_ep, &pins);
        let (a, b) = (ep_ip(&before, 0), ep_ip(&before, 1));
        let (sport, id) = (fresh_sport(), fresh_sport());
        let established = [
            ("tcp", eth(ETH_P_IP, &ipv4(6, b, a, 0, &tcp(sport, 80)))),
            ("udp", eth(ETH_P_IP, &ipv4(17, b, a, 0, &udp(sport, 53)))),
            ("echo", eth(ETH_P_IP, &ipv4(1, b, a, 0, &icmp_query(8, id)))),
        ];
        for (what, pkt) in &established {
            let (ret, t) = run(&old, pkt);
            assert_eq!(
                (ret, t.unwrap().stage),
                (0, Some(Stage::Policy)),
                "{mode:?} {what}"
            );
        }

        // The swap: the new generation's program, the same conntrack table.
        let new = load(&compile(&after, 0, &opts).to_ep, &pins);
        drop(old);
        for (what, pkt) in &established {
            let (ret, t) = run(&new, pkt);
            assert_eq!(
                (ret, t.unwrap().stage),
                (0, Some(Stage::Established)),
                "{mode:?}: established {what} keeps passing"
            );
        }
        let (sport2, id2) = (fresh_sport(), fresh_sport());
        let new_flows = [
            (
                "new tcp",
                eth(ETH_P_IP, &ipv4(6, b, a, 0, &tcp(sport2, 80))),
            ),
            (
                "new udp",
                eth(ETH_P_IP, &ipv4(17, b, a, 0, &udp(sport2, 53))),
            ),
            (
                "new ping",
                eth(ETH_P_IP, &ipv4(1, b, a, 0, &icmp_query(8, id2))),
            ),
            (
                "a timestamp request with the ping's identifier",
                eth(ETH_P_IP, &ipv4(1, b, a, 0, &icmp_query(13, id))),
            ),
        ];
        for (what, pkt) in &new_flows {
            let (ret, t) = run(&new, pkt);
            let t = t.unwrap();
            assert_eq!(
                (ret, t.allow, t.stage),
                (2, false, Some(Stage::Policy)),
                "{mode:?}: {what} is denied"
            );
        }
    }
}

/// Frames a decision table cannot judge. An enforced direction (isolated, or some rule can
/// deny) drops IPv6, any other EtherType but ARP, and malformed headers; ARP passes. A
/// direction that is not enforced passes all of them, with or without conntrack code.
#[test]
fn enforced_directions_drop_what_they_cannot_judge_and_pass_arp() {
    // a: isolated for ingress, but every IPv4 packet is allowed (so nothing IPv4 is denied
    // and there is no conntrack); b: egress can deny, ingress has no policy (conntrack code,
    // for the replies of b's egress).
    const POLICY: &str = r#"
policy "a" in namespace x {
  select app = a
  isolate ingress
  ingress allow from cidr 0.0.0.0/0
}
policy "b" in namespace x {
  select app = b
  isolate egress
  egress allow to pods { app = a } ports 80/tcp
}
"#;
    let w = world(POLICY, CT_INVENTORY);
    let (a, b) = (ep_ip(&w, 0), ep_ip(&w, 1));
    let tcp_pkt = eth(ETH_P_IP, &ipv4(6, b, a, 0, &tcp(fresh_sport(), 80)));
    let mut version6 = tcp_pkt.clone();
    version6[14] = 0x65;
    let frames: [(&str, Vec<u8>, Stage); 6] = [
        (
            "ipv6 tcp",
            eth(ETH_P_IPV6, &ipv6(6, &tcp(1, 80))),
            Stage::NotIpv4,
        ),
        (
            "ipv6 icmp",
            eth(ETH_P_IPV6, &ipv6(58, &icmp(128, 0))),
            Stage::NotIpv4,
        ),
        ("unknown ethertype", eth(0x88b5, &[0u8; 46]), Stage::NotIpv4),
        (
            "ihl 4",
            eth(ETH_P_IP, &ipv4_raw(6, b, a, 4, 0, &tcp(1, 80))),
            Stage::Malformed,
        ),
        ("ipv4 ethertype, version 6", version6, Stage::Malformed),
        (
            "tcp cut before its ports",
            tcp_pkt[..37].to_vec(),
            Stage::Malformed,
        ),
    ];
    let arp = eth(ETH_P_ARP, &[0u8; 28]);
    for mode in [Mode::Specialized, Mode::Generic] {
        for trace in [false, true] {
            let opts = CodegenOptions {
                mode,
                trace,
                ..Default::default()
            };
            let (pa, pb) = (compile(&w, 0, &opts), compile(&w, 1, &opts));
            assert!(
                pa.to_ep.maps.iter().all(|m| m.name != keys::CT),
                "a needs no conntrack"
            );
            let (pa, pb) = (load_endpoint(&pa, true), load_endpoint(&pb, true));
            // (program, enforced)
            let progs = [
                ("a to_ep", &pa.to, true),
                ("a from_ep", &pa.from, false),
                ("b from_ep", &pb.from, true),
                ("b to_ep", &pb.to, false),
            ];
            for (name, prog, enforced) in progs {
                let ctx = format!("{mode:?} trace {trace} {name}");
                let (ret, t) = run(prog, &arp);
                assert_eq!(ret, 0, "{ctx}: arp");
                if let Some(t) = t.filter(|_| enforced) {
                    assert_eq!((t.allow, t.stage), (true, Some(Stage::NotIpv4)), "{ctx}");
                }
                for (what, pkt, stage) in &frames {
                    let (ret, t) = run(prog, pkt);
                    assert_eq!(ret, if enforced { 2 } else { 0 }, "{ctx}: {what}");
                    if let Some(t) = t.filter(|_| enforced) {
                        assert_eq!((t.allow, t.stage), (false, Some(*stage)), "{ctx}: {what}");
                    }
                }
            }
            // IPv4 still follows the policy.
            assert_eq!(run(&pa.to, &tcp_pkt).0, 0, "{mode:?}: a allows ipv4");
            let other = eth(ETH_P_IP, &ipv4(6, b, a, 0, &tcp(fresh_sport(), 81)));
            assert_eq!(run(&pb.from, &other).0, 2, "{mode:?}: b denies 81");
        }
    }
}

#[test]
fn conntrack_is_shared_by_name_and_absent_when_nothing_can_deny() {
    let w = world(CT_POLICY, CT_INVENTORY);
    let arts = compile(&w, 0, &CodegenOptions::default());
    let ct = arts
        .from_ep
        .maps
        .iter()
        .find(|m| m.name == keys::CT)
        .unwrap();
    assert_eq!(ct.def.pinning, sluice_compiler::bpf::Pinning::ByName);
    // b has no policy at all: both its programs are `return TC_ACT_OK`.
    let arts = compile(&w, 1, &CodegenOptions::default());
    for a in [&arts.from_ep, &arts.to_ep] {
        assert!(a.maps.is_empty(), "{:?}", a.maps);
        let text = sluice_compiler::datapath::emit_asm(a).unwrap();
        assert!(text.ends_with("   0: r0 = 0\n   1: exit\n"), "{text}");
    }
}

// --- a CIDR peer that covers no known address -------------------------------------------

/// Egress to one tiny block at the bottom of the address space, plus DNS anywhere. The ipcache
/// once gave 0.0.0.0/0 the class of the most specific named prefix holding 0.0.0.0, so every
/// address no other prefix covers matched the tiny block: TCP and UDP on every port passed to
/// the outside, inside the pod range and out, where the evaluator denies them.
#[test]
fn a_tiny_cidr_at_the_bottom_of_the_address_space_is_not_the_world() {
    let policy = r#"
policy "tiny" in namespace x {
  select app = a
  isolate egress
  egress allow to cidr 0.0.0.0/31
  egress allow ports 53/udp, 53/tcp
}
"#;
    let w = world(policy, DIFF_INVENTORY);
    let peers: Vec<Ipv4Addr> = [
        "8.8.8.8",
        "10.0.9.9",
        "10.0.0.2",
        "192.168.1.1",
        "0.0.0.1",
        "0.0.0.2",
        "255.255.255.255",
    ]
    .map(|s| s.parse().unwrap())
    .to_vec();
    let probes = [
        Probe::Tcp(80),
        Probe::Tcp(65535),
        Probe::Udp(80),
        Probe::Tcp(53),
        Probe::Udp(53),
        Probe::Sctp(53),
        Probe::Icmp(8, 0),
        Probe::Other(47),
    ];
    let limits = [cost::Limits::default(), map_shapes()];
    let mut opts: Vec<CodegenOptions> = limits
        .iter()
        .map(|&limits| CodegenOptions {
            mode: Mode::Specialized,
            trace: true,
            limits,
        })
        .collect();
    opts.push(CodegenOptions {
        mode: Mode::Generic,
        trace: true,
        ..Default::default()
    });
    for opt in &opts {
        let progs = load_endpoint(&compile(&w, 0, opt), false);
        let what = format!("{:?} {:?}", opt.mode, opt.limits);
        let mut verdicts = Vec::new();
        for &peer in &peers {
            for &probe in &probes {
                let allow = check(&w, 0, &progs, TcxHook::Ingress, peer, probe, &what);
                verdicts.push((peer.to_string(), format!("{probe:?}"), allow));
            }
        }
        // Not just agreement: the verdicts are the policy's (DNS only, except inside the block).
        for (peer, probe, allow) in verdicts {
            let want = peer == "0.0.0.1" || probe == "Tcp(53)" || probe == "Udp(53)";
            assert_eq!(allow, want, "{what}: {peer} {probe}");
        }
    }
}

// --- differential property test -----------------------------------------------------------

const DIFF_INVENTORY: &str = "
namespaces:
- {name: x, labels: {team: red}}
- {name: y, labels: {team: blue}}
nodes:
- {name: n1, ips: [192.168.1.1]}
endpoints:
- {name: a, namespace: x, labels: {app: a}, ips: [10.0.0.1], node: n1, ports: [{name: web, port: 5}]}
- {name: b, namespace: x, labels: {app: b}, ips: [10.0.0.2], node: n1, ports: [{name: web, port: 7}]}
- {name: c, namespace: y, labels: {app: a}, ips: [10.0.1.3], node: n1}
- {name: d, namespace: y, labels: {app: d, tier: t}, ips: [10.0.2.4], node: n1}
";

fn random_policy(r: &mut XorShift) -> String {
    let mut out = String::new();
    for p in 0..1 + r.below(3) {
        let tier = r.below(5);
        let admin = tier == 0;
        out.push_str(&format!("policy \"p{p}\""));
        if !admin {
            out.push_str(&format!(" in namespace {}", r.pick(&["x", "y"])));
        }
        out.push_str(" {\n");
        match tier {
            0 => out.push_str(&format!("  tier admin priority {}\n", r.below(3))),
            1 => out.push_str("  tier baseline\n"),
            _ => {}
        }
        out.push_str(&format!(
            "  select {}\n",
            r.pick(&["all", "app = a", "app = b", "app in (a, d)", "!tier"])
        ));
        if !admin && r.below(2) == 0 {
            out.push_str(&format!(
                "  isolate {}\n",
                r.pick(&["ingress", "egress", "ingress, egress"])
            ));
        }
        for _ in 0..1 + r.below(4) {
            let dir = r.pick(&["ingress", "egress"]);
            let mut actions = vec!["allow", "deny", "audit"];
            if admin {
                actions.push("pass");
            }
            let action = r.pick(&actions);
            let word = if dir == "ingress" { "from" } else { "to" };
            let peer = r.pick(&[
                "",
                "pods { app = a }",
                "pods { app = b } in namespaces { team = red }",
                "namespaces { team = blue }",
                "cidr 10.0.0.0/16 except 10.0.1.0/24",
                "cidr 10.0.0.2/32",
                "cidr 8.8.0.0/16",
                // Blocks that cover no known address, at either end of the address space.
                "cidr 0.0.0.0/31",
                "cidr 255.255.255.254/31",
                "cidr 0.0.0.0/31, pods { app = b }",
                // Blocks over pod addresses, exactly or partly, with and without excepts.
                "cidr 10.0.0.0/31",
                "cidr 10.0.1.3/32",
                "cidr 10.0.0.0/8 except 10.0.0.2/32",
                "cidr 0.0.0.0/0",
                "cidr 0.0.0.0/0 except 10.0.0.0/24",
                "cidr 0.0.0.0/1 except 8.8.8.8/32",
                "world",
                "host",
                "all",
            ]);
            let ports = r.pick(&[
                "",
                "ports 3/tcp",
                "ports 2-6/tcp, 4/udp",
                "ports 5/sctp",
                "ports web/tcp",
                "proto udp",
                "proto icmp type 8",
                "proto icmp type 8 code 1",
                "ports 1-65535/tcp",
            ]);
            out.push_str(&format!("  {dir} {action}"));
            if !peer.is_empty() {
                out.push_str(&format!(" {word} {peer}"));
            }
            if !ports.is_empty() {
                out.push_str(&format!(" {ports}"));
            }
            out.push('\n');
        }
        out.push_str("}\n");
    }
    out
}

fn random_probe(r: &mut XorShift) -> Probe {
    match r.below(6) {
        0 | 1 => Probe::Tcp(r.below(9) as u16),
        2 => Probe::Udp(r.below(9) as u16),
        3 => Probe::Sctp(r.below(9) as u16),
        4 => Probe::Icmp(r.pick(&[0, 8, 3]), r.below(3) as u8),
        _ => {
            if r.below(2) == 0 {
                Probe::Tcp(r.pick(&[65535, 40000, 1024]))
            } else {
                Probe::Other(47)
            }
        }
    }
}

/// Random small policies and packets: the specialized program (with random thresholds, so
/// every shape turns up), the generic program and the reference evaluator all agree.
#[test]
fn specialized_generic_and_evaluator_agree_on_random_policies() {
    let seed = std::env::var("SLUICE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_u64);
    let cases: u64 = std::env::var("SLUICE_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut r = XorShift(seed);
    let peers: Vec<Ipv4Addr> = [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.1.3",
        "10.0.2.4",
        "192.168.1.1",
        "10.0.5.5",
        "10.0.1.9",
        "8.8.8.8",
        "8.8.4.4",
        "1.1.1.1",
        // Inside the pod range but no pod; the ends of the address space.
        "10.0.9.9",
        "0.0.0.1",
        "255.255.255.255",
        "10.0.0.0",
    ]
    .map(|s| s.parse().unwrap())
    .to_vec();
    let mut compared = 0;
    for case in 0..cases {
        let policy = random_policy(&mut r);
        let w = world(&policy, DIFF_INVENTORY);
        let tiny = cost::Limits {
            inline_budget: r.below(60) as usize,
            addr_inline_max: r.below(4) as usize,
            class_inline_max: r.below(4) as usize,
            ports_inline_max: r.below(4) as usize,
            profiles_inline_max: r.below(4) as usize,
        };
        let limits = if r.below(2) == 0 {
            cost::Limits::default()
        } else {
            tiny
        };
        for e in 0..w.inv.endpoints.len() {
            let spec = CodegenOptions {
                mode: Mode::Specialized,
                trace: r.below(2) == 0,
                limits,
            };
            let generic = CodegenOptions {
                mode: Mode::Generic,
                trace: true,
                ..Default::default()
            };
            let sp = load_endpoint(&compile(&w, e, &spec), false);
            let ge = load_endpoint(&compile(&w, e, &generic), false);
            for _ in 0..25 {
                let hook = if r.below(2) == 0 {
                    TcxHook::Ingress
                } else {
                    TcxHook::Egress
                };
                let peer = r.pick(&peers);
                if peer == ep_ip(&w, e) {
                    continue;
                }
                let probe = random_probe(&mut r);
                let what = format!("case {case} (seed {seed:#x})\n{policy}");
                let a = check(
                    &w,
                    e,
                    &sp,
                    hook,
                    peer,
                    probe,
                    &format!("specialized {what}"),
                );
                let b = check(&w, e, &ge, hook, peer, probe, &format!("generic {what}"));
                assert_eq!(a, b);
                compared += 1;
            }
        }
    }
    assert!(
        compared > 100 * cases as usize / 2,
        "{compared} comparisons"
    );
}

// --- a 100k-rule policy -------------------------------------------------------------------

/// 100,000 rules, each allowing one distinct /32 peer on its own port: 100k profiles and
/// 100k ipcache prefixes. The cost model must move it all into maps; it loads and decides.
#[test]
fn a_100k_rule_policy_loads_and_decides() {
    const N: u32 = 100_000;
    let peer = |i: u32| Ipv4Addr::from(0x0b00_0000 + i * 3);
    let port = |i: u32| (1 + i % 60000) as u16;
    let mut policy = String::from("policy \"big\" in namespace x {\n  select app = a\n");
    for i in 0..N {
        policy.push_str(&format!(
            "  ingress allow from cidr {}/32 ports {}/tcp\n",
            peer(i),
            port(i)
        ));
    }
    policy.push_str("}\n");
    let t0 = std::time::Instant::now();
    let w = world(&policy, CT_INVENTORY);
    let resolved = t0.elapsed();
    for mode in [Mode::Specialized, Mode::Generic] {
        let t1 = std::time::Instant::now();
        let opts = CodegenOptions {
            mode,
            trace: true,
            ..Default::default()
        };
        let arts = compile(&w, 0, &opts);
        let compiled = t1.elapsed();
        let insns = arts.to_ep.elf.len();
        let progs = load_endpoint(&arts, false);
        let loaded = t1.elapsed() - compiled;
        let entries: usize = arts.to_ep.maps.iter().map(|m| m.entries.len()).sum();
        eprintln!(
            "100k rules {mode:?}: resolve+plan {resolved:?}, codegen {compiled:?}, load+fill {loaded:?}, \
             {entries} map entries, elf {insns} bytes"
        );
        let mut r = XorShift(7);
        for _ in 0..40 {
            let i = r.below(u64::from(N)) as u32;
            let p = if r.below(2) == 0 {
                port(i)
            } else {
                port(i) + 1
            };
            check(
                &w,
                0,
                &progs,
                TcxHook::Egress,
                peer(i),
                Probe::Tcp(p),
                &format!("{mode:?} 100k"),
            );
            check(
                &w,
                0,
                &progs,
                TcxHook::Egress,
                peer(i),
                Probe::Udp(p),
                &format!("{mode:?} 100k"),
            );
        }
        check(
            &w,
            0,
            &progs,
            TcxHook::Egress,
            "9.9.9.9".parse().unwrap(),
            Probe::Tcp(1),
            "100k world",
        );
    }
}
