//! The performance case (issue 4): what a verdict costs per packet as rules grow, against an
//! empty program and a naive linear rule chain, plus compile, load and swap times.
//!
//! Not a timed test: it measures, prints a table, and writes `bench/RESULTS.md` with the
//! machine, the date and the ratios, all from one run. `bench/run.sh` runs it. Every
//! program is really loaded (verified) and run with BPF_PROG_TEST_RUN on a crafted packet,
//! so it needs root. Usage: `datapath [--out FILE] [--quick]`.

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_compiler::bpf::{Asm, Cond, Reg};
use sluice_compiler::datapath::{CtxLayout, Mode, parse};
use support::*;

/// Rule counts of the ns/packet table.
const SIZES: &[usize] = &[10, 100, 2_048, 10_000, 100_000];
/// A compile predicted (quadratic growth from the previous size) to take longer is skipped.
const COMPILE_BUDGET: Duration = Duration::from_secs(180);

/// Whether compiling `n` rules fits the budget, judged from the last size compiled.
fn within_budget(last: Option<(usize, Duration)>, n: usize) -> Result<(), String> {
    let Some((m, t)) = last else { return Ok(()) };
    let predicted = t.as_secs_f64() * (n as f64 / m as f64).powi(2);
    if predicted > COMPILE_BUDGET.as_secs_f64() {
        Err(format!(
            "not compiled: {m} took {:.1} s, so {n} would take about {predicted:.0} s \
             (quadratic), over the {} s budget",
            t.as_secs_f64(),
            COMPILE_BUDGET.as_secs()
        ))
    } else {
        Ok(())
    }
}

