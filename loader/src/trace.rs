//! `sluice trace`: ask the programs really attached right now what they do with one packet,
//! and which source rule decided.
//!
//! A trace never simulates policy. It finds the generation in force (the generation loader's
//! state file), follows each relevant hook's pinned tcx link to the program the kernel runs
//! there now, builds the packet (Ethernet, IPv4, L4, with a source port nobody uses), and
//! runs that program on it with `BPF_PROG_TEST_RUN`. Programs compiled with rule recording
//! leave their verdict code in `skb->cb[0]`, which the test run hands back; the bundle's
//! trace info (kept by the loader next to its state) turns the code's rule number into
//! `file:line:col`, the policy and the rule.
//!
//! Hooks: a packet from pod A to pod B passes A's `from_ep` (tcx ingress of A's host veth,
//! A's egress policy) and then B's `to_ep` (tcx egress of B's host veth, B's ingress policy);
//! to an address outside the inventory it passes only A's `from_ep`.
//!
//! Side effects: the probe's `cb[0]` carries [`keys::TRACE_REQUEST`], and a program with rule
//! recording then skips its conntrack insert, so a trace of an allowed flow leaves the shared
//! conntrack table (and every other map) as it was; the kernel test checks this. Test runs
//! send nothing: the packet never reaches a device or a socket.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::PathBuf;

use etherparse::{IpHeaders, IpNumber, Ipv4Header, PacketBuilder};
use serde::Serialize;
use sluice_bundle::abi::{self as keys, Decoded, Stage};
use sluice_bundle::trace_info::{EndpointEntry, RuleEntry, SourceLocation, TraceInfo};
use sluice_bundle::{Bundle, Digest, EndpointRef, TcxHook};

use crate::generation::{self, HookState, LoadOptions, State};
use crate::sys::bpf as sysbpf;

/// Why a trace could not run. Each message says what is missing.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("no sluice generation is loaded (no state file in {0}); run `sluice load` first")]
    NothingLoaded(PathBuf),
    #[error("reading the generation state: {0}")]
    State(String),
    #[error(
        "generation {generation} (bundle {bundle}) has no trace info in {path}: it was compiled without a rule table; pass its bundle with --bundle, or recompile and load it"
    )]
    NoTraceInfo {
        generation: u64,
        bundle: Digest,
        path: PathBuf,
    },
    #[error("{path}: {reason}")]
    BadTraceInfo { path: PathBuf, reason: String },
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error(
        "generation {generation} was compiled without rule recording: the programs cannot say which rule decides; recompile without --no-trace and load it"
    )]
    NoRuleRecording { generation: u64 },
    #[error("pod `{pod}` is not in the inventory of generation {generation}{}", known_list(.known))]
    UnknownPod {
        pod: String,
        generation: u64,
        known: Vec<String>,
    },
    #[error("pod name `{pod}` is ambiguous: {}; say namespace/name", .matches.join(", "))]
    AmbiguousPod { pod: String, matches: Vec<String> },
    #[error("pod {0} has no IPv4 address in the inventory")]
    NoIpv4(String),
    #[error(
        "{0} is not IPv4: the datapath does not judge IPv6 (an isolated direction drops it, others pass it), so there is nothing to trace"
    )]
    NotIpv4(IpAddr),
    #[error(
        "pod {endpoint} has no sluice program attached to its {hook} hook in generation {generation} ({what})"
    )]
    NotAttached {
        endpoint: EndpointRef,
        hook: &'static str,
        generation: u64,
        what: String,
    },
    #[error("{endpoint} {hook}: {what}: {source}")]
    Kernel {
        endpoint: EndpointRef,
        hook: &'static str,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{endpoint} {hook}: program {program_id} recorded no verdict (it was not compiled with rule recording)"
    )]
    NothingRecorded {
        endpoint: EndpointRef,
        hook: &'static str,
        program_id: u32,
    },
    #[error("invalid flow: {0}")]
    Flow(String),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (it has no endpoints)".into()
    } else {
        format!(" (it has: {})", known.join(", "))
    }
}

/// What the probe carries above IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum L4 {
    /// TCP (SYN), UDP or SCTP (INIT) to a port; `proto` is 6, 17 or 132.
    Port { proto: u8, port: u16 },
    /// ICMP with a type and code.
    Icmp { r#type: u8, code: u8 },
    /// Any other IP protocol, which carries no ports.
    Proto { proto: u8 },
}

