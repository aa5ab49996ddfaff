//! Kernel tests of the generation swap (spec/swap.md): bundles of hand-assembled programs
//! loaded into a cluster in a box, checked with real sockets, the kernel's own view of every
//! hook (link and program ids, tcx revision), map contents, and bpffs. Needs root.
//!
//! Each test gets its own topology, pin root and state directory, and a guard that unloads
//! and removes them even when the test panics.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use sluice_cli::topology::{ProbeOutcome, Proto, Servers, Topology, TopologySpec};
use sluice_compiler::bpf::{
    Asm, Cond, Helper, MapDef, MapRef, MapType, ObjectBuilder, ProgKind, Reg::*, Size,
};
use sluice_compiler::bundle::{
    Attachment, Bundle, BundleBuilder, EndpointRef, MapContents, MapScope, ProgramArtifact,
    SharedMap, TcxHook,
};
use sluice_loader::attach::{TcxTarget, query_tcx};
use sluice_loader::generation::{self, GenerationReport, HookAction, LoadOptions, Step, SwapError};

#[path = "support/leftovers.rs"]
mod leftovers;

const TIMEOUT: Duration = Duration::from_millis(750);
const CT_ENTRIES: u32 = 4096;

fn ct_def() -> MapDef {
    MapDef::new("sluice_ct", MapType::LruHash, 16, 8, CT_ENTRIES)
}

fn ipcache_def() -> MapDef {
    MapDef::new("sluice_ipcache", MapType::LpmTrie, 8, 4, 256)
}

fn deny_def() -> MapDef {
    MapDef::new("deny", MapType::Hash, 4, 4, 64)
}

/// The test policy program: for IPv4/TCP (IHL 5) it looks the destination up in the
/// ipcache, drops when the destination port is in its own `deny` map, and otherwise records
/// (saddr, daddr) in conntrack and passes. Everything else passes.
fn policy_object(deny: MapDef, extra: impl FnOnce(&mut Asm)) -> Vec<u8> {
    let mut a = Asm::new();
    let (pass, drop) = (a.label(), a.label());
    a.mov64(R6, R1)
        .ldx(Size::W, R2, R6, 76)
        .ldx(Size::W, R3, R6, 80)
        .load_packet(R4, R2, R3, 12, Size::H, pass)
        .be16(R4)
        .jmp(Cond::Ne, R4, 0x0800, pass)
        .load_packet(R4, R2, R3, 14, Size::B, pass)
        .jmp(Cond::Ne, R4, 0x45, pass)
        .load_packet(R4, R2, R3, 23, Size::B, pass)
        .jmp(Cond::Ne, R4, 6, pass)
        .load_packet(R7, R2, R3, 36, Size::H, pass)
        .be16(R7)
        .load_packet(R8, R2, R3, 26, Size::W, pass)
        .load_packet(R9, R2, R3, 30, Size::W, pass);
    extra(&mut a);
    // ipcache lookup of the destination: { prefixlen = 32, addr }.
    a.st(Size::W, R10, -8, 32)
        .stx(Size::W, R10, -4, R9)
        .ld_map(R1, MapRef::new("sluice_ipcache"))
        .mov64(R2, R10)
        .add64(R2, -8)
        .call(Helper::MapLookupElem)
        // deny lookup of the destination port.
        .stx(Size::W, R10, -12, R7)
        .ld_map(R1, MapRef::new(deny.name.clone()))
        .mov64(R2, R10)
        .add64(R2, -12)
        .call(Helper::MapLookupElem)
        .jmp(Cond::Ne, R0, 0, drop)
        // conntrack: key { saddr, daddr, 0... }, value 1.
        .stx(Size::W, R10, -32, R8)
        .stx(Size::W, R10, -28, R9)
        .st(Size::DW, R10, -24, 0)
        .st(Size::DW, R10, -40, 1)
        .ld_map(R1, MapRef::new("sluice_ct"))
        .mov64(R2, R10)
        .add64(R2, -32)
        .mov64(R3, R10)
        .add64(R3, -40)
        .mov64(R4, 0)
        .call(Helper::MapUpdateElem)
        .bind(pass)
        .ret(0)
        .bind(drop)
        .ret(2);
    let mut o = ObjectBuilder::new();
    o.map(ct_def())
        .unwrap()
        .map(ipcache_def())
        .unwrap()
        .map(deny)
        .unwrap()
        .program("policy", ProgKind::Classifier, a.finish().unwrap())
        .unwrap();
    o.write().unwrap()
}

