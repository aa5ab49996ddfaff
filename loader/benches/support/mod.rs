//! What the benchmarks share (`#[path]`-included by each bench target): the measurement
//! (BPF_PROG_TEST_RUN with `repeat`, trimmed mean), the reference programs every table is
//! read against (the empty program and the floor program), the bench cluster and its DSL
//! compile, and the machine description. One definition, so the benches' figures are
//! comparable.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_compiler::bpf::{Asm, MapDef, MapType, ObjectBuilder, ProgKind};
use sluice_compiler::datapath::{
    CodegenOptions, CtxLayout, EndpointArtifacts, MapContents, MapScope, Mode, ProgramArtifact,
    TcxHook, compile_endpoint, ct, keys, parse,
};
use sluice_compiler::plan::{Classes, DecisionTable};
use sluice_compiler::resolve::{self, Inventory, InventoryFiles};
use sluice_compiler::source::{SourceMap, dsl};
use sluice_loader::load::{LoadError, LoadOptions, LoadedObject};

pub const TC_ACT_OK: i32 = 0;
pub const TC_ACT_SHOT: i32 = 2;

/// Time one measurement aims at; `repeat` is chosen to fill it (at most `MAX_REPEAT`).
pub const TARGET: Duration = Duration::from_millis(250);
pub const MAX_REPEAT: u32 = 1_000_000;
/// Kernel measurements per row; the reported figure is their trimmed mean.
pub const RUNS: usize = 7;

/// The destination of every benchmark packet (the endpoint the policy protects).
pub const DST: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 10);

/// The bench cluster: the protected endpoint at [`DST`] and one other.
pub const INVENTORY: &str = "
nodes:
- {name: n1, ips: [192.168.100.1]}
endpoints:
- {name: target, namespace: x, labels: {app: target}, ips: [10.244.0.10], node: n1}
- {name: client, namespace: x, labels: {app: client}, ips: [10.244.0.11], node: n1}
";

/// Times of the compile stages, each measured on its own.
#[derive(Default, Clone, Copy)]
pub struct Stages {
    pub parse: Duration,
    pub lower_check: Duration,
    pub resolve_plan: Duration,
    pub codegen: Duration,
    pub load: Duration,
}

impl Stages {
    pub fn compile(&self) -> Duration {
        self.parse + self.lower_check + self.resolve_plan + self.codegen
    }
}

/// DSL text to the target endpoint's two programs.
pub fn compile(policy: &str, mode: Mode, st: &mut Stages) -> EndpointArtifacts {
    let t = Instant::now();
    let mut sources = SourceMap::new();
    let id = sources.add("bench.sluice", policy);
    let doc = dsl::parse(id, policy).unwrap_or_else(|d| panic!("parse: {d:?}"));
    st.parse = t.elapsed();
    let t = Instant::now();
    let inv = Inventory::parse("bench-inventory.yaml", INVENTORY).expect("inventory");
    let (ir, mut diags) = sluice_compiler::ir::lower(&[doc]);
    let named = inv.named_ports();
    let ir = sluice_compiler::ir::check::check(ir, Some(&named), &mut diags);
    assert!(!diags.has_errors(), "bench policy rejected");
    st.lower_check = t.elapsed();
    let t = Instant::now();
    let ids = resolve::identity::allocate(&inv, &ir);
    let classes = Classes::build(&inv, &ids, Some("n1"));
    let p = resolve::policy_for(&ir, &inv, &ids, 0);
    let ingress = p
        .ingress
        .as_ref()
        .map(|d| DecisionTable::build(d, &classes));
    let egress = p.egress.as_ref().map(|d| DecisionTable::build(d, &classes));
    st.resolve_plan = t.elapsed();
    let t = Instant::now();
    let opts = CodegenOptions {
        mode,
        ..CodegenOptions::default()
    };
    let arts =
        compile_endpoint(ingress.as_ref(), egress.as_ref(), &classes, &opts).expect("codegen");
    st.codegen = t.elapsed();
    arts
}

/// A bpffs directory for one load's pinned-by-name maps (conntrack), removed on drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new() -> PinDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = PathBuf::from(format!(
            "/sys/fs/bpf/sluice-bench-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("pin dir on bpffs");
        PinDir(p)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads an artifact and fills its maps.
