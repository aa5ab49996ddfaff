//! The first stage: is this a verdict module v1 can translate?
//!
//! wasmparser's validator checks the module with the v1 feature set (no floats, SIMD,
//! threads, bulk memory, memory64, reference types), then this file checks its shape (imports
//! only the `sluice` pkt_* functions with their types, exports `verdict: (i32) -> i32`, no
//! start function) and maps every operator of `verdict` onto [`Op`], the owned allow-list
//! the translator reads. An operator outside it is refused where it stands: function index,
//! byte offset in the module, what was found and what v1 allows. Other functions are
//! validated but not translated: v1 has no calls except to the imports, so they never run.

use super::{ALLOWED_OPERATORS, VerdictError};
use sluice_policy::verdict::{EXPORT_VERDICT, IMPORT_MODULE, IMPORTS};
use wasmparser::{
    BlockType, CompositeInnerType, ExternalKind, FuncType, Operator, Parser, Payload, TypeRef,
    ValType, Validator, WasmFeatures,
};

/// Integer width of an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum W {
    I32,
    I64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bin {
    Add,
    Sub,
    Mul,
    And,
    Or,
    Xor,
    Shl,
    ShrS,
    ShrU,
    Rotl,
    Rotr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    LtS,
    LtU,
    GtS,
    GtU,
    LeS,
    LeU,
    GeS,
    GeU,
}

/// A block's signature, in values (every value takes one slot whatever its type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockSig {
    pub params: u32,
    pub results: u32,
}

/// One of the `sluice` imports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Import {
    /// `pkt_len() -> i32`.
    Len,
    /// `pkt_u8/u16/u32(offset) -> i32`: a big-endian load of 1, 2 or 4 bytes.
    Load(u8),
}

/// An operator of the v1 subset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    I32Const(i32),
    I64Const(i64),
    LocalGet(u32),
    LocalSet(u32),
    LocalTee(u32),
    Bin(Bin, W),
    Cmp(Cmp, W),
    Eqz(W),
    /// `i32.wrap_i64`.
    Wrap,
    /// `i64.extend_i32_s` (true) or `_u`.
    Extend32 {
        signed: bool,
    },
    /// `iN.extendB_s`: sign-extend the low `bits` bits.
    SignExt {
        w: W,
        bits: u8,
    },
    Select,
    Drop,
    Nop,
    Block(BlockSig),
    If(BlockSig),
    Else,
    End,
    Br(u32),
    BrIf(u32),
    BrTable {
        targets: Vec<u32>,
        default: u32,
    },
    Return,
    Unreachable,
    Call(Import),
}

/// What the translator needs from a module.
#[derive(Clone, Debug)]
pub(crate) struct ModuleInfo {
    /// Index of `verdict` in the function index space.
    pub func: u32,
    /// Declared locals of `verdict` (after its one parameter).
    pub locals: u32,
    /// Byte offset of `verdict`'s body (for diagnostics about the whole function).
    pub body_offset: usize,
    /// The body's operators, each with its byte offset in the module.
    pub ops: Vec<(usize, Op)>,
}

/// The features v1 validates with: the 1.0 integer core plus what toolchains emit for it.
fn features() -> WasmFeatures {
    WasmFeatures::GC_TYPES
        | WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::MULTI_VALUE
        // Only how call_indirect's table index is encoded; call_indirect is still refused.
        | WasmFeatures::CALL_INDIRECT_OVERLONG
}

fn shape(offset: usize, found: String, allowed: &'static str) -> VerdictError {
    VerdictError::Shape {
        offset,
        found,
        allowed,
    }
}

fn invalid(e: wasmparser::BinaryReaderError) -> VerdictError {
    VerdictError::Invalid {
        func: None,
        offset: e.offset(),
        message: e.message().to_string(),
    }
}

const IMPORTS_ALLOWED: &str = "only function imports from module `sluice`: pkt_len: () -> i32 \
    and pkt_u8, pkt_u16, pkt_u32: (i32) -> i32";