impl L4 {
    pub fn proto(self) -> u8 {
        match self {
            L4::Port { proto, .. } | L4::Proto { proto } => proto,
            L4::Icmp { .. } => 1,
        }
    }

    /// `80/tcp`, `icmp 8/0`, `proto 47`.
    pub fn describe(self) -> String {
        match self {
            L4::Port { proto, port } => format!("{port}/{}", proto_name(proto)),
            L4::Icmp { r#type, code } => format!("icmp {type}/{code}"),
            L4::Proto { proto } => format!("proto {}", proto_name(proto)),
        }
    }
}

pub fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// A protocol by name (`tcp`, `udp`, `sctp`, `icmp`) or number.
pub fn parse_proto(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        "icmp" => Some(1),
        n => n.parse().ok(),
    }
}

/// The destination of a trace: a pod or an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Pod(String),
    Ip(IpAddr),
}

impl Target {
    /// An address if it parses as one, else a pod name.
    pub fn parse(s: &str) -> Target {
        s.parse()
            .map_or_else(|_| Target::Pod(s.to_owned()), Target::Ip)
    }
}

#[derive(Clone, Debug)]
pub struct TraceRequest {
    /// `namespace/name`, or a name that is unique across namespaces.
    pub from: String,
    pub to: Target,
    pub l4: L4,
    /// The source port (TCP/UDP/SCTP); `None`: a fresh one (see [`fresh_port`]).
    pub sport: Option<u16>,
}

/// Where the trace looks: the generation loader's options and, optionally, the bundle
/// directory of the generation in force (when its trace info was not kept).
#[derive(Clone, Debug, Default)]
pub struct TraceOptions {
    pub load: LoadOptions,
    pub bundle: Option<PathBuf>,
}

/// One end of the traced flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct End {
    pub addr: Ipv4Addr,
    /// The pod, when the address is one.
    pub endpoint: Option<EndpointRef>,
}

/// The packet a trace sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PacketSummary {
    pub src: End,
    pub dst: End,
    pub protocol: String,
    pub l4: L4,
    /// 0 for protocols without ports.
    pub sport: u16,
    pub bytes: usize,
}

/// What decided a hook, in words and, for a rule, where it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `policy`, `established`, `reply`, `malformed`, `not-ipv4`.
    pub stage: &'static str,
    /// The rule, when one decided.
    pub rule: Option<RuleEntry>,
    /// The rule number the program recorded (0: none).
    pub rule_id: u32,
    /// Why, when no rule decided: "no policy selects ... in this direction", "isolated ...".
    pub reason: Option<String>,
}

/// One hook's program run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookTrace {
    pub endpoint: EndpointRef,
    /// Whose policy this is: `egress` of the source or `ingress` of the destination.
    pub policy_direction: &'static str,
    /// The tcx hook on the host veth: `ingress` or `egress`.
    pub hook: TcxHook,
    pub interface: String,
    pub program: String,
    pub program_id: u32,
    pub link_id: u32,
    pub allow: bool,
    pub audited: bool,
    /// The program's return value (`TC_ACT_OK` 0, `TC_ACT_SHOT` 2).
    pub retval: u32,
    pub decision: Decision,
    /// False when an earlier hook drops the packet, so a real one never gets here.
    pub reached: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceReport {
    pub generation: u64,
    pub bundle: Digest,
    pub packet: PacketSummary,
    pub hooks: Vec<HookTrace>,
    pub allow: bool,
    pub audited: bool,
    /// Index into `hooks` of the hook that dropped the packet (the first that denies).
    pub denied_by: Option<usize>,
}

/// The generation in force and its trace info.
pub struct InForce {
    pub state: State,
    pub info: TraceInfo,
}