fn deny_ports(def: MapDef, ports: &[u32]) -> MapContents {
    MapContents {
        name: def.name.clone(),
        scope: MapScope::Program,
        entries: ports
            .iter()
            .map(|p| (p.to_le_bytes().to_vec(), 1u32.to_le_bytes().to_vec()))
            .collect(),
        def,
    }
}

/// A test program for `hook` with its own deny map and ELF.
fn program(hook: TcxHook, elf: Vec<u8>, deny: MapContents) -> ProgramArtifact {
    ProgramArtifact {
        name: "policy".into(),
        hook,
        elf,
        maps: vec![deny],
    }
}

fn artifact(hook: TcxHook, ports: &[u32]) -> ProgramArtifact {
    program(
        hook,
        policy_object(deny_def(), |_| {}),
        deny_ports(deny_def(), ports),
    )
}

/// How a hook is named in a bundle: by host interface, or by the pod's netns.
#[derive(Clone, Copy)]
enum By {
    Iface,
    Netns,
}

struct Box_ {
    topo: Option<Topology>,
    servers: Vec<Servers>,
    opts: LoadOptions,
}

impl Box_ {
    fn spec(third_octet: u8) -> TopologySpec {
        TopologySpec::new()
            .pod("default", "a", Ipv4Addr::new(10, 220, third_octet, 1))
            .pod("default", "b", Ipv4Addr::new(10, 220, third_octet, 2))
    }

    /// A node restart: every namespace and veth of the box deleted and made again under
    /// the same names, with fresh servers.
    fn recreate(&mut self, third_octet: u8) {
        self.servers.clear();
        let prefix = self.topo().prefix().to_owned();
        self.topo.take().unwrap().teardown().expect("teardown");
        let topo = Topology::build_with_prefix(&Self::spec(third_octet), &prefix)
            .expect("rebuild topology");
        self.servers = topo
            .serve_pods(&[(80, Proto::Tcp), (81, Proto::Tcp)])
            .unwrap();
        self.topo = Some(topo);
    }

    fn new(third_octet: u8) -> Box_ {
        let topo = Topology::build(&Self::spec(third_octet)).expect("build topology");
        let servers = topo
            .serve_pods(&[(80, Proto::Tcp), (81, Proto::Tcp)])
            .unwrap();
        let opts = LoadOptions {
            root: PathBuf::from(format!("/sys/fs/bpf/{}-sluice", topo.prefix())),
            state_dir: PathBuf::from(format!("/run/{}-sluice", topo.prefix())),
            node_netns: Some(topo.node_netns().to_owned()),
        };
        Box_ {
            topo: Some(topo),
            servers,
            opts,
        }
    }

    fn topo(&self) -> &Topology {
        self.topo.as_ref().expect("built")
    }

    fn attachment(
        &self,
        pod: &str,
        hook: TcxHook,
        by: By,
        artifact: sluice_compiler::bundle::Digest,
    ) -> Attachment {
        let p = self.topo().pod("default", pod).unwrap();
        Attachment {
            endpoint: EndpointRef {
                namespace: "default".into(),
                name: pod.into(),
            },
            interface: matches!(by, By::Iface).then(|| p.host_if.clone()),
            netns: matches!(by, By::Netns).then(|| p.netns.clone()),
            hook,
            artifact,
        }
    }

    fn target(&self, pod: &str, hook: TcxHook) -> TcxTarget {
        let p = self.topo().pod("default", pod).unwrap();
        TcxTarget::new(Some(self.topo().node_netns()), &p.host_if, hook)
    }

