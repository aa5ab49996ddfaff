//! `sluice nat`: the node's masquerade table and counters, read from their pins (both are
//! shared across generations, so they survive swaps), and `sluice nat gc`, one pass of the
//! GC (`sluice_loader::nat::gc`) that frees finished and idle mappings. Layouts:
//! `sluice_bundle::abi::node` (`NAT`, `NAT_STATS`) and spec/datapath.md, "Masquerade".

use super::{Output, PinArgs};
use miette::{IntoDiagnostic, WrapErr};
use serde::Serialize;
use sluice_compiler::bundle::abi::node::*;
use sluice_loader::generation;
use sluice_loader::nat::GcConfig;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub pins: PinArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Free the mappings of finished and idle flows once (both entries of each), and print
    /// how many entries were freed.
    Gc(GcArgs),
}

/// Timeouts in seconds; the defaults are Cilium's conntrack lifetimes.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Seconds a mapping that saw a FIN or RST stays after its last packet.
    #[arg(long, value_name = "SECONDS", default_value_t = GcConfig::default().closing.as_secs_f64())]
    pub closing_timeout: f64,
    /// Seconds an open TCP mapping may stay idle.
    #[arg(long, value_name = "SECONDS", default_value_t = GcConfig::default().tcp.as_secs_f64())]
    pub tcp_timeout: f64,
    /// Seconds a UDP or ICMP echo mapping may stay idle.
    #[arg(long, value_name = "SECONDS", default_value_t = GcConfig::default().other.as_secs_f64())]
    pub other_timeout: f64,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub pins: PinArgs,
}

/// A timeout flag as a duration (a negative, infinite or NaN one is refused).
fn seconds(flag: &str, s: f64) -> miette::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|e| miette::miette!("--{flag} {s}: expected a number of seconds ≥ 0 ({e})"))
}

fn run_gc(args: GcArgs) -> miette::Result<ExitCode> {
    let cfg = GcConfig {
        closing: seconds("closing-timeout", args.closing_timeout)?,
        tcp: seconds("tcp-timeout", args.tcp_timeout)?,
        other: seconds("other-timeout", args.other_timeout)?,
    };
    let path = pin_path(&args.pins, NAT);
    let report = sluice_loader::nat::gc(&path, &cfg)
        .into_diagnostic()
        .wrap_err("NAT GC (is masquerade loaded?)")?;
    match args.output {
        Output::Json => println!("{}", serde_json::json!(report)),
        Output::Text => println!(
            "freed {} of {} NAT entries, {} left",
            report.freed, report.scanned, report.remaining
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The pin of one of sluice's maps under `--root` (named without the `sluice_` prefix).
fn pin_path(pins: &PinArgs, name: &str) -> std::path::PathBuf {
    pins.root.join(name.strip_prefix("sluice_").unwrap_or(name))
}

/// One NAT entry, decoded.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    /// `forward` (the pod's tuple → the node's) or `reverse` (a reply's → the pod's).
    pub dir: &'static str,
    pub proto: u8,
    pub src: String,
    pub dst: String,
    /// The translated address and port.
    pub to: String,
    /// A FIN or RST went through it: the GC frees it after the closing timeout.
    pub closing: bool,
    /// `bpf_ktime_get_ns` of its last packet.
    pub last_seen_ns: u64,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    pub mapped: u64,
    pub retries: u64,
    pub no_mapping: u64,
    pub reversed: u64,
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn port(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

/// Decodes a NAT entry (`None`: not the layout).
pub fn entry(k: &[u8], v: &[u8]) -> Option<Entry> {
    if k.len() != NAT_KEY_SIZE as usize || v.len() < NAT_VALUE_SIZE as usize {
        return None;
    }
    Some(Entry {
        dir: if k[13] == NAT_REVERSE {
            "reverse"
        } else {
            "forward"
        },
        proto: k[12],
        src: format!("{}:{}", ip(&k[0..4]), port(&k[8..10])),
        dst: format!("{}:{}", ip(&k[4..8]), port(&k[10..12])),
        to: format!("{}:{}", ip(&v[0..4]), port(&v[4..6])),
        closing: v[6] & NAT_CLOSING != 0,
        last_seen_ns: u64::from_le_bytes(v[8..16].try_into().ok()?),
    })
}

/// Sums a per-CPU u64 counter's values.
fn sum(v: &[u8]) -> u64 {
    v.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .sum()
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    if let Some(Action::Gc(gc)) = args.action {
        return run_gc(gc);
    }
    let pin = |name: &str| pin_path(&args.pins, name);
    let path = pin(NAT);
    let entries: Vec<Entry> = generation::pinned_map_entries(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading {} (is masquerade loaded?)", path.display()))?
        .iter()
        .filter_map(|(k, v)| entry(k, v))
        .collect();
    let path = pin(NAT_STATS);
    let stats = generation::pinned_map_entries(&path)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading {}", path.display()))?;
    let mut c = Counters::default();
    for (k, v) in &stats {
        let n = sum(v);
        match u32::from_le_bytes(k[..4].try_into().into_diagnostic()?) {
            NAT_STAT_MAPPED => c.mapped = n,
            NAT_STAT_RETRIES => c.retries = n,
            NAT_STAT_NO_MAPPING => c.no_mapping = n,
            NAT_STAT_REVERSED => c.reversed = n,
            _ => {}
        }
    }
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "entries": entries, "counters": c })
        ),
        Output::Text => {
            println!(
                "mapped {}  retries {}  no mapping (dropped) {}  replies reversed {}",
                c.mapped, c.retries, c.no_mapping, c.reversed
            );
            for e in &entries {
                println!(
                    "{:<8} proto {:<3} {:<22} -> {:<22} => {:<22}{}",
                    e.dir,
                    e.proto,
                    e.src,
                    e.dst,
                    e.to,
                    if e.closing { " closing" } else { "" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_entries_and_sums_counters() {
        // A reverse entry: 10.0.1.1:7000 → 192.168.10.11:40000, back to 10.244.1.10:40000.
        let mut k = vec![10, 0, 1, 1, 192, 168, 10, 11];
        k.extend_from_slice(&7000u16.to_le_bytes());
        k.extend_from_slice(&40000u16.to_le_bytes());
        k.extend_from_slice(&[6, NAT_REVERSE, 0, 0]);
        let mut v = vec![10, 244, 1, 10];
        v.extend_from_slice(&40000u16.to_le_bytes());
        v.extend_from_slice(&[NAT_CLOSING, 0]);
        v.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(
            entry(&k, &v),
            Some(Entry {
                dir: "reverse",
                proto: 6,
                src: "10.0.1.1:7000".into(),
                dst: "192.168.10.11:40000".into(),
                to: "10.244.1.10:40000".into(),
                closing: true,
                last_seen_ns: 7,
            })
        );
        assert_eq!(entry(&k[..8], &v), None, "not the layout");
        let per_cpu: Vec<u8> = [3u64, 4].iter().flat_map(|n| n.to_le_bytes()).collect();
        assert_eq!(sum(&per_cpu), 7);
    }
}
