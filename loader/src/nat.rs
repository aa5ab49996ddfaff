//! The masquerade table's GC: frees the NAT mappings of flows that ended.
//!
//! Why it exists: the datapath only adds entries (`sluice_nat` is an LRU, so a full table
//! evicts the oldest, which can be a live, idle flow), and Cilium dropped traffic with "no
//! mapping" under many short-lived connections (cilium#33074) until its GC kept up. The
//! datapath stamps each entry with the time of its last packet and marks it closing when a
//! TCP FIN or RST goes through it (`sluice_bundle::abi::node::NAT`); this GC reads the
//! pinned table and deletes a mapping's forward and reverse entries together, as
//! conntrack's GC would: closing for longer than [`GcConfig::closing`] (TIME_WAIT), or idle
//! past its protocol's timeout. It is a library function so both `sluice nat gc` and the
//! agent's loop call it. Layout and timeouts: spec/datapath.md, "Masquerade".

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::MapData;
use serde::Serialize;
use sluice_bundle::abi::node::{
    NAT_CLOSING, NAT_FORWARD, NAT_KEY_SIZE, NAT_REVERSE, NAT_VALUE_SIZE,
};

use crate::sys::{bpf as sysbpf, clock};

const IPPROTO_TCP: u8 = 6;

/// How long an entry may stay, by state. The defaults are Cilium's conntrack lifetimes
/// (`--bpf-ct-timeout-regular-tcp` 6 h, `--bpf-ct-timeout-regular-any` 60 s, and
/// `CT_CLOSE_TIMEOUT` 10 s), which its NAT entries follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcConfig {
    /// A mapping that saw a FIN or RST, after its last packet.
    pub closing: Duration,
    /// An open TCP mapping, idle.
    pub tcp: Duration,
    /// UDP and ICMP echo, idle.
    pub other: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            closing: Duration::from_secs(10),
            tcp: Duration::from_secs(6 * 3600),
            other: Duration::from_secs(60),
        }
    }
}

/// What one GC pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Entries in the table when the pass began.
    pub scanned: usize,
    /// Entries deleted (a mapping's forward and reverse count two).
    pub freed: usize,
    /// Entries left.
    pub remaining: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("opening the NAT table pinned at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("{path} is not a NAT table (key {key} bytes, value {value} bytes)")]
    Layout {
        path: PathBuf,
        key: usize,
        value: usize,
    },
    #[error("{what} the NAT table pinned at {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An entry's GC state: closing, and the time of its last packet (`bpf_ktime_get_ns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    closing: bool,
    last_ns: u64,
}

impl Seen {
    fn of(value: &[u8]) -> Seen {
        Seen {
            closing: value[6] & NAT_CLOSING != 0,
            last_ns: u64::from_le_bytes(value[8..16].try_into().expect("16-byte value")),
        }
    }

    /// A mapping is as closing as either entry, and as recent as its newer one.
    fn merge(self, other: Seen) -> Seen {
        Seen {
            closing: self.closing || other.closing,
            last_ns: self.last_ns.max(other.last_ns),
        }
    }

    fn expired(self, proto: u8, now_ns: u64, cfg: &GcConfig) -> bool {
        let limit = if self.closing {
            cfg.closing
        } else if proto == IPPROTO_TCP {
            cfg.tcp
        } else {
            cfg.other
        };
        u128::from(now_ns.saturating_sub(self.last_ns)) > limit.as_nanos()
    }
}

/// The key of the other entry of the mapping `(key, value)` belongs to: a forward entry's
/// reverse is `(remote, node address, remote port, node port)`, and back.
fn partner(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(NAT_KEY_SIZE as usize);
    if key[13] == NAT_REVERSE {
        // (pod, remote, pod port, remote port).
        p.extend_from_slice(&value[0..4]);
        p.extend_from_slice(&key[0..4]);
        p.extend_from_slice(&value[4..6]);
        p.extend_from_slice(&key[8..10]);
        p.extend_from_slice(&[key[12], NAT_FORWARD, 0, 0]);
    } else {
        // (remote, node, remote port, node port).
        p.extend_from_slice(&key[4..8]);
        p.extend_from_slice(&value[0..4]);
        p.extend_from_slice(&key[10..12]);
        p.extend_from_slice(&value[4..6]);
        p.extend_from_slice(&[key[12], NAT_REVERSE, 0, 0]);
    }
    p
}

