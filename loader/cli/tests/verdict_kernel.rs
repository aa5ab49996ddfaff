//! Translated Wasm verdicts in the kernel against wasmtime (issue 13): the per-opcode matrix
//! with edge operands, control flow with block results, and packet loads at the bounds.
//! Every cell is one packet through `BPF_PROG_TEST_RUN` and through the reference runner;
//! they must agree on the outcome and on the tcx return code.

use sluice_cli::verdict_verify::{Verifier, packets};
use sluice_compiler::wasm_verdict::{OnTrap, VerdictModule};

/// Runs `packets` through both engines; panics listing every mismatch.
fn agree(what: &str, wasm: &[u8], on_trap: OnTrap, packets: &[Vec<u8>]) {
    let v = Verifier::new(wasm, on_trap).unwrap_or_else(|e| panic!("{what}: {e}"));
    let bad: Vec<String> = packets
        .iter()
        .filter_map(|p| v.check(p).unwrap().map(|m| m.to_string()))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} packets disagree:\n{}",
        bad.len(),
        packets.len(),
        bad[..bad.len().min(20)].join("\n")
    );
}

/// Edge operands as 64-bit patterns: 0, ±1, i32 and i64 MIN/MAX (an i32 operand is the low
/// half, so sign-extended and zero-extended forms both appear), and the shift counts.
const EDGES: [u64; 13] = [
    0,
    1,
    u64::MAX,
    0x8000_0000,
    0x7fff_ffff,
    0xffff_ffff_8000_0000,
    0xffff_ffff,
    i64::MIN as u64,
    i64::MAX as u64,
    31,
    32,
    63,
    64,
];

/// `verdict` computing `result` (an i64 expression over locals `$a` and `$b`, read from
/// packet bytes 0..8 and 8..16) and returning its bit number `packet[16]` (0 pass, 1 allow).
fn bit_module(result: &str) -> Vec<u8> {
    let src = format!(
        r#"(module
  (import "sluice" "pkt_u32" (func $u32 (param i32) (result i32)))
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (local $a i64) (local $b i64)
    (local.set $a (i64.or (i64.shl (i64.extend_i32_u (call $u32 (i32.const 0))) (i64.const 32))
                          (i64.extend_i32_u (call $u32 (i32.const 4)))))
    (local.set $b (i64.or (i64.shl (i64.extend_i32_u (call $u32 (i32.const 8))) (i64.const 32))
                          (i64.extend_i32_u (call $u32 (i32.const 12)))))
    (i32.wrap_i64 (i64.and (i64.shr_u {result} (i64.extend_i32_u (call $u8 (i32.const 16))))
                           (i64.const 1)))))"#
    );
    wat::parse_str(&src).unwrap_or_else(|e| panic!("{result}: {e}"))
}

/// One packet per (a, b, bit).
fn cells(operands: &[(u64, u64)], bits: u8) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for &(a, b) in operands {
        for bit in 0..bits {
            let mut p = Vec::with_capacity(17);
            p.extend_from_slice(&a.to_be_bytes());
            p.extend_from_slice(&b.to_be_bytes());
            p.push(bit);
            out.push(p);
        }
    }
    out
}

const I32_A: &str = "(i32.wrap_i64 (local.get $a))";
const I32_B: &str = "(i32.wrap_i64 (local.get $b))";

#[test]
fn every_operator_agrees_with_wasmtime_on_edge_operands() {
    let pairs: Vec<(u64, u64)> = EDGES
        .iter()
        .flat_map(|&a| EDGES.iter().map(move |&b| (a, b)))
        .collect();
    let binary = [
        "add", "sub", "mul", "and", "or", "xor", "shl", "shr_s", "shr_u", "rotl", "rotr",
    ];
    let compare = [
        "eq", "ne", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u",
    ];
    let mut checked = 0;
    for op in binary {
        let e32 = format!("(i64.extend_i32_u (i32.{op} {I32_A} {I32_B}))");
        agree(&e32, &bit_module(&e32), OnTrap::Deny, &cells(&pairs, 32));
        let e64 = format!("(i64.{op} (local.get $a) (local.get $b))");
        agree(&e64, &bit_module(&e64), OnTrap::Deny, &cells(&pairs, 64));
        checked += 2;
    }
    for op in compare {
        let e32 = format!("(i64.extend_i32_u (i32.{op} {I32_A} {I32_B}))");
        agree(&e32, &bit_module(&e32), OnTrap::Deny, &cells(&pairs, 1));
        let e64 = format!("(i64.extend_i32_u (i64.{op} (local.get $a) (local.get $b)))");
        agree(&e64, &bit_module(&e64), OnTrap::Deny, &cells(&pairs, 1));
        checked += 2;
    }
    let unary = [
        format!("(i64.extend_i32_u (i32.eqz {I32_A}))"),
        "(i64.extend_i32_u (i64.eqz (local.get $a)))".to_string(),
        format!("(i64.extend_i32_u {I32_A})"),
        format!("(i64.extend_i32_s {I32_A})"),
        format!("(i64.extend_i32_u (i32.extend8_s {I32_A}))"),
        format!("(i64.extend_i32_u (i32.extend16_s {I32_A}))"),
        "(i64.extend8_s (local.get $a))".into(),
        "(i64.extend16_s (local.get $a))".into(),
        "(i64.extend32_s (local.get $a))".into(),
        // select on an i32 condition, both widths.
        format!(
            "(i64.extend_i32_u (select {I32_A} {I32_B} (i32.wrap_i64 (i64.shr_u (local.get $a) (i64.const 32)))))"
        ),
        "(select (local.get $a) (local.get $b) (i32.wrap_i64 (local.get $b)))".into(),
        // Constants that do not fit an imm32: ld_imm64.
        "(i64.xor (local.get $a) (i64.const 0x123456789abcdef0))".into(),
        format!("(i64.extend_i32_u (i32.add {I32_A} (i32.const -7)))"),
    ];
    for e in &unary {
        agree(e, &bit_module(e), OnTrap::Deny, &cells(&pairs, 64));
        checked += 1;
    }
    assert_eq!(checked, 2 * binary.len() + 2 * compare.len() + unary.len());
}

