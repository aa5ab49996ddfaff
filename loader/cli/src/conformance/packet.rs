//! Crafted packets for BPF_PROG_TEST_RUN: one Ethernet/IPv4 frame per probe cell.
//!
//! Each cell gets its own source port ([`SourcePorts`]) so that the conntrack entries one
//! cell's run leaves behind (the programs insert every allowed flow) can never make another
//! cell's packet look established or like a reply: a reply match needs the other flow's
//! source port to equal this one's destination port, and source ports are never probe ports.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use sluice_compiler::ir::L4;

use sluice_loader::trace;

/// One cell's packet, from `src:sport` to `dst:dport`, built as `sluice trace` builds its
/// probes: ICMP is an echo request (the port is ignored); TCP a SYN; SCTP a packet with an
/// INIT chunk; UDP an empty datagram.
pub fn craft(src: Ipv4Addr, dst: Ipv4Addr, proto: L4, sport: u16, dport: u16) -> Vec<u8> {
    let l4 = match proto {
        L4::Icmp => trace::L4::Icmp { r#type: 8, code: 0 },
        L4::Tcp | L4::Udp | L4::Sctp => trace::L4::Port {
            proto: proto.number(),
            port: dport,
        },
    };
    trace::build_packet(src, dst, l4, sport)
}

/// Source ports for crafted packets: unique within a run, never a probe port, and below the
/// kernel's ephemeral range (32768..) so real sockets of the same run never reuse one.
#[derive(Debug, Clone)]
pub struct SourcePorts {
    next: u16,
    avoid: BTreeSet<u16>,
}

/// First and last source port handed out (then it wraps; the engine clears conntrack before
/// each case, so a wrap only matters within one case of more than 31k cells).
pub const FIRST: u16 = 1024;
pub const LAST: u16 = 32767;

impl SourcePorts {
    /// Ports in `avoid` (every destination port of the case) are skipped.
    pub fn new(avoid: impl IntoIterator<Item = u16>) -> SourcePorts {
        SourcePorts {
            next: FIRST,
            avoid: avoid.into_iter().collect(),
        }
    }

    pub fn next_port(&mut self) -> u16 {
        loop {
            let p = self.next;
            self.next = if p >= LAST { FIRST } else { p + 1 };
            if !self.avoid.contains(&p) {
                return p;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_fields_where_the_parser_reads_them() {
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        for (proto, num, l4_len) in [
            (L4::Tcp, 6, 20),
            (L4::Udp, 17, 8),
            (L4::Sctp, 132, 32),
            (L4::Icmp, 1, 8),
        ] {
            let f = craft(a, b, proto, 4000, 80);
            assert_eq!(f.len(), 14 + 20 + l4_len, "{proto:?}");
            assert_eq!(&f[12..14], &[0x08, 0x00]);
            assert_eq!(f[23], num);
            assert_eq!(&f[26..30], &a.octets());
            assert_eq!(&f[30..34], &b.octets());
            if proto != L4::Icmp {
                assert_eq!(u16::from_be_bytes([f[34], f[35]]), 4000);
                assert_eq!(u16::from_be_bytes([f[36], f[37]]), 80);
            } else {
                assert_eq!(f[34], 8, "echo request");
            }
        }
    }

    #[test]
    fn source_ports_skip_probe_ports_and_stay_below_the_ephemeral_range() {
        let mut sp = SourcePorts::new([1024, 1025, 1027]);
        assert_eq!(sp.next_port(), 1026);
        assert_eq!(sp.next_port(), 1028);
        let mut seen = BTreeSet::new();
        for _ in 0..(LAST - FIRST) {
            let p = sp.next_port();
            assert!((FIRST..=LAST).contains(&p));
            assert!(![1024, 1025, 1027].contains(&p));
            seen.insert(p);
        }
        assert_eq!(
            seen.len(),
            usize::from(LAST - FIRST + 1) - 3,
            "every port used"
        );
    }
}
