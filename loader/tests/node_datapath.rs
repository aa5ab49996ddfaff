//! Kernel tests of the node datapath's programs with BPF_PROG_TEST_RUN: every program the
//! compiler generates for a node loads (the verifier accepts it), and the from-pod program
//! sends each packet where `spec/datapath.md` ("Nodes") says: a local pod after its ingress
//! policy (`bpf_redirect_peer`, the MACs rewritten), a remote pod to the VXLAN device, the
//! rest to the host stack, and denied packets nowhere. Real traffic between two nodes is in
//! `loader/cli/tests/node_traffic.rs`.

mod common;

use common::*;
use sluice_bundle::abi::node::*;
use sluice_compiler::compile::{CompileOptions, Compiled, check_documents, compile};
use sluice_compiler::datapath::node::{Routing, config_from_inventory};
use sluice_compiler::datapath::{CodegenOptions, Mode, ProgramArtifact};
use sluice_compiler::resolve::{Inventory, InventoryFiles};
use sluice_compiler::source::{SourceMap, dsl};
use sluice_loader::load::{LoadOptions, LoadedObject};
use sluice_loader::node::{EndpointLink, complete_endpoints, complete_node};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

const POLICY: &str = r#"policy "a" in namespace x {
  select app = a
  ingress allow from pods { app = b } ports 80/tcp
}
"#;

/// n1 runs a and b, n2 runs c (labels of b) and d.
const INVENTORY: &str = "
nodes:
- {name: n1, ips: [192.168.10.11], pod_cidr: 10.1.1.0/24}
- {name: n2, ips: [192.168.10.12], pod_cidr: 10.1.2.0/24}
endpoints:
- {name: a, namespace: x, labels: {app: a}, ips: [10.1.1.10], node: n1, netns: a}
- {name: b, namespace: x, labels: {app: b}, ips: [10.1.1.11], node: n1, netns: b}
- {name: c, namespace: x, labels: {app: b}, ips: [10.1.2.10], node: n2, netns: c}
- {name: d, namespace: x, labels: {app: d}, ips: [10.1.2.11], node: n2, netns: d}
";

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

/// A pin directory on bpffs (the conntrack table of one test), removed on drop.
struct PinDir(PathBuf);

