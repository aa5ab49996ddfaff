//! Every kind of refusal, with its location, and the translation's shape (no kernel here:
//! `loader/cli/tests/verdict_kernel.rs` runs translated code against wasmtime).

use super::*;
use crate::bpf::insn::decode_all;

fn wasm(src: &str) -> Vec<u8> {
    wat::parse_str(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// A module whose `verdict` body is `body` (with a local `$x i32`) after `extra` items.
fn module(extra: &str, body: &str) -> Vec<u8> {
    wasm(&format!(
        r#"(module {extra}
             (func (export "verdict") (param $len i32) (result i32) (local $x i32) {body}))"#
    ))
}

fn refuse(bytes: &[u8]) -> VerdictError {
    VerdictModule::parse(bytes).expect_err("refused")
}

/// The byte offset of the first occurrence of `op` (an opcode byte sequence) in the
/// function body of `bytes`' last code entry: where the diagnostic must point.
fn offset_of(bytes: &[u8], op: &[u8]) -> usize {
    let mut body = 0..0;
    for p in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::CodeSectionEntry(b) = p.unwrap() {
            body = b.range();
        }
    }
    bytes[body.clone()]
        .windows(op.len())
        .position(|w| w == op)
        .map(|p| body.start + p)
        .expect("opcode in the body")
}

#[test]
fn each_refused_operator_is_located_and_named() {
    // (body, extra items, opcode bytes, what the diagnostic names)
    let cases: &[(&str, &str, &[u8], &str)] = &[
        ("(loop (br 0)) (i32.const 0)", "", &[0x03], "loop"),
        (
            "(i32.div_s (local.get 0) (i32.const 3))",
            "",
            &[0x6d],
            "i32.div_s",
        ),
        (
            "(i32.rem_u (local.get 0) (i32.const 3))",
            "",
            &[0x70],
            "i32.rem_u",
        ),
        (
            "(i32.load (i32.const 0))",
            "(memory 1)",
            &[0x28],
            "i32.load",
        ),
        (
            "(i32.store (i32.const 0) (i32.const 1)) (i32.const 0)",
            "(memory 1)",
            &[0x36],
            "i32.store",
        ),
        (
            "(drop (memory.grow (i32.const 1))) (i32.const 0)",
            "(memory 1)",
            &[0x40],
            "memory.grow",
        ),
        (
            "(global.get $g)",
            "(global $g i32 (i32.const 0))",
            &[0x23],
            "global.get",
        ),
        ("(i32.clz (local.get 0))", "", &[0x67], "i32.clz"),
        ("(i32.popcnt (local.get 0))", "", &[0x69], "i32.popcnt"),
        (
            "(call $f)",
            "(func $f (result i32) (i32.const 0))",
            &[0x10, 0x00],
            "call 0",
        ),
        (
            "(call_indirect (type $t) (i32.const 0))",
            "(type $t (func (result i32))) (table 1 funcref)",
            &[0x11],
            "call_indirect",
        ),
    ];
    for &(body, extra, op, name) in cases {
        let bytes = module(extra, body);
        match refuse(&bytes) {
            VerdictError::Unsupported {
                func,
                offset,
                found,
                allowed,
            } => {
                let want_func = u32::from(extra.contains("(func $"));
                assert_eq!(func, want_func, "{body}");
                assert!(found.starts_with(name), "{body}: found {found}");
                assert_eq!(offset, offset_of(&bytes, op), "{body}");
                assert_eq!(allowed, ALLOWED_OPERATORS);
                let text = refuse(&bytes).to_string();
                assert!(
                    text.contains(&format!("function {func}"))
                        && text.contains(&format!("{offset:#x}"))
                        && text.contains(name),
                    "{text}"
                );
            }
            e => panic!("{body}: {e:?}"),
        }
    }
}