    fn tcp(&self, from: &str, to: &str, port: u16) -> ProbeOutcome {
        let (f, t) = (
            self.topo().pod("default", from).unwrap(),
            self.topo().pod("default", to).unwrap(),
        );
        self.topo()
            .probe(&f.netns, t.ip, port, Proto::Tcp, TIMEOUT)
            .unwrap()
    }

    /// A bundle: b's to-endpoint hook denies `b_denies`; the other hooks deny nothing.
    /// `with_a_ingress` adds a's from-endpoint hook.
    fn bundle(&self, b_denies: &[u32], with_a_ingress: bool) -> Bundle {
        let mut bb = base_builder(self);
        let open_in = bb.program(artifact(TcxHook::Ingress, &[])).unwrap();
        let open_eg = bb.program(artifact(TcxHook::Egress, &[])).unwrap();
        let b_pol = bb.program(artifact(TcxHook::Egress, b_denies)).unwrap();
        bb.attach(self.attachment("b", TcxHook::Egress, By::Iface, b_pol))
            .unwrap();
        bb.attach(self.attachment("b", TcxHook::Ingress, By::Iface, open_in))
            .unwrap();
        bb.attach(self.attachment("a", TcxHook::Egress, By::Netns, open_eg))
            .unwrap();
        if with_a_ingress {
            bb.attach(self.attachment("a", TcxHook::Ingress, By::Netns, open_in))
                .unwrap();
        }
        bb.finish()
    }

    /// What the kernel shows: per hook the program ids, and per program its maps' ids
    /// and contents (conntrack excluded: probes add to it).
    fn snapshot(&self, ct_id: u32) -> Snapshot {
        let mut hooks = BTreeMap::new();
        let mut maps = BTreeMap::new();
        for pod in ["a", "b"] {
            for hook in [TcxHook::Ingress, TcxHook::Egress] {
                let q = query_tcx(&self.target(pod, hook)).unwrap();
                for &prog in &q.program_ids {
                    for m in generation::program_map_ids(prog).unwrap() {
                        if m != ct_id {
                            maps.insert(m, generation::map_entries(m).unwrap());
                        }
                    }
                }
                hooks.insert(
                    format!("{pod}/{}", hook.as_str()),
                    (q.revision, q.program_ids),
                );
            }
        }
        Snapshot { hooks, maps }
    }
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    /// hook → (tcx revision, program ids)
    hooks: BTreeMap<String, (u64, Vec<u32>)>,
    /// map id → entries
    maps: BTreeMap<u32, Entries>,
}

fn base_builder(bx: &Box_) -> BundleBuilder {
    let mut bb = BundleBuilder::new();
    bb.input("test-policy", b"generation test").unwrap();
    bb.shared_map(SharedMap::persistent(ct_def(), "ct"))
        .unwrap();
    let a = bx.topo().pod("default", "a").unwrap().ip;
    let b = bx.topo().pod("default", "b").unwrap().ip;
    let ipcache = [(a, 10u32), (b, 11)]
        .iter()
        .map(|(ip, class)| {
            let mut k = 32u32.to_le_bytes().to_vec();
            k.extend_from_slice(&ip.octets());
            (k, class.to_le_bytes().to_vec())
        })
        .collect();
    bb.shared_map(SharedMap::generation(ipcache_def(), ipcache))
        .unwrap();
    bb
}

impl Drop for Box_ {
    /// Unloads, removes the box, then checks nothing is left: no pin root, state, link or
    /// program of the last generation, namespace or interface of the box.
    fn drop(&mut self) {
        let mut made = leftovers::Made {
            prefix: self.topo().prefix().to_owned(),
            dirs: vec![self.opts.root.clone(), self.opts.state_dir.clone()],
            ..Default::default()
        };
        if let Ok(Some(st)) = generation::read_state(&self.opts.state_dir) {
            made.links = st.hooks.iter().map(|h| h.link_id).collect();
            made.programs = st.hooks.iter().map(|h| h.program_id).collect();
        }
        // The test may have unloaded already; unloading twice is fine.
        let unloaded = generation::unload(&self.opts);
        self.servers.clear();
        let torn = self.topo.take().map(Topology::teardown);
        if std::thread::panicking() {
            return;
        }
        unloaded.expect("unload");
        torn.expect("built").expect("topology teardown");
        leftovers::assert_clean(&made);
    }
}