/// ns per packet of generated programs against an empty program and a linear chain.
#[derive(clap::Parser)]
struct Args {
    /// Write the results table to this markdown file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Fewer repetitions (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Only these rule counts, e.g. `--sizes 10,2048`.
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn args() -> Args {
    <Args as clap::Parser>::parse()
}

/// The source address and destination port of rule `i` (distinct for every rule).
fn rule_addr(i: usize) -> Ipv4Addr {
    let i = i as u32;
    Ipv4Addr::new(172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

fn rule_port(i: usize) -> u16 {
    1024 + (i % 60_000) as u16
}

/// A TCP SYN from rule `i`'s address to its port.
fn packet_for_rule(i: usize) -> Vec<u8> {
    common::eth(
        common::ETH_P_IP,
        &common::ipv4(6, rule_addr(i), DST, 0, &common::tcp(40_000, rule_port(i))),
    )
}

/// A destination port no rule allows (rule ports stop at 61,023).
const NO_RULE_PORT: u16 = 65_000;

/// A TCP SYN from rule `i`'s address to a port no rule allows: every program denies it and
/// none inserts it into conntrack, so each of the `repeat` runs takes the whole decision
/// path (for the chain: every rule, the worst case).
fn packet_denied(i: usize) -> Vec<u8> {
    common::eth(
        common::ETH_P_IP,
        &common::ipv4(6, rule_addr(i), DST, 0, &common::tcp(40_000, NO_RULE_PORT)),
    )
}

/// `n` ingress rules for the target, rule `i` allowing its /32 on its port (the same
/// rules the linear chain tests).
fn rules_policy(n: usize) -> String {
    let mut s = String::from("policy \"bench\" in namespace x {\n  select app = target\n");
    for i in 0..n {
        let _ = writeln!(
            s,
            "  ingress allow from cidr {}/32 ports {}/tcp",
            rule_addr(i),
            rule_port(i)
        );
    }
    s.push_str("}\n");
    s
}

/// One rule allowing `n` distinct CIDRs (/24 to /32 mixed) on 443/tcp.
fn cidrs_policy(n: usize) -> String {
    let mut s = String::from(
        "policy \"cidrs\" in namespace x {\n  select app = target\n  ingress allow from ",
    );
    for i in 0..n {
        let i = i as u32;
        let (addr, len) = if i.is_multiple_of(4) {
            (Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24)
        } else {
            (Ipv4Addr::from(0x2000_0000 + i * 7), 32)
        };
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "cidr {addr}/{len}");
    }
    s.push_str(" ports 443/tcp\n}\n");
    s
}

/// Rules per block of the linear chain (see [`linear_chain`]).
const CHAIN_BLOCK: usize = 1024;

/// A naive rule chain in the shape of bpfilter's: parse once (the same parser sluice
/// uses), then test the rules one after another, a compare-and-jump per matcher (source
/// address, protocol, destination port); the first rule whose matchers all hold decides.
///
/// The layout is chosen so that the verifier accepts as long a chain as it can. Each rule
/// is `if saddr == X goto check_X`, falling through to the next rule, so a packet pays one
/// compare per rule it passes, as in bpfilter. The checks of the other matchers sit out of
/// line, a block of them before every [`CHAIN_BLOCK`] rules (jumped over once per block),
/// and go back to the next rule on a mismatch. The verifier then walks the chain once and
/// prunes every partial match against it. Written the obvious way (`if saddr != X goto
/// next` inline), the states of partial matches each walk the rest of the chain again and
/// verification grows with the square of the rule count (it fails near 1,400 rules).
fn linear_chain(rules: usize) -> (Vec<u8>, usize) {
    use Reg::*;
    let mut a = Asm::new();
    let malformed = a.label();
    let parsed = a.label();
    parse::emit_parse(&mut a, CtxLayout::Tc, malformed);
    a.ja(parsed).bind(malformed).ret(TC_ACT_SHOT).bind(parsed);
    // The source address as the packet has it (network order), in a scratch register.
    a.ldx(
        sluice_compiler::bpf::Size::W,
        R2,
        R10,
        sluice_compiler::datapath::frame::Var::Saddr.off(),
    );
    let mut i = 0;
    while i < rules {
        let block: Vec<usize> = (i..rules.min(i + CHAIN_BLOCK)).collect();
        let checks: Vec<_> = block.iter().map(|_| a.label()).collect();
        let nexts: Vec<_> = block.iter().map(|_| a.label()).collect();
        let body = a.label();
        a.ja(body);
        for (k, &r) in block.iter().enumerate() {
            a.bind(checks[k])
                .jmp(Cond::Ne, parse::L4_PROTO, parse::IPPROTO_TCP, nexts[k])
                .jmp(Cond::Ne, parse::L4_KEY, rule_port(r) as i32, nexts[k])
                .ret(TC_ACT_OK);
        }
        a.bind(body);
        for (k, &r) in block.iter().enumerate() {
            let saddr = u32::from_ne_bytes(rule_addr(r).octets()) as i32;
            a.jmp32(Cond::Eq, R2, saddr, checks[k]).bind(nexts[k]);
        }
        i += block.len();
    }
    a.ret(TC_ACT_SHOT);
    object("chain", a)
}

/// One row of the ns/packet table.
struct Row {
    program: String,
    /// The linear chain (the figure sluice rows are compared with).
    chain: bool,
    rules: Option<usize>,
    result: Result<Measured, String>,
}

fn main() {
    let args = args();
    let sizes: Vec<usize> = if let Some(s) = &args.sizes {
        s.clone()
    } else if args.quick {
        vec![10, 100, 2_048]
    } else {
        SIZES.to_vec()
    };
    if let Err(e) = sluice_loader::pin::ensure_bpffs() {
        eprintln!("warning: {e}");
    }
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();

    // 1. The empty program: the floor every other figure is compared with.
    let pkt = packet_denied(0);
    let (elf, insns) = empty_program();
    let empty = measure(&elf, "empty", insns, &pkt).expect("the empty program loads and runs");
    eprintln!("empty: {:.1} ns/packet", empty.ns);
    let empty_ns = empty.ns;
    rows.push(Row {
        program: "empty tc program".into(),
        chain: false,
        rules: None,
        result: Ok(empty),
    });

    // The floor: parse and one conntrack hit, the least a stateful filter does per packet.
    let floor = measure_floor(&[(rule_addr(0), DST, 40_000, NO_RULE_PORT)], &pkt);
    match &floor {
        Ok(m) => {
            assert_eq!(
                m.retval, TC_ACT_OK as u32,
                "the floor program's lookup hits"
            );
            eprintln!("floor: {:.1} ns/packet", m.ns);
        }
        Err(e) => eprintln!("floor: does not load: {}", short_error(e)),
    }
    rows.push(Row {
        program: "floor (parse + one conntrack-sized LRU hit)".into(),
        chain: false,
        rules: None,
        result: floor.map_err(|e| short_error(&e)),
    });

    // 2. The linear chain at every size; the packet matches the last rule (first match
    //    wins, so this is the chain's worst case for an allowed packet).
    let mut chain_ok: Vec<(usize, f64)> = Vec::new();
    let mut chain_fail: Option<usize> = None;
    for &n in &sizes {
        let (elf, insns) = linear_chain(n);
        let r = measure(&elf, "chain", insns, &packet_denied(n - 1));
        match &r {
            Ok(m) => {
                assert_eq!(m.retval, TC_ACT_SHOT as u32, "chain {n}: no rule allows");
                eprintln!("chain {n}: {:.1} ns/packet", m.ns);
                chain_ok.push((n, m.ns));
            }
            Err(e) => {
                eprintln!("chain {n}: does not load: {}", short_error(e));
                chain_fail.get_or_insert(n);
            }
        }
        rows.push(Row {
            program: "linear chain (bpfilter shape)".into(),
            chain: true,
            rules: Some(n),
            result: r.map_err(|e| short_error(&e)),
        });
    }
    // The largest chain that loads, between the last size that did and the first that
    // did not (bisection on the rule count).
    let largest_chain = chain_fail.map(|bad| {
        let mut lo = chain_ok
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n < bad)
            .max()
            .unwrap_or(1);
        let mut hi = bad;
        let mut best = None;
        while hi - lo > hi / 100 {
            let mid = lo + (hi - lo) / 2;
            let (elf, insns) = linear_chain(mid);
            match measure(&elf, "chain", insns, &packet_denied(mid - 1)) {
                Ok(m) => {
                    lo = mid;
                    best = Some((mid, m));
                }
                Err(_) => hi = mid,
            }
        }
        (lo, hi, best)
    });
    let largest_chain = largest_chain.map(|(lo, hi, best)| {
        let n = best.map(|(n, m)| {
            eprintln!("largest chain that loads: {n} rules (fails at {hi}; bisected from {lo})");
            chain_ok.push((n, m.ns));
            rows.push(Row {
                program: "linear chain, largest that loads".into(),
                chain: true,
                rules: Some(n),
                result: Ok(m),
            });
            n
        });
        (n, hi)
    });

    // 3. sluice, specialized and generic, on the same rules and the same packet.
    let mut compile_rows: Vec<(String, Stages, Result<(), String>)> = Vec::new();
    let mut last_compile: Option<(usize, Duration)> = None;
    for &n in &sizes {
        if let Err(why) = within_budget(last_compile, n) {
            eprintln!("sluice {n}: {why}");
            for mode in [Mode::Specialized, Mode::Generic] {
                rows.push(Row {
                    program: format!("sluice {}", mode_name(mode)),
                    chain: false,
                    rules: Some(n),
                    result: Err(why.clone()),
                });
            }
            compile_rows.push((format!("{n} rules"), Stages::default(), Err(why)));
            continue;
        }
        let policy = rules_policy(n);
        for mode in [Mode::Specialized, Mode::Generic] {
            let (st, r) = measure_sluice(&policy, mode, &packet_denied(n - 1));
            match &r {
                Ok(m) => {
                    assert_eq!(m.retval, TC_ACT_SHOT as u32, "sluice {n} {mode:?}: denied");
                    eprintln!(
                        "sluice {mode:?} {n}: {:.1} ns/packet (compile {:?}, load {:?})",
                        m.ns,
                        st.compile(),
                        st.load
                    );
                }
                Err(e) => eprintln!("sluice {mode:?} {n}: does not load: {}", short_error(e)),
            }
            if mode == Mode::Specialized {
                last_compile = Some((n, st.compile()));
                compile_rows.push((
                    format!("{n} rules"),
                    st,
                    r.as_ref().map(|_| ()).map_err(short_error),
                ));
            }
            rows.push(Row {
                program: format!("sluice {}", mode_name(mode)),
                chain: false,
                rules: Some(n),
                result: r.map_err(|e| short_error(&e)),
            });
        }
    }
    // An established flow: the allowed packet of the last rule, after its first run put it
    // in conntrack (every later run is a conntrack hit).
    if let Some(&n) = sizes
        .iter()
        .rev()
        .find(|&&n| n <= last_compile.map_or(0, |l| l.0))
    {
        let (_, r) = measure_sluice(&rules_policy(n), Mode::Specialized, &packet_for_rule(n - 1));
        rows.push(Row {
            program: "sluice specialized, established flow (conntrack hit)".into(),
            chain: false,
            rules: Some(n),
            result: r.map_err(|e| short_error(&e)),
        });
    }
    // Compile + load for the sizes of the issue, and 100k CIDRs in one rule.
    let compile_sizes: Vec<usize> = if args.quick {
        vec![10, 1_000]
    } else {
        vec![10, 1_000, 10_000, 100_000]
    };
    let mut last: Option<(usize, Duration)> = None;
    for &n in &compile_sizes {
        if let Some((_, st, _)) = compile_rows
            .iter()
            .find(|(name, _, r)| *name == format!("{n} rules") && r.is_ok())
        {
            last = Some((n, st.compile()));
            continue;
        }
        if let Err(why) = within_budget(last, n) {
            compile_rows.push((format!("{n} rules"), Stages::default(), Err(why)));
            continue;
        }
        let (st, r) = measure_sluice(&rules_policy(n), Mode::Specialized, &packet_denied(n - 1));
        last = Some((n, st.compile()));
        compile_rows.push((
            format!("{n} rules"),
            st,
            r.map(|_| ()).map_err(|e| short_error(&e)),
        ));
    }
    // CIDRs grow from 1k so the budget can stop a size that would take too long.
    let cidr_counts: Vec<usize> = if args.quick {
        vec![1_000, 10_000]
    } else {
        vec![1_000, 10_000, 100_000]
    };
    let mut last: Option<(usize, Duration)> = None;
    for n in cidr_counts {
        let name = format!("{n} CIDRs (one rule)");
        if let Err(why) = within_budget(last, n) {
            compile_rows.push((name, Stages::default(), Err(why)));
            continue;
        }
        let (st, r) = measure_sluice(&cidrs_policy(n), Mode::Specialized, &packet_denied(0));
        last = Some((n, st.compile()));
        compile_rows.push((name, st, r.map(|_| ()).map_err(|e| short_error(&e))));
    }
    compile_rows.sort_by_key(|(name, _, _)| {
        (
            name.contains("CIDR"),
            name.split(' ').next().and_then(|n| n.parse::<usize>().ok()),
        )
    });
    compile_rows.dedup_by(|a, b| a.0 == b.0);

    // 4. Report.
    let machine = machine();
    let mut md = String::new();
    let _ = writeln!(md, "# sluice benchmark results\n");
    let _ = writeln!(
        md,
        "Generated by `bench/run.sh` (`cargo bench -p sluice-loader --bench datapath`) on {}.\n",
        machine.date
    );
    let _ = writeln!(md, "| | |\n| --- | --- |");
    let _ = writeln!(md, "| CPU | {} ({} CPUs) |", machine.cpu, machine.cpus);
    let _ = writeln!(md, "| kernel | {} |", machine.kernel);
    let _ = writeln!(
        md,
        "| run time | {:.0} s{} |\n",
        started.elapsed().as_secs_f64(),
        if args.quick { " (--quick)" } else { "" }
    );
    let _ = writeln!(md, "## ns per packet (BPF_PROG_TEST_RUN)\n");
    let _ = writeln!(
        md,
        "Each figure is the kernel's own per-run time, the trimmed mean of {RUNS} runs of \
         `repeat` iterations (repeat fills ~{} ms, at most {MAX_REPEAT}). The packet is a TCP \
         SYN from the last rule's source address to a port no rule allows: every program \
         denies it and none puts it in conntrack, so every run takes the whole decision path \
         (the chain tests every rule: its worst case). sluice rows run `to_ep`, the \
         endpoint's ingress program, conntrack lookups included. The floor row parses the \
         packet and does one lookup that hits in an LRU hash of conntrack's size (its table \
         holds this packet's flow): the least a stateful filter does per packet.\n",
        TARGET.as_millis()
    );
    let _ = writeln!(
        md,
        "| program | rules | insns | load | repeat | ns/packet | × empty | chain ÷ this | \
         chain ÷ this, above empty |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let chain_at = |n: usize| chain_ok.iter().find(|(c, _)| *c == n).map(|(_, ns)| *ns);
    let mut notes = Vec::new();
    for r in &rows {
        let rules = r.rules.map_or("–".into(), |n| n.to_string());
        match &r.result {
            Ok(m) => {
                let chain = r.rules.filter(|_| !r.chain).and_then(chain_at);
                let vs_chain = chain.map_or("–".into(), |c| format!("{:.1}×", c / m.ns));
                let vs_chain_net = chain.map_or("–".into(), |c| {
                    let own = m.ns - empty_ns;
                    if own <= 0.5 {
                        format!(">{:.0}× (this ≤ empty + 0.5 ns)", (c - empty_ns) / 0.5)
                    } else {
                        format!("{:.1}×", (c - empty_ns) / own)
                    }
                });
                let _ = writeln!(
                    md,
                    "| {} | {rules} | {} | {:.1} ms | {} | {:.1} | {:.2}× | {vs_chain} | {vs_chain_net} |",
                    r.program,
                    m.insns,
                    m.load.as_secs_f64() * 1e3,
                    m.repeat,
                    m.ns,
                    m.ns / empty_ns,
                );
            }
            Err(e) => {
                let what = if e.starts_with("not compiled") {
                    "not compiled"
                } else {
                    "does not load"
                };
                let _ = writeln!(
                    md,
                    "| {} | {rules} | – | – | – | {what} | – | – | – |",
                    r.program
                );
                notes.push(format!("- {} at {rules} rules: {e}", r.program));
            }
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\n{}", notes.join("\n"));
    }
    if let Some((Some(n), hi)) = &largest_chain {
        let _ = writeln!(
            md,
            "\nThe linear chain stops loading between {n} and {hi} rules. The verifier walks \
             the chain once, leaving one unexplored branch (the partial match of each rule) \
             pending per rule, and the kernel allows at most 8,192 pending branches \
             (BPF_COMPLEXITY_LIMIT_JMP_SEQ). Larger chains need tail calls or loops, which \
             bpfilter-style generators split into; the per-rule cost stays linear. Sizes beyond \
             that are reported as not loading."
        );
    }
    let _ = writeln!(md, "\n## Compile + load\n");
    let _ = writeln!(
        md,
        "From DSL text to both programs of the protected endpoint loaded (verified) with their \
         maps filled, specialized mode. Each rule allows one /32 on its own port; the CIDR case \
         is one rule naming that many prefixes (a quarter /24, the rest /32).\n"
    );
    let _ = writeln!(
        md,
        "| policy | parse | lower + check | resolve + plan | codegen | load + fill | total |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    for (name, st, r) in &compile_rows {
        let load = match r {
            Ok(()) => ms(st.load),
            Err(e) => {
                let _ = writeln!(md, "| {name} | {e} | | | | | |");
                continue;
            }
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {load} | {} |",
            ms(st.parse),
            ms(st.lower_check),
            ms(st.resolve_plan),
            ms(st.codegen),
            ms(st.compile() + st.load)
        );
    }

    let _ = writeln!(md, "\n## Swap latency\n");
    let _ = writeln!(
        md,
        "Measured by the swap benchmark (`cargo bench -p sluice-loader --bench swap`); \
         `bench/run.sh` appends its table at the end of this file.\n"
    );

    // Targets.
    let ns_of = |program: &str, n: usize| {
        rows.iter()
            .find(|r| r.program == program && r.rules == Some(n))
            .and_then(|r| r.result.as_ref().ok())
            .map(|m| m.ns)
    };
    let _ = writeln!(md, "## Targets (issue 4)\n");
    let _ = writeln!(md, "| target | measured | met |\n| --- | --- | --- |");
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    for n in [2_048, 100_000] {
        if let Some(sp) = ns_of("sluice specialized", n) {
            let x = sp / empty_ns;
            let _ = writeln!(
                md,
                "| {n} rules: ≤ 1.5× the empty program | {x:.2}× ({sp:.1} vs {empty_ns:.1} ns) | {} |",
                yes(x <= 1.5)
            );
        }
    }
    if let (Some(sp), Some(ch)) = (ns_of("sluice specialized", 2_048), chain_at(2_048)) {
        let raw = ch / sp;
        let net = (ch - empty_ns) / (sp - empty_ns).max(0.5);
        let _ = writeln!(
            md,
            "| 2,048 rules: ≥ 100× faster than the linear chain | {raw:.1}× per packet; \
             {net:.1}× counting only the time above the empty program | {} |",
            yes(raw >= 100.0)
        );
    }
    if let Some((name, st, r)) = compile_rows
        .iter()
        .rev()
        .find(|(n, _, _)| n.contains("CIDR"))
    {
        let total = st.compile() + st.load;
        let measured = match r {
            Ok(()) => ms(total),
            Err(e) => e.clone(),
        };
        let _ = writeln!(
            md,
            "| 100k CIDRs compiled + loaded < 100 ms | {name}: {measured} | {} |",
            yes(r.is_ok() && total < Duration::from_millis(100) && name.starts_with("100000"))
        );
    }
    let _ = writeln!(
        md,
        "| swap p99 < 10 ms at 1k endpoints | see *Swap latency* at the end | – |"
    );

    // Why, with this run's numbers.
    let est = rows
        .iter()
        .find(|r| r.program.contains("established"))
        .and_then(|r| r.result.as_ref().ok())
        .map(|m| m.ns);
    let per_rule = chain_ok
        .iter()
        .max_by_key(|(n, _)| *n)
        .map(|(n, ns)| (ns - empty_ns) / *n as f64);
    let _ = writeln!(
        md,
        "\n## Why targets are missed, and what would close them\n"
    );
    if let (Some(sp), Some(est)) = (ns_of("sluice specialized", 2_048), est) {
        let _ = writeln!(
            md,
            "- **Per packet against the empty program.** The empty program only returns. Every \
             sluice program parses the packet and looks the flow up in conntrack (the flow and \
             its reverse, an LRU hash each) before the policy decision (an ipcache LPM lookup \
             and the decision itself). The conntrack part alone is the established-flow row: \
             {est:.1} ns against {empty_ns:.1} ns for the empty program, already {:.1}×; a new \
             flow at 2,048 rules costs {sp:.1} ns, and the same at 10,000 (flat in the rule \
             count). ≤ 1.5× leaves {:.1} ns for all of it, less than one hash lookup on this \
             machine. Closing it means taking lookups off the common path: no reverse lookup \
             unless the forward one misses and the direction can deny, the decision cached in \
             the conntrack entry (one lookup per established packet), and compare trees \
             instead of the ipcache for endpoints with few peers.",
            est / empty_ns,
            empty_ns * 0.5
        );
    }
    if let (Some(sp), Some(ch), Some(pr)) = (
        ns_of("sluice specialized", 2_048),
        chain_at(2_048),
        per_rule,
    ) {
        let _ = writeln!(
            md,
            "- **Against the linear chain at 2,048 rules.** The chain costs only about {pr:.2} ns \
             per rule it passes (one JIT-compiled compare each), so at 2,048 rules it is \
             {ch:.0} ns; 100× would need sluice at {:.1} ns, below the empty program. sluice's \
             cost is flat in the rule count (lookups, not compares) while the chain's grows \
             linearly, so the ratio grows with the rules; at this machine's figures 100× is \
             reached near {:.0}k rules, beyond the ~8k where the verifier stops accepting the \
             chain. Lowering sluice's fixed cost (above) is what moves the ratio at 2,048.",
            ch / 100.0,
            (100.0 * sp - empty_ns) / pr / 1000.0
        );
    }
    let _ = writeln!(
        md,
        "- **Compile time, 100k rules and 100k CIDRs.** The stage columns above say where the \
         time goes. Code generation and loading stay small (milliseconds of codegen; load + fill \
         is mostly the verifier and map writes); the front half (lower + check, resolve + plan) \
         dominates at 100k. Overlapping-CIDR detection and CIDR-peer resolution are sorted \
         sweeps; what remains grows with the number of peer classes. An agent that keeps the IR \
         and re-plans only the policies a change touches would take the front half off the \
         apply path."
    );
    let _ = writeln!(
        md,
        "- **Swap latency** at 1k endpoints (table at the end): only distinct programs are \
         loaded and only changed hooks flipped, but each CLI swap still reads and rewrites the \
         JSON state file for 2,000 hooks, lists their pins, and resolves every endpoint's \
         policy again. Closing it needs the long-running agent (hook state and link handles in \
         memory) and incremental compilation of only the endpoints a change touches."
    );

    print!("{md}");
    if let Some(path) = &args.out {
        std::fs::write(path, &md).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Specialized => "specialized",
        Mode::Generic => "generic",
    }
}
