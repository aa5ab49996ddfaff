//! Translated Wasm verdicts in the kernel against wasmtime (issue 13): the per-opcode matrix
//! with edge operands, control flow with block results, and packet loads at the bounds.
//! Every cell is one packet through `BPF_PROG_TEST_RUN` and through the reference runner;
//! they must agree on the outcome and on the tcx return code.

use sluice_cli::verdict_verify::{Verifier, packets};
use sluice_compiler::wasm_verdict::{OnTrap, PacketLoads, VerdictModule};

/// Runs `packets` through both engines; panics listing every mismatch.
fn agree(what: &str, wasm: &[u8], on_trap: OnTrap, packets: &[Vec<u8>]) {
    agree_with(what, wasm, on_trap, PacketLoads::Direct, packets);
}

/// [`agree`] with the kernel program reading the packet as `loads` says.
fn agree_with(what: &str, wasm: &[u8], on_trap: OnTrap, loads: PacketLoads, packets: &[Vec<u8>]) {
    let v = Verifier::with_loads(wasm, on_trap, loads).unwrap_or_else(|e| panic!("{what}: {e}"));
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
/// packet bytes 0..8 and 8..16, and `$k`, packet byte 17) and returning its two bits at
/// `packet[16]`: 0 pass, 1 allow, 2 deny, 3 a bad-verdict trap, so every outcome differs.
fn bit_module(result: &str) -> Vec<u8> {
    let src = format!(
        r#"(module
  (import "sluice" "pkt_u32" (func $u32 (param i32) (result i32)))
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (local $a i64) (local $b i64) (local $k i32)
    (local.set $k (call $u8 (i32.const 17)))
    (local.set $a (i64.or (i64.shl (i64.extend_i32_u (call $u32 (i32.const 0))) (i64.const 32))
                          (i64.extend_i32_u (call $u32 (i32.const 4)))))
    (local.set $b (i64.or (i64.shl (i64.extend_i32_u (call $u32 (i32.const 8))) (i64.const 32))
                          (i64.extend_i32_u (call $u32 (i32.const 12)))))
    (i32.wrap_i64 (i64.and (i64.shr_u {result} (i64.extend_i32_u (call $u8 (i32.const 16))))
                           (i64.const 3)))))"#
    );
    wat::parse_str(&src).unwrap_or_else(|e| panic!("{result}: {e}"))
}

/// One packet per (a, b, k, two bits of a `bits`-wide result).
fn cells(operands: &[(u64, u64)], ks: u8, bits: u8) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for &(a, b) in operands {
        for k in 0..ks {
            for bit in (0..bits).step_by(2) {
                let mut p = Vec::with_capacity(18);
                p.extend_from_slice(&a.to_be_bytes());
                p.extend_from_slice(&b.to_be_bytes());
                p.extend([bit, k]);
                out.push(p);
            }
        }
    }
    out
}

/// `expr(k)` for `k = $k` (0..n), as an if-chain: each arm is translated on its own, with
/// its constants as immediates.
fn by_k(n: usize, expr: impl Fn(usize) -> String) -> String {
    let mut out = expr(n - 1);
    for k in (0..n - 1).rev() {
        out = format!(
            "(if (result i64) (i32.eq (local.get $k) (i32.const {k})) (then {}) (else {out}))",
            expr(k)
        );
    }
    out
}

/// An edge as the constant of an `i32.const` / `i64.const`.
fn const_of(w: &str, v: u64) -> String {
    if w == "i32" {
        format!("(i32.const {})", v as u32 as i32)
    } else {
        format!("(i64.const {})", v as i64)
    }
}

/// Every binary operator and compare of both widths, and whether it compares.
fn operators() -> impl Iterator<Item = (&'static str, bool)> {
    let binary = [
        "add", "sub", "mul", "and", "or", "xor", "shl", "shr_s", "shr_u", "rotl", "rotr",
    ];
    let compare = [
        "eq", "ne", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u",
    ];
    binary
        .into_iter()
        .map(|op| (op, false))
        .chain(compare.into_iter().map(|op| (op, true)))
}

