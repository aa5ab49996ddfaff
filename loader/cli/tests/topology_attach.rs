//! Kernel tests of tcx attach, atomic replace, pins and unload, checked with real sockets
//! in a cluster in a box (needs root).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::SchedClassifier;
use sluice_cli::topology::{ProbeOutcome, Proto, Topology, TopologySpec};
use sluice_compiler::bpf::{Asm, Cond, ObjectBuilder, ProgKind, Reg, Size};
use sluice_loader::attach::{self, TcxHook, TcxTarget};
use sluice_loader::load::LoadedObject;
use sluice_loader::pin::PinDir;
use sluice_loader::sys::bpf::{link_fd_by_id, prog_fd_by_id};

const TIMEOUT: Duration = Duration::from_millis(750);
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

/// A tc program: drop IPv4 TCP (IHL 5) to destination `port`, pass the rest.
fn drop_tcp_port(port: u16) -> Vec<u8> {
    use Reg::*;
    let mut a = Asm::new();
    let pass = a.label();
    a.ldx(Size::W, R2, R1, 76) // skb->data
        .ldx(Size::W, R3, R1, 80) // skb->data_end
        .load_packet(R4, R2, R3, 12, Size::H, pass)
        .be16(R4)
        .jmp(Cond::Ne, R4, 0x0800, pass)
        .load_packet(R4, R2, R3, 14, Size::B, pass)
        .jmp(Cond::Ne, R4, 0x45, pass) // version 4, no options
        .load_packet(R4, R2, R3, 23, Size::B, pass)
        .jmp(Cond::Ne, R4, 6, pass) // TCP
        .load_packet(R4, R2, R3, 36, Size::H, pass)
        .be16(R4)
        .jmp(Cond::Ne, R4, i32::from(port), pass)
        .ret(TC_ACT_SHOT)
        .bind(pass)
        .ret(TC_ACT_OK);
    object("drop_port", a)
}

fn allow_all() -> Vec<u8> {
    let mut a = Asm::new();
    a.ret(TC_ACT_OK);
    object("allow_all", a)
}

fn object(name: &str, a: Asm) -> Vec<u8> {
    let mut o = ObjectBuilder::new();
    o.program(name, ProgKind::Classifier, a.finish().unwrap())
        .unwrap();
    o.write().unwrap()
}

fn classifier<'a>(obj: &'a mut LoadedObject, name: &str) -> &'a mut SchedClassifier {
    obj.ebpf_mut()
        .program_mut(name)
        .unwrap()
        .try_into()
        .unwrap()
}

/// Two pods and a third client; every pod serves tcp/80 and tcp/81.
fn box_with_servers() -> (Topology, Vec<sluice_cli::topology::Servers>) {
    let topo = Topology::build(
        &TopologySpec::new()
            .pod("default", "a", Ipv4Addr::new(10, 210, 0, 1))
            .pod("default", "b", Ipv4Addr::new(10, 210, 0, 2))
            .pod("other", "c", Ipv4Addr::new(10, 210, 0, 3)),
    )
    .expect("build topology");
    let servers = topo
        .serve_pods(&[(80, Proto::Tcp), (81, Proto::Tcp)])
        .unwrap();
    (topo, servers)
}

fn tcp(topo: &Topology, from: &str, to: &str, port: u16) -> ProbeOutcome {
    let (f, t) = (
        topo.pod("default", from)
            .or(topo.pod("other", from))
            .unwrap(),
        topo.pod("default", to).or(topo.pod("other", to)).unwrap(),
    );
    topo.probe(&f.netns, t.ip, port, Proto::Tcp, TIMEOUT)
        .unwrap()
}

/// Kernel objects are freed when their last reference goes; ids disappear at once, but
/// allow a moment for deferred work.
fn gone(check: impl Fn() -> bool) -> bool {
    for _ in 0..50 {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn tcx_drop_then_atomic_replace_then_detach() {
    let (topo, _servers) = box_with_servers();
    let b = topo.pod("default", "b").unwrap().clone();
    let target = TcxTarget::new(Some(topo.node_netns()), &b.host_if, TcxHook::Egress);
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::Connected);
    let before = attach::query_tcx(&target).unwrap();
    assert!(before.program_ids.is_empty());

    // Drop tcp/81 towards b on the node side of b's veth.
    let mut drop_obj = LoadedObject::load(&drop_tcp_port(81)).expect("load drop_port");
    let drop_id = drop_obj.program_id("drop_port").unwrap();
    let mut link = attach::attach(classifier(&mut drop_obj, "drop_port"), &target).unwrap();
    let link_id = link.id();
    assert_eq!(link.program_id().unwrap(), drop_id);
    let q1 = attach::query_tcx(&target).unwrap();
    assert_eq!(q1.program_ids, vec![drop_id]);
    assert_eq!(tcp(&topo, "a", "b", 80), ProbeOutcome::Connected);
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::TimedOut);
    assert_eq!(tcp(&topo, "c", "b", 81), ProbeOutcome::TimedOut);
    // Only b's hook has it: traffic to a is untouched.
    assert_eq!(tcp(&topo, "b", "a", 81), ProbeOutcome::Connected);

    // Atomic replace: same link, new program, one revision step.
    let mut allow_obj = LoadedObject::load(&allow_all()).expect("load allow_all");
    let allow_id = allow_obj.program_id("allow_all").unwrap();
    link.replace(classifier(&mut allow_obj, "allow_all"))
        .unwrap();
    assert_eq!(link.id(), link_id);
    assert_eq!(link.program_id().unwrap(), allow_id);
    let q2 = attach::query_tcx(&target).unwrap();
    assert_eq!(q2.program_ids, vec![allow_id]);
    assert_eq!(q2.revision, q1.revision + 1);
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::Connected);

    // A compare-and-swap against a program the link no longer runs is refused, and
    // nothing changes.
    let err = link
        .replace_if(classifier(&mut drop_obj, "drop_port"), drop_id)
        .unwrap_err();
    assert!(err.to_string().contains("BPF_LINK_UPDATE"), "{err}");
    assert_eq!(attach::query_tcx(&target).unwrap(), q2);
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::Connected);

    // Detach: the hook is empty, the link is gone, and once the objects are dropped the
    // programs are gone too.
    link.detach().unwrap();
    assert!(attach::query_tcx(&target).unwrap().program_ids.is_empty());
    assert!(
        gone(|| link_fd_by_id(link_id).is_err()),
        "link {link_id} still exists"
    );
    drop(drop_obj);
    drop(allow_obj);
    assert!(gone(|| prog_fd_by_id(drop_id).is_err()));
    assert!(gone(|| prog_fd_by_id(allow_id).is_err()));
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::Connected);
}