/// Blocks with results, if/else with parameters (multi-value), br/br_if/br_table carrying
/// values out of nested blocks, return from inside blocks, and dead code after branches.
#[test]
fn control_flow_and_block_results_agree_with_wasmtime() {
    let src = r#"(module
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (import "sluice" "pkt_len" (func $len (result i32)))
  (type $two (func (param i32 i32) (result i32 i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (local $x i32)
    (local.set $x (call $u8 (i32.const 0)))
    ;; br_table into blocks carrying a value.
    (block $out (result i32)
      (block $b2 (result i32)
        (block $b1 (result i32)
          (block $b0 (result i32)
            (i32.const 7)
            (local.get $x) (i32.const 3) (i32.and)
            (br_table $b0 $b1 $b2 $out))
          ;; from $b0: 7 -> pass or allow on byte 1
          (drop) (call $u8 (i32.const 1)) (i32.const 1) (i32.and) (return))
        ;; from $b1: multi-value if with params
        (drop)
        (i32.const 1) (i32.const 2)
        (if (type $two) (i32.and (local.get $x) (i32.const 4))
          (then (drop) (i32.const 0))
          (else (drop) (drop) (i32.const 2) (i32.const 9)))
        (drop)
        (br $out))
      ;; from $b2: br_if out with a value, else unreachable
      (drop)
      (i32.const 1)
      (br_if $out (i32.gt_u (call $len) (i32.const 20)))
      (drop)
      (unreachable)
      (i32.const 99) (drop))
    ;; $out: 7 (from br_table default) is a bad verdict; others are fine.
    ))"#;
    let wasm = wat::parse_str(src).unwrap();
    let m = VerdictModule::parse(&wasm).unwrap();
    let mut ps = packets(&m, 400, 1);
    for x in 0..=255u8 {
        for len in [2usize, 20, 21, 40] {
            let mut p = vec![0u8; len];
            p[0] = x;
            p[1] = x.rotate_left(3);
            ps.push(p);
        }
    }
    for on_trap in [OnTrap::Deny, OnTrap::Allow, OnTrap::Pass] {
        agree("control flow", &wasm, on_trap, &ps);
    }
}

/// Loads of every size at constant and packet-supplied offsets, at the length edges and
/// with offsets that are negative, huge or 0xffff.
#[test]
fn packet_loads_trap_exactly_at_the_bounds() {
    let src = r#"(module
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (import "sluice" "pkt_u16" (func $u16 (param i32) (result i32)))
  (import "sluice" "pkt_u32" (func $u32 (param i32) (result i32)))
  (import "sluice" "pkt_len" (func $len (result i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (local $off i32)
    ;; fixed loads near the start, then one at an offset read from the packet (signed)
    (drop (call $u8 (i32.const 0)))
    (local.set $off (i32.extend16_s (call $u16 (i32.const 1))))
    (if (i32.ne (local.get $len) (call $len)) (then (unreachable)))
    (i32.and
      (i32.xor (call $u32 (local.get $off)) (call $u8 (i32.const 3)))
      (i32.const 1))))"#;
    let wasm = wat::parse_str(src).unwrap();
    let m = VerdictModule::parse(&wasm).unwrap();
    let mut ps = packets(&m, 300, 7);
    for len in 0..=48usize {
        for off in [-4i16, -1, 0, 1, 2, 40, 44, 45, 46, 47, 48, i16::MAX, -1i16] {
            let mut p: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            if len >= 3 {
                p[1..3].copy_from_slice(&off.to_be_bytes());
            }
            ps.push(p);
        }
    }
    // 0xffff as an offset (sign-extended: -1) and as a length field: all 0xff.
    ps.push(vec![0xff; 64]);
    agree("packet loads", &wasm, OnTrap::Deny, &ps);
}