/// Reads the state and the trace info of the generation in force.
pub fn in_force(opts: &TraceOptions) -> Result<InForce, TraceError> {
    let state = generation::read_state(&opts.load.state_dir)
        .map_err(|e| TraceError::State(e.to_string()))?
        .ok_or_else(|| TraceError::NothingLoaded(opts.load.state_dir.clone()))?;
    let info = match &opts.bundle {
        Some(dir) => {
            let b = Bundle::read(dir).map_err(|e| TraceError::Bundle {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            if b.digest() != state.bundle {
                return Err(TraceError::Bundle {
                    path: dir.clone(),
                    reason: format!(
                        "this is bundle {}, but generation {} runs bundle {}",
                        b.digest(),
                        state.generation,
                        state.bundle
                    ),
                });
            }
            b.trace.ok_or_else(|| TraceError::NoTraceInfo {
                generation: state.generation,
                bundle: state.bundle,
                path: dir.join("manifest.json"),
            })?
        }
        None => {
            let path = generation::trace_info_path(&opts.load.state_dir, &state.bundle);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(TraceError::NoTraceInfo {
                        generation: state.generation,
                        bundle: state.bundle,
                        path,
                    });
                }
                Err(e) => {
                    return Err(TraceError::BadTraceInfo {
                        path,
                        reason: e.to_string(),
                    });
                }
            };
            TraceInfo::from_bytes(&bytes)
                .map_err(|reason| TraceError::BadTraceInfo { path, reason })?
        }
    };
    Ok(InForce { state, info })
}

fn endpoint_ref(e: &EndpointEntry) -> EndpointRef {
    EndpointRef {
        namespace: e.namespace.clone(),
        name: e.name.clone(),
    }
}

/// Finds a pod by `namespace/name` or by a name unique across namespaces.
pub fn find_pod<'a>(
    info: &'a TraceInfo,
    generation: u64,
    pod: &str,
) -> Result<&'a EndpointEntry, TraceError> {
    let matches: Vec<&EndpointEntry> = match pod.split_once('/') {
        Some((ns, name)) => info
            .endpoints
            .iter()
            .filter(|e| e.namespace == ns && e.name == name)
            .collect(),
        None => info.endpoints.iter().filter(|e| e.name == pod).collect(),
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(TraceError::UnknownPod {
            pod: pod.to_owned(),
            generation,
            known: info
                .endpoints
                .iter()
                .map(|e| format!("{}/{}", e.namespace, e.name))
                .collect(),
        }),
        many => Err(TraceError::AmbiguousPod {
            pod: pod.to_owned(),
            matches: many
                .iter()
                .map(|e| format!("{}/{}", e.namespace, e.name))
                .collect(),
        }),
    }
}

fn ipv4_of(e: &EndpointEntry) -> Option<Ipv4Addr> {
    e.ips.iter().find_map(|s| s.parse::<Ipv4Addr>().ok())
}

/// A source port unlikely to be in use, from the top of the ephemeral range (49152..=65535).
/// The first one is varied by process and time, so that two trace runs of one flow do not
/// share a conntrack key; later calls in the process step through the range, so they differ
/// from each other until it wraps.
pub fn fresh_port() -> u16 {
    static START: std::sync::LazyLock<u32> = std::sync::LazyLock::new(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        (nanos ^ std::process::id().rotate_left(13)).wrapping_mul(0x9e37_79b9)
    });
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ephemeral_port(START.wrapping_add(n))
}

/// The `x`-th port of the ephemeral range, wrapping.
fn ephemeral_port(x: u32) -> u16 {
    const FIRST: u16 = 49152;
    FIRST + (x % u32::from(u16::MAX - FIRST + 1)) as u16
}

/// The probe frame: Ethernet, a 20-byte IPv4 header, and a TCP SYN, a UDP datagram, an
/// SCTP INIT, an ICMP message (id 1, seq 1 for echo), or 8 zero bytes for other protocols.
/// IPv4, TCP, UDP and ICMP checksums are set (etherparse computes them); SCTP's CRC32c is
/// left 0, as no program checks it.
pub fn build_packet(src: Ipv4Addr, dst: Ipv4Addr, l4: L4, sport: u16) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, 64, IpNumber(l4.proto()), src.octets(), dst.octets())
        .expect("an empty payload fits");
    ip.identification = sport;
    ip.dont_fragment = true;
    // From a pod MAC to the host side of the veth (the programs do not look at MACs).
    let frame = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 1], [0xee; 6])
        .ip(IpHeaders::Ipv4(ip, Default::default()));
    let mut out = Vec::with_capacity(14 + 20 + 32);
    let written = match l4 {
        L4::Port { proto: 6, port } => frame.tcp(sport, port, 1, 64240).syn().write(&mut out, &[]),
        L4::Port { proto: 17, port } => frame.udp(sport, port).write(&mut out, &[]),
        L4::Port { proto, port } => {
            // etherparse has no SCTP: common header (verification tag 0 and checksum 0 in an
            // INIT), then an INIT chunk (type 1, length 20, initiate tag, a_rwnd, one
            // stream each way, initial TSN).
            let mut t = Vec::with_capacity(32);
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&port.to_be_bytes());
            t.extend_from_slice(&[0; 8]);
            t.extend_from_slice(&[1, 0, 0, 20]);
            t.extend_from_slice(&1u32.to_be_bytes());
            t.extend_from_slice(&65535u32.to_be_bytes());
            t.extend_from_slice(&[0, 1, 0, 1]);
            t.extend_from_slice(&1u32.to_be_bytes());
            frame.write(&mut out, IpNumber(proto), &t)
        }
        L4::Icmp { r#type, code } => frame
            .icmpv4_raw(r#type, code, [0, 1, 0, 1])
            .write(&mut out, &[]),
        L4::Proto { proto } => frame.write(&mut out, IpNumber(proto), &[0; 8]),
    };
    written.expect("a small frame written to a Vec");
    out
}