fn ct_map_id(opts: &LoadOptions) -> u32 {
    aya::maps::MapInfo::from_pin(opts.root.join("ct"))
        .unwrap()
        .id()
}

fn pins(opts: &LoadOptions) -> Vec<String> {
    fn walk(d: &std::path::Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                out.push(e.path().display().to_string());
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&opts.root, &mut out);
    out.sort();
    out
}

fn hook_ids(r: &GenerationReport) -> BTreeMap<String, (u32, u32)> {
    r.hooks
        .iter()
        .map(|h| {
            (
                format!("{}/{}", h.endpoint.name, h.target.hook.as_str()),
                (h.link_id, h.program_id),
            )
        })
        .collect()
}

#[test]
fn generation_a_then_b_flips_every_hook_and_unload_leaves_nothing() {
    let bx = Box_::new(1);
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::Connected);

    // Generation A: b refuses 81.
    let a = generation::apply_bundle(&bx.bundle(&[81], true), &bx.opts).expect("generation A");
    assert_eq!(a.generation, 1);
    assert_eq!(a.previous, None);
    assert_eq!(
        a.programs_loaded, 3,
        "both from-endpoint hooks share one program"
    );
    assert_eq!(a.hooks.len(), 4);
    assert!(a.hooks.iter().all(|h| h.action == HookAction::Attached));
    assert_eq!(bx.tcp("a", "b", 80), ProbeOutcome::Connected);
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::TimedOut);
    assert_eq!(bx.tcp("b", "a", 81), ProbeOutcome::Connected);
    let ct_a = ct_map_id(&bx.opts);
    let ct_entries_a = generation::map_entries(ct_a).unwrap();
    assert!(
        !ct_entries_a.is_empty(),
        "passing TCP recorded in conntrack"
    );
    let ids_a = hook_ids(&a);
    for (hook, (_, prog)) in &ids_a {
        let (pod, dir) = hook.split_once('/').unwrap();
        let h = if dir == "ingress" {
            TcxHook::Ingress
        } else {
            TcxHook::Egress
        };
        assert_eq!(
            query_tcx(&bx.target(pod, h)).unwrap().program_ids,
            vec![*prog],
            "{hook}"
        );
    }
    let status = generation::status(&bx.opts)
        .unwrap()
        .expect("state recorded");
    assert_eq!(status.state.generation, 1);
    assert!(status.hooks.iter().all(|h| h.link.is_some()));
    let revisions_a = bx.snapshot(ct_a).hooks;

    // Generation B: b refuses 80 instead, and a's from-endpoint hook goes away.
    let b = generation::apply_bundle(&bx.bundle(&[80], false), &bx.opts).expect("generation B");
    assert_eq!(b.generation, 2);
    assert_eq!(b.previous, Some(1));
    assert_eq!(b.hooks.len(), 3);
    assert_eq!(b.detached.len(), 1, "{:?}", b.detached);
    assert!(b.detached[0].ends_with(format!(
        "{}-ingress",
        bx.topo().pod("default", "a").unwrap().host_if
    )));
    let ids_b = hook_ids(&b);
    // Only b's to-endpoint program changed; the hooks whose artifact (and the ipcache) are
    // the same keep their program and are not touched.
    for (hook, (link_b, prog_b)) in &ids_b {
        let (link_a, prog_a) = ids_a[hook];
        assert_eq!(*link_b, link_a, "{hook}: same link");
        let h = b.hooks.iter().find(|h| hook_ids_key(h) == *hook).unwrap();
        if hook == "b/egress" {
            assert_ne!(*prog_b, prog_a, "{hook}: new program");
            assert_eq!(
                h.action,
                HookAction::Replaced {
                    old_program_id: prog_a
                }
            );
        } else {
            assert_eq!(*prog_b, prog_a, "{hook}: same program");
            assert_eq!(h.action, HookAction::Unchanged, "{hook}");
        }
    }
    assert_eq!(b.programs_loaded, 1, "only the changed artifact is loaded");
    let snap_b = bx.snapshot(ct_map_id(&bx.opts));
    for (hook, (rev, progs)) in &snap_b.hooks {
        match ids_b.get(hook) {
            // One BPF_LINK_UPDATE per replaced hook: the revision moved by exactly one.
            Some((_, prog)) => {
                assert_eq!(progs, &vec![*prog], "{hook}");
                let flips = u64::from(hook == "b/egress");
                assert_eq!(*rev, revisions_a[hook].0 + flips, "{hook}");
            }
            None => assert!(progs.is_empty(), "{hook} detached: {progs:?}"),
        }
    }
    assert_eq!(ct_map_id(&bx.opts), ct_a, "conntrack survives the swap");
    let ct_entries_b = generation::map_entries(ct_a).unwrap();
    assert!(
        ct_entries_a.iter().all(|e| ct_entries_b.contains(e)),
        "generation A's conntrack entries are still there"
    );
    assert_eq!(bx.tcp("a", "b", 80), ProbeOutcome::TimedOut);
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::Connected);
    // Generation A's programs are freed once no link runs them.
    for (_, prog_a) in ids_a.values() {
        if ids_b.values().any(|(_, p)| p == prog_a) {
            continue; // still run by generation B
        }
        assert!(
            wait_gone(|| aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .all(|p| p.id() != *prog_a)),
            "old program {prog_a} freed"
        );
    }

    // Unload: no links, pins, maps, state.
    let links: Vec<u32> = ids_b.values().map(|(l, _)| *l).collect();
    let progs: Vec<u32> = ids_b.values().map(|(_, p)| *p).collect();
    let maps: Vec<u32> = snap_b.maps.keys().copied().chain([ct_a]).collect();
    let un = generation::unload(&bx.opts).unwrap();
    assert_eq!(un.generation, Some(2));
    assert!(un.removed.iter().any(|p| p.ends_with("ct")));
    assert!(!bx.opts.root.exists(), "{:?}", pins(&bx.opts));
    assert!(!bx.opts.state_dir.exists());
    for pod in ["a", "b"] {
        for hook in [TcxHook::Ingress, TcxHook::Egress] {
            assert!(
                query_tcx(&bx.target(pod, hook))
                    .unwrap()
                    .program_ids
                    .is_empty()
            );
        }
    }
    assert!(wait_gone(|| aya::programs::loaded_links()
        .filter_map(Result::ok)
        .all(|l| !links.contains(&l.id()))));
    assert!(wait_gone(|| aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .all(|p| !progs.contains(&p.id()))));
    assert!(wait_gone(|| aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .all(|m| !maps.contains(&m.id()))));
    assert_eq!(bx.tcp("a", "b", 80), ProbeOutcome::Connected);
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::Connected);
    assert_eq!(generation::status(&bx.opts).unwrap(), None);
}

