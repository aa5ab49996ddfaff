//! Which cells of a case also run over real sockets.
//!
//! Every cell runs through BPF_PROG_TEST_RUN; real TCP and UDP connections between the
//! namespaces check a sample, so that the programs are also seen enforcing on live hooks
//! (routing, both veths, conntrack on replies). The sample is deterministic (a seed and the
//! case name fix it, so a failure replays) and takes allowed and denied cells alike, so a
//! datapath that dropped everything or passed everything fails. SCTP is left out: this
//! kernel has no SCTP sockets.

use sluice_compiler::conformance::{Expect, Probe};
use sluice_compiler::ir::L4;

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `seed` and a name (FNV-1a), never zero.
    pub fn new(seed: u64, name: &str) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// The first `k` of a Fisher-Yates shuffle of `xs`.
    pub fn choose<T: Copy>(&mut self, xs: &[T], k: usize) -> Vec<T> {
        let mut v = xs.to_vec();
        let k = k.min(v.len());
        for i in 0..k {
            let j = i + self.below(v.len() - i);
            v.swap(i, j);
        }
        v.truncate(k);
        v
    }
}

/// Whether a cell can run over sockets: TCP or UDP, not loopback.
pub fn socket_eligible(p: &Probe) -> bool {
    matches!(p.protocol, L4::Tcp | L4::Udp) && !p.loopback
}

/// Indexes into `cells` of up to `size` eligible cells: half allowed and half denied where
/// the case has enough of each, the rest from whichever has more. Sorted.
pub fn sample(cells: &[&Probe], size: usize, seed: u64, case: &str) -> Vec<usize> {
    let mut rng = Rng::new(seed, case);
    let (allowed, denied): (Vec<usize>, Vec<usize>) = (0..cells.len())
        .filter(|&i| socket_eligible(cells[i]))
        .partition(|&i| cells[i].expect == Expect::Allow);
    let half = size / 2;
    let take_allowed = allowed.len().min(size - half.min(denied.len()));
    let take_denied = denied.len().min(size - take_allowed);
    let mut out = rng.choose(&allowed, take_allowed);
    out.extend(rng.choose(&denied, take_denied));
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(i: u16, protocol: L4, expect: Expect) -> Probe {
        Probe {
            from: "x/a".into(),
            to: "x/b".into(),
            port: i,
            protocol,
            expect,
            loopback: false,
            asserted: false,
        }
    }

    #[test]
    fn half_and_half_when_both_suffice_and_deterministic() {
        let probes: Vec<Probe> = (0..100)
            .map(|i| {
                let proto = [L4::Tcp, L4::Udp, L4::Sctp][usize::from(i) % 3];
                let e = if i % 4 == 0 {
                    Expect::Allow
                } else {
                    Expect::Deny
                };
                probe(i, proto, e)
            })
            .collect();
        let cells: Vec<&Probe> = probes.iter().collect();
        let s = sample(&cells, 24, 7, "case-a");
        assert_eq!(s.len(), 24);
        let allowed = s
            .iter()
            .filter(|&&i| cells[i].expect == Expect::Allow)
            .count();
        assert_eq!(allowed, 12);
        assert!(s.iter().all(|&i| cells[i].protocol != L4::Sctp));
        assert_eq!(s, sample(&cells, 24, 7, "case-a"), "same seed, same sample");
        assert_ne!(
            s,
            sample(&cells, 24, 8, "case-a"),
            "another seed, another sample"
        );
    }

    #[test]
    fn the_short_side_is_filled_from_the_other() {
        let mut probes: Vec<Probe> = (0..50).map(|i| probe(i, L4::Tcp, Expect::Allow)).collect();
        probes.extend((50..53).map(|i| probe(i, L4::Udp, Expect::Deny)));
        let cells: Vec<&Probe> = probes.iter().collect();
        let s = sample(&cells, 24, 1, "c");
        assert_eq!(s.len(), 24);
        let denied = s
            .iter()
            .filter(|&&i| cells[i].expect == Expect::Deny)
            .count();
        assert_eq!(denied, 3);
        // Everything allowed: all of the sample is allowed cells.
        let only: Vec<&Probe> = cells[..50].to_vec();
        assert_eq!(sample(&only, 24, 1, "c").len(), 24);
        assert_eq!(sample(&only[..5], 24, 1, "c").len(), 5);
    }
}
