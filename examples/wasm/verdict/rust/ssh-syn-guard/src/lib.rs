//! A verdict function: deny TCP SYNs (SYN set, ACK clear) to port 22 unless the source is in
//! 10.0.0.0/8, which is allowed; pass everything else to the normal policy.
//!
//! The same decision as `../ssh-syn.wat`, written with the SDK. Two things trap, which the
//! policy turns into its fail-closed verdict: a TCP header cut short (the loads past the end
//! trap in the host) and an IPv4 header length below 20 (a panic).
// no_std where it runs; natively (for `cargo test`) std brings the panic machinery.
#![cfg_attr(target_arch = "wasm32", no_std)]

use sluice_wasm_sdk::verdict::{Packet, Verdict, verdict};

const TCP: u8 = 6;
const SSH: u16 = 22;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

#[verdict]
fn decide(p: &Packet) -> Verdict {
    if p.len() < 20 || p.u8(0) >> 4 != 4 || p.u8(9) != TCP {
        return Verdict::Pass;
    }
    let l4 = usize::from(p.u8(0) & 0x0f) * 4;
    // A header shorter than 20 bytes is malformed. Panicking traps, and the policy turns the
    // trap into its fail-closed verdict.
    assert!(l4 >= 20, "IPv4 header length below 20 bytes");
    if p.u16(l4 + 2) != SSH || p.u8(l4 + 13) & (SYN | ACK) != SYN {
        return Verdict::Pass;
    }
    if p.u32(12) >> 24 == 10 {
        Verdict::Allow
    } else {
        Verdict::Deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(src: [u8; 4], dport: u16, flags: u8) -> [u8; 40] {
        let mut p = [0u8; 40];
        p[0] = 0x45;
        p[9] = TCP;
        p[12..16].copy_from_slice(&src);
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[33] = flags;
        p
    }

    #[test]
    fn decides() {
        let d = |p: &[u8]| decide(&Packet::from_bytes(p));
        assert_eq!(d(&syn([192, 168, 1, 1], 22, SYN)), Verdict::Deny);
        assert_eq!(d(&syn([10, 9, 8, 7], 22, SYN)), Verdict::Allow);
        assert_eq!(d(&syn([192, 168, 1, 1], 22, SYN | ACK)), Verdict::Pass);
        assert_eq!(d(&syn([192, 168, 1, 1], 443, SYN)), Verdict::Pass);
        assert_eq!(d(&[0x45; 19]), Verdict::Pass);
    }

    #[test]
    #[should_panic(expected = "below 20")]
    fn a_short_ip_header_panics() {
        let mut p = syn([192, 168, 1, 1], 22, SYN);
        p[0] = 0x44;
        decide(&Packet::from_bytes(&p));
    }
}