fn hook_ids_key(h: &generation::HookReport) -> String {
    format!("{}/{}", h.endpoint.name, h.target.hook.as_str())
}

/// Kernel objects are freed by deferred work; ids vanish soon, not necessarily at once.
fn wait_gone(check: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Loads generation A (b refuses 81), then tries `bad`; checks the error's step and that
/// the kernel is exactly as before and A still enforces.
fn failure_leaves_a_running(
    tag: u8,
    bad: impl FnOnce(&Box_) -> Bundle,
    step: Step,
    needle: &str,
) -> SwapError {
    let bx = Box_::new(tag);
    let a = generation::apply_bundle(&bx.bundle(&[81], true), &bx.opts).expect("generation A");
    let ct = ct_map_id(&bx.opts);
    let before = bx.snapshot(ct);
    let pins_before = pins(&bx.opts);
    let state_before = generation::read_state(&bx.opts.state_dir).unwrap();

    let err =
        generation::apply_bundle(&bad(&bx), &bx.opts).expect_err("the bad generation must fail");
    eprintln!("error as the user sees it:\n{err}");
    assert_eq!(err.step(), step, "{err}");
    assert!(err.step().before_flip());
    assert!(err.to_string().starts_with(step.as_str()), "{err}");
    assert!(err.to_string().contains(needle), "{err}");

    assert_eq!(
        bx.snapshot(ct),
        before,
        "same programs on every hook, same map contents"
    );
    assert_eq!(pins(&bx.opts), pins_before, "same pins");
    assert_eq!(ct_map_id(&bx.opts), ct);
    assert_eq!(
        generation::read_state(&bx.opts.state_dir).unwrap(),
        state_before
    );
    assert_eq!(before.hooks.len(), 4);
    assert!(
        a.hooks
            .iter()
            .all(|h| before.hooks.values().any(|(_, p)| p == &vec![h.program_id]))
    );
    // Generation A still enforces.
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::TimedOut);
    assert_eq!(bx.tcp("a", "b", 80), ProbeOutcome::Connected);
    err
}