#[test]
fn ingress_hook_of_one_pod_only_filters_that_pod() {
    let (topo, _servers) = box_with_servers();
    let a = topo.pod("default", "a").unwrap().clone();
    let target = TcxTarget::new(Some(topo.node_netns()), &a.host_if, TcxHook::Ingress);
    let mut obj = LoadedObject::load(&drop_tcp_port(81)).unwrap();
    let link = attach::attach(classifier(&mut obj, "drop_port"), &target).unwrap();
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::TimedOut);
    assert_eq!(tcp(&topo, "a", "b", 80), ProbeOutcome::Connected);
    assert_eq!(tcp(&topo, "c", "b", 81), ProbeOutcome::Connected);
    // Dropping the handle detaches (no pin).
    drop(link);
    assert!(attach::query_tcx(&target).unwrap().program_ids.is_empty());
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::Connected);
}

#[test]
fn pinned_link_outlives_its_handles_until_the_pins_are_removed() {
    let (topo, _servers) = box_with_servers();
    let b = topo.pod("default", "b").unwrap().clone();
    let target = TcxTarget::new(Some(topo.node_netns()), &b.host_if, TcxHook::Egress);
    let pins = PinDir::open(topo.prefix()).expect("pin dir");
    // Remove the pins even if an assertion below fails (a pinned link outlives the test).
    struct Unpin(PinDir);
    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = self.0.clone().remove_all();
        }
    }
    let _unpin = Unpin(pins.clone());
    assert!(pins.root().starts_with("/sys/fs/bpf/sluice"));

    let mut obj = LoadedObject::load(&drop_tcp_port(81)).unwrap();
    let prog_id = obj.program_id("drop_port").unwrap();
    let mut link = attach::attach(classifier(&mut obj, "drop_port"), &target).unwrap();
    let link_id = link.id();
    let link_pin = pins.pin_link(&mut link, "b-egress").unwrap();
    assert_eq!(link.pin_path(), Some(link_pin.as_path()));
    let conntrack = BpfHashMap::<MapData, u32, u32>::create(64, 0).unwrap();
    let map_pin = pins
        .pin_map_with("conntrack", |p| conntrack.pin(p))
        .unwrap();

    // Let go of every handle, as a loader that exits would.
    assert_eq!(link.forget_pinned(), Some(link_pin.clone()));
    drop(obj);
    assert_eq!(
        attach::query_tcx(&target).unwrap().program_ids,
        vec![prog_id]
    );
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::TimedOut);

    // A restarted loader finds the link again by its pin.
    let again = attach::TcxLink::from_pin(&link_pin, target.clone()).unwrap();
    assert_eq!(again.id(), link_id);
    assert_eq!(again.program_id().unwrap(), prog_id);
    drop(again);
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::TimedOut);

    // `sluice unload`: remove the pins; the program detaches and the map is freed.
    let mut removed = pins.clone().remove_all().unwrap();
    removed.sort();
    assert_eq!(removed, vec![link_pin, map_pin]);
    assert!(!pins.root().exists());
    // Unpinning drops the kernel's last reference from a work queue, so allow a moment.
    assert!(gone(|| attach::query_tcx(&target)
        .unwrap()
        .program_ids
        .is_empty()));
    assert!(gone(|| link_fd_by_id(link_id).is_err()));
    assert!(gone(|| prog_fd_by_id(prog_id).is_err()));
    assert_eq!(tcp(&topo, "a", "b", 81), ProbeOutcome::Connected);
    assert!(!Path::new(&format!("/sys/fs/bpf/sluice/{}", topo.prefix())).exists());
    // No empty /sys/fs/bpf/sluice left behind (another run's scope may still live there).
    let root = Path::new(sluice_loader::pin::SLUICE_ROOT);
    assert!(
        !root.exists() || std::fs::read_dir(root).unwrap().next().is_some(),
        "{} left behind empty",
        root.display()
    );
}