pub fn load_artifact(art: &ProgramArtifact, pins: &PinDir) -> Result<LoadedObject, LoadError> {
    let obj = LoadedObject::load_with(
        &art.elf,
        &LoadOptions {
            pin_dir: Some(pins.0.clone()),
            map_pins: Vec::new(),
        },
    )?;
    obj.fill(&art.maps)?;
    Ok(obj)
}

/// Compiles and loads the target's programs; measures `to_ep` (its ingress policy).
pub fn measure_sluice(
    policy: &str,
    mode: Mode,
    pkt: &[u8],
) -> (Stages, Result<Measured, LoadError>) {
    let mut st = Stages::default();
    let arts = compile(policy, mode, &mut st);
    let pins = PinDir::new();
    let t = Instant::now();
    let loaded = load_artifact(&arts.to_ep, &pins)
        .and_then(|to| load_artifact(&arts.from_ep, &pins).map(|_from| to));
    st.load = t.elapsed();
    let mut to = match loaded {
        Ok(o) => o,
        Err(e) => return (st, Err(e)),
    };
    let insns = xlated_insns(&mut to, "to_ep").unwrap_or(0);
    let m = run_loaded(&to, "to_ep", insns, pkt).map(|mut m| {
        m.load = st.load;
        m
    });
    (st, m)
}

/// One measured program.
pub struct Measured {
    pub insns: usize,
    pub load: Duration,
    pub ns: f64,
    pub repeat: u32,
    pub retval: u32,
    /// The verifier's "instructions processed" (`None` before kernel 5.16).
    pub verified: Option<u32>,
}

/// Loads `elf` and measures program `name` on `pkt`.
pub fn measure(elf: &[u8], name: &str, insns: usize, pkt: &[u8]) -> Result<Measured, LoadError> {
    let t = Instant::now();
    let mut obj = LoadedObject::load(elf)?;
    let load = t.elapsed();
    let insns = xlated_insns(&mut obj, name).unwrap_or(insns);
    let mut m = run_loaded(&obj, name, insns, pkt)?;
    m.load = load;
    Ok(m)
}

/// Instructions of a loaded program as the kernel holds it (after its own rewrites).
pub fn xlated_insns(obj: &mut LoadedObject, name: &str) -> Option<usize> {
    let info = obj.ebpf_mut().program(name)?.info().ok()?;
    info.size_translated().map(|b| b as usize / 8)
}

/// Runs a loaded program on `pkt` (`load` is left zero for the caller).
pub fn run_loaded(
    obj: &LoadedObject,
    name: &str,
    insns: usize,
    pkt: &[u8],
) -> Result<Measured, LoadError> {
    let load = Duration::ZERO;
    // Calibrate: a short run says how many repeats fill TARGET.
    let probe = obj.test_run(name, pkt, 1_000)?;
    let per = probe.duration.as_nanos().max(1) as f64;
    let repeat = ((TARGET.as_nanos() as f64 / per) as u32).clamp(1_000, MAX_REPEAT);
    let mut runs = Vec::with_capacity(RUNS);
    let mut retval = probe.retval;
    for _ in 0..RUNS {
        let r = obj.test_run(name, pkt, repeat)?;
        retval = r.retval;
        // The kernel reports whole nanoseconds per run; a mean over runs keeps fractions.
        runs.push(r.duration.as_nanos() as f64);
    }
    runs.sort_by(f64::total_cmp);
    let kept = &runs[1..runs.len() - 1];
    Ok(Measured {
        insns,
        load,
        ns: kept.iter().sum::<f64>() / kept.len() as f64,
        repeat,
        retval,
        verified: obj.verified_insns(name).ok().flatten(),
    })
}

pub fn object(name: &str, a: Asm) -> (Vec<u8>, usize) {
    let prog = a.finish().expect("assemble");
    let insns = prog.insns.len();
    let mut obj = ObjectBuilder::new();
    obj.program(name, ProgKind::Classifier, prog)
        .expect("program");
    (obj.write().expect("write ELF"), insns)
}

/// The baseline: `return TC_ACT_OK`.
pub fn empty_program() -> (Vec<u8>, usize) {
    let mut a = Asm::new();
    a.ret(TC_ACT_OK);
    object("empty", a)
}

