//! Kernel proof of the packet parser (`sluice_compiler::datapath::parse`): for every field it
//! promises, a program runs the parser and returns that field, and BPF_PROG_TEST_RUN on
//! crafted packets (hand-picked and pseudo-random) must give what an independent Rust
//! parser reads from the same bytes. Runs on both the tc and the XDP context. Needs root.

use std::net::Ipv4Addr;

use sluice_compiler::bpf::{Asm, ObjectBuilder, ProgKind, Program, Reg, Size};
use sluice_compiler::datapath::CtxLayout;
use sluice_compiler::datapath::frame::Var;
use sluice_compiler::datapath::parse::{self, emit_parse};
use sluice_loader::load::LoadedObject;

mod common;
use common::*;

/// What a malformed packet returns; no field in the tests takes this value.
const MALFORMED: u32 = 0xdead_beef;

/// The fields the parser promises, and how a program returns each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    L3,
    L4,
    Key,
    Saddr,
    Daddr,
    Sport,
    L4Off,
    IcmpType,
    IcmpCode,
}

const FIELDS: [Field; 9] = [
    Field::L3,
    Field::L4,
    Field::Key,
    Field::Saddr,
    Field::Daddr,
    Field::Sport,
    Field::L4Off,
    Field::IcmpType,
    Field::IcmpCode,
];

impl Field {
    fn prog_name(self, hook: CtxLayout) -> String {
        let h = match hook {
            CtxLayout::Tc => "tc",
            CtxLayout::Xdp => "xdp",
        };
        format!("{h}_{self:?}").to_lowercase()
    }

    fn program(self, hook: CtxLayout) -> Program {
        let mut a = Asm::new();
        let bad = a.label();
        emit_parse(&mut a, hook, bad);
        match self {
            Field::L3 => a.mov64(Reg::R0, parse::L3_PROTO),
            Field::L4 => a.mov64(Reg::R0, parse::L4_PROTO),
            Field::Key => a.mov64(Reg::R0, parse::L4_KEY),
            Field::Saddr => a.ldx(Size::W, Reg::R0, Reg::R10, Var::Saddr.off()),
            Field::Daddr => a.ldx(Size::W, Reg::R0, Reg::R10, Var::Daddr.off()),
            Field::Sport => a.ldx(Size::H, Reg::R0, Reg::R10, Var::Sport.off()),
            Field::L4Off => a.ldx(Size::H, Reg::R0, Reg::R10, Var::L4Off.off()),
            Field::IcmpType => a.ldx(Size::B, Reg::R0, Reg::R10, Var::IcmpType.off()),
            Field::IcmpCode => a.ldx(Size::B, Reg::R0, Reg::R10, Var::IcmpCode.off()),
        };
        a.exit().bind(bad).mov64(Reg::R0, MALFORMED as i32).exit();
        a.finish().expect("parser assembles")
    }
}

/// The parser's fields as an independent reading of the bytes; `None` when malformed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fields {
    l3: u32,
    l4: u32,
    key: u32,
    saddr: u32,
    daddr: u32,
    sport: u32,
    l4_off: u32,
    icmp_type: u32,
    icmp_code: u32,
}

impl Fields {
    fn get(&self, f: Field) -> u32 {
        match f {
            Field::L3 => self.l3,
            Field::L4 => self.l4,
            Field::Key => self.key,
            Field::Saddr => self.saddr,
            Field::Daddr => self.daddr,
            Field::Sport => self.sport,
            Field::L4Off => self.l4_off,
            Field::IcmpType => self.icmp_type,
            Field::IcmpCode => self.icmp_code,
        }
    }
}

fn reference(p: &[u8]) -> Option<Fields> {
    let be16 = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]) as u32;
    let mut f = Fields::default();
    if p.len() < 14 {
        return None;
    }
    f.l3 = be16(12);
    if f.l3 != 0x0800 {
        return Some(f);
    }
    if p.len() < 34 {
        return None;
    }
    let ihl = (p[14] & 0x0f) as usize;
    if p[14] >> 4 != 4 || ihl < 5 {
        return None;
    }
    f.l4 = p[23] as u32;
    f.saddr = u32::from_ne_bytes(p[26..30].try_into().unwrap());
    f.daddr = u32::from_ne_bytes(p[30..34].try_into().unwrap());
    if be16(20) & 0x1fff != 0 {
        return Some(f);
    }
    let l4 = 14 + ihl * 4;
    f.l4_off = l4 as u32;
    match f.l4 {
        6 | 17 | 132 => {
            if p.len() < l4 + 4 {
                return None;
            }
            f.sport = be16(l4);
            f.key = be16(l4 + 2);
        }
        1 => {
            if p.len() < l4 + 2 {
                return None;
            }
            f.icmp_type = p[l4] as u32;
            f.icmp_code = p[l4 + 1] as u32;
            f.key = f.icmp_type << 8 | f.icmp_code;
            // Query messages (RFC 792, 950) carry an identifier, which stands in for the
            // source port.
            if [0, 8, 13, 14, 15, 16, 17, 18].contains(&f.icmp_type) {
                if p.len() < l4 + 6 {
                    return None;
                }
                f.sport = be16(l4 + 4);
            }
        }
        _ => {}
    }
    Some(f)
}

