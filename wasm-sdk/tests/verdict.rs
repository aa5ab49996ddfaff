//! The SDK's verdict half natively: `#[verdict]` leaves the function callable, and the
//! `Packet` accessors are big-endian with `get_*` bounds-checked at every edge.

use sluice_wasm_sdk::verdict::{Packet, Verdict, verdict};

#[verdict]
fn decide(p: &Packet) -> Verdict {
    match p.get_u8(0) {
        Some(4) => Verdict::Allow,
        Some(_) => Verdict::Deny,
        None => Verdict::Pass,
    }
}

#[test]
fn the_function_stays_an_ordinary_one() {
    assert_eq!(decide(&Packet::from_bytes(&[4])), Verdict::Allow);
    assert_eq!(decide(&Packet::from_bytes(&[5])), Verdict::Deny);
    assert_eq!(decide(&Packet::from_bytes(&[])), Verdict::Pass);
    assert_eq!(Verdict::Deny as i32, 2);
}

#[test]
fn accessors() {
    let bytes = [0x12, 0x34, 0x56, 0x78, 0x9a];
    let p = Packet::from_bytes(&bytes);
    assert_eq!(p.len(), 5);
    assert_eq!(p.u16(1), 0x3456);
    assert_eq!(p.u32(1), 0x3456_789a);
    assert_eq!(p.get_u32(1), Some(0x3456_789a));
    assert_eq!(p.get_u32(2), None);
    assert_eq!(p.get_u16(4), None);
    assert_eq!(p.get_u8(4), Some(0x9a));
    assert_eq!(p.get_u8(5), None);
    assert_eq!(p.get_u8(usize::MAX), None);
    assert!(p.has(5, 0) && !p.has(6, 0) && !p.has(usize::MAX, 2));
}

#[test]
#[should_panic]
fn a_load_past_the_end_panics_natively_as_it_traps_in_wasm() {
    Packet::from_bytes(&[1, 2, 3]).u16(2);
}
