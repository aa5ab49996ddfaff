//! Policy generations: load a bundle next to the running one, then flip every hook to it.
//!
//! This is the swap protocol of `spec/swap.md`. A generation is everything one bundle puts in
//! the kernel: its programs, their per-program maps and its generation-scope shared maps (the
//! ipcache). It is built completely (maps created and filled, every program verified) before
//! any hook changes; then each hook flips with one BPF_LINK_UPDATE on its pinned tcx link, so
//! a packet sees either the old generation or the new one, never a mix within one program.
//! Persistent maps (conntrack) are pinned by name and reused by every generation.
//!
//! Any failure before the flip undoes what this attempt created (staging pins, a conntrack
//! pin it made, directories) and leaves the kernel as it was. A failure during the flip rolls
//! the hooks already flipped back. The old generation is not freed explicitly: once no link
//! runs its programs, nothing references them or their maps and the kernel frees both.
//!
//! Layout on bpffs (root defaults to `/sys/fs/bpf/sluice`):
//! ```text
//! <root>/<pin>            persistent maps, e.g. <root>/ct
//! <root>/links/<hook>     one tcx link per hook: `<iface>-ingress` / `<iface>-egress`
//! <root>/staging/<map>    generation-scope maps while a generation is being built
//! ```
//! and a state file `<state_dir>/state.json` (default `/run/sluice`) with the generation
//! number, the bundle digest and the hooks, which `sluice status` and the next load read.
//! A bundle's trace info (rule table, endpoint addresses) is kept next to it as
//! `<state_dir>/trace/<bundle digest>.json` for `sluice trace`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::{Map, MapData, MapInfo};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfError, EbpfLoader};
use serde::{Deserialize, Serialize};
use sluice_bundle::MapDef;
use sluice_bundle::{Attachment, Bundle, Digest, EndpointRef, MapScope, SharedMap, TcxHook};

use crate::attach::{self, AttachError, TcxLink, TcxTarget};
use crate::netlink::Netlink;
use crate::pin;
use crate::sys::{bpf as sysbpf, fs as sysfs, netns};

/// Where a generation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// bpffs directory for every pin (`/sys/fs/bpf/sluice`).
    pub root: PathBuf,
    /// Directory of the state file and the lock (`/run/sluice`).
    pub state_dir: PathBuf,
    /// Named namespace (under /run/netns) that holds the host-side veths; None: our own.
    pub node_netns: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from(pin::SLUICE_ROOT),
            state_dir: PathBuf::from("/run/sluice"),
            node_netns: None,
        }
    }
}

/// The step of the protocol an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Prepare,
    InterfaceMissing,
    MapCreate,
    MapFill,
    ProgramLoad,
    Flip,
    AfterFlip,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::InterfaceMissing => "interface missing",
            Step::MapCreate => "map create",
            Step::MapFill => "map fill",
            Step::ProgramLoad => "program load",
            Step::Flip => "flip",
            Step::AfterFlip => "after the flip",
        }
    }

    /// Whether the kernel is guaranteed unchanged when a load fails in this step.
    pub fn before_flip(self) -> bool {
        !matches!(self, Step::Flip | Step::AfterFlip)
    }
}

/// Why a generation did not (completely) go in. The message starts with the step.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("prepare: {what}: {source}")]
    Prepare {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("prepare: {0}")]
    Conflict(String),
    #[error("interface missing: {endpoint} {hook}: {detail}")]
    InterfaceMissing {
        endpoint: EndpointRef,
        hook: &'static str,
        detail: String,
    },
    #[error("map create: {detail}")]
    MapCreate {
        /// Already includes the kernel's reason.
        detail: String,
        cause: Option<Box<EbpfError>>,
    },
    #[error("map fill: map `{map}`{}: {detail}", artifact.map(|a| format!(" of artifact {a}")).unwrap_or_default())]
    MapFill {
        map: String,
        artifact: Option<Digest>,
        detail: String,
    },
    #[error("program load: `{program}` of artifact {artifact}: {detail}{}",
        if verifier_log.is_empty() { String::new() } else { format!("\nverifier log (last lines):\n{verifier_log}") })]
    ProgramLoad {
        program: String,
        artifact: Digest,
        detail: String,
        /// The end of the verifier log, where the reason is.
        verifier_log: String,
    },
    #[error("flip: {target}: {source}; {}", if *rolled_back { "every hook was rolled back to the old generation" } else { "ROLLBACK INCOMPLETE, see the log" })]
    Flip {
        target: TcxTarget,
        #[source]
        source: Box<AttachError>,
        rolled_back: bool,
    },
    #[error("after the flip (the new generation is live): {0}")]
    AfterFlip(String),
}

impl SwapError {
    pub fn step(&self) -> Step {
        match self {
            SwapError::Prepare { .. } | SwapError::Conflict(_) => Step::Prepare,
            SwapError::InterfaceMissing { .. } => Step::InterfaceMissing,
            SwapError::MapCreate { .. } => Step::MapCreate,
            SwapError::MapFill { .. } => Step::MapFill,
            SwapError::ProgramLoad { .. } => Step::ProgramLoad,
            SwapError::Flip { .. } => Step::Flip,
            SwapError::AfterFlip(_) => Step::AfterFlip,
        }
    }
}

fn prep(what: impl Into<String>) -> impl FnOnce(io::Error) -> SwapError {
    let what = what.into();
    move |source| SwapError::Prepare { what, source }
}

/// What happened to one hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookAction {
    /// The existing link now runs the new program (one BPF_LINK_UPDATE).
    Replaced { old_program_id: u32 },
    /// A new link was attached and pinned.
    Attached,
    /// The hook already runs this artifact, built against the same generation-scope maps:
    /// it keeps its program (nothing loaded, nothing flipped).
    Unchanged,
}

/// One hook after the flip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    pub endpoint: EndpointRef,
    pub target: TcxTarget,
    pub artifact: Digest,
    pub link_id: u32,
    pub program_id: u32,
    pub action: HookAction,
}

/// What [`apply_bundle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationReport {
    pub generation: u64,
    pub bundle: Digest,
    pub previous: Option<u64>,
    /// Distinct programs loaded (one per artifact).
    pub programs_loaded: usize,
    pub hooks: Vec<HookReport>,
    /// Pin paths of hooks the new generation no longer has, now detached.
    pub detached: Vec<PathBuf>,
    /// Persistent maps: name and kernel map id.
    pub node_maps: Vec<(String, u32)>,
    /// How long each step took, and when the flip ran.
    pub timings: Timings,
}