/// The keys to delete from `entries` at `now_ns`: both entries of every expired mapping,
/// and an entry whose partner is gone (evicted, or half-written) once it expires alone.
pub fn expired_keys(entries: &[(Vec<u8>, Vec<u8>)], now_ns: u64, cfg: &GcConfig) -> Vec<Vec<u8>> {
    let table: HashMap<&[u8], &[u8]> = entries
        .iter()
        .filter(|(k, v)| k.len() == NAT_KEY_SIZE as usize && v.len() >= NAT_VALUE_SIZE as usize)
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let mut done: HashSet<Vec<u8>> = HashSet::new();
    let mut out = Vec::new();
    // Forward entries first, so a mapping is judged once, from both of its entries.
    let mut keys: Vec<&[u8]> = table.keys().copied().collect();
    keys.sort_by_key(|k| (k[13] != NAT_FORWARD, k.to_vec()));
    for key in keys {
        if done.contains(key) {
            continue;
        }
        let value = table[key];
        let other = partner(key, value);
        let mut seen = Seen::of(value);
        let paired = table.get(other.as_slice()).copied();
        if let Some(v) = paired {
            seen = seen.merge(Seen::of(v));
        }
        done.insert(key.to_vec());
        if paired.is_some() {
            done.insert(other.clone());
        }
        if seen.expired(key[12], now_ns, cfg) {
            out.push(key.to_vec());
            if paired.is_some() {
                out.push(other);
            }
        }
    }
    out
}

