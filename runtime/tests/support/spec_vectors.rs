//! The WebAssembly spec's integer test vectors (runtime/tests/wasm-spec/i32.wast, i64.wast) as
//! verdict modules: every `assert_return` whose operator is in the v1 subset becomes a module
//! that computes the operator on the vector's arguments and returns 1 (allow) when the result
//! equals the spec's expected value, 2 (deny) when not. Both engines must say allow.
//!
//! Each vector gives two modules: the arguments as constants (the translator's immediate and
//! constant paths) and the arguments read from the packet (computed at run time in eBPF
//! registers). Shared by the runtime's tests and the kernel tests (`#[path]` include).
#![allow(dead_code)]

use std::collections::HashMap;
use wast::core::{FuncKind, ModuleField, ModuleKind, WastArgCore, WastRetCore};
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastRet, Wat};

/// The operators of the spec files that v1 translates (after the `i32.`/`i64.` prefix).
/// Out: clz, ctz, popcnt (no such eBPF instruction in v1), div and rem (no division in v1).
const IN_SUBSET: &[&str] = &[
    "add",
    "sub",
    "mul",
    "and",
    "or",
    "xor",
    "shl",
    "shr_s",
    "shr_u",
    "rotl",
    "rotr",
    "eq",
    "ne",
    "lt_s",
    "lt_u",
    "gt_s",
    "gt_u",
    "le_s",
    "le_u",
    "ge_s",
    "ge_u",
    "eqz",
    "extend8_s",
    "extend16_s",
    "extend32_s",
    "wrap_i64",
    "extend_i32_s",
    "extend_i32_u",
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val {
    I32(i32),
    I64(i64),
}

impl Val {
    fn ty(self) -> &'static str {
        match self {
            Val::I32(_) => "i32",
            Val::I64(_) => "i64",
        }
    }
    fn konst(self) -> String {
        match self {
            Val::I32(v) => format!("(i32.const {v})"),
            Val::I64(v) => format!("(i64.const {v})"),
        }
    }
    fn bytes(self) -> Vec<u8> {
        match self {
            Val::I32(v) => v.to_be_bytes().to_vec(),
            Val::I64(v) => v.to_be_bytes().to_vec(),
        }
    }
}

/// One `assert_return` of the subset.
#[derive(Clone, Debug)]
pub struct Vector {
    /// `i32.wast:123`
    pub at: String,
    /// The instruction, e.g. `i64.shr_s`.
    pub op: String,
    pub args: Vec<Val>,
    pub expected: Val,
}

impl Vector {
    /// The verdict module checking this vector; arguments from the packet when `from_packet`
    /// (see [`Vector::packet`]).
    pub fn module(&self, from_packet: bool) -> Vec<u8> {
        let mut offset = 0;
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                if !from_packet {
                    return a.konst();
                }
                let o = offset;
                offset += a.bytes().len();
                match a {
                    Val::I32(_) => format!("(call $u32 (i32.const {o}))"),
                    Val::I64(_) => format!(
                        "(i64.or (i64.shl (i64.extend_i32_u (call $u32 (i32.const {o}))) \
                         (i64.const 32)) (i64.extend_i32_u (call $u32 (i32.const {}))))",
                        o + 4
                    ),
                }
            })
            .collect();
        let src = format!(
            r#"(module
  (import "sluice" "pkt_u32" (func $u32 (param i32) (result i32)))
  (func (export "verdict") (param $len i32) (result i32)
    (select (i32.const 1) (i32.const 2)
      ({ty}.eq ({op} {args}) {expected}))))"#,
            ty = self.expected.ty(),
            op = self.op,
            args = args.join(" "),
            expected = self.expected.konst(),
        );
        wat::parse_str(&src).unwrap_or_else(|e| panic!("{}: {e}\n{src}", self.at))
    }

    /// The arguments, big-endian one after the other: the packet of `module(true)`.
    pub fn packet(&self) -> Vec<u8> {
        self.args.iter().flat_map(|a| a.bytes()).collect()
    }
}

/// The vectors of one spec file, and how many `assert_return`s were outside the subset.
pub fn vectors(file: &str) -> (Vec<Vector>, usize) {
    // Relative to this file, wherever it is included from.
    let text = match file {
        "i32.wast" => include_str!("../wasm-spec/i32.wast"),
        "i64.wast" => include_str!("../wasm-spec/i64.wast"),
        other => panic!("no vendored spec file {other}"),
    };
    let prefix = file.trim_end_matches(".wast");
    let buf = ParseBuffer::new(text).unwrap();
    let wast: Wast = parser::parse(&buf).unwrap_or_else(|e| panic!("{file}: {e}"));
    // Export name -> the one operator its function applies to its parameters.
    let mut ops: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    let mut skipped = 0;
    for directive in wast.directives {
        match directive {
            WastDirective::Module(QuoteWat::Wat(Wat::Module(m))) => {
                ops.clear();
                let ModuleKind::Text(fields) = &m.kind else {
                    continue;
                };
                for field in fields {
                    let ModuleField::Func(f) = field else {
                        continue;
                    };
                    let FuncKind::Inline { expression, .. } = &f.kind else {
                        continue;
                    };
                    let body: Vec<String> = expression
                        .instrs
                        .iter()
                        .map(|i| format!("{i:?}"))
                        .filter(|i| !squash(i).starts_with("localget"))
                        .collect();
                    for name in &f.exports.names {
                        if let [op] = body.as_slice() {
                            ops.insert(name.to_string(), op.clone());
                        }
                    }
                }
            }
            WastDirective::AssertReturn {
                span,
                exec: WastExecute::Invoke(invoke),
                results,
            } => {
                let (line, _) = span.linecol_in(text);
                let at = format!("{file}:{}", line + 1);
                if !IN_SUBSET.contains(&invoke.name) {
                    skipped += 1;
                    continue;
                }
                let op = format!("{prefix}.{}", invoke.name);
                // The export's name is the instruction's: checked against the function body.
                let body = ops.get(invoke.name).map(String::as_str).unwrap_or("?");
                assert_eq!(
                    squash(&op),
                    squash(body),
                    "{at}: `{}` is not {op}",
                    invoke.name
                );
                let args = invoke.args.iter().map(|a| arg(a, &at)).collect();
                let [WastRet::Core(ret)] = results.as_slice() else {
                    panic!("{at}: one core result expected");
                };
                let expected = match ret {
                    WastRetCore::I32(v) => Val::I32(*v),
                    WastRetCore::I64(v) => Val::I64(*v),
                    other => panic!("{at}: result {other:?}"),
                };
                out.push(Vector {
                    at,
                    op,
                    args,
                    expected,
                });
            }
            _ => {}
        }
    }
    (out, skipped)
}

/// An instruction's name without case, dots and underscores, however it is spelled
/// (`i32.shr_s`, `I32ShrS`).
fn squash(s: &str) -> String {
    s.split('(')
        .next()
        .unwrap_or(s)
        .replace(['.', '_'], "")
        .to_lowercase()
}

fn arg(a: &WastArg<'_>, at: &str) -> Val {
    match a {
        WastArg::Core(WastArgCore::I32(v)) => Val::I32(*v),
        WastArg::Core(WastArgCore::I64(v)) => Val::I64(*v),
        other => panic!("{at}: argument {other:?}"),
    }
}