const EXPORT_ALLOWED: &str = "exactly one exported function `verdict` of type (i32) -> i32, \
    defined in the module";

fn sig(ft: &FuncType) -> (Vec<ValType>, Vec<ValType>) {
    (ft.params().to_vec(), ft.results().to_vec())
}

/// Validates `wasm` and reads what the translator needs.
pub(crate) fn check(wasm: &[u8]) -> Result<ModuleInfo, VerdictError> {
    if let Err(e) = Validator::new_with_features(features()).validate_all(wasm) {
        return Err(VerdictError::Invalid {
            func: function_at(wasm, e.offset()),
            offset: e.offset(),
            message: e.message().to_string(),
        });
    }

    let mut types: Vec<FuncType> = Vec::new();
    // Imported functions: which import each index is.
    let mut imports: Vec<Import> = Vec::new();
    // Type index of each defined function.
    let mut defined: Vec<u32> = Vec::new();
    let mut verdict: Option<(u32, usize)> = None;
    let mut bodies = Vec::new();

    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(r) => {
                for group in r {
                    for sub in group.map_err(invalid)?.into_types() {
                        match sub.composite_type.inner {
                            CompositeInnerType::Func(f) => types.push(f),
                            // GC types are off: the validator refused them already.
                            _ => types.push(FuncType::new([], [])),
                        }
                    }
                }
            }
            Payload::ImportSection(r) => {
                for imp in r.into_imports_with_offsets() {
                    let (offset, imp) = imp.map_err(invalid)?;
                    let what = format!("import `{}.{}`", imp.module, imp.name);
                    let TypeRef::Func(ty) = imp.ty else {
                        return Err(shape(
                            offset,
                            format!("{what} (not a function)"),
                            IMPORTS_ALLOWED,
                        ));
                    };
                    let Some(&(_, size)) = IMPORTS.iter().find(|(n, _)| *n == imp.name) else {
                        return Err(shape(offset, what, IMPORTS_ALLOWED));
                    };
                    if imp.module != IMPORT_MODULE {
                        return Err(shape(offset, what, IMPORTS_ALLOWED));
                    }
                    let want = if size == 0 {
                        (vec![], vec![ValType::I32])
                    } else {
                        (vec![ValType::I32], vec![ValType::I32])
                    };
                    let got = sig(&types[ty as usize]);
                    if got != want {
                        return Err(shape(
                            offset,
                            format!("{what} of type {:?} -> {:?}", got.0, got.1),
                            IMPORTS_ALLOWED,
                        ));
                    }
                    imports.push(if size == 0 {
                        Import::Len
                    } else {
                        Import::Load(size as u8)
                    });
                }
            }
            Payload::FunctionSection(r) => {
                for ty in r {
                    defined.push(ty.map_err(invalid)?);
                }
            }
            Payload::ExportSection(r) => {
                for e in r.into_iter_with_offsets() {
                    let (at, e) = e.map_err(invalid)?;
                    if e.name != EXPORT_VERDICT {
                        continue;
                    }
                    if e.kind != ExternalKind::Func {
                        return Err(shape(
                            at,
                            format!("export `verdict` is a {:?}", e.kind),
                            EXPORT_ALLOWED,
                        ));
                    }
                    verdict = Some((e.index, at));
                }
            }
            Payload::StartSection { range, .. } => {
                return Err(shape(
                    range.start,
                    "a start function".into(),
                    "no start function",
                ));
            }
            Payload::CodeSectionEntry(body) => bodies.push(body),
            _ => {}
        }
    }

    let Some((func, at)) = verdict else {
        return Err(shape(0, "no export named `verdict`".into(), EXPORT_ALLOWED));
    };
    let Some(local) = (func as usize).checked_sub(imports.len()) else {
        return Err(shape(at, "`verdict` is an import".into(), EXPORT_ALLOWED));
    };
    let got = sig(&types[defined[local] as usize]);
    if got != (vec![ValType::I32], vec![ValType::I32]) {
        return Err(shape(
            at,
            format!("`verdict` has type {:?} -> {:?}", got.0, got.1),
            EXPORT_ALLOWED,
        ));
    }
    let body = &bodies[local];
    let mut locals = 0u32;
    for l in body.get_locals_reader().map_err(invalid)? {
        locals += l.map_err(invalid)?.0;
    }
    let mut ops = Vec::new();
    let mut reader = body.get_operators_reader().map_err(invalid)?;
    while !reader.eof() {
        let (op, offset) = reader.read_with_offset().map_err(invalid)?;
        let op = allow(&op, &types, &imports).ok_or_else(|| VerdictError::Unsupported {
            func,
            offset,
            found: describe(&op),
            allowed: ALLOWED_OPERATORS,
        })?;
        ops.push((offset, op));
    }
    Ok(ModuleInfo {
        func,
        locals,
        body_offset: body.range().start,
        ops,
    })
}