/// One GC pass over the NAT table pinned at `path`: deletes every expired mapping (both
/// entries, forward first so no new flow is translated with a half-freed mapping).
pub fn gc(path: &Path, cfg: &GcConfig) -> Result<GcReport, NatError> {
    let io_err = |what| {
        let path = path.to_owned();
        move |source| NatError::Io { what, path, source }
    };
    let data = MapData::from_pin(path).map_err(|source| NatError::Open {
        path: path.to_owned(),
        source,
    })?;
    let map = sysbpf::MapElems::new(data.fd().as_fd()).map_err(io_err("reading"))?;
    if map.key_len() != NAT_KEY_SIZE as usize || map.value_len() != NAT_VALUE_SIZE as usize {
        return Err(NatError::Layout {
            path: path.to_owned(),
            key: map.key_len(),
            value: map.value_len(),
        });
    }
    let mut entries = Vec::new();
    for key in map.keys().map_err(io_err("listing"))? {
        if let Some(value) = map.get(&key).map_err(io_err("reading"))? {
            entries.push((key, value));
        }
    }
    // Taken after the read: an entry refreshed meanwhile looks younger, never older.
    let now = clock::monotonic_ns().map_err(io_err("reading the clock for"))?;
    let mut doomed = expired_keys(&entries, now, cfg);
    // Judged again from a fresh read of just those entries, so a packet (a reopening SYN)
    // that came during the scan saves its mapping; the window left is this read to the delete.
    if !doomed.is_empty() {
        let mut fresh = Vec::with_capacity(doomed.len());
        for key in doomed {
            if let Some(value) = map.get(&key).map_err(io_err("reading"))? {
                fresh.push((key, value));
            }
        }
        doomed = expired_keys(&fresh, now, cfg);
    }
    let mut freed = 0;
    for key in &doomed {
        if map.delete(key).map_err(io_err("deleting from"))? {
            freed += 1;
        }
    }
    let report = GcReport {
        scanned: entries.len(),
        freed,
        remaining: entries.len().saturating_sub(freed),
    };
    tracing::debug!(path = %path.display(), ?report, "NAT GC");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// A mapping's two entries: pod 10.244.1.10:40000 → 10.0.1.1:7000 via 192.168.10.11:41000.
    fn mapping(proto: u8, fwd: Seen, rev: Seen) -> Vec<(Vec<u8>, Vec<u8>)> {
        let entry = |k: [u8; 8], ports: [u16; 2], dir: u8, to: [u8; 4], port: u16, s: Seen| {
            let mut key = k.to_vec();
            key.extend_from_slice(&ports[0].to_le_bytes());
            key.extend_from_slice(&ports[1].to_le_bytes());
            key.extend_from_slice(&[proto, dir, 0, 0]);
            let mut v = to.to_vec();
            v.extend_from_slice(&port.to_le_bytes());
            v.extend_from_slice(&[if s.closing { NAT_CLOSING } else { 0 }, 0]);
            v.extend_from_slice(&s.last_ns.to_le_bytes());
            (key, v)
        };
        let (pod, remote, node) = ([10, 244, 1, 10], [10, 0, 1, 1], [192, 168, 10, 11]);
        let cat = |a: [u8; 4], b: [u8; 4]| {
            let mut k = [0; 8];
            k[..4].copy_from_slice(&a);
            k[4..].copy_from_slice(&b);
            k
        };
        vec![
            entry(
                cat(pod, remote),
                [40000, 7000],
                NAT_FORWARD,
                node,
                41000,
                fwd,
            ),
            entry(
                cat(remote, node),
                [7000, 41000],
                NAT_REVERSE,
                pod,
                40000,
                rev,
            ),
        ]
    }

    fn open(at: u64) -> Seen {
        Seen {
            closing: false,
            last_ns: at * SEC,
        }
    }

    #[test]
    fn partners_point_at_each_other() {
        let m = mapping(IPPROTO_TCP, open(0), open(0));
        assert_eq!(partner(&m[0].0, &m[0].1), m[1].0);
        assert_eq!(partner(&m[1].0, &m[1].1), m[0].0);
    }

    #[test]
    fn an_idle_established_flow_younger_than_its_timeout_survives() {
        let cfg = GcConfig::default();
        // Idle for 5 h 59 min: under TCP's 6 h.
        let m = mapping(IPPROTO_TCP, open(0), open(0));
        assert!(expired_keys(&m, (6 * 3600 - 60) * SEC, &cfg).is_empty());
        // Past it, both entries go.
        assert_eq!(expired_keys(&m, (6 * 3600 + 1) * SEC, &cfg).len(), 2);
        // UDP's 60 s.
        let u = mapping(17, open(0), open(0));
        assert!(expired_keys(&u, 59 * SEC, &cfg).is_empty());
        assert_eq!(expired_keys(&u, 61 * SEC, &cfg).len(), 2);
    }

    #[test]
    fn a_closed_flow_is_freed_after_the_closing_timeout_both_entries_together() {
        let cfg = GcConfig::default();
        // The reply's FIN marked the reverse entry; the forward one was seen later.
        let closing = Seen {
            closing: true,
            last_ns: 100 * SEC,
        };
        let m = mapping(IPPROTO_TCP, open(105), closing);
        assert!(
            expired_keys(&m, 114 * SEC, &cfg).is_empty(),
            "10 s after the last packet"
        );
        let mut doomed = expired_keys(&m, 116 * SEC, &cfg);
        doomed.sort();
        let mut both = vec![m[0].0.clone(), m[1].0.clone()];
        both.sort();
        assert_eq!(doomed, both);
    }

    #[test]
    fn an_orphan_entry_expires_alone() {
        let cfg = GcConfig::default();
        let m = mapping(17, open(0), open(0));
        let orphan = vec![m[1].clone()];
        assert_eq!(expired_keys(&orphan, 61 * SEC, &cfg), vec![m[1].0.clone()]);
        assert!(expired_keys(&orphan, 30 * SEC, &cfg).is_empty());
    }
}
