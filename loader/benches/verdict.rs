//! Wasm verdict functions against the DSL (issue 13, item 5): what the translated verdict
//! examples cost per packet next to the same decision compiled from the DSL, the empty
//! program and the floor program, all in one run on the same packets.
//!
//! The decision: drop TCP SYNs to port 22 unless the source is in 10.0.0.0/8. Rows:
//! `examples/wasm/verdict/ssh-syn.wat` and the Rust `ssh-syn-guard` (built by
//! `examples/wasm/build.sh`), each as the standalone program `module translate` prints; the
//! endpoint's `to_ep` compiled from an admin-tier DSL policy; the empty program; the floor
//! (parse + one conntrack-sized LRU hit, `support::floor_program`). Each row also gives the
//! verifier's "instructions processed". Needs root (programs are loaded and test-run).
//! Prints a markdown section on stdout (`bench/run.sh` appends it to `bench/RESULTS.md`).
//! Usage: `verdict [--out FILE]` (FILE gets the section too).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../runtime/tests/support/examples_build.rs"]
mod examples_build;
#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use sluice_compiler::datapath::Mode;
use sluice_compiler::wasm_verdict::{OnTrap, VerdictModule, VerdictOutcome, standalone_program};
use sluice_loader::verdict_run::KernelVerdictRunner;
use support::*;

#[derive(clap::Parser)]
struct Args {
    /// Also write the section to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The same decision as the verdict examples, for the normal compiler: an admin-tier policy
/// on the protected endpoint's ingress (its `to_ep` program), first match wins. Port 22
/// from 10.0.0.0/8 is allowed, from anywhere else denied, and everything else falls through
/// to the default tier, where no policy selects the endpoint: allowed. The DSL has no TCP
/// flags; conntrack plays their part (only a packet that starts a flow is decided).
const DSL_POLICY: &str = r#"policy "ssh-guard" in namespace x {
  tier admin priority 10
  select app = target
  ingress allow from cidr 10.0.0.0/8 ports 22/tcp
  ingress deny from all ports 22/tcp
}
"#;

const INSIDE: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const SPORT: u16 = 40_000;
const TCP_ACK: u8 = 0x10;

/// One benchmark packet: a frame and what the verdict examples decide for it.
struct Packet {
    name: &'static str,
    src: Ipv4Addr,
    frame: Vec<u8>,
    verdict: VerdictOutcome,
}

fn packets() -> Vec<Packet> {
    let frame = |src: Ipv4Addr, flags: Option<u8>| {
        let mut l4 = common::tcp(SPORT, 22);
        if let Some(f) = flags {
            l4[13] = f;
        }
        common::eth(common::ETH_P_IP, &common::ipv4(6, src, DST, 0, &l4))
    };
    vec![
        Packet {
            name: "SYN to 22 from 10.1.2.3",
            src: INSIDE,
            frame: frame(INSIDE, None),
            verdict: VerdictOutcome::Allow,
        },
        Packet {
            name: "SYN to 22 from 192.168.1.1",
            src: OUTSIDE,
            frame: frame(OUTSIDE, None),
            verdict: VerdictOutcome::Deny,
        },
        Packet {
            name: "ACK (no SYN) to 22 from 192.168.1.1",
            src: OUTSIDE,
            frame: frame(OUTSIDE, Some(TCP_ACK)),
            verdict: VerdictOutcome::Pass,
        },
    ]
}

/// A measured program on each packet (same order as [`packets`]).
struct Row {
    program: String,
    results: Vec<Result<Measured, String>>,
}