#[test]
fn floats_simd_and_bulk_memory_fail_validation_with_a_location() {
    for (extra, body, op) in [
        ("", "(i32.trunc_f32_s (f32.const 1))", 0x43u8),
        (
            "(memory 1)",
            "(memory.fill (i32.const 0) (i32.const 0) (i32.const 1)) (i32.const 0)",
            0xfc,
        ),
        ("", "(drop (v128.const i64x2 0 0)) (i32.const 0)", 0xfd),
        ("", "(i32.atomic.load (i32.const 0))", 0xfe),
    ] {
        let src = format!(
            r#"(module {extra} (memory 1 1 shared)
                 (func (export "verdict") (param i32) (result i32) {body}))"#
        );
        let src = if body.contains("atomic") {
            src
        } else {
            src.replace("(memory 1 1 shared)", "")
        };
        let bytes = wasm(&src);
        match refuse(&bytes) {
            VerdictError::Invalid {
                func,
                offset,
                message,
            } => {
                // Shared memory fails at the memory section; everything else in the body.
                if !body.contains("atomic") {
                    assert_eq!(func, Some(0), "{body}: {message}");
                    assert_eq!(bytes[offset], op, "{body}: {message}");
                }
                assert!(!message.is_empty());
            }
            e => panic!("{body}: {e:?}"),
        }
    }
}