/// Wall time per step of one [`apply_bundle`] (what `loader/cli/benches/swap.rs` reports), and
/// the window in which hooks flipped: before `flip_started` every hook ran the old
/// generation, after `flip_finished` every hook runs the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Lock, state, interfaces, persistent map checks.
    pub prepare: Duration,
    /// Parsing the objects and creating their maps.
    pub map_create: Duration,
    pub map_fill: Duration,
    /// BPF_PROG_LOAD of every distinct program (the verifier).
    pub program_load: Duration,
    /// Every hook's BPF_LINK_UPDATE (or attach).
    pub flip: Duration,
    /// Detaching stale hooks, the state file.
    pub after: Duration,
    pub flip_started: Instant,
    pub flip_finished: Instant,
}

/// The state file: what the current generation is and where its hooks are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub generation: u64,
    pub bundle: Digest,
    pub root: PathBuf,
    pub node_netns: Option<String>,
    pub hooks: Vec<HookState>,
    /// Persistent map name → pin path.
    pub node_maps: Vec<(String, PathBuf)>,
    /// Digest of the generation-scope shared maps (definitions and entries) the hooks'
    /// programs were loaded with: a hook may keep its program only while this is unchanged.
    #[serde(default)]
    pub shared_digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookState {
    pub endpoint: EndpointRef,
    pub iface: String,
    /// The interface's index when the hook was attached or last flipped: an interface
    /// recreated under the same name has another, and its old link is defunct.
    #[serde(default)]
    pub ifindex: u32,
    /// Cookie of the node namespace the interface was in (`SO_NETNS_COOKIE`): the
    /// interface's identity is (namespace, ifindex), never its name.
    #[serde(default)]
    pub netns_cookie: u64,
    pub hook: TcxHook,
    pub pin: PathBuf,
    pub artifact: Digest,
    pub link_id: u32,
    pub program_id: u32,
}

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

const TRACE_DIR: &str = "trace";

/// Where the trace info of the bundle with this digest is kept.
pub fn trace_info_path(state_dir: &Path, bundle: &Digest) -> PathBuf {
    state_dir.join(TRACE_DIR).join(format!("{bundle}.json"))
}

fn save_trace_info(state_dir: &Path, bundle: &Bundle) -> io::Result<()> {
    let Some(info) = &bundle.trace else {
        return Ok(());
    };
    let p = trace_info_path(state_dir, &bundle.digest());
    std::fs::create_dir_all(p.parent().expect("has a parent"))?;
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, info.to_bytes())?;
    std::fs::rename(&tmp, &p)
}

/// Removes the trace info of bundles no longer in force.
fn prune_trace_info(state_dir: &Path, keep: &Digest) {
    let Ok(dir) = std::fs::read_dir(state_dir.join(TRACE_DIR)) else {
        return;
    };
    let keep = format!("{keep}.json");
    for e in dir.flatten() {
        if e.file_name().to_string_lossy() != keep {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Reads the state file; None when nothing is loaded.
pub fn read_state(state_dir: &Path) -> Result<Option<State>, SwapError> {
    let p = state_dir.join(STATE_FILE);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| prep(format!("reading {}", p.display()))(io::Error::other(e))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(prep(format!("reading {}", p.display()))(e)),
    }
}

fn write_state(state_dir: &Path, state: &State) -> io::Result<()> {
    let tmp = state_dir.join(format!("{STATE_FILE}.tmp"));
    let mut bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    bytes.push(b'\n');
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, state_dir.join(STATE_FILE)) // atomic: readers see old or new
}

/// An exclusive lock on the state directory: one load or unload at a time per node.
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn take(state_dir: &Path) -> Result<Lock, SwapError> {
        std::fs::create_dir_all(state_dir)
            .map_err(prep(format!("creating {}", state_dir.display())))?;
        let p = state_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(prep(format!("opening {}", p.display())))?;
        sysfs::lock_exclusive(&file).map_err(prep(format!("locking {}", p.display())))?;
        Ok(Lock { _file: file })
    }
}

/// The pin file name of a hook: `<iface>-<ingress|egress>`, the name hex-encoded when it has
/// characters a pin name should not (bpffs refuses dots: they are reserved for the kernel).
pub fn hook_pin_name(iface: &str, hook: TcxHook) -> String {
    let plain = iface
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if plain && !iface.is_empty() {
        format!("{iface}-{}", hook.as_str())
    } else {
        let hex: String = iface.bytes().map(|b| format!("{b:02x}")).collect();
        format!("x{hex}-{}", hook.as_str())
    }
}

/// Runs `f` in the node namespace (or here).
fn in_node<T: Send>(opts: &LoadOptions, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    match &opts.node_netns {
        None => Ok(f()),
        Some(name) => netns::Netns::open(name)?.run(f),
    }
}

fn node_name(opts: &LoadOptions) -> &str {
    opts.node_netns.as_deref().unwrap_or("the current netns")
}

/// The node namespace as one visit saw it: its identity and the interfaces asked about.
struct NodeView {
    /// The namespace's cookie: a namespace deleted and recreated under the same name has
    /// another, and interfaces in it may get the same indexes as before.
    cookie: u64,
    by_name: HashMap<String, Result<u32, String>>,
    /// Name of each peer index asked about (None: no such interface).
    by_index: HashMap<u32, Option<String>>,
}

fn node_view(
    opts: &LoadOptions,
    names: &BTreeSet<&str>,
    peers: &BTreeSet<u32>,
) -> Result<NodeView, String> {
    in_node(opts, || {
        let mut nl = Netlink::open().map_err(|e| e.to_string())?;
        let cookie = nl.netns_cookie().map_err(|e| e.to_string())?;
        let found = netns::if_indexes(names.iter().copied()).map_err(|e| e.to_string())?;
        let by_name = names
            .iter()
            .zip(found)
            .map(|(n, ix)| (n.to_string(), ix.map_err(|e| e.to_string())))
            .collect();
        let mut by_index = HashMap::new();
        for &p in peers {
            let link = nl.link_by_index(p).map_err(|e| e.to_string())?;
            by_index.insert(p, link.map(|l| l.name));
        }
        Ok(NodeView {
            cookie,
            by_name,
            by_index,
        })
    })
    .map_err(|e| e.to_string())?
}

/// The peer index of each endpoint netns's eth0, for attachments named by netns.
type Peers<'b> = BTreeMap<&'b str, Result<u32, String>>;

