//! `sluice nat`: the node's masquerade table and counters, read from their pins (both are
//! shared across generations, so they survive swaps). Layouts: `sluice_bundle::abi::node`
//! (`NAT`, `NAT_STATS`) and spec/datapath.md, "Masquerade".

use super::{Output, PinArgs};
use miette::{IntoDiagnostic, WrapErr};
use serde::Serialize;
use sluice_compiler::bundle::abi::node::*;
use sluice_loader::generation;
use std::net::Ipv4Addr;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub pins: PinArgs,
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
    })
}

/// Sums a per-CPU u64 counter's values.
fn sum(v: &[u8]) -> u64 {
    v.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .sum()
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let pin = |name: &str| {
        args.pins
            .root
            .join(name.strip_prefix("sluice_").unwrap_or(name))
    };
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
                    "{:<8} proto {:<3} {:<22} -> {:<22} => {}",
                    e.dir, e.proto, e.src, e.dst, e.to
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
        v.extend_from_slice(&[0, 0]);
        assert_eq!(
            entry(&k, &v),
            Some(Entry {
                dir: "reverse",
                proto: 6,
                src: "10.0.1.1:7000".into(),
                dst: "192.168.10.11:40000".into(),
                to: "10.244.1.10:40000".into(),
            })
        );
        assert_eq!(entry(&k[..8], &v), None, "not the layout");
        let per_cpu: Vec<u8> = [3u64, 4].iter().flat_map(|n| n.to_le_bytes()).collect();
        assert_eq!(sum(&per_cpu), 7);
    }
}