/// A translated verdict example: checks its outcomes with [`KernelVerdictRunner`] (the exact
/// code in `cb[0]`), then measures it.
fn verdict_row(name: &str, wasm: &[u8], pkts: &[Packet]) -> Row {
    let m = VerdictModule::parse(wasm).unwrap_or_else(|e| panic!("{name}: {e}"));
    let art = standalone_program(&m, OnTrap::Deny).unwrap_or_else(|e| panic!("{name}: {e}"));
    let runner = KernelVerdictRunner::load(&art).unwrap_or_else(|e| panic!("{name}: {e}"));
    for p in pkts {
        let (_, code) = runner.run(&p.frame).expect("test run");
        assert_eq!(code, p.verdict.code(), "{name} on {}", p.name);
    }
    let results = pkts
        .iter()
        .map(|p| measure(&art.elf, &art.name, 0, &p.frame).map_err(|e| short_error(&e)))
        .collect();
    Row {
        program: format!("Wasm verdict `{name}`, translated (standalone)"),
        results,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    if let Err(e) = sluice_loader::pin::ensure_bpffs() {
        eprintln!("warning: {e}");
    }
    let load_before = loadavg();
    let pkts = packets();
    let mut rows = Vec::new();

    let (elf, insns) = empty_program();
    rows.push(Row {
        program: "empty tc program".into(),
        results: pkts
            .iter()
            .map(|p| measure(&elf, "empty", insns, &p.frame).map_err(|e| short_error(&e)))
            .collect(),
    });
    let flows: Vec<_> = pkts.iter().map(|p| (p.src, DST, SPORT, 22)).collect();
    rows.push(Row {
        program: "floor (parse + one conntrack-sized LRU hit)".into(),
        results: pkts
            .iter()
            .map(|p| measure_floor(&flows, &p.frame).map_err(|e| short_error(&e)))
            .collect(),
    });

    let wat_text = std::fs::read_to_string(examples_build::examples().join("verdict/ssh-syn.wat"))
        .expect("examples/wasm/verdict/ssh-syn.wat");
    let wat = wat::parse_str(&wat_text).expect("ssh-syn.wat assembles");
    rows.push(verdict_row("ssh-syn.wat", &wat, &pkts));
    let rust = examples_build::built_module("ssh-syn-guard");
    rows.push(verdict_row("ssh-syn-guard (Rust)", &rust, &pkts));

    rows.push(Row {
        program: "DSL, admin tier (`to_ep`, specialized, conntrack included)".into(),
        results: pkts
            .iter()
            .map(|p| {
                measure_sluice(DSL_POLICY, Mode::Specialized, &p.frame)
                    .1
                    .map_err(|e| short_error(&e))
            })
            .collect(),
    });
    let load_after = loadavg();

    let machine = machine();
    let mut md = String::new();
    let _ = writeln!(md, "\n## Wasm verdict functions\n");
    let _ = writeln!(
        md,
        "Generated by `cargo bench -p sluice-loader --bench verdict` on {}; {} ({} CPUs), \
         kernel {}; load average (1, 5, 15 min) {load_before} before, {load_after} after. \
         The decision is \"drop TCP SYNs to port 22 unless the source is in 10.0.0.0/8\" \
         (issue 13). Each figure is the kernel's per-run time, the trimmed mean of {RUNS} \
         `BPF_PROG_TEST_RUN` runs of `repeat` iterations (repeat fills ~{} ms, at most {MAX_REPEAT}), as above. \
         *insns* is the program as the kernel holds it, *verified* the verifier's \
         \"instructions processed\". The tc code is what the program returned (0 ok, 2 shot). The floor's table has \
         conntrack's size but holds only these three flows, so the cache misses of a full \
         table are not in its figure.\n",
        machine.date,
        machine.cpu,
        machine.cpus,
        machine.kernel,
        TARGET.as_millis()
    );
    let _ = writeln!(
        md,
        "| program | packet | insns | verified | tc code | repeat | ns/packet | × empty | × floor |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let ns_of = |row: usize, i: usize| rows[row].results[i].as_ref().ok().map(|m| m.ns);
    for row in &rows {
        for (i, (p, r)) in pkts.iter().zip(&row.results).enumerate() {
            match r {
                Ok(m) => {
                    let ratio = |base: Option<f64>| {
                        base.map_or("–".into(), |b| format!("{:.2}×", m.ns / b))
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
                        row.program,
                        p.name,
                        m.insns,
                        m.verified.map_or("–".into(), |v| v.to_string()),
                        m.retval,
                        m.repeat,
                        m.ns,
                        ratio(ns_of(0, i)),
                        ratio(ns_of(1, i)),
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | – | – | – | – | does not load: {e} | – | – |",
                        row.program, p.name
                    );
                }
            }
        }
    }
    explain(&mut md, &rows);
    print!("{md}");
    if let Some(path) = &args.out {
        std::fs::write(path, &md).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
    }
}

/// The mean ns/packet of a row over the packets (`None` if any did not run).
fn mean(row: &Row) -> Option<f64> {
    let ns: Option<Vec<f64>> = row
        .results
        .iter()
        .map(|r| r.as_ref().ok().map(|m| m.ns))
        .collect();
    ns.map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

/// What the figures mean, with this run's numbers (rows in the order `main` builds them).
fn explain(md: &mut String, rows: &[Row]) {
    let means: Option<Vec<f64>> = rows.iter().map(mean).collect();
    let Some(&[empty, floor, wat, rust, dsl]) = means.as_deref() else {
        let _ = writeln!(md, "\nA row did not run; see the table.");
        return;
    };
    let spread = rows[0]
        .results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|m| m.ns))
        .fold((f64::MAX, f64::MIN), |(lo, hi), ns| {
            (lo.min(ns), hi.max(ns))
        });
    let _ = writeln!(
        md,
        "\nWhat the figures mean (means over the three packets):\n"
    );
    let _ = writeln!(
        md,
        "- **The translated verdicts** cost {:.1} ns (`ssh-syn.wat`) and {:.1} ns (Rust) above \
         the empty program ({:.2}× and {:.2}× it), and {:.2}× / {:.2}× the floor. A verdict \
         function is straight-line code with direct packet loads and no helper calls or maps, \
         so what it adds per packet is a few nanoseconds. The standalone program is the \
         verdict alone; attached to an endpoint it runs inside that endpoint's program, \
         whose parse and conntrack (the floor) it does not remove.",
        wat - empty,
        rust - empty,
        wat / empty,
        rust / empty,
        wat / floor,
        rust / floor
    );
    let _ = writeln!(
        md,
        "- **The DSL row** is the endpoint's whole `to_ep` program: parse, conntrack (forward \
         and reverse lookups) and the policy decision: {dsl:.1} ns, {:.2}× the floor \
         ({floor:.1} ns). The decision itself costs little next to the lookups. The allowed \
         SYN goes into conntrack on its first run, so its later repeats are established-flow \
         hits (about the floor, as they should be); the denied packets are never inserted \
         and take the whole new-flow path every run. That path can come in under the floor: \
         the floor's lookup hits and refreshes the entry's timestamp (a `bpf_ktime_get_ns` \
         call and a store), which conntrack misses skip. The DSL has no TCP flags: the ACK from outside is denied as \
         a flow conntrack does not know, where the verdict passes it to the normal policy \
         (tc code 0 here). The two rows do not do the same work, so their ratio is not a \
         speed-up of Wasm over the DSL: it says the verdict's own cost is small next to the \
         stateful program it would sit in.",
        dsl / floor
    );
    let _ = writeln!(
        md,
        "- **Noise.** The machine is shared (load average above). Within this run the empty \
         program, identical work on each packet, ranged {:.1}–{:.1} ns; between runs on a \
         shared machine the figures move by more (several ns), so read the verdict rows as \
         \"a few to about 15 ns above empty\", not to the nanosecond. *insns* counts the \
         program after the kernel's rewrites; *verified* counts the instructions the \
         verifier walked over all paths (for the DSL program, its conntrack and policy \
         branches).",
        spread.0, spread.1
    );
}