/// Finds the host-side interface of an attachment: by name, or as the peer of the
/// endpoint netns's eth0. Returns (name, ifindex) in the node namespace.
fn resolve_iface(
    att: &Attachment,
    opts: &LoadOptions,
    view: &Result<NodeView, String>,
    peers: &Peers<'_>,
) -> Result<(String, u32), SwapError> {
    let missing = |detail: String| SwapError::InterfaceMissing {
        endpoint: att.endpoint.clone(),
        hook: att.hook.as_str(),
        detail,
    };
    let node = node_name(opts);
    let view = view
        .as_ref()
        .map_err(|e| missing(format!("netns {node}: {e}")))?;
    if let Some(name) = &att.interface {
        let idx = view.by_name[name.as_str()]
            .clone()
            .map_err(|e| missing(format!("{e} (looked in {node})")))?;
        return Ok((name.clone(), idx));
    }
    let ns = att
        .netns
        .as_deref()
        .expect("the bundle builder demands one of the two");
    let peer = peers[ns].clone().map_err(missing)?;
    let name = view.by_index.get(&peer).cloned().flatten().ok_or_else(|| {
        missing(format!(
            "eth0 of netns {ns} has its peer at index {peer}, not found in {node}"
        ))
    })?;
    Ok((name, peer))
}

/// The bundle's node maps completed for this node (`crate::node`): each attached
/// endpoint's host-side ifindex and MAC and its pod's MAC, and the node's devices. A pod
/// attached by interface name alone has no known MAC here: it gets no entry for delivery
/// (ifindex 0), so its packets take the host stack, where `to_ep` still decides them.
fn complete_node_maps(
    bundle: &Bundle,
    opts: &LoadOptions,
    plans: &[HookPlan<'_>],
) -> Result<Vec<SharedMap>, SwapError> {
    use sluice_bundle::abi::node::{DEVICE_NAMESPACE, UPLINK_DEVICE, VXLAN_DEVICE};
    let err = |detail: String| SwapError::MapFill {
        map: "node maps".into(),
        artifact: None,
        detail,
    };
    let host_macs: HashMap<u32, [u8; 6]> = in_node(opts, || {
        Netlink::open().and_then(|mut nl| nl.links()).map(|links| {
            links
                .into_iter()
                .filter_map(|l| Some((l.index, l.mac?)))
                .collect()
        })
    })
    .map_err(|e| err(format!("netns {}: {e}", node_name(opts))))?
    .map_err(|e| err(format!("listing links in {}: {e}", node_name(opts))))?;
    let (mut vxlan, mut uplink) = (0, 0);
    let mut links = BTreeMap::new();
    for p in plans {
        let ep = &p.att.endpoint;
        if ep.namespace == DEVICE_NAMESPACE {
            match ep.name.as_str() {
                VXLAN_DEVICE => vxlan = p.ifindex,
                UPLINK_DEVICE => uplink = p.ifindex,
                _ => {}
            }
            continue;
        }
        if links.contains_key(ep) {
            continue;
        }
        let pod_mac = match &p.att.netns {
            Some(ns) => Netlink::open_named(Some(ns))
                .and_then(|mut nl| nl.link("eth0"))
                .map_err(|e| err(format!("eth0 in netns {ns}: {e}")))?
                .and_then(|l| l.mac),
            None => None,
        };
        let link = match (pod_mac, host_macs.get(&p.ifindex)) {
            (Some(pod_mac), Some(&host_mac)) => Some(crate::node::EndpointLink {
                ifindex: p.ifindex,
                pod_mac,
                host_mac,
            }),
            _ => None,
        };
        links.insert(ep.clone(), link);
    }
    crate::node::complete_shared(bundle, &links, vxlan, uplink).map_err(|e| err(e.to_string()))
}

/// The peer ifindex of eth0 in `netns` (`IFLA_LINK` of a veth).
fn peer_of_eth0(netns: &str) -> Result<u32, String> {
    let eth0 = Netlink::open_named(Some(netns))
        .and_then(|mut nl| nl.link("eth0"))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("eth0 in netns {netns}: No such device"))?;
    match (eth0.kind.as_deref(), eth0.peer) {
        (Some("veth"), Some(peer)) => Ok(peer),
        _ => Err(format!(
            "eth0 in netns {netns} is not one end of a veth pair"
        )),
    }
}

fn attach_type(h: TcxHook) -> u32 {
    match h {
        TcxHook::Ingress => sysbpf::BPF_TCX_INGRESS,
        TcxHook::Egress => sysbpf::BPF_TCX_EGRESS,
    }
}

/// Where a hook is: (ifindex in the node namespace, tcx attach type).
type HookKey = (u32, u32);

/// What runs on each of `keys` now, asked in the node namespace (one visit, one
/// BPF_PROG_QUERY per hook), provided that namespace is still the one with `cookie`.
fn live_chains(
    opts: &LoadOptions,
    cookie: u64,
    keys: impl IntoIterator<Item = HookKey>,
) -> Result<HashMap<HookKey, sysbpf::TcxChain>, String> {
    let keys: BTreeSet<HookKey> = keys.into_iter().collect();
    let node = node_name(opts);

    in_node(opts, || {
        let here = Netlink::open()
            .and_then(|nl| nl.netns_cookie())
            .map_err(|e| e.to_string())?;
        if here != cookie {
            return Err(format!(
                "netns {node} was replaced while loading (cookie {cookie} became {here})"
            ));
        }
        let mut out = HashMap::new();
        for (ifindex, at) in keys {
            match sysbpf::tcx_query(ifindex, at) {
                Ok(chain) => {
                    out.insert((ifindex, at), chain);
                }
                // The interface is gone: nothing runs there.
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                Err(e) => return Err(format!("querying tcx on ifindex {ifindex}: {e}")),
            }
        }
        Ok(out)
    })
    .map_err(|e| format!("netns {node}: {e}"))?
}

/// Whether `link_id` runs `program_id` on the hook `key` (as [`live_chains`] saw it).
fn runs(
    chains: &HashMap<HookKey, sysbpf::TcxChain>,
    key: HookKey,
    link_id: u32,
    program_id: u32,
) -> bool {
    chains
        .get(&key)
        .is_some_and(|c| c.entries.contains(&(link_id, program_id)))
}

/// The MapData behind any aya map (every variant wraps one).
fn map_data(m: &Map) -> &MapData {
    macro_rules! all {
        ($($v:ident),*) => {
            match m { $(Map::$v(d) => d,)* }
        };
    }
    all!(
        Array,
        ArrayOfMaps,
        BloomFilter,
        CgroupArray,
        CgroupStorage,
        CgrpStorage,
        CpuMap,
        DevMap,
        DevMapHash,
        HashMap,
        HashOfMaps,
        InodeStorage,
        LpmTrie,
        LruHashMap,
        PerCpuArray,
        PerCpuCgroupStorage,
        PerCpuHashMap,
        PerCpuLruHashMap,
        PerfEventArray,
        ProgramArray,
        Queue,
        ReusePortSockArray,
        RingBuf,
        SockHash,
        SockMap,
        SkStorage,
        Stack,
        StackTraceMap,
        Unsupported,
        XskMap
    )
}