const I32_A: &str = "(i32.wrap_i64 (local.get $a))";
const I32_B: &str = "(i32.wrap_i64 (local.get $b))";

#[test]
fn every_operator_agrees_with_wasmtime_on_edge_operands() {
    let pairs: Vec<(u64, u64)> = EDGES
        .iter()
        .flat_map(|&a| EDGES.iter().map(move |&b| (a, b)))
        .collect();
    let mut checked = 0;
    for (op, compare) in operators() {
        // A compare's result is 0 or 1: one bit tells it.
        let (b32, b64) = if compare { (1, 1) } else { (32, 64) };
        let e32 = format!("(i64.extend_i32_u (i32.{op} {I32_A} {I32_B}))");
        agree(
            &e32,
            &bit_module(&e32),
            OnTrap::Deny,
            &cells(&pairs, 1, b32),
        );
        let e64 = format!("(i64.{op} (local.get $a) (local.get $b))");
        let e64 = if compare {
            format!("(i64.extend_i32_u {e64})")
        } else {
            e64
        };
        agree(
            &e64,
            &bit_module(&e64),
            OnTrap::Deny,
            &cells(&pairs, 1, b64),
        );
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
        agree(e, &bit_module(e), OnTrap::Deny, &cells(&pairs, 1, 64));
        checked += 1;
    }
    assert_eq!(checked, 2 * operators().count() + unary.len());
}

/// The same operators with one operand a constant (the translator uses it as the
/// instruction's immediate, or loads it in the fewest instructions): for each operator one
/// module whose arm `k` computes `a op EDGES[k]` (k < 13) or `EDGES[k-13] op b`.
#[test]
fn every_operator_agrees_with_wasmtime_on_constant_operands() {
    let lhs: Vec<(u64, u64)> = EDGES.iter().map(|&a| (a, a.rotate_left(17))).collect();
    let n = EDGES.len();
    for (op, compare) in operators() {
        for w in ["i32", "i64"] {
            let var = |v: &str| {
                if w == "i32" {
                    format!("(i32.wrap_i64 (local.get ${v}))")
                } else {
                    format!("(local.get ${v})")
                }
            };
            let e = by_k(2 * n, |k| {
                let (x, y) = if k < n {
                    (var("a"), const_of(w, EDGES[k]))
                } else {
                    (const_of(w, EDGES[k - n]), var("b"))
                };
                let r = format!("({w}.{op} {x} {y})");
                if w == "i32" || compare {
                    format!("(i64.extend_i32_u {r})")
                } else {
                    r
                }
            });
            let bits = if compare {
                1
            } else if w == "i32" {
                32
            } else {
                64
            };
            let what = format!("{w}.{op} with constants");
            agree(
                &what,
                &bit_module(&e),
                OnTrap::Deny,
                &cells(&lhs, 2 * n as u8, bits),
            );
        }
    }
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
    // Every load through bpf_skb_load_bytes, the path of bytes beyond the linear part of a
    // non-linear skb (a test run's skb is always linear).
    agree_with(
        "helper loads",
        &wasm,
        OnTrap::Deny,
        PacketLoads::HelperOnly,
        &ps,
    );
    let example = wat::parse_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/wasm/verdict/ssh-syn.wat"
    ))
    .unwrap();
    let m = VerdictModule::parse(&example).unwrap();
    let ps = packets(&m, 2000, 11);
    agree("ssh-syn", &example, OnTrap::Deny, &ps);
    agree_with(
        "ssh-syn, helper loads",
        &example,
        OnTrap::Deny,
        PacketLoads::HelperOnly,
        &ps,
    );
}