fn object() -> Vec<u8> {
    let mut b = ObjectBuilder::new();
    for hook in [CtxLayout::Tc, CtxLayout::Xdp] {
        let kind = match hook {
            CtxLayout::Tc => ProgKind::Classifier,
            CtxLayout::Xdp => ProgKind::Xdp,
        };
        for f in FIELDS {
            b.program(f.prog_name(hook), kind, f.program(hook)).unwrap();
        }
    }
    b.write().unwrap()
}

/// True when BPF_PROG_TEST_RUN refuses `pkt` for tc: the kernel pulls a whole IPv4 header
/// into the test skb when the EtherType says IPv4, and fails with EINVAL if it is not
/// there (checked on 6.18). XDP runs take such frames, so they cover that path.
fn tc_test_run_refuses(pkt: &[u8]) -> bool {
    pkt.len() >= 14 && pkt[12..14] == [0x08, 0x00] && pkt.len() < 14 + 20
}

/// Runs every field program on `pkt` and compares with the reference parser.
fn check(obj: &LoadedObject, what: &str, pkt: &[u8]) {
    let want = reference(pkt);
    for hook in [CtxLayout::Tc, CtxLayout::Xdp] {
        for f in FIELDS {
            let run = obj.test_run(&f.prog_name(hook), pkt, 1);
            if hook == CtxLayout::Tc && tc_test_run_refuses(pkt) {
                let err = run.expect_err("the kernel refuses a short IPv4 skb");
                assert!(format!("{err:?}").contains("code: 22"), "{what}: {err:?}");
                continue;
            }
            let got = run.unwrap_or_else(|e| panic!("{what}: {e:?}")).retval;
            let expect = want.as_ref().map_or(MALFORMED, |w| w.get(f));
            assert_eq!(got, expect, "{what}: {hook:?} {f:?} of {pkt:02x?}");
        }
    }
}

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