#[test]
fn verifier_rejection_changes_nothing() {
    failure_leaves_a_running(
        2,
        |bx| {
            let mut bb = base_builder(bx);
            let ok = bb.program(artifact(TcxHook::Egress, &[80])).unwrap();
            // Reads the stack below r10 - 512: the verifier refuses.
            let broken = program(
                TcxHook::Egress,
                policy_object(deny_def(), |a| {
                    a.ldx(Size::DW, R0, R10, -520);
                }),
                deny_ports(deny_def(), &[]),
            );
            let bad = bb.program(broken).unwrap();
            bb.attach(bx.attachment("b", TcxHook::Egress, By::Iface, ok))
                .unwrap();
            bb.attach(bx.attachment("a", TcxHook::Egress, By::Iface, bad))
                .unwrap();
            bb.finish()
        },
        Step::ProgramLoad,
        "verifier log",
    );
}

#[test]
fn map_creation_failure_changes_nothing() {
    failure_leaves_a_running(
        3,
        |bx| {
            let mut bb = base_builder(bx);
            // A hash map of 2^31 entries of 64 KiB values: the kernel cannot create it.
            let huge = MapDef::new("deny", MapType::Hash, 4, 65536, 1 << 31);
            let art = program(
                TcxHook::Egress,
                policy_object(huge.clone(), |_| {}),
                deny_ports(huge, &[]),
            );
            let id = bb.program(art).unwrap();
            bb.attach(bx.attachment("b", TcxHook::Egress, By::Iface, id))
                .unwrap();
            bb.finish()
        },
        Step::MapCreate,
        "deny",
    );
}

#[test]
fn map_fill_failure_bad_key_size_changes_nothing() {
    failure_leaves_a_running(
        4,
        |bx| {
            let mut bb = base_builder(bx);
            // The object's map takes 4-byte keys; the bundle's entries have 8.
            let wide = MapDef::new("deny", MapType::Hash, 8, 4, 64);
            let art = program(
                TcxHook::Egress,
                policy_object(deny_def(), |_| {}),
                MapContents {
                    name: "deny".into(),
                    scope: MapScope::Program,
                    def: wide,
                    entries: vec![(vec![80, 0, 0, 0, 0, 0, 0, 0], vec![1, 0, 0, 0])],
                },
            );
            let id = bb.program(art).unwrap();
            bb.attach(bx.attachment("b", TcxHook::Egress, By::Iface, id))
                .unwrap();
            bb.finish()
        },
        Step::MapFill,
        "map `deny`",
    );
}

#[test]
fn map_fill_failure_in_the_kernel_changes_nothing() {
    failure_leaves_a_running(
        5,
        |bx| {
            let mut bb = base_builder(bx);
            // 65 entries into a 64-entry hash map: the kernel refuses the 65th (E2BIG).
            let ports: Vec<u32> = (1000..1065).collect();
            let id = bb.program(artifact(TcxHook::Egress, &ports)).unwrap();
            bb.attach(bx.attachment("b", TcxHook::Egress, By::Iface, id))
                .unwrap();
            bb.finish()
        },
        Step::MapFill,
        "entry 64 of 65",
    );
}