/// Whether a kernel map has the layout a definition asks for.
fn layout_mismatch(info: &MapInfo, def: &MapDef) -> Option<String> {
    let want = (
        def.ty.id(),
        def.key_size,
        def.value_size,
        def.max_entries,
        def.flags,
    );
    let kind = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
    // aya's MapType discriminants are the kernel's bpf_map_type values.
    let got = (
        kind,
        info.key_size(),
        info.value_size(),
        info.max_entries(),
        info.map_flags(),
    );
    (got != want).then(|| {
        format!(
            "kernel map has (type, key, value, max_entries, flags) = {got:?}, bundle says {want:?}"
        )
    })
}

/// Writes entries into a map after checking its layout against `def`.
fn fill(
    map: &MapData,
    def: &MapDef,
    entries: &[(Vec<u8>, Vec<u8>)],
    artifact: Option<Digest>,
) -> Result<(), SwapError> {
    let err = |detail: String| SwapError::MapFill {
        map: def.name.clone(),
        artifact,
        detail,
    };
    let info = map
        .info()
        .map_err(|e| err(format!("reading map info: {e}")))?;
    if let Some(m) = layout_mismatch(&info, def) {
        return Err(err(m));
    }
    let kmap =
        sysbpf::MapElems::new(map.fd().as_fd()).map_err(|e| err(format!("map info: {e}")))?;
    for (i, (k, v)) in entries.iter().enumerate() {
        kmap.update(k, v, sysbpf::BPF_ANY).map_err(|e| {
            err(format!(
                "entry {i} of {} (key {k:02x?}): {e}",
                entries.len()
            ))
        })?;
    }
    Ok(())
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// The last lines of a verifier log: the verifier states its reason at the end.
pub fn verifier_excerpt(log: &str, lines: usize) -> String {
    // The statistics the kernel appends say nothing about why.
    let noise = ["verification time", "stack depth", "processed "];
    let all: Vec<&str> = log
        .lines()
        .filter(|l| !l.trim().is_empty() && !noise.iter().any(|n| l.starts_with(n)))
        .collect();
    let start = all.len().saturating_sub(lines);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("  ... ({start} earlier lines)\n"));
    }
    for l in &all[start..] {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// One hook of the new generation, resolved.
struct HookPlan<'b> {
    att: &'b Attachment,
    iface: String,
    ifindex: u32,
    key: HookKey,
    target: TcxTarget,
    pin: PathBuf,
}

/// What a failed attempt must remove so the kernel and bpffs look as before.
#[derive(Default)]
struct Undo {
    pins: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Undo {
    fn run(&mut self) {
        for p in self.pins.drain(..).rev() {
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %p.display(), error = %e, "undo: removing pin");
            }
        }
        for d in self.dirs.drain(..).rev() {
            let _ = std::fs::remove_dir(&d); // only if empty
        }
    }
}

fn mkdir(path: &Path, undo: &mut Undo) -> Result<(), SwapError> {
    let mut missing = Vec::new();
    let mut p = Some(path);
    while let Some(d) = p {
        if d.exists() {
            break;
        }
        missing.push(d.to_owned());
        p = d.parent();
    }
    std::fs::create_dir_all(path).map_err(prep(format!("creating {}", path.display())))?;
    undo.dirs.extend(missing.into_iter().rev());
    Ok(())
}

fn staging_dir(root: &Path) -> PathBuf {
    root.join("staging")
}

fn links_dir(root: &Path) -> PathBuf {
    root.join("links")
}

/// Digest of a bundle's generation-scope shared maps: their definitions and entries.
fn shared_digest(bundle: &Bundle, node_maps: &[SharedMap]) -> Digest {
    let mut bytes = Vec::new();
    for m in bundle
        .shared_maps
        .iter()
        .filter(|m| m.scope.per_generation())
    {
        // A node map as completed on this node: a recreated pod changes it.
        let m = node_maps
            .iter()
            .find(|n| n.def.name == m.def.name)
            .unwrap_or(m);
        let d = &m.def;
        bytes.extend_from_slice(d.name.as_bytes());
        bytes.push(0);
        for v in [d.ty.id(), d.key_size, d.value_size, d.max_entries, d.flags] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&sluice_bundle::encode_map_file(
            d.key_size,
            d.value_size,
            &m.entries,
        ));
    }
    Digest::of(&bytes)
}

/// Hooks that can keep what they run: the running generation (as the state file, written
/// under the lock, records it) has the same artifact on the same pin, built against the same
/// generation-scope maps, on the same interface (same node namespace, by cookie, and same
/// ifindex: not recreated), the pin is still there, and the kernel confirms that the
/// recorded link runs the recorded program on that hook. pin → (link, program).
///
/// The state file is not trusted alone: a namespace recreated under its name gives its
/// interfaces the same indexes, while the old links are defunct.
fn unchanged_hooks(
    plans: &[HookPlan<'_>],
    prev: Option<&State>,
    shared: Digest,
    pins: &HashSet<PathBuf>,
    cookie: u64,
    chains: &HashMap<HookKey, sysbpf::TcxChain>,
) -> HashMap<PathBuf, (u32, u32)> {
    let mut keep = HashMap::new();
    let Some(prev) = prev.filter(|p| p.shared_digest == Some(shared)) else {
        return keep;
    };
    let recorded: HashMap<&Path, &HookState> =
        prev.hooks.iter().map(|h| (h.pin.as_path(), h)).collect();
    for plan in plans {
        let Some(h) = recorded.get(plan.pin.as_path()) else {
            continue;
        };
        let same = h.artifact == plan.att.artifact
            && h.ifindex == plan.ifindex
            && h.netns_cookie == cookie
            && pins.contains(&plan.pin);
        if !same {
            continue;
        }
        if runs(chains, plan.key, h.link_id, h.program_id) {
            keep.insert(plan.pin.clone(), (h.link_id, h.program_id));
        } else {
            tracing::info!(hook = %plan.target, link_id = h.link_id, "recorded hook not running, re-attaching");
        }
    }
    keep
}

/// Object loaders by pin layout (shared map name → pin path), kept for the process's life.
///
/// aya 0.14's `EbpfLoader::new` parses the whole vmlinux BTF (tens of milliseconds) even when
/// `btf(None)` then discards it: per object, that was most of a swap's time. A loader is
/// reusable, and its settings here are only the pin paths, which stay the same from one
/// generation to the next for a given root; so one loader per layout is built once. Its map
/// names must outlive it, so each distinct layout leaks its few names (a process uses one or
/// a handful of roots).
type Loaders = BTreeMap<Vec<(String, PathBuf)>, EbpfLoader<'static>>;

fn object_loaders() -> std::sync::MutexGuard<'static, Loaders> {
    static LOADERS: std::sync::Mutex<Loaders> = std::sync::Mutex::new(BTreeMap::new());
    // A panic while holding it leaves nothing half-done: loaders are only read by `load`.
    LOADERS.lock().unwrap_or_else(|p| p.into_inner())
}