#[test]
fn parser_extracts_each_field_of_hand_made_packets() {
    let obj = LoadedObject::load(&object()).expect("the verifier accepts the parser");

    // The reference is checked against literal values once, so that it cannot drift.
    let tcp_pkt = eth(ETH_P_IP, &ipv4(6, A, B, 0, &tcp(40000, 8080)));
    let r = reference(&tcp_pkt).unwrap();
    assert_eq!(
        (r.l3, r.l4, r.key, r.sport, r.l4_off),
        (0x0800, 6, 8080, 40000, 34)
    );
    assert_eq!(r.saddr, u32::from_ne_bytes([192, 0, 2, 10]));
    let icmp_pkt = eth(ETH_P_IP, &ipv4(1, A, B, 3, &icmp(3, 4)));
    let r = reference(&icmp_pkt).unwrap();
    assert_eq!(
        (r.l4, r.key, r.icmp_type, r.icmp_code, r.l4_off, r.sport),
        (1, 0x0304, 3, 4, 46, 0)
    );
    let mut echo_pkt = eth(ETH_P_IP, &ipv4(1, A, B, 0, &icmp(8, 0)));
    echo_pkt[38..40].copy_from_slice(&0x1234u16.to_be_bytes());
    let r = reference(&echo_pkt).unwrap();
    assert_eq!((r.key, r.sport), (0x0800, 0x1234));
    let mut version6 = tcp_pkt.clone();
    version6[14] = 0x65;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("tcp", tcp_pkt.clone()),
        ("udp", eth(ETH_P_IP, &ipv4(17, B, A, 0, &udp(5353, 53)))),
        (
            "sctp",
            eth(ETH_P_IP, &ipv4(132, A, B, 0, &sctp(3868, 2905))),
        ),
        ("icmp echo", echo_pkt.clone()),
        (
            "icmp timestamp reply",
            eth(ETH_P_IP, &ipv4(1, B, A, 0, &icmp(14, 0))),
        ),
        ("echo reply cut before the identifier", {
            let p = eth(ETH_P_IP, &ipv4(1, B, A, 0, &icmp(0, 0)));
            p[..p.len() - 3].to_vec()
        }),
        ("unreachable without an identifier", {
            let p = eth(ETH_P_IP, &ipv4(1, B, A, 0, &icmp(3, 1)));
            p[..p.len() - 3].to_vec()
        }),
        ("ipv4 ethertype, version 6", version6),
        ("icmp unreachable with options", icmp_pkt.clone()),
        (
            "tcp, 40 bytes of options",
            eth(ETH_P_IP, &ipv4(6, A, B, 10, &tcp(1, 443))),
        ),
        (
            "gre (no ports)",
            eth(ETH_P_IP, &ipv4(47, A, B, 0, &[0u8; 8])),
        ),
        (
            "non-first fragment",
            eth(ETH_P_IP, &ipv4_raw(17, A, B, 5, 0x00b9, &udp(9, 9))),
        ),
        (
            "first fragment (MF set)",
            eth(ETH_P_IP, &ipv4_raw(17, A, B, 5, 0x2000, &udp(7, 4789))),
        ),
        ("arp", eth(ETH_P_ARP, &[0u8; 28])),
        ("ipv6", eth(ETH_P_IPV6, &[0x60; 40])),
        ("bare ethernet", eth(ETH_P_IP, &[])),
        ("ihl 4", eth(ETH_P_IP, &ipv4_raw(6, A, B, 4, 0, &tcp(1, 2)))),
        ("truncated ipv4", tcp_pkt[..30].to_vec()),
        ("truncated tcp ports", tcp_pkt[..37].to_vec()),
        ("exactly tcp ports", tcp_pkt[..38].to_vec()),
        ("truncated icmp", icmp_pkt[..icmp_pkt.len() - 7].to_vec()),
        (
            "options beyond the packet",
            eth(ETH_P_IP, &ipv4(6, A, B, 0, &[]))
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 14 { 0x4f } else { b })
                .collect(),
        ),
    ];
    for (what, pkt) in &cases {
        check(&obj, what, pkt);
    }
    // The hand-made cases cover every outcome of the parser.
    let outcomes: Vec<Option<u32>> = cases
        .iter()
        .map(|(_, p)| reference(p).map(|f| f.l4))
        .collect();
    for l4 in [
        None,
        Some(0),
        Some(1),
        Some(6),
        Some(17),
        Some(132),
        Some(47),
    ] {
        assert!(outcomes.contains(&l4), "no case with L4 {l4:?}");
    }
}

#[test]
fn parser_agrees_with_the_reference_on_random_packets() {
    let obj = LoadedObject::load(&object()).unwrap();
    let mut rng = XorShift(0x5eed_1234_abcd_0042);
    let mut malformed = 0;
    for n in 0..150 {
        let ethertype = rng.pick(&[ETH_P_IP, ETH_P_IP, ETH_P_IP, ETH_P_IP, ETH_P_ARP]);
        let proto = rng.pick(&[1u8, 6, 17, 132, 47]);
        let ihl = rng.pick(&[5u8, 5, 5, 6, 9, 15, 4]);
        let frag = rng.pick(&[0u16, 0x4000, 0x2000, 0x0001, 0x1fff]);
        let (x, y) = (rng.below(65536) as u16, rng.below(65536) as u16);
        let l4 = match proto {
            1 => icmp(x as u8, y as u8),
            6 => tcp(x, y),
            17 => udp(x, y),
            132 => sctp(x, y),
            _ => vec![0u8; 4],
        };
        let src = Ipv4Addr::from(rng.next() as u32 | 1);
        let dst = Ipv4Addr::from((rng.next() as u32) & 0xfffffff0 | 2);
        let mut pkt = eth(ethertype, &ipv4_raw(proto, src, dst, ihl, frag, &l4));
        // Cut one packet in three somewhere past the Ethernet header.
        if rng.below(3) == 0 {
            let cut = 14 + rng.below(pkt.len() as u64 - 14) as usize;
            pkt.truncate(cut);
        }
        if reference(&pkt).is_none() {
            malformed += 1;
        }
        check(&obj, &format!("random #{n}"), &pkt);
    }
    // The generator reaches both the malformed path and the well-formed ones.
    assert!((10..140).contains(&malformed), "{malformed} malformed");
}

#[test]
fn parser_cost_per_packet() {
    let obj = LoadedObject::load(&object()).unwrap();
    let pkt = eth(ETH_P_IP, &ipv4(6, A, B, 0, &tcp(40000, 8080)));
    let out = obj.test_run("tc_key", &pkt, 100_000).unwrap();
    assert_eq!(out.retval, 8080);
    eprintln!("parse eth/ipv4/tcp (tc): {:?} per packet", out.duration);
}