/// One test run: the program's return value and the verdict it recorded (`None` when it
/// recorded nothing). `probe`: mark the packet as a trace probe ([`keys::TRACE_REQUEST`]),
/// so the program does not insert into conntrack; otherwise it is treated like any packet.
pub fn run_recorded(
    prog: std::os::fd::BorrowedFd<'_>,
    packet: &[u8],
    probe: bool,
) -> std::io::Result<(u32, Option<Decoded>)> {
    // Not a probe: a value no verdict code has (stage 15), to tell "written" apart.
    let marker = if probe { keys::TRACE_REQUEST } else { u32::MAX };
    let mut ctx = [0u8; sysbpf::SK_BUFF_SIZE];
    let cb0 = sluice_bundle::abi::SKB_CB0 as usize;
    ctx[cb0..cb0 + 4].copy_from_slice(&marker.to_le_bytes());
    let run = sysbpf::prog_test_run_skb(prog, packet, &ctx)?;
    let out = u32::from_le_bytes(run.ctx_out[cb0..cb0 + 4].try_into().expect("4 bytes"));
    let recorded = (out != marker).then(|| keys::decode(out));
    Ok((run.retval, recorded.filter(|d| d.stage.is_some())))
}

fn stage_name(s: Option<Stage>) -> &'static str {
    match s {
        Some(Stage::Policy) => "policy",
        Some(Stage::Established) => "established",
        Some(Stage::Reply) => "reply",
        Some(Stage::Malformed) => "malformed",
        Some(Stage::NotIpv4) => "not-ipv4",
        Some(Stage::WasmVerdict) => "wasm-verdict",
        Some(Stage::WasmTrap) => "wasm-trap",
        None => "unknown",
    }
}

fn decision(d: &Decoded, info: &TraceInfo, endpoint: &EndpointRef, dir: &str) -> Decision {
    let rule = info.rules.get(d.rule).cloned();
    let reason = match (d.stage, &rule) {
        (Some(Stage::WasmTrap), Some(r)) => Some(format!(
            "the verdict module trapped; its rule says on-trap {}",
            r.verdict.as_ref().map_or("deny", |v| v.on_trap.as_str())
        )),
        (_, Some(_)) => None,
        (Some(Stage::WasmVerdict | Stage::WasmTrap), None) => Some(format!(
            "verdict rule number {} is not in the generation's rule table",
            d.rule
        )),
        (Some(Stage::Policy), None) if d.rule != 0 => Some(format!(
            "rule number {} is not in the generation's rule table",
            d.rule
        )),
        (Some(Stage::Policy), None) if d.allow => Some(format!(
            "no policy restricts {dir} of {endpoint} for this packet"
        )),
        (Some(Stage::Policy), None) => Some(format!(
            "{endpoint} is isolated for {dir} and no rule allows this packet"
        )),
        (Some(Stage::Established), _) => {
            Some("conntrack: the flow was allowed before (established)".into())
        }
        (Some(Stage::Reply), _) => {
            Some("conntrack: a reply to a flow the other direction allowed".into())
        }
        (Some(Stage::Malformed), _) => Some("a malformed header".into()),
        (Some(Stage::NotIpv4), _) if d.allow => {
            Some("not IPv4: ARP, or a direction no policy enforces".into())
        }
        (Some(Stage::NotIpv4), _) => Some(format!(
            "neither IPv4 nor ARP, and {endpoint} is isolated for {dir}: IPv6 is not enforced yet, so it is dropped"
        )),
        (None, _) => Some("unknown stage".into()),
    };
    Decision {
        stage: stage_name(d.stage),
        rule_id: d.rule,
        rule,
        reason,
    }
}