fn loader_for<'l>(
    loaders: &'l mut Loaders,
    pin_paths: &BTreeMap<&str, PathBuf>,
) -> &'l mut EbpfLoader<'static> {
    let key: Vec<(String, PathBuf)> = pin_paths
        .iter()
        .map(|(n, p)| (n.to_string(), p.clone()))
        .collect();
    loaders.entry(key).or_insert_with_key(|key| {
        let mut loader = EbpfLoader::new();
        loader.btf(None);
        for (name, path) in key {
            let name: &'static str = Box::leak(name.clone().into_boxed_str());
            loader.map_pin_path(name, path.clone());
        }
        loader
    })
}

/// Loads `bundle` as a new generation and flips every hook to it (the whole protocol).
pub fn apply_bundle(bundle: &Bundle, opts: &LoadOptions) -> Result<GenerationReport, SwapError> {
    let started = Instant::now();
    pin::ensure_bpffs().map_err(|e| SwapError::Prepare {
        what: "bpffs".into(),
        source: io::Error::other(e),
    })?;
    let _lock = Lock::take(&opts.state_dir)?;
    let prev = read_state(&opts.state_dir)?;
    if let Some(p) = &prev
        && (p.node_netns != opts.node_netns || p.root != opts.root)
    {
        return Err(SwapError::Conflict(format!(
            "generation {} is loaded for netns {:?} at {}; `sluice unload` it first",
            p.generation,
            p.node_netns,
            p.root.display()
        )));
    }
    let mut undo = Undo::default();
    let res = build_and_flip(bundle, opts, prev.as_ref(), &mut undo, started);
    // Staging pins go either way: the loaded programs hold the generation's maps.
    undo.run();
    res
}