#[test]
fn missing_interface_changes_nothing() {
    let err = failure_leaves_a_running(
        6,
        |bx| {
            let mut bb = base_builder(bx);
            let id = bb.program(artifact(TcxHook::Egress, &[80])).unwrap();
            bb.attach(bx.attachment("b", TcxHook::Egress, By::Iface, id))
                .unwrap();
            bb.attach(Attachment {
                endpoint: EndpointRef {
                    namespace: "default".into(),
                    name: "ghost".into(),
                },
                interface: Some("slnosuchif0".into()),
                netns: None,
                hook: TcxHook::Egress,
                artifact: id,
            })
            .unwrap();
            bb.finish()
        },
        Step::InterfaceMissing,
        "slnosuchif0",
    );
    assert!(err.to_string().contains("default/ghost"), "{err}");
}

#[test]
fn first_load_failure_leaves_no_trace() {
    // With nothing loaded before, a failed first generation must not leave the conntrack
    // pin, the pin root or the state behind.
    let bx = Box_::new(7);
    let mut bb = base_builder(&bx);
    let broken = program(
        TcxHook::Egress,
        policy_object(deny_def(), |a| {
            a.ldx(Size::DW, R0, R10, -520);
        }),
        deny_ports(deny_def(), &[]),
    );
    let id = bb.program(broken).unwrap();
    bb.attach(bx.attachment("b", TcxHook::Egress, By::Iface, id))
        .unwrap();
    let err = generation::apply_bundle(&bb.finish(), &bx.opts).unwrap_err();
    assert_eq!(err.step(), Step::ProgramLoad, "{err}");
    assert!(!bx.opts.root.exists(), "{:?}", pins(&bx.opts));
    assert_eq!(generation::read_state(&bx.opts.state_dir).unwrap(), None);
    assert!(
        query_tcx(&bx.target("b", TcxHook::Egress))
            .unwrap()
            .program_ids
            .is_empty()
    );
}