/// The index of the function whose body holds byte `offset`, if the module reads that far.
fn function_at(wasm: &[u8], offset: usize) -> Option<u32> {
    let mut imported = 0u32;
    let mut index = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.ok()? {
            Payload::ImportSection(r) => {
                imported += r
                    .into_imports()
                    .filter(|i| matches!(i, Ok(i) if matches!(i.ty, TypeRef::Func(_))))
                    .count() as u32;
            }
            Payload::CodeSectionEntry(body) => {
                if body.range().contains(&offset) {
                    return Some(imported + index);
                }
                index += 1;
            }
            _ => {}
        }
    }
    None
}

fn block_sig(ty: BlockType, types: &[FuncType]) -> BlockSig {
    match ty {
        BlockType::Empty => BlockSig {
            params: 0,
            results: 0,
        },
        BlockType::Type(_) => BlockSig {
            params: 0,
            results: 1,
        },
        BlockType::FuncType(i) => {
            let f = &types[i as usize];
            BlockSig {
                params: f.params().len() as u32,
                results: f.results().len() as u32,
            }
        }
    }
}

/// The v1 allow-list: `op` as an [`Op`], or `None` when v1 refuses it.
fn allow(op: &Operator<'_>, types: &[FuncType], imports: &[Import]) -> Option<Op> {
    use Operator as O;
    use W::{I32, I64};
    Some(match *op {
        O::I32Const { value } => Op::I32Const(value),
        O::I64Const { value } => Op::I64Const(value),
        O::LocalGet { local_index } => Op::LocalGet(local_index),
        O::LocalSet { local_index } => Op::LocalSet(local_index),
        O::LocalTee { local_index } => Op::LocalTee(local_index),
        O::I32Add => Op::Bin(Bin::Add, I32),
        O::I32Sub => Op::Bin(Bin::Sub, I32),
        O::I32Mul => Op::Bin(Bin::Mul, I32),
        O::I32And => Op::Bin(Bin::And, I32),
        O::I32Or => Op::Bin(Bin::Or, I32),
        O::I32Xor => Op::Bin(Bin::Xor, I32),
        O::I32Shl => Op::Bin(Bin::Shl, I32),
        O::I32ShrS => Op::Bin(Bin::ShrS, I32),
        O::I32ShrU => Op::Bin(Bin::ShrU, I32),
        O::I32Rotl => Op::Bin(Bin::Rotl, I32),
        O::I32Rotr => Op::Bin(Bin::Rotr, I32),
        O::I64Add => Op::Bin(Bin::Add, I64),
        O::I64Sub => Op::Bin(Bin::Sub, I64),
        O::I64Mul => Op::Bin(Bin::Mul, I64),
        O::I64And => Op::Bin(Bin::And, I64),
        O::I64Or => Op::Bin(Bin::Or, I64),
        O::I64Xor => Op::Bin(Bin::Xor, I64),
        O::I64Shl => Op::Bin(Bin::Shl, I64),
        O::I64ShrS => Op::Bin(Bin::ShrS, I64),
        O::I64ShrU => Op::Bin(Bin::ShrU, I64),
        O::I64Rotl => Op::Bin(Bin::Rotl, I64),
        O::I64Rotr => Op::Bin(Bin::Rotr, I64),
        O::I32Eqz => Op::Eqz(I32),
        O::I64Eqz => Op::Eqz(I64),
        O::I32Eq => Op::Cmp(Cmp::Eq, I32),
        O::I32Ne => Op::Cmp(Cmp::Ne, I32),
        O::I32LtS => Op::Cmp(Cmp::LtS, I32),
        O::I32LtU => Op::Cmp(Cmp::LtU, I32),
        O::I32GtS => Op::Cmp(Cmp::GtS, I32),
        O::I32GtU => Op::Cmp(Cmp::GtU, I32),
        O::I32LeS => Op::Cmp(Cmp::LeS, I32),
        O::I32LeU => Op::Cmp(Cmp::LeU, I32),
        O::I32GeS => Op::Cmp(Cmp::GeS, I32),
        O::I32GeU => Op::Cmp(Cmp::GeU, I32),
        O::I64Eq => Op::Cmp(Cmp::Eq, I64),
        O::I64Ne => Op::Cmp(Cmp::Ne, I64),
        O::I64LtS => Op::Cmp(Cmp::LtS, I64),
        O::I64LtU => Op::Cmp(Cmp::LtU, I64),
        O::I64GtS => Op::Cmp(Cmp::GtS, I64),
        O::I64GtU => Op::Cmp(Cmp::GtU, I64),
        O::I64LeS => Op::Cmp(Cmp::LeS, I64),
        O::I64LeU => Op::Cmp(Cmp::LeU, I64),
        O::I64GeS => Op::Cmp(Cmp::GeS, I64),
        O::I64GeU => Op::Cmp(Cmp::GeU, I64),
        O::I32WrapI64 => Op::Wrap,
        O::I64ExtendI32S => Op::Extend32 { signed: true },
        O::I64ExtendI32U => Op::Extend32 { signed: false },
        O::I32Extend8S => Op::SignExt { w: I32, bits: 8 },
        O::I32Extend16S => Op::SignExt { w: I32, bits: 16 },
        O::I64Extend8S => Op::SignExt { w: I64, bits: 8 },
        O::I64Extend16S => Op::SignExt { w: I64, bits: 16 },
        O::I64Extend32S => Op::SignExt { w: I64, bits: 32 },
        O::Select | O::TypedSelect { .. } => Op::Select,
        O::Drop => Op::Drop,
        O::Nop => Op::Nop,
        O::Block { blockty } => Op::Block(block_sig(blockty, types)),
        O::If { blockty } => Op::If(block_sig(blockty, types)),
        O::Else => Op::Else,
        O::End => Op::End,
        O::Br { relative_depth } => Op::Br(relative_depth),
        O::BrIf { relative_depth } => Op::BrIf(relative_depth),
        O::BrTable { ref targets } => Op::BrTable {
            targets: targets.targets().collect::<Result<_, _>>().ok()?,
            default: targets.default(),
        },
        O::Return => Op::Return,
        O::Unreachable => Op::Unreachable,
        O::Call { function_index } => Op::Call(*imports.get(function_index as usize)?),
        _ => return None,
    })
}

/// An operator as the text format spells it (`i32.div_s`, `loop`, `memory.grow`), with the
/// callee for calls: what the diagnostic shows as found.
pub(crate) fn describe(op: &Operator<'_>) -> String {
    if let Operator::Call { function_index } = op {
        return format!("call {function_index} (a function other than the sluice imports)");
    }
    let debug = format!("{op:?}");
    let name = debug.split([' ', '{', '(']).next().unwrap_or(&debug);
    let snake = |s: &str| {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    };
    for prefix in [
        "I32", "I64", "F32", "F64", "V128", "Memory", "Local", "Global", "Table", "Ref", "Data",
        "Elem",
    ] {
        if let Some(rest) = name.strip_prefix(prefix)
            && rest.starts_with(|c: char| c.is_ascii_uppercase())
        {
            return format!("{}.{}", prefix.to_lowercase(), snake(rest));
        }
    }
    snake(name)
}
