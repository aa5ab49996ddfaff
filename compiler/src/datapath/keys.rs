//! Map names, key layouts and the verdict code: what the generated code and the map entries
//! the compiler writes as data must agree on, in one place.
//!
//! Every layout here is documented in `spec/datapath.md`; the emitters in [`super::ct`],
//! [`super::decide`] and [`super::verdict`] build the same keys on the stack.

use crate::plan::table::Profile;
use crate::plan::{Proto, Verdict};
use crate::source::ast::Cidr;
use cranelift_entity::EntityRef;
use std::net::IpAddr;

pub use sluice_bundle::abi::*;

/// The code of a table verdict.
pub fn verdict_code(v: Verdict) -> u32 {
    let rule = v.rule.map_or(0, |r| r.index() as u32 + 1);
    assert!(
        rule <= code::MAX_RULE + 1,
        "rule id {rule} beyond the verdict code"
    );
    (rule << code::RULE_SHIFT)
        | if v.allow { code::ALLOW } else { 0 }
        | if v.audited { code::AUDITED } else { 0 }
}

/// ipcache value: `class u32 | tunnel endpoint u32 (network order, 0: not a remote pod)`.
pub const IPCACHE_VALUE_SIZE: u32 = 8;

pub fn ipcache_value(class: u32, tunnel: Option<std::net::Ipv4Addr>) -> Vec<u8> {
    let mut v = class.to_le_bytes().to_vec();
    v.extend_from_slice(&tunnel.map_or([0; 4], |t| t.octets()));
    v
}

/// ipcache key: `prefixlen u32 | addr u32 (network order)`; value: [`ipcache_value`].
pub fn ipcache_key(prefix: Cidr) -> Option<Vec<u8>> {
    let IpAddr::V4(addr) = prefix.canonical().addr else {
        return None;
    };
    let mut k = u32::from(prefix.prefix).to_le_bytes().to_vec();
    k.extend_from_slice(&addr.octets());
    Some(k)
}

/// Port map keys (`sluice_ports`, `sluice_policy`): an LPM key of 12 bytes
///
/// ```text
/// prefixlen u32 | id u32 | proto u8 | zero u8 | port u16 (network order)
/// ```
///
/// `id` is a profile or a class. Every field is aligned, as the verifier requires of stack
/// stores. A `/32` entry (the id alone) holds the verdict of protocols without ports; a
/// `/48 + n` entry a block of `2^(16-n)` ports of one protocol.
pub const PORT_KEY_SIZE: u32 = 12;
/// The prefix length that covers id, protocol and the zero byte.
pub const PORT_KEY_FIXED_BITS: u32 = 48;

pub fn port_key(id: u32, proto: u8, port: u16, port_bits: u8) -> Vec<u8> {
    let mut k = (PORT_KEY_FIXED_BITS + u32::from(port_bits))
        .to_le_bytes()
        .to_vec();
    k.extend_from_slice(&id.to_le_bytes());
    k.extend_from_slice(&[proto, 0]);
    k.extend_from_slice(&port.to_be_bytes());
    k
}

/// The entry for protocols without ports.
pub fn other_key(id: u32) -> Vec<u8> {
    let mut k = 32u32.to_le_bytes().to_vec();
    k.extend_from_slice(&id.to_le_bytes());
    k.extend_from_slice(&[0, 0, 0, 0]);
    k
}

/// `lo..=hi` as the fewest aligned prefix blocks `(base, bits)` (a block covers
/// `base..base + 2^(16 - bits)`), in ascending order.
pub fn port_blocks(lo: u16, hi: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(lo), u32::from(hi));
    while lo <= hi {
        // The largest aligned block starting at `lo` that stays within `hi`.
        let mut size = if lo == 0 {
            1 << 16
        } else {
            1 << lo.trailing_zeros()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, 16 - size.trailing_zeros() as u8));
        lo += size;
    }
    out
}

/// The entries of one protocol's segments under `id`, except those whose verdict is the
/// profile's port-less one: the `/32` entry of [`profile_entries`] gives them by longest
/// prefix match. A policy allowing 100k single ports is then 100k entries, not millions.
pub fn segment_entries(
    id: u32,
    proto: Proto,
    profile: &Profile,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) {
    for s in profile.segments(proto) {
        if s.verdict == profile.other {
            continue;
        }
        let value = verdict_code(s.verdict).to_le_bytes().to_vec();
        for (base, bits) in port_blocks(s.lo, s.hi) {
            out.push((port_key(id, proto.number(), base, bits), value.clone()));
        }
    }
}

/// The `/32` entry of `id`: the verdict of port-less protocols, and the default of every
/// port no segment entry covers.
pub fn other_entry(id: u32, profile: &Profile, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    out.push((
        other_key(id),
        verdict_code(profile.other).to_le_bytes().to_vec(),
    ));
}

/// Every entry a profile needs under `id`.
pub fn profile_entries(id: u32, profile: &Profile, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    other_entry(id, profile, out);
    for proto in Proto::ALL {
        segment_entries(id, proto, profile, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::RuleId;

    #[test]
    fn ct_pin_is_the_bundle_pin_name() {
        // `BundleBuilder::program` pins a persistent `sluice_x` as `x`; the loader opens CT_PIN.
        assert_eq!(CT.strip_prefix("sluice_"), Some(CT_PIN));
    }

    #[test]
    fn port_blocks_cover_exactly() {
        for (lo, hi) in [
            (0u16, 65535u16),
            (80, 80),
            (1, 65535),
            (1000, 2000),
            (0, 0),
            (65535, 65535),
            (3, 17),
        ] {
            let blocks = port_blocks(lo, hi);
            let mut next = u32::from(lo);
            for (base, bits) in &blocks {
                assert_eq!(u32::from(*base), next);
                let size = 1u32 << (16 - bits);
                assert_eq!(u32::from(*base) % size, 0, "aligned");
                next += size;
            }
            assert_eq!(next, u32::from(hi) + 1);
        }
        assert_eq!(port_blocks(0, 65535), vec![(0, 0)]);
        assert_eq!(port_blocks(1, 65535).len(), 16);
    }

    #[test]
    fn codes_round_trip() {
        let v = Verdict {
            allow: true,
            audited: true,
            rule: Some(RuleId::new(41)),
        };
        let d = decode(verdict_code(v));
        assert_eq!(
            (d.allow, d.audited, d.stage, d.rule),
            (true, true, Some(Stage::Policy), 42)
        );
        let d = decode(stage_code(false, Stage::Malformed));
        assert_eq!(
            (d.allow, d.stage, d.rule),
            (false, Some(Stage::Malformed), 0)
        );
        let t = decode_trace(42 << code::RULE_SHIFT | 3).unwrap();
        assert_eq!((t.allow, t.audited, t.rule), (true, true, 42));
        assert!(decode_trace(TRACE_REQUEST).is_none());
        const {
            assert!(
                TRACE_REQUEST < 1 << 31,
                "compared as a sign-extended immediate"
            )
        };
    }

    #[test]
    fn port_keys_are_aligned_lpm_keys() {
        let k = port_key(7, 6, 0x1f90, 16);
        assert_eq!(k.len() as u32, PORT_KEY_SIZE);
        assert_eq!(&k[0..4], &64u32.to_le_bytes());
        assert_eq!(&k[4..8], &7u32.to_le_bytes());
        assert_eq!(&k[8..12], &[6, 0, 0x1f, 0x90]);
    }
}