#[test]
fn module_shape_is_checked() {
    let ok_body = r#"(func (export "verdict") (param i32) (result i32) (i32.const 0))"#;
    let cases = [
        (
            format!(r#"(module (import "env" "pkt_len" (func (result i32))) {ok_body})"#),
            "import `env.pkt_len`",
        ),
        (
            format!(r#"(module (import "sluice" "pkt_u64" (func (param i32) (result i64))) {ok_body})"#),
            "import `sluice.pkt_u64`",
        ),
        (
            format!(r#"(module (import "sluice" "pkt_u8" (func (param i64) (result i32))) {ok_body})"#),
            "import `sluice.pkt_u8` of type",
        ),
        (
            format!(r#"(module (import "sluice" "pkt_len" (memory 1)) {ok_body})"#),
            "not a function",
        ),
        (
            r#"(module (func (export "verdikt") (param i32) (result i32) (i32.const 0)))"#.into(),
            "no export named `verdict`",
        ),
        (
            r#"(module (func (export "verdict") (param i64) (result i32) (i32.const 0)))"#.into(),
            "`verdict` has type",
        ),
        (
            r#"(module (import "sluice" "pkt_len" (func $l (result i32))) (export "verdict" (func $l)))"#.into(),
            "`verdict` is an import",
        ),
        (
            r#"(module (global (export "verdict") i32 (i32.const 0)))"#.into(),
            "export `verdict` is a",
        ),
        (
            format!(r#"(module (func $s) (start $s) {ok_body})"#),
            "a start function",
        ),
    ];
    for (src, want) in cases {
        match refuse(&wasm(&src)) {
            VerdictError::Shape { found, offset, .. } => {
                assert!(found.contains(want), "{src}: {found}");
                assert!(offset > 0 || want.contains("no export"), "{src}: {offset}");
                // An export error points at the export's entry: its name follows the offset.
                if want.contains("export `verdict`") || want.contains("`verdict` is") {
                    let bytes = wasm(&src);
                    assert_eq!(&bytes[offset..offset + 8], b"\x07verdict", "{src}");
                }
            }
            e => panic!("{src}: {e:?}"),
        }
    }
}

#[test]
fn what_rust_toolchains_emit_beside_verdict_is_accepted() {
    // A memory, the three globals, an unused function with memory code, other exports.
    let bytes = wasm(
        r#"(module
             (memory (export "memory") 16)
             (global $__stack_pointer (mut i32) (i32.const 1048576))
             (global (export "__data_end") i32 (i32.const 1048576))
             (global (export "__heap_base") i32 (i32.const 1048576))
             (func $unused (result i32) (i32.load (i32.const 0)))
             (func (export "verdict") (param i32) (result i32) (i32.const 1)))"#,
    );
    let m = VerdictModule::parse(&bytes).unwrap();
    assert_eq!(m.function_index(), 1);
    assert_eq!(m.digest(), sluice_policy::Digest::of(&bytes).0);
}

#[test]
fn a_function_needing_more_than_the_stack_is_refused_where_it_overflows() {
    // 70 locals do not fit in 512 bytes at 8 each.
    let locals = (0..70).map(|_| "(local i32)").collect::<String>();
    let bytes = wasm(&format!(
        r#"(module (func (export "verdict") (param i32) (result i32) {locals} (i32.const 0)))"#
    ));
    let m = VerdictModule::parse(&bytes).unwrap();
    match standalone_program(&m, OnTrap::Deny) {
        Err(VerdictError::StackTooDeep {
            func: 0,
            needed,
            available,
            ..
        }) => assert!(needed > available, "{needed} {available}"),
        other => panic!("{other:?}"),
    }
    // A deep expression: 60 nested adds need 61 operand slots at the innermost constant.
    let mut expr = String::from("(i32.const 1)");
    for _ in 0..60 {
        expr = format!("(i32.add (i32.const 1) {expr})");
    }
    let bytes = module("", &expr);
    let m = VerdictModule::parse(&bytes).unwrap();
    match standalone_program(&m, OnTrap::Deny) {
        Err(
            e @ VerdictError::StackTooDeep {
                func: 0, offset, ..
            },
        ) => {
            // It points at a constant inside the body.
            assert_eq!(bytes[offset], 0x41, "{e}");
        }
        other => panic!("{other:?}"),
    }
    // With a little less it fits.
    let mut expr = String::from("(i32.const 1)");
    for _ in 0..40 {
        expr = format!("(i32.add (i32.const 1) {expr})");
    }
    standalone_program(
        &VerdictModule::parse(&module("", &expr)).unwrap(),
        OnTrap::Deny,
    )
    .unwrap();
}

fn program_insns(m: &VerdictModule, on_trap: OnTrap) -> Vec<crate::bpf::Insn> {
    use object::{Object, ObjectSection};
    let art = standalone_program(m, on_trap).unwrap();
    let f = object::File::parse(&*art.elf).unwrap();
    let sec = f.section_by_name("classifier/verdict").unwrap();
    decode_all(sec.data().unwrap()).unwrap()
}

#[test]
fn the_standalone_program_returns_only_tc_ok_or_shot() {
    let m = VerdictModule::parse(&module(
        r#"(import "sluice" "pkt_u8" (func $u8 (param i32) (result i32)))"#,
        "(if (result i32) (call $u8 (i32.const 0)) (then (unreachable)) (else (local.get 0)))",
    ))
    .unwrap();
    for on_trap in [OnTrap::Deny, OnTrap::Allow, OnTrap::Pass] {
        let insns = program_insns(&m, on_trap);
        // Every exit is preceded by `r0 = 0` or `r0 = 2`.
        let exits: Vec<i32> = insns
            .windows(2)
            .filter(|w| w[1] == crate::bpf::Insn::exit())
            .map(|w| {
                assert_eq!(w[0].code, crate::bpf::Insn::mov64(Reg::R0, 0).code);
                w[0].imm
            })
            .collect();
        assert!(exits.iter().all(|&c| c == 0 || c == 2), "{exits:?}");
        // pass, allow, deny, unreachable, out of bounds, bad verdict.
        assert_eq!(exits.len(), 6, "{on_trap:?}");
        let trap_code = if on_trap == OnTrap::Deny { 2 } else { 0 };
        assert_eq!(&exits[3..], &[trap_code; 3], "{on_trap:?}");
    }
}

#[test]
fn dead_code_after_branches_is_not_emitted() {
    // Everything after `return` is unreachable: the program has only the exits it takes.
    let m = VerdictModule::parse(&module(
        "",
        "(return (i32.const 1)) (drop (i32.add (i32.const 1) (i32.const 2))) (i32.const 2)",
    ))
    .unwrap();
    let insns = program_insns(&m, OnTrap::Deny);
    // No 32-bit add, with a register or an immediate operand (the source bit masked off).
    let add32 = crate::bpf::Insn::alu32(crate::bpf::AluOp::Add, Reg::R0, 0).code;
    assert!(!insns.iter().any(|i| i.code & !0x08 == add32), "{insns:?}");
    // Returning a constant goes straight to its exit, the only one there is: save the
    // context, set the locals (4 + 2), jump, write cb[0] (3), return (2).
    let exit = crate::bpf::Insn::exit();
    assert_eq!(insns.iter().filter(|i| **i == exit).count(), 1);
    assert_eq!(insns.len(), 12, "{insns:?}");
}

use crate::bpf::Reg;