/// The hook state of an endpoint's hook, or why there is none.
fn hook_of<'s>(
    state: &'s State,
    ep: &EndpointRef,
    hook: TcxHook,
) -> Result<&'s HookState, TraceError> {
    state
        .hooks
        .iter()
        .find(|h| h.endpoint == *ep && h.hook == hook)
        .ok_or_else(|| TraceError::NotAttached {
            endpoint: ep.clone(),
            hook: hook.as_str(),
            generation: state.generation,
            what: "the generation has no attachment for it".into(),
        })
}

/// Runs the program attached at one hook now.
fn run_hook(
    state: &State,
    info: &TraceInfo,
    ep: &EndpointRef,
    hook: TcxHook,
    packet: &[u8],
) -> Result<HookTrace, TraceError> {
    let h = hook_of(state, ep, hook)?;
    let kernel = |what: &str| {
        let what = what.to_owned();
        move |source| TraceError::Kernel {
            endpoint: ep.clone(),
            hook: hook.as_str(),
            what,
            source,
        }
    };
    let link = generation::pinned_link_info(&h.pin).map_err(|e| TraceError::NotAttached {
        endpoint: ep.clone(),
        hook: hook.as_str(),
        generation: state.generation,
        what: format!("its link pin {} cannot be read: {e}", h.pin.display()),
    })?;
    if link.ifindex == 0 {
        return Err(TraceError::NotAttached {
            endpoint: ep.clone(),
            hook: hook.as_str(),
            generation: state.generation,
            what: format!("interface {} is gone; the link is defunct", h.iface),
        });
    }
    if link.prog_id != h.program_id {
        tracing::warn!(
            endpoint = %ep,
            hook = hook.as_str(),
            state = h.program_id,
            live = link.prog_id,
            "the link runs another program than the state file says; tracing the live one"
        );
    }
    let prog = sysbpf::prog_fd_by_id(link.prog_id)
        .map_err(kernel(&format!("opening program {}", link.prog_id)))?;
    let pinfo = sysbpf::prog_info(prog.as_fd()).map_err(kernel("reading program info"))?;
    let (retval, recorded) =
        run_recorded(prog.as_fd(), packet, true).map_err(kernel("BPF_PROG_TEST_RUN"))?;
    let d = recorded.ok_or_else(|| TraceError::NothingRecorded {
        endpoint: ep.clone(),
        hook: hook.as_str(),
        program_id: link.prog_id,
    })?;
    let dir = hook.policy_direction().as_str();
    Ok(HookTrace {
        endpoint: ep.clone(),
        policy_direction: dir,
        hook,
        interface: h.iface.clone(),
        program: pinfo.name,
        program_id: link.prog_id,
        link_id: link.link_id,
        allow: d.allow,
        audited: d.audited,
        retval,
        decision: decision(&d, info, ep, dir),
        reached: true,
    })
}

/// Traces one flow through the generation in force. A swap while it runs (the state file
/// names another generation afterwards, or a program went away) makes it start over, so the
/// report never mixes two generations.
pub fn trace(req: &TraceRequest, opts: &TraceOptions) -> Result<TraceReport, TraceError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let InForce { state, info } = in_force(opts)?;
        let result = trace_in(req, &state, &info);
        let now = generation::read_state(&opts.load.state_dir)
            .map_err(|e| TraceError::State(e.to_string()))?
            .map(|s| s.generation);
        if now == Some(state.generation) || attempts == 3 {
            return result;
        }
        tracing::info!(from = state.generation, to = ?now, "a swap happened during the trace; again");
    }
}