fn build_and_flip(
    bundle: &Bundle,
    opts: &LoadOptions,
    prev: Option<&State>,
    undo: &mut Undo,
    started: Instant,
) -> Result<GenerationReport, SwapError> {
    let generation = prev.map_or(1, |p| p.generation + 1);
    for name in bundle.shared_maps.iter().filter_map(|m| m.pin.as_deref()) {
        if matches!(name, "links" | "staging") {
            return Err(SwapError::Conflict(format!(
                "node map pin name {name:?} is reserved"
            )));
        }
    }
    mkdir(&links_dir(&opts.root), undo)?;
    let staging = staging_dir(&opts.root);
    // A crashed earlier attempt may have left staging pins; we hold the lock.
    if staging.exists() {
        for e in std::fs::read_dir(&staging).map_err(prep("listing staging"))? {
            let e = e.map_err(prep("listing staging"))?;
            let _ = std::fs::remove_file(e.path());
        }
    }
    mkdir(&staging, undo)?;
    undo.dirs.push(staging.clone()); // always removed at the end (if empty)

    // 1. Every interface exists (nothing touched yet).
    let mut plans = Vec::new();
    let peers: Peers<'_> = bundle
        .attachments
        .iter()
        .filter_map(|a| a.netns.as_deref())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|ns| (ns, peer_of_eth0(ns)))
        .collect();
    let view = if bundle.attachments.is_empty() {
        Err("no attachments".to_owned()) // never consulted
    } else {
        let names = bundle
            .attachments
            .iter()
            .filter_map(|a| a.interface.as_deref())
            .collect();
        let peer_ixs = peers
            .values()
            .filter_map(|p| p.as_ref().ok().copied())
            .collect();
        node_view(opts, &names, &peer_ixs)
    };
    for att in &bundle.attachments {
        let (iface, ifindex) = resolve_iface(att, opts, &view, &peers)?;
        let target = TcxTarget::new(opts.node_netns.as_deref(), &iface, att.hook);
        let pin = links_dir(&opts.root).join(hook_pin_name(&iface, att.hook));
        plans.push(HookPlan {
            att,
            iface,
            ifindex,
            key: (ifindex, attach_type(att.hook)),
            target,
            pin,
        });
    }
    let mut seen = HashSet::new();
    for p in &plans {
        if !seen.insert(&p.pin) {
            return Err(SwapError::Conflict(format!(
                "two attachments resolve to the same hook {}",
                p.target
            )));
        }
    }

    // The node maps completed with what only this node knows (ifindexes, MACs), before
    // anything is digested or filled.
    let node_maps = if bundle.shared_maps.iter().any(|m| m.scope == MapScope::Node) {
        complete_node_maps(bundle, opts, &plans)?
    } else {
        Vec::new()
    };

    // 2. Persistent maps: an existing pin must have the layout the bundle expects.
    let mut pin_paths: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for m in &bundle.shared_maps {
        let path = match m.scope {
            MapScope::Persistent => {
                let path = opts
                    .root
                    .join(m.pin.as_deref().expect("node maps are pinned"));
                if path.exists() {
                    let info = MapInfo::from_pin(&path).map_err(|e| SwapError::MapCreate {
                        detail: format!("opening {}: {e}", path.display()),
                        cause: None,
                    })?;
                    if let Some(why) = layout_mismatch(&info, &m.def) {
                        return Err(SwapError::MapCreate {
                            detail: format!(
                                "`{}` pinned at {} has another layout ({why}); `sluice unload` resets it",
                                m.def.name,
                                path.display()
                            ),
                            cause: None,
                        });
                    }
                } else {
                    // Created (and pinned) by the first object that uses it.
                    undo.pins.push(path.clone());
                }
                path
            }
            // The bundle builder and reader only let the two shared scopes through.
            MapScope::Generation | MapScope::Node | MapScope::Program => {
                let path = staging.join(&m.def.name);
                undo.pins.push(path.clone());
                path
            }
        };
        pin_paths.insert(m.def.name.as_str(), path);
    }

    // Hooks that keep their program, and the artifacts the others need.
    let shared = shared_digest(bundle, &node_maps);
    let mut pins = HashSet::new();
    for e in std::fs::read_dir(links_dir(&opts.root)).map_err(prep("listing links"))? {
        pins.insert(e.map_err(prep("listing links"))?.path());
    }
    // What the kernel runs on every hook now (the state file says what it should).
    let cookie = view.as_ref().map_or(0, |v| v.cookie);
    let chains = if plans.is_empty() {
        HashMap::new()
    } else {
        live_chains(opts, cookie, plans.iter().map(|p| p.key)).map_err(|e| SwapError::Prepare {
            what: "reading the hooks".into(),
            source: io::Error::other(e),
        })?
    };
    let keep = unchanged_hooks(&plans, prev, shared, &pins, cookie, &chains);
    let needed: BTreeSet<Digest> = plans
        .iter()
        .filter(|p| !keep.contains_key(&p.pin))
        .map(|p| p.att.artifact)
        .collect();
    let artifacts: Vec<(&Digest, &sluice_bundle::Artifact)> = bundle
        .artifacts
        .iter()
        .filter(|(id, _)| needed.contains(id))
        .collect();

    let t_prepared = Instant::now();

    // 3. Create every object's maps (shared ones by pin), in artifact order.
    let mut objects: BTreeMap<Digest, Ebpf> = BTreeMap::new();
    {
        let mut loaders = object_loaders();
        let loader = loader_for(&mut loaders, &pin_paths);
        for &(id, art) in &artifacts {
            let ebpf = loader.load(&art.elf).map_err(|e| {
                let detail = match &e {
                    EbpfError::MapError(m) => format!("artifact {id}: {}", chain(m)),
                    other => format!("artifact {id}: object rejected: {}", chain(other)),
                };
                SwapError::MapCreate {
                    detail,
                    cause: Some(Box::new(e)),
                }
            })?;
            objects.insert(*id, ebpf);
        }
    }

    let t_created = Instant::now();

    // 4. Fill: generation-scope shared maps once, then each artifact's own maps.
    for m in bundle
        .shared_maps
        .iter()
        .filter(|m| m.scope.per_generation())
    {
        let path = &pin_paths[m.def.name.as_str()];
        if !path.exists() {
            continue; // no program loaded in this generation uses it
        }
        let data = MapData::from_pin(path).map_err(|e| SwapError::MapFill {
            map: m.def.name.clone(),
            artifact: None,
            detail: format!("opening {}: {e}", path.display()),
        })?;
        let m = node_maps
            .iter()
            .find(|n| n.def.name == m.def.name)
            .unwrap_or(m);
        fill(&data, &m.def, &m.entries, None)?;
    }
    for &(id, art) in &artifacts {
        let ebpf = &objects[id];
        for m in &art.maps {
            let Some(map) = ebpf.map(&m.name) else {
                return Err(SwapError::MapFill {
                    map: m.name.clone(),
                    artifact: Some(*id),
                    detail: "the object defines no such map".into(),
                });
            };
            fill(map_data(map), &m.def, &m.entries, Some(*id))?;
        }
    }

    let t_filled = Instant::now();

    // 5. Verify every program.
    for &(id, art) in &artifacts {
        let ebpf = objects.get_mut(id).expect("loaded above");
        let prog = classifier_mut(ebpf, &art.program, *id)?;
        prog.load()
            .map_err(|e| program_error(&art.program, *id, e))?;
    }
    let mut program_ids = BTreeMap::new();
    for &(id, art) in &artifacts {
        let ebpf = objects.get_mut(id).expect("loaded above");
        let pid = classifier_mut(ebpf, &art.program, *id)?
            .info()
            .map_err(|e| program_error(&art.program, *id, e))?
            .id();
        program_ids.insert(*id, pid);
    }

    let t_loaded = Instant::now();

    // 6. Existing links: which hooks replace, which attach, which are stale.
    let mut existing: BTreeMap<PathBuf, (TcxLink, u32)> = BTreeMap::new();
    let mut stale: Vec<PathBuf> = Vec::new();
    let by_pin: HashMap<&PathBuf, &HookPlan<'_>> = plans.iter().map(|p| (&p.pin, p)).collect();
    for path in pins {
        if keep.contains_key(&path) {
            continue; // checked against the kernel above
        }
        let Some(plan) = by_pin.get(&path) else {
            stale.push(path);
            continue;
        };
        let link = TcxLink::from_pin(&path, plan.target.clone())
            .map_err(|e| SwapError::Conflict(format!("pinned link {}: {e}", path.display())))?;
        let fd = sysbpf::link_fd_by_id(link.id()).map_err(prep("opening a pinned link"))?;
        let info = sysbpf::link_info(fd.as_fd()).map_err(prep("reading link info"))?;
        // The link must be on this hook of this interface in this namespace, not merely on
        // some device with the same index.
        if info.ifindex == plan.ifindex && runs(&chains, plan.key, link.id(), info.prog_id) {
            existing.insert(path, (link, info.prog_id));
        } else {
            // Defunct (its interface went away) or now on another device: re-attach.
            tracing::info!(pin = %path.display(), ifindex = info.ifindex, "stale link, re-attaching");
            stale.push(path);
        }
    }
    stale.sort();
    debug_assert!(
        stale
            .iter()
            .all(|s| !by_pin.contains_key(s) || !existing.contains_key(s))
    );

    // 7. Flip. Nothing before this point changed what any hook runs. New hooks are
    //    attached from one thread in the node namespace, not one thread per hook.
    let flip_started = Instant::now();
    let hooks = in_node(opts, || {
        let mut journal: Vec<Done> = Vec::new();
        let mut hooks = Vec::new();
        for plan in &plans {
            let id = plan.att.artifact;
            if let Some(&(link_id, program_id)) = keep.get(&plan.pin) {
                hooks.push(HookReport {
                    endpoint: plan.att.endpoint.clone(),
                    target: plan.target.clone(),
                    artifact: id,
                    link_id,
                    program_id,
                    action: HookAction::Unchanged,
                });
                continue;
            }
            let art = &bundle.artifacts[&id];
            let ebpf = objects.get_mut(&id).expect("loaded above");
            let prog = match classifier_mut(ebpf, &art.program, id) {
                Ok(p) => p,
                Err(e) => {
                    rollback(journal);
                    return Err(e);
                }
            };
            let new_id = program_ids[&id];
            let step = flip_one(
                plan,
                prog,
                new_id,
                existing.remove(&plan.pin),
                &stale,
                &mut journal,
            );
            match step {
                Ok((link_id, action)) => hooks.push(HookReport {
                    endpoint: plan.att.endpoint.clone(),
                    target: plan.target.clone(),
                    artifact: id,
                    link_id,
                    program_id: new_id,
                    action,
                }),
                Err(source) => {
                    let rolled_back = rollback(journal);
                    return Err(SwapError::Flip {
                        target: plan.target.clone(),
                        source: Box::new(source),
                        rolled_back,
                    });
                }
            }
        }
        Ok(hooks)
    })
    .map_err(|e| SwapError::Prepare {
        what: format!("entering netns {}", node_name(opts)),
        source: e,
    })??;

    let flip_finished = Instant::now();

    // 8. After the flip: every hook must be seen enforcing (the kernel runs the link with
    //    the generation's program on that interface of that namespace), never assumed.
    let mut problems = Vec::new();
    if !plans.is_empty() {
        match live_chains(opts, cookie, plans.iter().map(|p| p.key)) {
            Ok(now) => {
                for (p, h) in plans.iter().zip(&hooks) {
                    if !runs(&now, p.key, h.link_id, h.program_id) {
                        problems.push(format!(
                            "{} is not enforcing: expected link {} running program {} on ifindex {}, the kernel has {:?}",
                            p.target,
                            h.link_id,
                            h.program_id,
                            p.ifindex,
                            now.get(&p.key).map(|c| &c.entries)
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("verifying the hooks: {e}")),
        }
    }
    // Detach hooks that are gone, record the state.
    let mut detached = Vec::new();
    for path in stale {
        if plans.iter().any(|p| p.pin == path) {
            continue; // replaced by a fresh attach in flip_one
        }
        match detach_pinned(&path) {
            Ok(()) => detached.push(path),
            Err(e) => problems.push(format!("detaching {}: {e}", path.display())),
        }
    }
    let mut node_maps = Vec::new();
    for m in bundle
        .shared_maps
        .iter()
        .filter(|m| m.scope == MapScope::Persistent)
    {
        let path = &pin_paths[m.def.name.as_str()];
        // The pin is the new generation's now: keep it whatever happens below.
        undo.pins.retain(|p| p != path);
        match MapInfo::from_pin(path) {
            Ok(info) => node_maps.push((m.def.name.clone(), info.id())),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    undo.dirs.retain(|d| *d == staging);
    let state = State {
        generation,
        bundle: bundle.digest(),
        root: opts.root.clone(),
        node_netns: opts.node_netns.clone(),
        hooks: plans
            .iter()
            .zip(&hooks)
            .map(|(p, h)| HookState {
                endpoint: h.endpoint.clone(),
                iface: p.iface.clone(),
                ifindex: p.ifindex,
                netns_cookie: cookie,
                hook: p.att.hook,
                pin: p.pin.clone(),
                artifact: h.artifact,
                link_id: h.link_id,
                program_id: h.program_id,
            })
            .collect(),
        node_maps: node_maps
            .iter()
            .map(|(n, _)| (n.clone(), pin_paths[n.as_str()].clone()))
            .collect(),
        shared_digest: Some(shared),
    };
    // Before the state names the bundle, so trace never sees a generation without it.
    if let Err(e) = save_trace_info(&opts.state_dir, bundle) {
        problems.push(format!("writing the trace info: {e}"));
    }
    if let Err(e) = write_state(&opts.state_dir, &state) {
        problems.push(format!("writing the state file: {e}"));
    }
    prune_trace_info(&opts.state_dir, &state.bundle);
    tracing::info!(
        generation,
        hooks = hooks.len(),
        programs = objects.len(),
        "generation live"
    );
    let timings = Timings {
        prepare: (t_prepared - started) + (flip_started - t_loaded),
        map_create: t_created - t_prepared,
        map_fill: t_filled - t_created,
        program_load: t_loaded - t_filled,
        flip: flip_finished - flip_started,
        after: flip_finished.elapsed(),
        flip_started,
        flip_finished,
    };
    let report = GenerationReport {
        generation,
        bundle: state.bundle,
        previous: prev.map(|p| p.generation),
        programs_loaded: objects.len(),
        hooks,
        detached,
        node_maps,
        timings,
    };
    // Dropping `objects` closes our fds; the links keep the programs (and their maps).
    drop(objects);
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(SwapError::AfterFlip(problems.join("; ")))
    }
}

fn classifier_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
    artifact: Digest,
) -> Result<&'a mut SchedClassifier, SwapError> {
    let missing = |detail: String| SwapError::ProgramLoad {
        program: name.to_owned(),
        artifact,
        detail,
        verifier_log: String::new(),
    };
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| missing("the object has no such program".into()))?;
    prog.try_into()
        .map_err(|_| missing("not a tc classifier (section `classifier/...`)".into()))
}

fn program_error(name: &str, artifact: Digest, e: ProgramError) -> SwapError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => SwapError::ProgramLoad {
            program: name.to_owned(),
            artifact,
            detail: format!("the verifier rejected it ({io_error})"),
            verifier_log: verifier_excerpt(&format!("{verifier_log:?}"), 12),
        },
        other => SwapError::ProgramLoad {
            program: name.to_owned(),
            artifact,
            detail: other.to_string(),
            verifier_log: String::new(),
        },
    }
}

