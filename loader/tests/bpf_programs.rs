//! Kernel proof of the compiler's eBPF toolchain: programs assembled with `sluice_compiler::bpf`,
//! written as ELF, loaded by aya into the running kernel and run with BPF_PROG_TEST_RUN on
//! crafted packets. Also checks that llvm-objdump-19 and bpftool read what we write.
//! Needs root (CAP_BPF); CI runs as root.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use sluice_compiler::bpf::{
    Asm, Cond, Helper, MapDef, MapRef, MapType, ObjectBuilder, ProgKind, Program, Reg::*, Size,
};
use sluice_loader::load::LoadedObject;
use sluice_loader::sys::bpf::{BPF_ANY, LengthMismatch, MapElems, possible_cpus};

mod common;
use common::*;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

// --- packets ---------------------------------------------------------------------------

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn tcp_pkt(dport: u16, opt_words: u8) -> Vec<u8> {
    eth(ETH_P_IP, &ipv4(6, SRC, DST, opt_words, &tcp(40000, dport)))
}

// --- programs --------------------------------------------------------------------------

/// Where a hook's context keeps the packet pointers, and what it returns.
#[derive(Clone, Copy)]
struct Hook {
    kind: ProgKind,
    data_off: i16,
    data_end_off: i16,
    pass: i32,
    drop: i32,
}

const TC: Hook = Hook {
    kind: ProgKind::Classifier,
    data_off: 76, // __sk_buff.data
    data_end_off: 80,
    pass: TC_ACT_OK as i32,
    drop: TC_ACT_SHOT as i32,
};
const XDP: Hook = Hook {
    kind: ProgKind::Xdp,
    data_off: 0, // xdp_md.data
    data_end_off: 4,
    pass: XDP_PASS as i32,
    drop: XDP_DROP as i32,
};

/// Drops IPv4 TCP to port 81 (options-aware), passes everything else.
fn drop_port_81(hook: Hook) -> Program {
    let mut a = Asm::new();
    let pass = a.label();
    a.ldx(Size::W, R2, R1, hook.data_off)
        .ldx(Size::W, R3, R1, hook.data_end_off)
        .load_packet(R4, R2, R3, 12, Size::H, pass)
        .be16(R4)
        .jmp(Cond::Ne, R4, ETH_P_IP as i32, pass)
        .load_packet(R5, R2, R3, 23, Size::B, pass)
        .jmp(Cond::Ne, R5, 6, pass)
        // L4 starts at 14 + IHL * 4.
        .load_packet(R4, R2, R3, 14, Size::B, pass)
        .and64(R4, 0x0f)
        .lsh64(R4, 2)
        .jmp(Cond::Lt, R4, 20, pass)
        .add64(R2, 14)
        .add64(R2, R4)
        .load_packet(R4, R2, R3, 2, Size::H, pass)
        .be16(R4)
        .if_then(Cond::Eq, R4, 81, |a| {
            a.ret(hook.drop);
        })
        .bind(pass)
        .ret(hook.pass);
    a.finish().expect("assembles")
}

/// Looks up the IPv4 destination in `verdicts` (HASH u32 -> u32) and returns the value;
/// counts hits in `hits` (ARRAY of one u64) with an atomic add. A miss passes.
fn verdict_by_daddr() -> Program {
    let mut a = Asm::new();
    let pass = a.label();
    a.ldx(Size::W, R2, R1, TC.data_off)
        .ldx(Size::W, R3, R1, TC.data_end_off)
        .load_packet(R4, R2, R3, 30, Size::W, pass)
        .stx(Size::W, R10, -4, R4)
        .mov64(R2, R10)
        .add64(R2, -4)
        .ld_map(R1, MapRef::new("verdicts"))
        .call(Helper::MapLookupElem)
        .jmp(Cond::Eq, R0, 0, pass)
        .ldx(Size::W, R6, R0, 0)
        // hits[0] += 1
        .st(Size::W, R10, -8, 0)
        .mov64(R2, R10)
        .add64(R2, -8)
        .ld_map(R1, MapRef::new("hits"))
        .call(Helper::MapLookupElem)
        .if_then(Cond::Ne, R0, 0, |a| {
            a.mov64(R1, 1).atomic_add(Size::DW, R0, 0, R1);
        })
        .mov64(R0, R6)
        .exit()
        .bind(pass)
        .ret(TC_ACT_OK as i32);
    a.finish().expect("assembles")
}