/// [`trace`] with the state and trace info already read.
pub fn trace_in(
    req: &TraceRequest,
    state: &State,
    info: &TraceInfo,
) -> Result<TraceReport, TraceError> {
    if !info.rule_recording {
        return Err(TraceError::NoRuleRecording {
            generation: state.generation,
        });
    }
    let src = find_pod(info, state.generation, &req.from)?;
    let src_ref = endpoint_ref(src);
    let src_addr = ipv4_of(src).ok_or_else(|| TraceError::NoIpv4(src_ref.to_string()))?;
    let (dst_addr, dst) = match &req.to {
        Target::Pod(p) => {
            let e = find_pod(info, state.generation, p)?;
            let a = ipv4_of(e)
                .ok_or_else(|| TraceError::NoIpv4(format!("{}/{}", e.namespace, e.name)))?;
            (a, Some(e))
        }
        Target::Ip(IpAddr::V4(a)) => {
            let owner = info
                .endpoints
                .iter()
                .find(|e| e.ips.iter().any(|s| s.parse::<Ipv4Addr>().ok() == Some(*a)));
            (*a, owner)
        }
        Target::Ip(ip) => return Err(TraceError::NotIpv4(*ip)),
    };
    let dst_ref = dst.map(endpoint_ref);
    if dst_ref.as_ref() == Some(&src_ref) {
        return Err(TraceError::Flow(format!(
            "{src_ref} to itself never leaves the pod, so no hook sees it"
        )));
    }
    let sport = match req.l4 {
        L4::Port { .. } => req.sport.unwrap_or_else(fresh_port),
        _ => 0,
    };
    let packet = build_packet(src_addr, dst_addr, req.l4, sport);

    let mut hooks = vec![run_hook(state, info, &src_ref, TcxHook::Ingress, &packet)?];
    if let Some(d) = &dst_ref {
        let mut t = run_hook(state, info, d, TcxHook::Egress, &packet)?;
        t.reached = hooks[0].allow;
        hooks.push(t);
    }
    let denied_by = hooks.iter().position(|h| !h.allow);
    let allow = denied_by.is_none();
    let audited = hooks
        .iter()
        .take(denied_by.map_or(hooks.len(), |i| i + 1))
        .any(|h| h.audited);
    Ok(TraceReport {
        generation: state.generation,
        bundle: state.bundle,
        packet: PacketSummary {
            src: End {
                addr: src_addr,
                endpoint: Some(src_ref),
            },
            dst: End {
                addr: dst_addr,
                endpoint: dst_ref,
            },
            protocol: proto_name(req.l4.proto()),
            l4: req.l4,
            sport,
            bytes: packet.len(),
        },
        hooks,
        allow,
        audited,
        denied_by,
    })
}

fn verdict_word(allow: bool, audited: bool) -> &'static str {
    match (allow, audited) {
        (true, false) => "ALLOW",
        (true, true) => "ALLOW (audited)",
        (false, _) => "DENY",
    }
}

fn location_text(l: &Option<SourceLocation>) -> String {
    l.as_ref()
        .map_or_else(|| "(no source text)".into(), |l| l.to_string())
}