fn sluice(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_load_status_reload_unload_across_processes() {
    let bx = Box_::new(8);
    let dir = std::env::temp_dir().join(format!("{}-bundles", bx.topo().prefix()));
    let _ = std::fs::remove_dir_all(&dir);
    let (da, db) = (dir.join("a"), dir.join("b"));
    bx.bundle(&[81], true).write(&da).unwrap();
    bx.bundle(&[80], true).write(&db).unwrap();
    let (root, state) = (
        bx.opts.root.display().to_string(),
        bx.opts.state_dir.display().to_string(),
    );
    let pins_args = ["--root", root.as_str(), "--state-dir", state.as_str()];
    let load = |d: &std::path::Path| {
        let mut a = vec![
            "load",
            d.to_str().unwrap(),
            "--netns",
            bx.topo().node_netns(),
        ];
        a.extend(pins_args);
        sluice(&a)
    };

    let (ok, out, err) = load(&da);
    assert!(ok, "{out}{err}");
    assert!(out.contains("generation 1 live"), "{out}");
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::TimedOut);

    let mut st = vec!["status", "--json"];
    st.extend(pins_args);
    let (ok, out, err) = sluice(&st);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["generation"], 1);
    assert_eq!(v["hooks"].as_array().unwrap().len(), 4);
    let links_1: Vec<u64> = v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["link_id"].as_u64().expect("live link"))
        .collect();

    // A second process finds the pinned links and replaces their programs in place.
    let (ok, out, err) = load(&db);
    assert!(ok, "{out}{err}");
    assert!(out.contains("generation 2 live"), "{out}");
    assert!(out.contains("replacing generation 1"), "{out}");
    assert_eq!(out.matches("replaced program").count(), 1, "{out}");
    assert_eq!(out.matches("unchanged").count(), 3, "{out}");
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::Connected);
    assert_eq!(bx.tcp("a", "b", 80), ProbeOutcome::TimedOut);
    let (_, out, _) = sluice(&st);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let links_2: Vec<u64> = v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["link_id"].as_u64().unwrap())
        .collect();
    let progs_2: Vec<u32> = v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["program_id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(links_1, links_2, "same links across processes");

    // A tampered bundle is refused before anything happens, naming the file.
    let obj = std::fs::read_dir(db.join("programs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&obj, bytes).unwrap();
    let (ok, _, err) = load(&db);
    assert!(!ok);
    assert!(
        err.contains(obj.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
    assert!(err.contains("modified"), "{err}");

    let mut un = vec!["unload"];
    un.extend(pins_args);
    let (ok, out, err) = sluice(&un);
    assert!(ok, "{err}");
    assert!(out.contains("unloaded generation 2"), "{out}");
    assert!(!bx.opts.root.exists());
    // `sluice unload` leaves no link, program, pin or state of the generation it unloaded.
    leftovers::assert_clean(&leftovers::Made {
        dirs: vec![bx.opts.root.clone(), bx.opts.state_dir.clone()],
        links: links_2.iter().map(|&l| l as u32).collect(),
        programs: progs_2,
        ..Default::default()
    });
    let (ok, out, _) = sluice(&st);
    assert!(ok);
    assert!(out.trim() == "null", "{out}");
    assert_eq!(bx.tcp("a", "b", 80), ProbeOutcome::Connected);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The host-side interface index of `pod` in the node namespace, read over netlink.
fn host_ifindex(bx: &Box_, pod: &str) -> u32 {
    let p = bx.topo().pod("default", pod).unwrap();
    sluice_loader::netlink::Netlink::open_named(Some(bx.topo().node_netns()))
        .and_then(|mut nl| nl.index_of(&p.host_if))
        .unwrap()
}

#[test]
fn hooks_on_a_recreated_namespace_are_attached_again_not_reported_unchanged() {
    let mut bx = Box_::new(7);
    let first = generation::apply_bundle(&bx.bundle(&[81], true), &bx.opts).expect("first");
    assert!(first.hooks.iter().all(|h| h.action == HookAction::Attached));
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::TimedOut);
    let before = (host_ifindex(&bx, "a"), host_ifindex(&bx, "b"));

    // Delete and recreate every namespace and veth under the same names.
    bx.recreate(7);
    // A fresh namespace numbers its interfaces as the old one did: same names, same
    // indexes. Only the namespace's identity tells the old hooks from the new interfaces.
    assert_eq!((host_ifindex(&bx, "a"), host_ifindex(&bx, "b")), before);
    assert_eq!(
        bx.tcp("a", "b", 81),
        ProbeOutcome::Connected,
        "nothing runs on the new interfaces yet"
    );
    let status = generation::status(&bx.opts).unwrap().unwrap();
    assert!(
        status
            .hooks
            .iter()
            .all(|h| h.link.is_some_and(|l| l.ifindex == 0)),
        "the old links are defunct: {:?}",
        status.hooks
    );

    // The same bundle again: every hook is attached anew, and enforces.
    let second = generation::apply_bundle(&bx.bundle(&[81], true), &bx.opts).expect("second");
    assert_eq!(second.generation, 2);
    for h in &second.hooks {
        assert_eq!(h.action, HookAction::Attached, "{}", h.target);
        let q = query_tcx(&h.target).unwrap();
        assert_eq!(q.program_ids, vec![h.program_id], "{}", h.target);
    }
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::TimedOut);
    assert_eq!(bx.tcp("a", "b", 80), ProbeOutcome::Connected);
    let status = generation::status(&bx.opts).unwrap().unwrap();
    for h in &status.hooks {
        let link = h.link.expect("pinned link");
        assert_ne!(link.ifindex, 0, "DEFUNCT: {h:?}");
        assert_eq!(link.ifindex, h.state.ifindex, "{h:?}");
        assert_eq!(link.prog_id, h.state.program_id, "{h:?}");
    }

    // Nothing changed since: a third apply keeps every hook (checked in the kernel).
    let third = generation::apply_bundle(&bx.bundle(&[81], true), &bx.opts).expect("third");
    assert!(
        third
            .hooks
            .iter()
            .all(|h| h.action == HookAction::Unchanged),
        "{:?}",
        third.hooks
    );
    assert_eq!(hook_ids(&third), hook_ids(&second));
    assert_eq!(bx.tcp("a", "b", 81), ProbeOutcome::TimedOut);
}