/// The floor program (issues 12 and 13): the least a stateful filter can do per packet.
/// It parses the frame with the datapath's own parser and does one conntrack lookup (the
/// forward key, `to_ep`'s scope, in an LRU hash of conntrack's size, 131,072 entries),
/// refreshing the entry's timestamp on a hit as conntrack does; a hit returns `TC_ACT_OK`,
/// anything else `TC_ACT_SHOT`. [`floor_maps`] fills the table so that the given packets
/// hit (only those: a full table's cache misses are not modelled). Built from
/// `ct::emit_lookup`, so it is exactly the established-flow path of a sluice program
/// without the policy around it.
pub fn floor_program() -> (Vec<u8>, usize) {
    let mut a = Asm::new();
    let malformed = a.label();
    let hit = a.label();
    parse::emit_parse(&mut a, CtxLayout::Tc, malformed);
    ct::emit_lookup(&mut a, TcxHook::Egress, false, hit);
    a.bind(malformed).ret(TC_ACT_SHOT).bind(hit).ret(TC_ACT_OK);
    let prog = a.finish().expect("assemble the floor program");
    let insns = prog.insns.len();
    let mut obj = ObjectBuilder::new();
    obj.map(floor_map_def()).expect("floor map");
    obj.program("floor", ProgKind::Classifier, prog)
        .expect("program");
    (obj.write().expect("write ELF"), insns)
}

/// Conntrack's table, but private to the program (not pinned), so the bench can fill it.
fn floor_map_def() -> MapDef {
    MapDef::new(
        keys::CT,
        MapType::LruHash,
        ct::KEY_SIZE,
        ct::VALUE_SIZE,
        ct::MAX_ENTRIES,
    )
}

/// The floor program's table holding an entry for each TCP `(saddr, daddr, sport, dport)`,
/// so that each of those packets hits.
pub fn floor_maps(flows: &[(Ipv4Addr, Ipv4Addr, u16, u16)]) -> Vec<MapContents> {
    let def = floor_map_def();
    let entries = flows
        .iter()
        .map(|&(s, d, sp, dp)| {
            let k = ct::key(
                s.octets(),
                d.octets(),
                sp,
                dp,
                parse::IPPROTO_TCP as u8,
                ct::scope(TcxHook::Egress),
            );
            (k, vec![0u8; ct::VALUE_SIZE as usize])
        })
        .collect();
    vec![MapContents {
        name: def.name.clone(),
        def,
        scope: MapScope::Program,
        entries,
    }]
}

/// Loads the floor program with its table filled for `flows` and measures it on `pkt`.
pub fn measure_floor(
    flows: &[(Ipv4Addr, Ipv4Addr, u16, u16)],
    pkt: &[u8],
) -> Result<Measured, LoadError> {
    let (elf, insns) = floor_program();
    let t = Instant::now();
    let mut obj = LoadedObject::load(&elf)?;
    obj.fill(&floor_maps(flows))?;
    let load = t.elapsed();
    let insns = xlated_insns(&mut obj, "floor").unwrap_or(insns);
    let mut m = run_loaded(&obj, "floor", insns, pkt)?;
    m.load = load;
    Ok(m)
}

/// First line of a load error, with the verifier's verdict when there is one.
pub fn short_error(e: &LoadError) -> String {
    let mut s = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    if let LoadError::Program {
        source: aya::programs::ProgramError::LoadError { verifier_log, .. },
        ..
    } = e
    {
        let log = verifier_log.to_string();
        if std::env::var_os("SLUICE_BENCH_LOG").is_some() {
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "verifier log tail:\n{}",
                lines[lines.len().saturating_sub(8)..].join("\n")
            );
        }
        if let Some(last) = log
            .lines()
            .rev()
            .find(|l| l.contains("too complex") || l.contains("too large") || l.contains("limit"))
        {
            s = format!("{s} (verifier: {})", last.trim());
        }
    }
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    pub date: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_owned());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |s| s.trim().to_owned());
    Machine {
        cpu,
        cpus,
        kernel,
        date: today_utc(),
    }
}

/// Today's date (UTC) as YYYY-MM-DD, from the days since the epoch (civil-from-days).
pub fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