fn object() -> Vec<u8> {
    let mut b = ObjectBuilder::new();
    b.map(MapDef::new("verdicts", MapType::Hash, 4, 4, 64))
        .unwrap()
        .map(MapDef::new("hits", MapType::Array, 4, 8, 1))
        .unwrap()
        .program("drop81", ProgKind::Classifier, drop_port_81(TC))
        .unwrap()
        .program("xdp_drop81", XDP.kind, drop_port_81(XDP))
        .unwrap()
        .program("verdict", ProgKind::Classifier, verdict_by_daddr())
        .unwrap();
    b.write().expect("writes ELF")
}

/// A temporary file removed on drop, even when the test panics.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("sluice-bpf-{tag}-{}.o", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// --- tests -----------------------------------------------------------------------------

#[test]
fn tc_program_drops_tcp_port_81_only() {
    let obj = LoadedObject::load(&object()).expect("kernel accepts the object");
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("tcp/81", tcp_pkt(81, 0), TC_ACT_SHOT),
        ("tcp/80", tcp_pkt(80, 0), TC_ACT_OK),
        ("tcp/81 with IP options", tcp_pkt(81, 2), TC_ACT_SHOT),
        ("tcp/80 with IP options", tcp_pkt(80, 2), TC_ACT_OK),
        (
            "udp/81",
            eth(ETH_P_IP, &ipv4(17, SRC, DST, 0, &udp(1, 81))),
            TC_ACT_OK,
        ),
        ("arp", eth(ETH_P_ARP, &[0u8; 28]), TC_ACT_OK),
        ("truncated tcp/81", tcp_pkt(81, 0)[..36].to_vec(), TC_ACT_OK),
    ];
    for (what, pkt, want) in cases {
        let out = obj.test_run("drop81", &pkt, 1).unwrap();
        assert_eq!(out.retval, want, "{what}");
        assert_eq!(out.packet_out, pkt, "{what}: packet unchanged");
    }
}

#[test]
fn xdp_program_drops_tcp_port_81_only() {
    let obj = LoadedObject::load(&object()).unwrap();
    assert_eq!(
        obj.test_run("xdp_drop81", &tcp_pkt(81, 1), 1)
            .unwrap()
            .retval,
        XDP_DROP
    );
    assert_eq!(
        obj.test_run("xdp_drop81", &tcp_pkt(443, 1), 1)
            .unwrap()
            .retval,
        XDP_PASS
    );
}

#[test]
fn hash_map_filled_from_userspace_decides() {
    let mut obj = LoadedObject::load(&object()).unwrap();
    {
        let map = obj.ebpf_mut().map_mut("verdicts").expect("map exists");
        let mut verdicts = aya::maps::HashMap::<_, u32, u32>::try_from(map).unwrap();
        // The program reads the address as a native u32 straight from the packet.
        verdicts
            .insert(u32::from_ne_bytes(DST.octets()), TC_ACT_SHOT, 0)
            .unwrap();
        verdicts
            .insert(u32::from_ne_bytes([10, 0, 0, 3]), 7, 0)
            .unwrap();
    }
    let to = |dst: Ipv4Addr| eth(ETH_P_IP, &ipv4(6, SRC, dst, 0, &tcp(1, 80)));
    assert_eq!(
        obj.test_run("verdict", &to(DST), 1).unwrap().retval,
        TC_ACT_SHOT
    );
    assert_eq!(
        obj.test_run("verdict", &to(Ipv4Addr::new(10, 0, 0, 3)), 1)
            .unwrap()
            .retval,
        7
    );
    assert_eq!(
        obj.test_run("verdict", &to(Ipv4Addr::new(10, 0, 0, 9)), 1)
            .unwrap()
            .retval,
        TC_ACT_OK
    );
    // Two hits and a miss: the atomic counter saw exactly the hits.
    let hits = aya::maps::Array::<_, u64>::try_from(obj.ebpf_mut().map("hits").unwrap()).unwrap();
    assert_eq!(hits.get(&0, 0).unwrap(), 2);
}