/// A flip already made, to undo if a later one fails.
enum Done {
    Replaced {
        link_id: u32,
        old_prog: std::os::fd::OwnedFd,
        new_prog_id: u32,
    },
    Attached(TcxLink),
}

fn flip_one(
    plan: &HookPlan<'_>,
    prog: &mut SchedClassifier,
    new_prog_id: u32,
    existing: Option<(TcxLink, u32)>,
    stale: &[PathBuf],
    journal: &mut Vec<Done>,
) -> Result<(u32, HookAction), AttachError> {
    if let Some((mut link, old_id)) = existing {
        // Hold the old program so a rollback can put it back.
        let old_prog = sysbpf::prog_fd_by_id(old_id).map_err(|source| AttachError::Update {
            link_id: link.id(),
            target: plan.target.clone(),
            what: "opening the old program",
            source,
        })?;
        let link_id = link.id();
        link.replace_if(prog, old_id)?;
        journal.push(Done::Replaced {
            link_id,
            old_prog,
            new_prog_id,
        });
        let _ = link.forget_pinned(); // the pin keeps it
        return Ok((
            link_id,
            HookAction::Replaced {
                old_program_id: old_id,
            },
        ));
    }
    // A stale pin at this path (defunct link) makes way for the new one.
    if stale.contains(&plan.pin) {
        std::fs::remove_file(&plan.pin).map_err(|source| AttachError::Unpin {
            path: plan.pin.clone(),
            source,
        })?;
    }
    let mut link = attach::attach_here(prog, &plan.target)?; // the caller is in the node netns
    let id = link.id();
    let res = link.pin(&plan.pin);
    journal.push(Done::Attached(link));
    res?;
    Ok((id, HookAction::Attached))
}