impl PinDir {
    fn new() -> PinDir {
        static N: AtomicU32 = AtomicU32::new(0);
        sluice_loader::pin::ensure_bpffs().expect("bpffs");
        let p = PathBuf::from(format!(
            "/sys/fs/bpf/sluice-node-t{}-{}",
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

fn build(node: &str, routing: Routing, mode: Mode) -> Compiled {
    let codegen = CodegenOptions {
        mode,
        ..CodegenOptions::default()
    };
    build_with(POLICY, INVENTORY, node, routing, codegen).0
}

/// Compiles `policy` against `inventory` for `node`; also returns the IR and inventory.
fn build_with(
    policy: &str,
    inventory: &str,
    node: &str,
    routing: Routing,
    codegen: CodegenOptions,
) -> (Compiled, sluice_compiler::ir::Ir, Inventory) {
    let mut sm = SourceMap::new();
    let id = sm.add("a.sluice", policy);
    let doc = dsl::parse(id, policy).unwrap();
    let inv = Inventory::parse("inv.yaml", inventory).unwrap();
    let checked = check_documents(&[doc], Some(&inv));
    assert!(!checked.diags.has_errors());
    let opts = CompileOptions {
        codegen,
        node: Some(node.into()),
        datapath: config_from_inventory(
            &inv,
            node,
            "192.168.10.0/24".parse().unwrap(),
            "eth0",
            routing,
        ),
        masquerade: Vec::new(),
    };
    let c = compile(&checked.ir, &inv, &sm, &[], &opts, &mut |_| {}).unwrap();
    (c, checked.ir, inv)
}

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

/// Loads `art` with its node maps completed: slot `s` gets ifindex `s` (lo and friends:
/// test runs do not follow redirects), pod MAC `02::0s`, host MAC `02::8s`; the VXLAN
/// device is ifindex 1.
fn load(art: &ProgramArtifact, pins: &PinDir) -> LoadedObject {
    let obj = LoadedObject::load_with(
        &art.elf,
        &LoadOptions {
            pin_dir: Some(pins.0.clone()),
            map_pins: Vec::new(),
        },
    )
    .unwrap_or_else(|e| panic!("loading {}: {e:?}", art.name));
    let links: Vec<Option<EndpointLink>> = (1..=8u8)
        .map(|s| {
            Some(EndpointLink {
                ifindex: u32::from(s),
                pod_mac: mac(s),
                host_mac: mac(0x80 | s),
            })
        })
        .collect();
    let mut maps = art.maps.clone();
    for m in &mut maps {
        match m.name.as_str() {
            ENDPOINTS => complete_endpoints(m, &links).unwrap(),
            NODE => complete_node(m, 1, 0).unwrap(),
            _ => {}
        }
    }
    obj.fill(&maps).expect("fill");
    obj
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn tcp_to(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    eth(0x0800, &ipv4(6, ip(src), ip(dst), 0, &tcp(40000, dport)))
}

fn from_pod(c: &Compiled, name: &str) -> ProgramArtifact {
    c.endpoints
        .iter()
        .find(|e| e.endpoint.name == name)
        .unwrap()
        .programs
        .from_ep
        .clone()
}

/// Every program of both routing modes and both decision shapes passes the verifier.
#[test]
fn every_node_program_loads() {
    let pins = PinDir::new();
    for routing in [Routing::Vxlan, Routing::Native] {
        for mode in [Mode::Specialized, Mode::Generic] {
            let c = build("n1", routing, mode);
            for name in ["a", "b"] {
                load(&from_pod(&c, name), &pins);
            }
            let node = c.node.as_ref().unwrap();
            let names: Vec<&str> = node.devices.iter().map(|d| d.name.as_str()).collect();
            // Masquerade is on: the uplink's reverse NAT runs in both modes.
            let want: &[&str] = match routing {
                Routing::Vxlan => &["from_overlay", "from_netdev"],
                Routing::Native => &["from_netdev"],
            };
            assert_eq!(names, want);
            for d in &node.devices {
                load(d, &pins);
            }
        }
    }
}

/// b's from-pod program (b has no policy of its own) under VXLAN.
#[test]
fn from_pod_sends_each_packet_where_it_belongs() {
    let pins = PinDir::new();
    for mode in [Mode::Specialized, Mode::Generic] {
        let c = build("n1", Routing::Vxlan, mode);
        let obj = load(&from_pod(&c, "b"), &pins);
        let run = |pkt: &[u8]| obj.test_run("from_ep", pkt, 1).unwrap();

        // a allows b on 80: into a (slot 1: a sorts first), MACs rewritten.
        let out = run(&tcp_to("10.1.1.11", "10.1.1.10", 80));
        assert_eq!(out.retval, TC_ACT_REDIRECT, "{mode:?}");
        assert_eq!(&out.packet_out[..6], &mac(1), "the pod's own MAC");
        assert_eq!(&out.packet_out[6..12], &mac(0x81), "its gateway's");
        // a's ingress denies 81.
        let out = run(&tcp_to("10.1.1.11", "10.1.1.10", 81));
        assert_eq!(out.retval, TC_ACT_SHOT, "{mode:?}");
        // c and d are on n2: to the VXLAN device.
        for dst in ["10.1.2.10", "10.1.2.11", "10.1.2.99"] {
            let out = run(&tcp_to("10.1.1.11", dst, 443));
            assert_eq!(out.retval, TC_ACT_REDIRECT, "{mode:?} {dst}");
        }
        // Outside the cluster, the node itself, ARP: the host stack.
        for dst in ["8.8.8.8", "192.168.10.11"] {
            let out = run(&tcp_to("10.1.1.11", dst, 443));
            assert_eq!(out.retval, TC_ACT_OK, "{mode:?} {dst}");
        }
        let arp = eth(0x0806, &[0u8; 28]);
        assert_eq!(run(&arp).retval, TC_ACT_OK);
    }
}

/// The one's complement sum of `data` folded to 16 bits (a valid checksummed span sums to
/// 0xffff).
fn sum16(data: &[u8], mut acc: u32) -> u16 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The TCP/UDP pseudo header's sum.
fn pseudo(pkt: &[u8]) -> u32 {
    let ip = &pkt[14..];
    let l4_len = pkt.len() - 34;
    let mut p = ip[12..20].to_vec();
    p.extend_from_slice(&[0, ip[9]]);
    p.extend_from_slice(&(l4_len as u16).to_be_bytes());
    u32::from(sum16(&p, 0))
}

/// Sets valid IPv4 and TCP checksums (no IP options).
fn checksummed(mut pkt: Vec<u8>) -> Vec<u8> {
    let c = !sum16(&pkt[14..34], 0);
    pkt[24..26].copy_from_slice(&c.to_be_bytes());
    let c = !sum16(&pkt[34..], pseudo(&pkt));
    pkt[34 + 16..34 + 18].copy_from_slice(&c.to_be_bytes());
    pkt
}

fn checksums_valid(pkt: &[u8]) -> bool {
    sum16(&pkt[14..34], 0) == 0xffff && sum16(&pkt[34..], pseudo(pkt)) == 0xffff
}

/// Masquerade on BPF_PROG_TEST_RUN: b's packet to the outside leaves with the node's
/// address and its own port (free, in range), checksums still valid; a's packet from the
/// same port to the same destination gets another port; the reply to each node port is
/// translated back on the uplink's ingress and delivered to its pod, checksums valid, and so
/// is an ICMP port unreachable quoting the translated packet.
#[test]
fn snat_and_reverse_nat_rewrite_with_valid_checksums() {
    let pins = PinDir::new();
    let c = build("n1", Routing::Native, Mode::Specialized);
    let node_ip = ip("192.168.10.11");
    let uplink = c.node.as_ref().unwrap().devices[0].clone();
    assert_eq!(uplink.name, "from_netdev");
    let netdev = load(&uplink, &pins);
    let mut ports = Vec::new();
    for (pod, addr) in [("b", "10.1.1.11"), ("a", "10.1.1.10")] {
        let obj = load(&from_pod(&c, pod), &pins);
        let pkt = checksummed(eth(
            0x0800,
            &ipv4(6, ip(addr), ip("8.8.8.8"), 0, &tcp(40000, 443)),
        ));
        let out = obj.test_run("from_ep", &pkt, 1).unwrap();
        assert!(
            [TC_ACT_OK, TC_ACT_REDIRECT].contains(&out.retval),
            "{pod}: {}",
            out.retval
        );
        let o = &out.packet_out;
        assert_eq!(
            &o[26..30],
            &node_ip.octets(),
            "{pod}: the source is the node's"
        );
        assert_eq!(&o[30..34], &[8, 8, 8, 8]);
        assert!(checksums_valid(o), "{pod}: checksums after SNAT");
        let port = u16::from_be_bytes([o[34], o[35]]);
        assert!(port >= 32768, "{pod}: {port}");
        ports.push(port);

        // The reply, to the node's port: back to the pod's address and port.
        let reply = checksummed(eth(
            0x0800,
            &ipv4(6, ip("8.8.8.8"), node_ip, 0, &tcp(443, port)),
        ));
        let back = netdev.test_run("from_netdev", &reply, 1).unwrap();
        assert_eq!(
            back.retval, TC_ACT_REDIRECT,
            "{pod}: delivered into the pod"
        );
        let b = &back.packet_out;
        assert_eq!(
            &b[30..34],
            &ip(addr).octets(),
            "{pod}: the pod's address back"
        );
        assert_eq!(
            u16::from_be_bytes([b[36], b[37]]),
            40000,
            "{pod}: its port back"
        );
        assert!(checksums_valid(b), "{pod}: checksums after reverse NAT");

        // A port unreachable quoting the translated packet: the outer destination and the
        // quoted source address and port become the pod's, every checksum still valid.
        let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&o[14..42]);
        let c = !sum16(&icmp, 0);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut err = eth(0x0800, &ipv4(1, ip("8.8.8.8"), node_ip, 0, &icmp));
        let c = !sum16(&err[14..34], 0);
        err[24..26].copy_from_slice(&c.to_be_bytes());
        let back = netdev.test_run("from_netdev", &err, 1).unwrap();
        if pod == "a" {
            // a's ingress admits only b: conntrack does not relate ICMP errors to flows.
            assert_eq!(
                back.retval, TC_ACT_SHOT,
                "{pod}: its ingress policy decides"
            );
            continue;
        }
        assert_eq!(
            back.retval, TC_ACT_REDIRECT,
            "{pod}: the error delivered to the pod"
        );
        let b = &back.packet_out;
        assert_eq!(&b[30..34], &ip(addr).octets(), "{pod}: outer destination");
        assert_eq!(sum16(&b[14..34], 0), 0xffff, "{pod}: outer IPv4 checksum");
        assert_eq!(sum16(&b[34..], 0), 0xffff, "{pod}: ICMP checksum");
        let inner = &b[42..];
        assert_eq!(&inner[12..16], &ip(addr).octets(), "{pod}: quoted source");
        assert_eq!(
            sum16(&inner[..20], 0),
            0xffff,
            "{pod}: quoted IPv4 checksum"
        );
        assert_eq!(
            u16::from_be_bytes([inner[20], inner[21]]),
            40000,
            "{pod}: quoted port"
        );
    }
    assert_eq!(ports[0], 40000, "the first keeps its port");
    assert_ne!(ports[1], 40000, "the second gets another");
    // A TCP segment other than a SYN takes no new mapping (b answering a connection from
    // outside): it keeps b's address.
    let mut synack = tcp(8080, 51000);
    synack[13] = 0x12;
    let pkt = eth(0x0800, &ipv4(6, ip("10.1.1.11"), ip("8.8.4.4"), 0, &synack));
    let obj = load(&from_pod(&c, "b"), &pins);
    let out = obj.test_run("from_ep", &pkt, 1).unwrap();
    assert_eq!(out.retval, TC_ACT_OK, "to the host stack");
    assert_eq!(out.packet_out, pkt, "unchanged");
    // A reply to a port nobody mapped is the host's.
    let stray = checksummed(eth(
        0x0800,
        &ipv4(6, ip("8.8.8.8"), node_ip, 0, &tcp(443, 50001)),
    ));
    assert_eq!(
        netdev.test_run("from_netdev", &stray, 1).unwrap().retval,
        TC_ACT_OK
    );
}

/// The overlay accepts only what came through a tunnel: a packet without tunnel metadata
/// (what a test run gives) is dropped, ARP goes to the host.
#[test]
fn from_overlay_needs_a_tunnel() {
    let pins = PinDir::new();
    let c = build("n1", Routing::Vxlan, Mode::Specialized);
    let obj = load(&c.node.as_ref().unwrap().devices[0], &pins);
    let out = obj
        .test_run("from_overlay", &tcp_to("10.1.2.10", "10.1.1.10", 80), 1)
        .unwrap();
    assert_eq!(out.retval, TC_ACT_SHOT);
    let arp = eth(0x0806, &[0u8; 28]);
    assert_eq!(
        obj.test_run("from_overlay", &arp, 1).unwrap().retval,
        TC_ACT_OK
    );
}

/// Same-node delivery decides as the reference evaluator does: for every ordered pair of
/// local pods and a spread of protocols and ports, the from-pod program redirects exactly
/// the flows the evaluator allows (the source's egress and the destination's ingress) and
/// drops the rest, in both decision shapes. Every probe is its own flow (its own source
/// port or ICMP identifier) and none is the reply of another, so conntrack never decides.
#[test]
fn same_node_delivery_agrees_with_the_reference_evaluator() {
    use sluice_compiler::eval::{self, Flow, FlowEnd};
    use sluice_compiler::ir::{L4, L4Match};
    const POLICIES: &str = r#"
policy "p1" in namespace x {
  select app = a
  ingress allow from pods { app = b } ports 2-6/tcp, 4/udp
  ingress deny from cidr 10.1.1.12/32 ports 3/tcp
  egress allow to cidr 10.1.0.0/16 except 10.1.1.11/32
}
policy "p2" in namespace x {
  select app = b
  isolate ingress
  ingress allow from cidr 10.1.1.0/30 proto icmp type 8
  ingress allow from pods { app = c } ports 7/tcp
}
policy "p3" in namespace x {
  select app = c
  egress deny to pods { app = a } ports 5/tcp
  ingress audit from pods { app = a } proto udp
}
"#;
    const PODS: &str = "
nodes:
- {name: n1, ips: [192.168.10.11], pod_cidr: 10.1.1.0/24}
- {name: n2, ips: [192.168.10.12], pod_cidr: 10.1.2.0/24}
endpoints:
- {name: a, namespace: x, labels: {app: a}, ips: [10.1.1.10], node: n1, netns: a}
- {name: b, namespace: x, labels: {app: b}, ips: [10.1.1.11], node: n1, netns: b}
- {name: c, namespace: x, labels: {app: c}, ips: [10.1.1.12], node: n1, netns: c}
- {name: d, namespace: x, labels: {app: a}, ips: [10.1.1.2], node: n1, netns: d}
- {name: e, namespace: x, labels: {app: b}, ips: [10.1.2.10], node: n2, netns: e}
";
    let l4s = [
        (6u8, 2u16),
        (6, 3),
        (6, 5),
        (6, 7),
        (6, 80),
        (17, 4),
        (17, 9),
        (1, 8),
        (132, 3),
    ];
    let pins = PinDir::new();
    let mut checked = 0;
    let mut allowed = 0;
    for mode in [Mode::Specialized, Mode::Generic] {
        let codegen = CodegenOptions {
            mode,
            ..CodegenOptions::default()
        };
        let (c, ir, inv) = build_with(POLICIES, PODS, "n1", Routing::Vxlan, codegen);
        let locals = ["a", "b", "c", "d"];
        let objs: Vec<LoadedObject> = locals
            .iter()
            .map(|n| load(&from_pod(&c, n), &pins))
            .collect();
        let mut flow_id = 0u16;
        for (si, src) in locals.iter().enumerate() {
            for dst in locals.iter().filter(|d| *d != src) {
                let (s, d) = (
                    inv.endpoint_index("x", src).unwrap(),
                    inv.endpoint_index("x", dst).unwrap(),
                );
                let (sip, dip) = (inv.endpoints[s].ips[0], inv.endpoints[d].ips[0]);
                let (std::net::IpAddr::V4(sip), std::net::IpAddr::V4(dip)) = (sip, dip) else {
                    unreachable!()
                };
                for &(proto, port) in &l4s {
                    flow_id += 1;
                    let sport = 40000 + flow_id;
                    let (l4, payload) = match proto {
                        6 => (
                            L4Match::Port {
                                proto: L4::Tcp,
                                port,
                            },
                            tcp(sport, port),
                        ),
                        17 => (
                            L4Match::Port {
                                proto: L4::Udp,
                                port,
                            },
                            udp(sport, port),
                        ),
                        132 => (
                            L4Match::Port {
                                proto: L4::Sctp,
                                port,
                            },
                            sctp(sport, port),
                        ),
                        _ => (
                            L4Match::Icmp {
                                icmp_type: port as u8,
                                code: 0,
                            },
                            icmp_query(port as u8, flow_id),
                        ),
                    };
                    let flow = Flow {
                        src: FlowEnd::Endpoint(s),
                        dst: FlowEnd::Endpoint(d),
                        l4,
                    };
                    let want = eval::evaluate(&ir, &inv, &flow).unwrap().allow;
                    let pkt = eth(0x0800, &ipv4(proto, sip, dip, 0, &payload));
                    let got = objs[si].test_run("from_ep", &pkt, 1).unwrap().retval;
                    let want_ret = if want { TC_ACT_REDIRECT } else { TC_ACT_SHOT };
                    assert_eq!(got, want_ret, "{mode:?} {src} -> {dst} {l4:?}");
                    checked += 1;
                    allowed += usize::from(want);
                }
            }
        }
    }
    assert_eq!(checked, 2 * 12 * 9);
    // Both outcomes are well represented.
    assert!(
        allowed >= 20 && checked - allowed >= 20,
        "{allowed} of {checked}"
    );
}

/// A `sluice trace` probe through a from-pod program with rule recording is delivered like
/// any packet but leaves conntrack as it was; the same packet for real inserts the
/// destination's ingress entry.
#[test]
fn a_trace_probe_delivers_without_touching_conntrack() {
    use sluice_compiler::datapath::ct;
    let pins = PinDir::new();
    let codegen = CodegenOptions {
        trace: true,
        ..CodegenOptions::default()
    };
    let (c, _, _) = build_with(POLICY, INVENTORY, "n1", Routing::Vxlan, codegen);
    let obj = load(&from_pod(&c, "b"), &pins);
    let pkt = tcp_to("10.1.1.11", "10.1.1.10", 80);
    let key = ct::key(
        [10, 1, 1, 11],
        [10, 1, 1, 10],
        40000,
        80,
        6,
        ct::SCOPE_INGRESS,
    );
    let fd = obj.program_fd("from_ep").unwrap();
    let (ret, rec) = sluice_loader::trace::run_recorded(fd, &pkt, true).unwrap();
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert!(rec.is_some_and(|d| d.allow), "{rec:?}");
    assert_eq!(obj.read_map("sluice_ct", &key).unwrap(), None);
    let (ret, _) = sluice_loader::trace::run_recorded(fd, &pkt, false).unwrap();
    assert_eq!(ret, TC_ACT_REDIRECT);
    assert!(obj.read_map("sluice_ct", &key).unwrap().is_some());
}

/// NAT entries carry what the GC needs (spec/datapath.md, "Masquerade"): a SYN's mapping is
/// open and stamped with the time; a FIN through it marks it closing. A GC pass with the
/// default timeouts frees nothing (all young); with a zero closing timeout it frees the
/// closed mapping's two entries together, while an open, idle TCP flow younger than its
/// 6 h timeout survives, entries and port intact.
#[test]
fn nat_gc_frees_closed_mappings_and_keeps_young_open_ones() {
    use sluice_loader::nat::{GcConfig, gc};
    let pins = PinDir::new();
    let c = build("n1", Routing::Native, Mode::Specialized);
    let obj = load(&from_pod(&c, "b"), &pins);
    let send = |sport: u16, flags: u8| {
        let mut t = tcp(sport, 443);
        t[13] = flags;
        let pkt = checksummed(eth(0x0800, &ipv4(6, ip("10.1.1.11"), ip("8.8.8.8"), 0, &t)));
        let out = obj.test_run("from_ep", &pkt, 1).unwrap();
        assert!(
            [TC_ACT_OK, TC_ACT_REDIRECT].contains(&out.retval),
            "{sport}: {}",
            out.retval
        );
        u16::from_be_bytes([out.packet_out[34], out.packet_out[35]])
    };
    let closed = send(40001, 0x02);
    let open = send(40002, 0x02);
    assert_eq!(send(40001, 0x11), closed, "the FIN reuses its mapping");
    // A flow that closed and is opened again on the same ports (a RST, then a SYN): its
    // mapping is reused and open again, both entries.
    let nat = pins.0.join(NAT);
    let closing = || {
        sluice_loader::generation::pinned_map_entries(&nat)
            .unwrap()
            .into_iter()
            .filter(|(_, v)| v[6] == NAT_CLOSING)
            .count()
    };
    let reopened = send(40003, 0x02);
    // The remote's RST, through the uplink's reverse NAT, marks the reverse entry.
    let uplink = c.node.as_ref().unwrap().devices[0].clone();
    let netdev = load(&uplink, &pins);
    let mut rst = tcp(443, reopened);
    rst[13] = 0x04;
    let reply = checksummed(eth(
        0x0800,
        &ipv4(6, ip("8.8.8.8"), ip("192.168.10.11"), 0, &rst),
    ));
    let back = netdev.test_run("from_netdev", &reply, 1).unwrap();
    assert_eq!(back.retval, TC_ACT_REDIRECT, "the RST delivered to b");
    assert_eq!(
        closing(),
        2,
        "40001's forward entry and 40003's reverse one"
    );
    assert_eq!(send(40003, 0x02), reopened, "the SYN reuses the mapping");
    let entries = sluice_loader::generation::pinned_map_entries(&nat).unwrap();
    assert_eq!(entries.len(), 6, "a forward and a reverse per mapping");
    // (pod port or node port in the key, closing, last seen).
    let state: Vec<(u16, u16, bool, u64)> = entries
        .iter()
        .map(|(k, v)| {
            let port = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
            let last = u64::from_le_bytes(v[8..16].try_into().unwrap());
            (port(&k[8..10]), port(&k[10..12]), v[6] == NAT_CLOSING, last)
        })
        .collect();
    assert!(state.iter().all(|s| s.3 > 0), "stamped: {state:?}");
    let closing: Vec<_> = state.iter().filter(|s| s.2).collect();
    assert_eq!(closing.len(), 1, "only the FIN's forward entry: {state:?}");
    assert_eq!(closing[0].0, 40001, "{state:?}");

    let young = gc(&nat, &GcConfig::default()).unwrap();
    assert_eq!((young.scanned, young.freed), (6, 0), "{young:?}");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let cfg = GcConfig {
        closing: std::time::Duration::ZERO,
        ..GcConfig::default()
    };
    let report = gc(&nat, &cfg).unwrap();
    assert_eq!((report.freed, report.remaining), (2, 4), "{report:?}");
    let left = sluice_loader::generation::pinned_map_entries(&nat).unwrap();
    for (k, v) in &left {
        let ports = [k[8..10].to_vec(), k[10..12].to_vec(), v[4..6].to_vec()];
        let has = |p: u16| ports.contains(&p.to_le_bytes().to_vec());
        assert!(
            !has(40001) && !has(closed),
            "only the closed flow's entries are gone: {left:?}"
        );
    }
    // The open flow still has its port.
    assert_eq!(send(40002, 0x10), open);
}