#[test]
fn kernel_measures_a_repeated_run() {
    let obj = LoadedObject::load(&object()).unwrap();
    let out = obj.test_run("drop81", &tcp_pkt(81, 0), 10_000).unwrap();
    assert_eq!(out.retval, TC_ACT_SHOT);
    // The kernel averages over the runs; a parse of four headers is well under 10 µs.
    assert!(out.duration.as_nanos() < 10_000, "{:?}", out.duration);
    eprintln!("drop81: {:?} per run", out.duration);
}

#[test]
fn verifier_rejection_is_a_typed_error() {
    // Reads the packet without a bounds check: the verifier must refuse it.
    let mut a = Asm::new();
    a.ldx(Size::W, R2, R1, 76).ldx(Size::B, R0, R2, 0).exit();
    let mut b = ObjectBuilder::new();
    b.program("unchecked", ProgKind::Classifier, a.finish().unwrap())
        .unwrap();
    let err = LoadedObject::load(&b.write().unwrap()).unwrap_err();
    let text = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(text.contains("unchecked"), "{text}");
    assert!(text.contains("invalid access to packet"), "{text}");
}

#[test]
fn llvm_objdump_reads_our_object() {
    let file = TempFile::new("objdump", &object());
    let out = Command::new("llvm-objdump-19")
        .args(["-d", "-r"])
        .arg(&file.0)
        .output()
        .expect("llvm-objdump-19 is installed (apt package llvm-19)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "file format elf64-bpf",
        "Disassembly of section classifier/drop81:",
        "<drop81>:",
        "Disassembly of section xdp:",
        "r2 = *(u32 *)(r1 + 0x4c)",
        "r4 = be16 r4",
        "r0 = 0x2",
        "R_BPF_64_64\tverdicts",
        "R_BPF_64_64\thits",
        "call 0x1",
        "lock *(u64 *)(r0 + 0x0) += r1",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}

#[test]
fn bpftool_shows_the_relocated_map() {
    let obj = LoadedObject::load(&object()).unwrap();
    let id = obj.program_id("verdict").unwrap();
    let out = Command::new("bpftool")
        .args(["prog", "dump", "xlated", "id", &id.to_string()])
        .output()
        .expect("bpftool is installed (apt package bpftool)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Both relocated loads now name a kernel map; the kernel rewrote the ctx loads.
    assert_eq!(text.matches("= map[id:").count(), 2, "{text}");
    assert!(text.contains("lock *(u64 *)(r0 +0) += r1"), "{text}");
}

/// One instruction of every kind the datapath emits, each paired with the text
/// llvm-objdump-19 prints for it: an independent decoder agrees with our encoding.
#[test]
fn llvm_objdump_decodes_every_instruction_class() {
    use sluice_compiler::bpf::{AluOp, Endian, Insn, Width};
    let w64 = Width::W64;
    let w32 = Width::W32;
    let mut cases: Vec<(Vec<Insn>, &str)> = vec![
        (vec![Insn::mov64(R0, 2)], "r0 = 0x2"),
        (vec![Insn::mov64(R1, R6)], "r1 = r6"),
        (vec![Insn::mov32(R2, -1)], "w2 = -0x1"),
        (vec![Insn::alu64(AluOp::Add, R2, 14)], "r2 += 0xe"),
        (vec![Insn::alu64(AluOp::Add, R2, R3)], "r2 += r3"),
        (vec![Insn::alu32(AluOp::Sub, R1, R2)], "w1 -= w2"),
        (vec![Insn::alu64(AluOp::Mul, R1, 3)], "r1 *= 0x3"),
        (vec![Insn::alu64(AluOp::Div, R1, R2)], "r1 /= r2"),
        (vec![Insn::alu64(AluOp::Or, R1, 1)], "r1 |= 0x1"),
        (vec![Insn::alu64(AluOp::And, R1, 15)], "r1 &= 0xf"),
        (vec![Insn::alu64(AluOp::Lsh, R1, 2)], "r1 <<= 0x2"),
        (vec![Insn::alu32(AluOp::Rsh, R1, 4)], "w1 >>= 0x4"),
        (vec![Insn::neg(w64, R1)], "r1 = -r1"),
        (vec![Insn::alu64(AluOp::Mod, R1, R2)], "r1 %= r2"),
        (vec![Insn::alu64(AluOp::Xor, R1, R1)], "r1 ^= r1"),
        (vec![Insn::alu64(AluOp::Arsh, R1, 3)], "r1 s>>= 0x3"),
        (vec![Insn::endian(Endian::Be, 16, R1)], "r1 = be16 r1"),
        (vec![Insn::endian(Endian::Be, 32, R2)], "r2 = be32 r2"),
        (vec![Insn::endian(Endian::Le, 64, R3)], "r3 = le64 r3"),
        (vec![Insn::ja(0)], "goto +0x0"),
        (
            vec![Insn::jmp(w64, Cond::Eq, R1, 6, 0)],
            "if r1 == 0x6 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Gt, R2, R3, 0)],
            "if r2 > r3 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Ge, R2, 1, 0)],
            "if r2 >= 0x1 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Set, R2, 4, 0)],
            "if r2 & 0x4 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Ne, R2, R1, 0)],
            "if r2 != r1 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Sgt, R2, 0, 0)],
            "if r2 s> 0x0 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Sge, R2, 0, 0)],
            "if r2 s>= 0x0 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Lt, R2, R3, 0)],
            "if r2 < r3 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Le, R2, 9, 0)],
            "if r2 <= 0x9 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Slt, R2, 0, 0)],
            "if r2 s< 0x0 goto +0x0",
        ),
        (
            vec![Insn::jmp(w64, Cond::Sle, R2, R3, 0)],
            "if r2 s<= r3 goto +0x0",
        ),
        (
            vec![Insn::jmp(w32, Cond::Eq, R1, 5, 0)],
            "if w1 == 0x5 goto +0x0",
        ),
        (
            vec![Insn::jmp(w32, Cond::Ne, R1, R2, 0)],
            "if w1 != w2 goto +0x0",
        ),
        (vec![Insn::call(1)], "call 0x1"),
        (
            vec![Insn::ldx(Size::W, R2, R1, 76)],
            "r2 = *(u32 *)(r1 + 0x4c)",
        ),
        (
            vec![Insn::ldx(Size::H, R3, R2, 12)],
            "r3 = *(u16 *)(r2 + 0xc)",
        ),
        (
            vec![Insn::ldx(Size::B, R3, R2, 23)],
            "r3 = *(u8 *)(r2 + 0x17)",
        ),
        (
            vec![Insn::ldx(Size::DW, R0, R10, -8)],
            "r0 = *(u64 *)(r10 - 0x8)",
        ),
        (
            vec![Insn::stx(Size::W, R10, -4, R1)],
            "*(u32 *)(r10 - 0x4) = r1",
        ),
        (
            vec![Insn::stx(Size::H, R10, -2, R1)],
            "*(u16 *)(r10 - 0x2) = r1",
        ),
        (
            vec![Insn::stx(Size::B, R10, -1, R1)],
            "*(u8 *)(r10 - 0x1) = r1",
        ),
        (
            vec![Insn::stx(Size::DW, R10, -16, R1)],
            "*(u64 *)(r10 - 0x10) = r1",
        ),
        (
            vec![Insn::st(Size::W, R10, -4, 7)],
            "*(u32 *)(r10 - 0x4) = 0x7",
        ),
        (
            vec![Insn::st(Size::DW, R10, -8, 0)],
            "*(u64 *)(r10 - 0x8) = 0x0",
        ),
        (
            vec![Insn::atomic_add(Size::DW, R0, 0, R1)],
            "lock *(u64 *)(r0 + 0x0) += r1",
        ),
        (
            vec![Insn::atomic_add(Size::W, R0, 4, R1)],
            "lock *(u32 *)(r0 + 0x4) += r1",
        ),
        (
            Insn::ld_imm64(R1, 0x1122_3344_5566_7788).to_vec(),
            "r1 = 0x1122334455667788 ll",
        ),
    ];
    cases.push((vec![Insn::exit()], "exit"));
    let insns: Vec<Insn> = cases.iter().flat_map(|(i, _)| i.clone()).collect();
    let mut b = ObjectBuilder::new();
    b.program(
        "every",
        ProgKind::Classifier,
        Program {
            insns,
            relocs: vec![],
        },
    )
    .unwrap();
    let file = TempFile::new("every", &b.write().unwrap());
    let out = Command::new("llvm-objdump-19")
        .arg("-d")
        .arg(&file.0)
        .output()
        .expect("llvm-objdump-19 is installed (apt package llvm-19)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Instruction lines look like `      12:\t15 01 00 00 06 00 00 00\tif r1 == 0x6 goto +0x0 <..>`.
    let decoded: Vec<String> = text
        .lines()
        .filter_map(|l| l.split('\t').nth(2))
        .map(|t| t.split(" <every").next().unwrap().trim().to_string())
        .collect();
    let want: Vec<&str> = cases.iter().map(|(_, t)| *t).collect();
    assert_eq!(decoded, want, "\n{text}");
}

/// Every `MapType` the writer offers is accepted by the kernel with the sizes codegen uses.
#[test]
fn every_map_type_is_created_by_the_kernel() {
    let defs = [
        MapDef::new("hash", MapType::Hash, 4, 4, 8),
        MapDef::new("array", MapType::Array, 4, 8, 8),
        MapDef::prog_array("progs", 4),
        MapDef::new("percpu_hash", MapType::PercpuHash, 4, 8, 8),
        MapDef::new("percpu_array", MapType::PercpuArray, 4, 8, 8),
        MapDef::new("lru", MapType::LruHash, 16, 8, 64),
        MapDef::new("lru_percpu", MapType::LruPercpuHash, 16, 8, 64),
        MapDef::new("trie", MapType::LpmTrie, 8, 4, 64),
        MapDef::ringbuf("events", 4096),
    ];
    let mut a = Asm::new();
    // One program that references all of them, so none is dropped as unused.
    for d in &defs {
        a.ld_map(R1, MapRef::new(d.name.clone()));
    }
    a.ret(TC_ACT_OK as i32);
    let mut b = ObjectBuilder::new();
    for d in defs.iter().cloned() {
        b.map(d).unwrap();
    }
    b.program("uses_all", ProgKind::Classifier, a.finish().unwrap())
        .unwrap();
    let mut obj = LoadedObject::load(&b.write().unwrap()).expect("kernel creates every map");
    for d in &defs {
        assert!(obj.ebpf_mut().map(&d.name).is_some(), "{}", d.name);
    }
    assert_eq!(
        obj.test_run("uses_all", &tcp_pkt(80, 0), 1).unwrap().retval,
        TC_ACT_OK
    );
}

/// `bpf_tail_call` through a PROG_ARRAY filled from userspace.
#[test]
fn tail_call_through_a_prog_array() {
    let mut caller = Asm::new();
    caller
        .mov64(R6, R1)
        .ld_map(R2, MapRef::new("jmp"))
        .mov64(R3, 0)
        .call(Helper::TailCall)
        // Reached only when the slot is empty.
        .ret(1);
    let mut callee = Asm::new();
    callee.ret(42);
    let mut b = ObjectBuilder::new();
    b.map(MapDef::prog_array("jmp", 1))
        .unwrap()
        .program("caller", ProgKind::Classifier, caller.finish().unwrap())
        .unwrap()
        .program("callee", ProgKind::Classifier, callee.finish().unwrap())
        .unwrap();
    let mut obj = LoadedObject::load(&b.write().unwrap()).unwrap();
    let pkt = tcp_pkt(80, 0);
    assert_eq!(obj.test_run("caller", &pkt, 1).unwrap().retval, 1);

    let ebpf = obj.ebpf_mut();
    let mut slots = aya::maps::ProgramArray::try_from(ebpf.take_map("jmp").unwrap()).unwrap();
    let callee_fd = ebpf.program("callee").unwrap().fd().unwrap();
    slots.set(0, callee_fd, 0).unwrap();
    // `slots` keeps the map's user reference alive; the kernel clears a PROG_ARRAY without it.
    assert_eq!(obj.test_run("caller", &pkt, 1).unwrap().retval, 42);
    drop(slots);
}

/// The error a slice of the wrong length gives: refused before the kernel sees it.
fn length_mismatch(e: std::io::Error) -> LengthMismatch {
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    e.into_inner()
        .and_then(|e| e.downcast::<LengthMismatch>().ok())
        .map(|b| *b)
        .expect("a LengthMismatch")
}

#[test]
fn map_calls_refuse_buffers_of_the_wrong_length() {
    let obj = LoadedObject::load(&object()).unwrap();
    let map = obj.map("verdicts").unwrap();
    assert_eq!((map.key_len(), map.value_len()), (4, 4));
    let mm = |what, got, want| LengthMismatch { what, got, want };

    // A short value buffer on lookup is what would let the kernel write past a Vec.
    let mut short = [0u8; 2];
    let e = map.lookup(&[1, 2, 3, 4], &mut short).unwrap_err();
    assert_eq!(length_mismatch(e), mm("value", 2, 4));
    let mut long = [0u8; 8];
    let e = map.lookup(&[1, 2, 3, 4], &mut long).unwrap_err();
    assert_eq!(length_mismatch(e), mm("value", 8, 4));
    let e = map.lookup(&[1, 2, 3], &mut [0u8; 4]).unwrap_err();
    assert_eq!(length_mismatch(e), mm("key", 3, 4));
    let e = map.update(&[1, 2], &[0; 4], BPF_ANY).unwrap_err();
    assert_eq!(length_mismatch(e), mm("key", 2, 4));
    let e = map.update(&[1, 2, 3, 4], &[0; 3], BPF_ANY).unwrap_err();
    assert_eq!(length_mismatch(e), mm("value", 3, 4));
    let e = map.next_key(None, &mut [0u8; 3]).unwrap_err();
    assert_eq!(length_mismatch(e), mm("next key", 3, 4));
    let e = map.next_key(Some(&[0; 5]), &mut [0u8; 4]).unwrap_err();
    assert_eq!(length_mismatch(e), mm("key", 5, 4));
    let e = map.delete(&[0; 1]).unwrap_err();
    assert_eq!(length_mismatch(e), mm("key", 1, 4));
    assert!(
        map.update(&[1, 2, 3, 4], &[0; 4], 1 << 2).is_err(),
        "unknown flags"
    );
    assert!(obj.read_map("verdicts", &[0; 3]).is_err());
    assert!(obj.write_map("verdicts", &[0; 4], &[0; 5]).is_err());
    // None of the refused calls reached the map.
    assert_eq!(map.keys().unwrap(), Vec::<Vec<u8>>::new());

    // Right lengths work: write, read back, iterate, delete.
    obj.write_map("verdicts", &[10, 0, 0, 2], &2u32.to_ne_bytes())
        .unwrap();
    assert_eq!(
        obj.read_map("verdicts", &[10, 0, 0, 2]).unwrap(),
        Some(2u32.to_ne_bytes().to_vec())
    );
    assert_eq!(obj.read_map("verdicts", &[10, 0, 0, 3]).unwrap(), None);
    assert_eq!(map.keys().unwrap(), vec![vec![10, 0, 0, 2]]);
    assert!(map.delete(&[10, 0, 0, 2]).unwrap());
    assert!(!map.delete(&[10, 0, 0, 2]).unwrap());
}

#[test]
fn per_cpu_values_take_one_slot_per_possible_cpu() {
    use std::os::fd::AsFd;
    // A value of 12 bytes is padded to 16 per CPU.
    let obj = aya_obj::Map::new_from_params(
        aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_PERCPU_HASH as u32,
        4,
        12,
        8,
        0,
    );
    let data = aya::maps::MapData::create(obj, "sluice_pcpu_test", None).unwrap();
    let map = MapElems::new(data.fd().as_fd()).unwrap();
    let cpus = possible_cpus().unwrap();
    assert!(map.info().is_per_cpu());
    assert_eq!(map.value_len(), 16 * cpus);

    // One value's worth is short: the kernel would write `cpus` values into it.
    let e = map.lookup(&[0; 4], &mut [0u8; 12]).unwrap_err();
    assert_eq!(length_mismatch(e).want, 16 * cpus);
    let e = map.update(&[0; 4], &[0; 16], BPF_ANY).unwrap_err();
    assert_eq!(length_mismatch(e).got, 16);

    // A different value per CPU: the kernel reads every slot and hands each one back.
    let value: Vec<u8> = (0..map.value_len())
        .map(|i| (i / 16 + i % 16) as u8)
        .collect();
    map.update(&[7; 4], &value, BPF_ANY).unwrap();
    assert_eq!(map.get(&[7; 4]).unwrap(), Some(value));
}
