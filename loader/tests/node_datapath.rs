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
            assert_eq!(node.devices.len(), 1);
            let want = match routing {
                Routing::Vxlan => "from_overlay",
                Routing::Native => "from_netdev",
            };
            assert_eq!(node.devices[0].name, want);
            load(&node.devices[0], &pins);
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
