//! Packet builders shared by the kernel tests: plain bytes, written field by field so that
//! a test can also build broken packets.
#![allow(dead_code)]

use std::net::Ipv4Addr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    p.extend_from_slice(&ethertype.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// IPv4 header with `ihl` 4-byte words (options are NOPs), the raw flags+fragment-offset
/// field `frag`, then `l4`. `ihl` below 5 gives a broken header on purpose.
pub fn ipv4_raw(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, ihl: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let hlen = (ihl as usize * 4).max(20);
    let total = hlen + l4.len();
    let mut h = vec![0x40 | (ihl & 0x0f), 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend(std::iter::repeat_n(1u8, hlen - 20));
    h.extend_from_slice(l4);
    h
}

/// IPv4 with `opt_words` words of options and Don't Fragment set.
pub fn ipv4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, opt_words: u8, l4: &[u8]) -> Vec<u8> {
    ipv4_raw(proto, src, dst, 5 + opt_words, 0x4000, l4)
}

pub fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

pub fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 8, 0, 0]);
    u
}

/// SCTP common header (ports, verification tag, checksum).
pub fn sctp(sport: u16, dport: u16) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]);
    s
}

/// ICMP with identifier 1 and sequence 1 (as query messages carry them).
pub fn icmp(ty: u8, code: u8) -> Vec<u8> {
    let mut m = icmp_query(ty, 1);
    m[1] = code;
    m
}

/// ICMP type `ty`, code 0, identifier `id`, sequence 1.
pub fn icmp_query(ty: u8, id: u16) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

/// An IPv6 header (next header `proto`, fd00::1 → fd00::2), then `l4`.
pub fn ipv6(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[proto, 64]);
    for last in [1u8, 2] {
        h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
    }
    h.extend_from_slice(l4);
    h
}

/// A small deterministic generator, so that random-packet tests replay exactly.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}