/// The report as text: the flow, one line per hook with its verdict and why, the result.
pub fn render_text(r: &TraceReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let end = |e: &End| match &e.endpoint {
        Some(ep) => format!("{ep} ({})", e.addr),
        None => format!("{} (not a pod)", e.addr),
    };
    let port = match r.packet.l4 {
        L4::Port { .. } => format!(" from port {}", r.packet.sport),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "trace {} -> {}, {}{port}",
        end(&r.packet.src),
        end(&r.packet.dst),
        r.packet.l4.describe()
    );
    let _ = writeln!(
        out,
        "generation {} (bundle {})",
        r.generation,
        &r.bundle.hex()[..12]
    );
    for h in &r.hooks {
        let _ = writeln!(
            out,
            "  {} {} policy: tcx {} of {} ({} id {}){}",
            h.endpoint,
            h.policy_direction,
            h.hook.as_str(),
            h.interface,
            h.program,
            h.program_id,
            if h.reached {
                ""
            } else {
                " [a real packet is dropped before it gets here]"
            }
        );
        let why = match (&h.decision.rule, &h.decision.reason) {
            (Some(rule), reason) => format!(
                "{} {} ({} {}, {} tier){}",
                location_text(&rule.location),
                rule.describe(),
                rule.direction,
                rule.action,
                rule.tier,
                reason
                    .as_ref()
                    .map_or_else(String::new, |r| format!("; {r}"))
            ),
            (None, Some(reason)) => reason.clone(),
            (None, None) => String::new(),
        };
        let _ = writeln!(out, "    {:<16} {}", verdict_word(h.allow, h.audited), why);
    }
    let decided = match r.denied_by {
        Some(i) => format!(
            ", dropped by {} {} policy",
            r.hooks[i].endpoint, r.hooks[i].policy_direction
        ),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "verdict: {}{decided}",
        verdict_word(r.allow, r.audited)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TraceInfo {
        TraceInfo {
            format: 1,
            rule_recording: true,
            rules: Default::default(),
            endpoints: vec![
                EndpointEntry {
                    namespace: "x".into(),
                    name: "a".into(),
                    ips: vec!["fd00::1".into(), "10.0.0.1".into()],
                },
                EndpointEntry {
                    namespace: "y".into(),
                    name: "a".into(),
                    ips: vec![],
                },
                EndpointEntry {
                    namespace: "y".into(),
                    name: "b".into(),
                    ips: vec![],
                },
            ],
        }
    }

    #[test]
    fn pods_by_name_and_namespace() {
        let i = info();
        assert_eq!(find_pod(&i, 1, "y/b").unwrap().name, "b");
        assert_eq!(find_pod(&i, 1, "b").unwrap().namespace, "y");
        let e = find_pod(&i, 1, "a").unwrap_err().to_string();
        assert!(e.contains("ambiguous") && e.contains("x/a, y/a"), "{e}");
        let e = find_pod(&i, 7, "z/q").unwrap_err().to_string();
        assert!(
            e.contains("`z/q` is not in the inventory of generation 7") && e.contains("x/a"),
            "{e}"
        );
        assert_eq!(
            ipv4_of(find_pod(&i, 1, "x/a").unwrap()),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
    }

    /// RFC 1071 sum of `bytes` (written here, apart from the builder): a correct checksum
    /// makes the sum over the covered bytes, checksum included, come out as 0xffff.
    fn ones_complement_sum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// The TCP/UDP pseudo-header (RFC 793/768) followed by the segment.
    fn with_pseudo_header(ip: &[u8], segment: &[u8]) -> Vec<u8> {
        let mut v = ip[12..20].to_vec();
        v.extend_from_slice(&[0, ip[9]]);
        v.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        v.extend_from_slice(segment);
        v
    }

    #[test]
    fn packets_are_well_formed() {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        for (l4, len) in [
            (L4::Port { proto: 6, port: 80 }, 20),
            (
                L4::Port {
                    proto: 17,
                    port: 53,
                },
                8,
            ),
            (
                L4::Port {
                    proto: 132,
                    port: 9,
                },
                32,
            ),
            (L4::Icmp { r#type: 8, code: 0 }, 8),
            (L4::Icmp { r#type: 3, code: 4 }, 8),
            (L4::Proto { proto: 47 }, 8),
        ] {
            let p = build_packet(s, d, l4, 50000);
            let what = l4.describe();
            assert_eq!(p.len(), 14 + 20 + len, "{what}");
            let (ip, seg) = (&p[14..34], &p[34..]);
            assert_eq!(
                ones_complement_sum(ip),
                0xffff,
                "{what}: IPv4 header checksum"
            );
            match l4 {
                L4::Port { proto: 6 | 17, .. } => assert_eq!(
                    ones_complement_sum(&with_pseudo_header(ip, seg)),
                    0xffff,
                    "{what}: L4 checksum"
                ),
                L4::Icmp { .. } => {
                    assert_eq!(ones_complement_sum(seg), 0xffff, "{what}: ICMP checksum")
                }
                _ => {}
            }

            // An independent parser sees the headers where the programs read them.
            let sliced = SlicedPacket::from_ethernet(&p).expect(&what);
            let Some(NetSlice::Ipv4(v4)) = &sliced.net else {
                panic!("{what}: not IPv4: {:?}", sliced.net)
            };
            let h = v4.header();
            assert_eq!(h.protocol().0, l4.proto(), "{what}");
            assert_eq!((h.source_addr(), h.destination_addr()), (s, d), "{what}");
            assert_eq!(h.total_len() as usize, p.len() - 14, "{what}");
            assert!(h.dont_fragment() && h.ttl() == 64, "{what}");
            match (l4, &sliced.transport) {
                (L4::Port { proto: 6, port }, Some(TransportSlice::Tcp(t))) => {
                    assert_eq!((t.source_port(), t.destination_port()), (50000, port));
                    assert!(t.syn() && !t.ack() && !t.rst() && !t.fin());
                }
                (L4::Port { proto: 17, port }, Some(TransportSlice::Udp(u))) => {
                    assert_eq!((u.source_port(), u.destination_port()), (50000, port));
                    assert_eq!(u.length(), 8);
                }
                (L4::Icmp { r#type, code }, Some(TransportSlice::Icmpv4(i))) => {
                    assert_eq!((i.type_u8(), i.code_u8()), (r#type, code));
                }
                (L4::Port { proto: 132, port }, None) => {
                    assert_eq!(u16::from_be_bytes([seg[0], seg[1]]), 50000);
                    assert_eq!(u16::from_be_bytes([seg[2], seg[3]]), port);
                    assert_eq!(&seg[12..16], &[1, 0, 0, 20], "INIT chunk of 20 bytes");
                }
                (L4::Proto { .. }, None) => assert_eq!(seg, &[0; 8]),
                (_, t) => panic!("{what}: transport {t:?}"),
            }
        }
    }

    /// Whole frames, checksums included, as an independent implementation (Python's
    /// struct and an RFC 1071 sum) built them.
    #[test]
    fn packets_match_known_good_bytes() {
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let hex = |p: Vec<u8>| p.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(build_packet(s, d, L4::Port { proto: 6, port: 80 }, 50000)),
            "eeeeeeeeeeee020000000001080045000028c35040004006637d0a0000010a000002\
             c350005000000001000000005002faf0dd4d0000"
        );
        assert_eq!(
            hex(build_packet(s, d, L4::Icmp { r#type: 3, code: 4 }, 0)),
            "eeeeeeeeeeee02000000000108004500001c00004000400126df0a0000010a000002\
             0304fcf900010001"
        );
    }

    #[test]
    fn fresh_ports_stay_ephemeral_and_differ_between_calls() {
        assert_eq!(ephemeral_port(0), 49152);
        assert_eq!(ephemeral_port(16383), 65535);
        assert_eq!(
            ephemeral_port(16384),
            49152,
            "wraps to the start of the range"
        );
        assert_eq!(ephemeral_port(u32::MAX), 49152 + (u32::MAX % 16384) as u16);
        let ports: Vec<u16> = (0..1000).map(|_| fresh_port()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(
            distinct.len(),
            ports.len(),
            "no port repeats within a process"
        );
    }

    #[test]
    fn targets_and_protocols_parse() {
        assert_eq!(
            Target::parse("10.1.2.3"),
            Target::Ip("10.1.2.3".parse().unwrap())
        );
        assert_eq!(Target::parse("x/web"), Target::Pod("x/web".into()));
        assert_eq!(parse_proto("SCTP"), Some(132));
        assert_eq!(parse_proto("47"), Some(47));
        assert_eq!(parse_proto("gre"), None);
    }

    /// A verdict decided by a Wasm module names its rule, module and digest; a trap also says
    /// that its `on-trap` decided; a number missing from the table says so.
    #[test]
    fn wasm_verdict_decisions_name_the_module() {
        use sluice_bundle::trace_info::{RuleEntry, RuleTable, VerdictEntry};
        let mut i = info();
        i.rules = RuleTable(vec![RuleEntry {
            id: 1,
            policy: "guard".into(),
            name: Some("ssh".into()),
            index: 1,
            direction: "ingress".into(),
            action: "verdict".into(),
            tier: "admin (priority 5)".into(),
            location: None,
            verdict: Some(VerdictEntry {
                module: "ssh.wasm".into(),
                sha256: "ab".repeat(32),
                on_trap: "allow".into(),
            }),
        }]);
        let ep = EndpointRef {
            namespace: "x".into(),
            name: "a".into(),
        };
        let code = |allow, stage, rule| keys::decode(keys::rule_stage_code(allow, stage, rule));
        let d = decision(&code(false, Stage::WasmVerdict, 1), &i, &ep, "ingress");
        assert_eq!((d.stage, d.reason.as_deref()), ("wasm-verdict", None));
        let rule = d.rule.unwrap();
        assert_eq!(
            rule.describe(),
            format!(
                "verdict rule `ssh` of policy `guard`: module ssh.wasm (sha256 {})",
                "ab".repeat(32)
            )
        );
        let d = decision(&code(true, Stage::WasmTrap, 1), &i, &ep, "ingress");
        assert_eq!(d.stage, "wasm-trap");
        assert_eq!(
            d.reason.as_deref(),
            Some("the verdict module trapped; its rule says on-trap allow")
        );
        let d = decision(&code(false, Stage::WasmVerdict, 9), &i, &ep, "ingress");
        assert!(d.rule.is_none());
        assert!(d.reason.unwrap().contains("number 9 is not in"));
    }
}