/// Undoes flips in reverse order; true when every one was undone.
fn rollback(journal: Vec<Done>) -> bool {
    let mut ok = true;
    for d in journal.into_iter().rev() {
        match d {
            Done::Replaced {
                link_id,
                old_prog,
                new_prog_id,
            } => {
                let res = (|| {
                    let link = sysbpf::link_fd_by_id(link_id)?;
                    let new = sysbpf::prog_fd_by_id(new_prog_id)?;
                    sysbpf::link_update(link.as_fd(), old_prog.as_fd(), Some(new.as_fd()))
                })();
                if let Err(e) = res {
                    tracing::error!(link_id, error = %e, "rollback of a replaced hook failed");
                    ok = false;
                }
            }
            Done::Attached(link) => {
                let id = link.id();
                if let Err(e) = link.detach() {
                    tracing::error!(link_id = id, error = %e, "rollback of a new hook failed");
                    ok = false;
                }
            }
        }
    }
    ok
}

/// One hook as the kernel reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveHook {
    pub state: HookState,
    /// What the pinned link runs now (None: the pin is gone or unreadable).
    pub link: Option<sysbpf::TcxLinkInfo>,
}

/// `sluice status`: the recorded generation and each hook's live link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub hooks: Vec<LiveHook>,
    /// Persistent maps: name, pin, live map id.
    pub node_maps: Vec<(String, PathBuf, Option<u32>)>,
}

/// Reads the state and asks the kernel about every hook; None when nothing is loaded.
pub fn status(opts: &LoadOptions) -> Result<Option<Status>, SwapError> {
    let Some(state) = read_state(&opts.state_dir)? else {
        return Ok(None);
    };
    let hooks = state
        .hooks
        .iter()
        .map(|h| LiveHook {
            state: h.clone(),
            link: pinned_link_info(&h.pin).ok(),
        })
        .collect();
    let node_maps = state
        .node_maps
        .iter()
        .map(|(n, p)| {
            (
                n.clone(),
                p.clone(),
                MapInfo::from_pin(p).ok().map(|i| i.id()),
            )
        })
        .collect();
    Ok(Some(Status {
        state,
        hooks,
        node_maps,
    }))
}

/// The live info of a pinned link.
pub fn pinned_link_info(pin: &Path) -> io::Result<sysbpf::TcxLinkInfo> {
    let link = aya::programs::links::PinnedLink::from_pin(pin).map_err(io::Error::other)?;
    let link = aya::programs::links::FdLink::from(link);
    let id = link.info().map_err(io::Error::other)?.id();
    let fd = sysbpf::link_fd_by_id(id)?;
    sysbpf::link_info(fd.as_fd())
}

/// What `sluice unload` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnloadReport {
    pub generation: Option<u64>,
    /// Every pin file removed (links detach and maps are freed with their last reference).
    pub removed: Vec<PathBuf>,
}

/// Removes every link, pin and map sluice created under `opts.root`, and the state file.
pub fn unload(opts: &LoadOptions) -> Result<UnloadReport, SwapError> {
    let lock = Lock::take(&opts.state_dir)?;
    let state = read_state(&opts.state_dir)?;
    let mut removed = Vec::new();
    // Detach every hook first (at once, not when the kernel's workqueue gets to it).
    if let Ok(links) = std::fs::read_dir(links_dir(&opts.root)) {
        for e in links.flatten() {
            detach_pinned(&e.path()).map_err(prep(format!("detaching {}", e.path().display())))?;
            removed.push(e.path());
        }
    }
    remove_tree(&opts.root, &mut removed)?;
    removed.sort();
    let _ = std::fs::remove_dir_all(opts.state_dir.join(TRACE_DIR));
    for f in [STATE_FILE, LOCK_FILE] {
        let p = opts.state_dir.join(f);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(prep(format!("removing {}", p.display()))(e)),
        }
    }
    drop(lock);
    let _ = std::fs::remove_dir(&opts.state_dir); // only if nothing else lives there
    tracing::info!(removed = removed.len(), "unloaded");
    Ok(UnloadReport {
        generation: state.map(|s| s.generation),
        removed,
    })
}

/// Detaches a pinned link from its hook (synchronously) and removes the pin. A link whose
/// interface is gone is already detached; its pin just goes.
fn detach_pinned(path: &Path) -> io::Result<()> {
    if let Ok(info) = aya::programs::links::PinnedLink::from_pin(path)
        .map(aya::programs::links::FdLink::from)
        .map_err(io::Error::other)
        .and_then(|l| l.info().map_err(io::Error::other))
    {
        let fd = sysbpf::link_fd_by_id(info.id())?;
        if let Err(e) = sysbpf::link_detach(fd.as_fd()) {
            tracing::debug!(pin = %path.display(), error = %e, "link detach");
        }
    }
    std::fs::remove_file(path)
}

fn remove_tree(dir: &Path, removed: &mut Vec<PathBuf>) -> Result<(), SwapError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(prep(format!("listing {}", dir.display()))(e)),
    };
    for e in entries {
        let e = e.map_err(prep(format!("listing {}", dir.display())))?;
        let p = e.path();
        let ft = e
            .file_type()
            .map_err(prep(format!("stat {}", p.display())))?;
        if ft.is_dir() {
            remove_tree(&p, removed)?;
        } else {
            std::fs::remove_file(&p).map_err(prep(format!("removing {}", p.display())))?;
            removed.push(p);
        }
    }
    std::fs::remove_dir(dir).map_err(prep(format!("removing {}", dir.display())))
}

/// Every entry of the map pinned at `path`, sorted by key (`sluice nat`).
pub fn pinned_map_entries(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let info = MapInfo::from_pin(path).map_err(io::Error::other)?;
    map_entries(info.id())
}

/// Every entry of a map by kernel id, sorted by key (for status, tests and diagnostics).
pub fn map_entries(map_id: u32) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let map = MapData::from_id(map_id).map_err(io::Error::other)?;
    let map = sysbpf::MapElems::new(map.fd().as_fd())?;
    let mut out = Vec::new();
    for key in map.keys()? {
        if let Some(value) = map.get(&key)? {
            out.push((key, value));
        }
    }
    out.sort();
    Ok(out)
}

/// The ids of the maps a program uses.
pub fn program_map_ids(program_id: u32) -> io::Result<Vec<u32>> {
    let info = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == program_id)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("program {program_id}")))?;
    let mut ids = info
        .map_ids()
        .map_err(io::Error::other)?
        .unwrap_or_default();
    ids.sort();
    Ok(ids)
}