/// Values the translator keeps pending (constants, what a local held) must keep Wasm's
/// order: a local read before a `local.set`/`local.tee` of it sees the old value, an `if`
/// with parameters whose then arm ends unreachable still hands the else arm the
/// parameters, and comparisons fused into `if`/`br_if` (both widths, immediates and
/// registers) branch as the materialized result would.
#[test]
fn pending_values_and_fused_conditions_keep_wasm_order() {
    let src = r#"(module
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (import "sluice" "pkt_u32" (func $u32 (param i32) (result i32)))
  (type $p (func (param i32 i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (local $x i32) (local $y i64) (local $acc i32)
    (local.set $x (call $u8 (i32.const 0)))
    (local.set $y (i64.extend_i32_s (call $u32 (i32.const 1))))
    ;; old $x + new $x (tee), old $x * 3 after set
    (local.set $acc
      (i32.add (local.get $x) (local.tee $x (i32.add (local.get $x) (i32.const 5)))))
    (local.get $x)
    (local.set $x (i32.const 3))
    (local.set $acc (i32.xor (local.get $acc) (i32.mul (i32.const 3))))
    ;; if with parameters, then arm unreachable after pushing constants
    (local.get $acc) (local.get $acc) (i32.const 1)
    (if (type $p) (i32.eq (i32.and (local.get $acc) (i32.const 7)) (i32.const 4))
      (then (drop) (drop) (i32.const 7) (i32.const 8) (unreachable))
      (else (i32.sub)))
    (local.set $acc (i32.add))
    ;; fused compares: i64 against an immediate and a register, i32 unsigned, eqz
    (block $b
      (br_if $b (i64.gt_s (local.get $y) (i64.const -5)))
      (local.set $acc (i32.add (local.get $acc) (i32.const 100))))
    (block $c
      (br_if $c (i64.le_u (local.get $y) (i64.extend_i32_u (local.get $acc))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 1000))))
    (if (i32.eqz (i32.and (local.get $acc) (i32.const 3)))
      (then (return (i32.const 2))))
    (if (i32.ge_u (local.get $acc) (i32.const 0x80000000))
      (then (return (i32.const 0))))
    (i32.and (local.get $acc) (i32.const 3))))"#;
    let wasm = wat::parse_str(src).unwrap();
    let m = VerdictModule::parse(&wasm).unwrap();
    let mut ps = packets(&m, 500, 3);
    for x in 0..=255u8 {
        for y in [
            0u32,
            1,
            5,
            0xffff_fffb,
            0xffff_fffa,
            0x8000_0000,
            0x7fff_ffff,
            300,
        ] {
            let mut p = vec![x];
            p.extend_from_slice(&y.to_be_bytes());
            ps.push(p);
        }
    }
    agree("pending values", &wasm, OnTrap::Deny, &ps);
}

/// A function that fills the whole stack the program leaves (20 locals, an expression 40
/// deep: 63 slots of 8 bytes with the load buffer) passes the verifier and agrees with
/// wasmtime; one level deeper is refused before anything is loaded.
#[test]
fn a_function_using_the_whole_stack_verifies_and_agrees() {
    let build = |depth: usize| {
        let mut locals = String::new();
        let mut sets = String::new();
        for i in 0..20 {
            locals.push_str(&format!("(local $l{i} i32)"));
            sets.push_str(&format!("(local.set $l{i} (call $u8 (i32.const {i})))"));
        }
        // The innermost value is in a block, so every value above it is stored in its slot.
        let mut e = "(block (result i32) (local.get 0))".to_string();
        for d in (0..depth).rev() {
            let lhs = if d % 2 == 0 {
                format!("(call $u8 (i32.const {}))", d % 24)
            } else {
                format!("(local.get $l{})", d % 20)
            };
            let op = ["i32.add", "i32.xor", "i32.sub", "i32.mul"][d % 4];
            e = format!("({op} {lhs} {e})");
        }
        wat::parse_str(format!(
            r#"(module
  (import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32) {locals}
    {sets}
    (i32.and {e} (i32.const 3))))"#
        ))
        .unwrap()
    };
    let full = build(40);
    let m = VerdictModule::parse(&full).unwrap();
    let mut ps = packets(&m, 300, 5);
    ps.extend((0..=255u8).map(|b| (0..24u8).map(|i| b ^ i.wrapping_mul(29)).collect()));
    agree("whole stack", &full, OnTrap::Deny, &ps);
    let over = build(41);
    let m = VerdictModule::parse(&over).unwrap();
    assert!(matches!(
        sluice_compiler::wasm_verdict::standalone_program(&m, OnTrap::Deny),
        Err(sluice_compiler::wasm_verdict::VerdictError::StackTooDeep { .. })
    ));
}
