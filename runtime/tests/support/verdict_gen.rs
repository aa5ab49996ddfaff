//! Random verdict modules inside the v1 subset (spec/wasm-verdict.md), and packets to run them
//! on: the inputs of the differential tests that prove the translated eBPF equal to wasmtime.
//!
//! Our own generator (not wasm-smith): it has to stay inside the subset by construction and
//! still reach what the translator finds hard, so it aims at edges rather than at uniformity:
//! - straight-line code and nested `block`/`if`/`else` with `br`, `br_if`, `return`,
//!   `unreachable`, value-carrying blocks and ifs, `select`, `drop`, `local.set/tee`;
//! - every allowed i32/i64 operator (see [`BIN32`] etc.), operands from an edge pool
//!   (0, ±1, INT_MIN, INT_MAX, shift counts 31/32/63/64, ...);
//! - `pkt_*` loads at constant edge offsets, at `len - size (+1)`, at masked computed offsets
//!   and at arbitrary ones (negative, huge), so loads trap on some packets and not others;
//! - verdicts 0/1/2 chosen by packet-dependent conditions, and invalid ones (3, -1, raw values).
//!
//! Everything is a function of one `u64` seed, so a failure names its seed and reproduces.
//! Shared by the runtime's tests and the kernel differential tests (`#[path]` include).
#![allow(dead_code)]

use wasm_encoder::{
    BlockType, CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection,
    ImportSection, Instruction as I, Module, TypeSection, ValType,
};

/// SplitMix64: tiny, seedable, good enough to pick shapes.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `pct`%.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    pub fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }
}

// Function indices: the four imports, then `verdict`.
pub const F_PKT_LEN: u32 = 0;
pub const F_PKT_U8: u32 = 1;
pub const F_PKT_U16: u32 = 2;
pub const F_PKT_U32: u32 = 3;
const F_VERDICT: u32 = 4;

pub const BIN32: &[I<'static>] = &[
    I::I32Add,
    I::I32Sub,
    I::I32Mul,
    I::I32And,
    I::I32Or,
    I::I32Xor,
    I::I32Shl,
    I::I32ShrS,
    I::I32ShrU,
    I::I32Rotl,
    I::I32Rotr,
];
pub const BIN64: &[I<'static>] = &[
    I::I64Add,
    I::I64Sub,
    I::I64Mul,
    I::I64And,
    I::I64Or,
    I::I64Xor,
    I::I64Shl,
    I::I64ShrS,
    I::I64ShrU,
    I::I64Rotl,
    I::I64Rotr,
];
pub const REL32: &[I<'static>] = &[
    I::I32Eq,
    I::I32Ne,
    I::I32LtS,
    I::I32LtU,
    I::I32GtS,
    I::I32GtU,
    I::I32LeS,
    I::I32LeU,
    I::I32GeS,
    I::I32GeU,
];
pub const REL64: &[I<'static>] = &[
    I::I64Eq,
    I::I64Ne,
    I::I64LtS,
    I::I64LtU,
    I::I64GtS,
    I::I64GtU,
    I::I64LeS,
    I::I64LeU,
    I::I64GeS,
    I::I64GeU,
];
/// i32 -> i32 and i64 -> i64 sign extensions (the sign-extension proposal, in Wasm 2.0).
pub const EXT32: &[I<'static>] = &[I::I32Extend8S, I::I32Extend16S];
pub const EXT64: &[I<'static>] = &[I::I64Extend8S, I::I64Extend16S, I::I64Extend32S];

const EDGE32: &[i32] = &[
    0,
    1,
    -1,
    2,
    3,
    7,
    8,
    15,
    16,
    31,
    32,
    33,
    63,
    64,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x45,
    i32::MIN,
    i32::MAX,
    i32::MIN + 1,
    i32::MAX - 1,
];
const EDGE64: &[i64] = &[
    0,
    1,
    -1,
    2,
    31,
    32,
    63,
    64,
    65,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    -0x8000_0000,
    i64::MIN,
    i64::MAX,
    i64::MIN + 1,
];
/// Packet bytes: the edges of byte and word comparisons, and a few header values.
const BYTES: &[u8] = &[
    0, 1, 2, 0x7f, 0x80, 0xff, 0x45, 0x06, 0x11, 0x16, 0x0a, 0x12,
];

/// A generated module: its bytes, the seed it came from, and the end offsets (`offset + size`)
/// of its constant-offset loads, around which packet lengths are interesting.
pub struct Generated {
    pub seed: u64,
    pub wasm: Vec<u8>,
    pub load_ends: Vec<usize>,
}

/// What kinds of branch target an enclosing label is.
#[derive(Clone, Copy, PartialEq)]
enum Label {
    /// A `block`/`if` with no result: statements may branch to it.
    Empty,
    /// A value-carrying block or if: only its own generator branches to it.
    Value,
}

struct Gen {
    rng: Rng,
    code: Vec<I<'static>>,
    n32: u32,
    n64: u32,
    labels: Vec<Label>,
    /// Instructions left before expressions collapse to leaves.
    budget: i64,
    load_ends: Vec<usize>,
}

impl Gen {
    fn emit(&mut self, i: I<'static>) {
        self.budget -= 1;
        self.code.push(i);
    }

    fn local32(&mut self) -> u32 {
        // 0 is the `len` parameter.
        self.rng.below(self.n32 as usize + 1) as u32
    }

    fn local64(&mut self) -> Option<u32> {
        (self.n64 > 0).then(|| 1 + self.n32 + self.rng.below(self.n64 as usize) as u32)
    }

    fn const32(&mut self) -> i32 {
        if self.rng.chance(75) {
            self.rng.pick(EDGE32)
        } else {
            self.rng.next() as i32
        }
    }

    fn const64(&mut self) -> i64 {
        match self.rng.below(4) {
            0 | 1 => self.rng.pick(EDGE64),
            2 => self.rng.pick(EDGE32) as i64,
            _ => self.rng.next() as i64,
        }
    }

    fn leaf(&mut self, ty: ValType) {
        match (ty, self.rng.below(7)) {
            (ValType::I32, 0..=2) => {
                let c = self.const32();
                self.emit(I::I32Const(c))
            }
            (ValType::I32, 3) => self.emit(I::Call(F_PKT_LEN)),
            (ValType::I32, 4) => self.load(0),
            (ValType::I32, _) => {
                let l = self.local32();
                self.emit(I::LocalGet(l))
            }
            (_, 0..=3) => {
                let c = self.const64();
                self.emit(I::I64Const(c))
            }
            _ => match self.local64() {
                Some(l) => self.emit(I::LocalGet(l)),
                None => {
                    let c = self.const64();
                    self.emit(I::I64Const(c))
                }
            },
        }
    }

    /// A `pkt_u8/16/32` load, leaving an i32.
    fn load(&mut self, depth: u32) {
        let (f, size) = self
            .rng
            .pick(&[(F_PKT_U8, 1), (F_PKT_U16, 2), (F_PKT_U32, 4)]);
        match self.rng.below(14) {
            // Constant offsets in and around a real header.
            0..=6 => {
                let off = if self.rng.chance(92) {
                    self.rng.below(44) as i32
                } else {
                    self.rng
                        .pick(&[-1, -4, i32::MIN, i32::MAX, i32::MAX - 3, 0xffff, 0x1_0000])
                };
                if off >= 0 {
                    self.load_ends.push(off as usize + size as usize);
                }
                self.emit(I::I32Const(off));
            }
            // The last bytes of the packet, and one past them.
            7 | 8 => {
                let len = if self.rng.chance(50) {
                    I::LocalGet(0)
                } else {
                    I::Call(F_PKT_LEN)
                };
                self.emit(len);
                let back = size - self.rng.below(3) as i32 + 1;
                self.emit(I::I32Const(back));
                self.emit(I::I32Sub);
            }
            // Computed offsets, masked into a small range.
            9..=12 => {
                self.expr(ValType::I32, depth.saturating_sub(1));
                let mask = self.rng.pick(&[0x1f, 0x3f, 0x7f, 0xff]);
                self.emit(I::I32Const(mask));
                self.emit(I::I32And);
            }
            // Anything at all (usually out of bounds).
            _ => self.expr(ValType::I32, depth.saturating_sub(1)),
        }
        self.emit(I::Call(f));
    }

    fn expr(&mut self, ty: ValType, depth: u32) {
        if depth == 0 || self.budget <= 0 {
            return self.leaf(ty);
        }
        let d = depth - 1;
        match ty {
            ValType::I32 => match self.rng.below(16) {
                0 => self.leaf(ty),
                1..=3 => {
                    self.expr(ty, d);
                    self.expr(ty, d);
                    let op = self.rng.pick(BIN32);
                    self.emit(op);
                }
                4 => {
                    self.expr(ty, d);
                    self.expr(ty, d);
                    let op = self.rng.pick(REL32);
                    self.emit(op);
                }
                5 => {
                    self.expr(ValType::I64, d);
                    self.expr(ValType::I64, d);
                    let op = self.rng.pick(REL64);
                    self.emit(op);
                }
                6 => {
                    let t = self.rng.pick(&[ValType::I32, ValType::I64]);
                    self.expr(t, d);
                    self.emit(if t == ValType::I32 {
                        I::I32Eqz
                    } else {
                        I::I64Eqz
                    });
                }
                7 => {
                    self.expr(ValType::I64, d);
                    self.emit(I::I32WrapI64);
                }
                8 => {
                    self.expr(ty, d);
                    let op = self.rng.pick(EXT32);
                    self.emit(op);
                }
                9 | 10 => self.load(d),
                _ => self.shared(ty, d),
            },
            _ => match self.rng.below(12) {
                0 => self.leaf(ty),
                1..=4 => {
                    self.expr(ty, d);
                    self.expr(ty, d);
                    let op = self.rng.pick(BIN64);
                    self.emit(op);
                }
                5 | 6 => {
                    self.expr(ValType::I32, d);
                    let op = self.rng.pick(&[I::I64ExtendI32S, I::I64ExtendI32U]);
                    self.emit(op);
                }
                7 => {
                    self.expr(ty, d);
                    let op = self.rng.pick(EXT64);
                    self.emit(op);
                }
                _ => self.shared(ty, d),
            },
        }
    }

    /// Expressions of either type: select, tee, value-carrying block and if.
    fn shared(&mut self, ty: ValType, d: u32) {
        match self.rng.below(5) {
            0 | 1 => {
                self.expr(ty, d);
                self.expr(ty, d);
                self.expr(ValType::I32, d);
                self.emit(I::Select);
            }
            2 => {
                let l = match ty {
                    ValType::I32 => Some(self.local32()),
                    _ => self.local64(),
                };
                self.expr(ty, d);
                if let Some(l) = l {
                    self.emit(I::LocalTee(l));
                }
            }
            3 => {
                // block (result ty): statements, an early exit with a value, a fallthrough value.
                self.emit(I::Block(BlockType::Result(ty)));
                self.labels.push(Label::Value);
                self.stmts(d, 2);
                if self.rng.chance(70) {
                    self.expr(ty, d);
                    self.expr(ValType::I32, d);
                    self.emit(I::BrIf(0));
                    self.emit(I::Drop);
                }
                self.expr(ty, d);
                self.labels.pop();
                self.emit(I::End);
            }
            _ => {
                self.expr(ValType::I32, d);
                self.emit(I::If(BlockType::Result(ty)));
                self.labels.push(Label::Value);
                self.stmts(d, 1);
                self.expr(ty, d);
                self.emit(I::Else);
                self.stmts(d, 1);
                self.expr(ty, d);
                self.labels.pop();
                self.emit(I::End);
            }
        }
    }

    /// Up to `max` statements (leaving the stack as it was).
    fn stmts(&mut self, depth: u32, max: usize) {
        for _ in 0..self.rng.below(max + 1) {
            if self.budget <= 0 {
                return;
            }
            self.stmt(depth);
        }
    }

    /// Relative index of a random enclosing no-result label, if any.
    fn empty_label(&mut self) -> Option<u32> {
        let n = self.labels.len();
        let targets: Vec<u32> = (0..n)
            .filter(|&i| self.labels[n - 1 - i] == Label::Empty)
            .map(|i| i as u32)
            .collect();
        (!targets.is_empty()).then(|| self.rng.pick(&targets))
    }

    fn stmt(&mut self, depth: u32) {
        let d = depth.saturating_sub(1);
        match self.rng.below(12) {
            0..=3 => {
                let (ty, l) = if self.rng.chance(60) {
                    (ValType::I32, Some(self.local32()))
                } else {
                    (ValType::I64, self.local64())
                };
                self.expr(ty, depth);
                self.emit(l.map_or(I::Drop, I::LocalSet));
            }
            4 => {
                let ty = self.rng.pick(&[ValType::I32, ValType::I64]);
                self.expr(ty, depth);
                self.emit(I::Drop);
            }
            5..=7 if depth > 0 => {
                self.expr(ValType::I32, d);
                self.emit(I::If(BlockType::Empty));
                self.labels.push(Label::Empty);
                self.stmts(d, 3);
                self.exit(d);
                if self.rng.chance(50) {
                    self.emit(I::Else);
                    self.stmts(d, 2);
                    self.exit(d);
                }
                self.labels.pop();
                self.emit(I::End);
            }
            8 | 9 if depth > 0 => {
                self.emit(I::Block(BlockType::Empty));
                self.labels.push(Label::Empty);
                self.stmts(d, 2);
                if let Some(l) = self.empty_label() {
                    self.expr(ValType::I32, d);
                    self.emit(I::BrIf(l));
                }
                self.stmts(d, 2);
                self.labels.pop();
                self.emit(I::End);
            }
            10 => {
                if let Some(l) = self.empty_label() {
                    self.expr(ValType::I32, d);
                    self.emit(I::BrIf(l));
                }
            }
            _ => {}
        }
    }

    /// Optionally ends an `if` arm: `br` out, `return` a verdict, or trap.
    fn exit(&mut self, depth: u32) {
        match self.rng.below(8) {
            0 => {
                if let Some(l) = self.empty_label() {
                    self.emit(I::Br(l));
                }
            }
            1 | 2 => {
                self.verdict(depth);
                self.emit(I::Return);
            }
            3 => self.emit(I::Unreachable),
            _ => {}
        }
    }

    /// An i32 meant as the function's result: mostly 0/1/2 by a packet-dependent condition.
    fn verdict(&mut self, depth: u32) {
        match self.rng.below(10) {
            0..=4 => {
                let a = self.rng.below(3) as i32;
                let b = self.rng.below(3) as i32;
                self.emit(I::I32Const(a));
                self.emit(I::I32Const(b));
                self.expr(ValType::I32, depth);
                self.emit(I::Select);
            }
            5 | 6 => {
                self.expr(ValType::I32, depth);
                self.emit(I::I32Const(3));
                self.emit(I::I32And);
            }
            7 => {
                let c = self.rng.pick(&[0, 1, 2, 0, 1, 2, 3, -1, 0x100, i32::MIN]);
                self.emit(I::I32Const(c));
            }
            _ => self.expr(ValType::I32, depth),
        }
    }
}

/// The module of `seed`: one `verdict` function of 0..4 extra i32 and i64 locals.
pub fn module(seed: u64) -> Generated {
    let mut rng = Rng::new(seed);
    let n32 = rng.below(4) as u32;
    let n64 = rng.below(4) as u32;
    let budget = 20 + rng.below(100) as i64;
    let mut g = Gen {
        rng,
        code: Vec::new(),
        n32,
        n64,
        labels: Vec::new(),
        budget,
        load_ends: Vec::new(),
    };
    let depth = 2 + g.rng.below(3) as u32;
    g.stmts(depth, 6);
    g.verdict(depth);
    g.emit(I::End);
    Generated {
        seed,
        wasm: encode(n32, n64, &g.code),
        load_ends: g.load_ends,
    }
}

/// A module with the four imports and `verdict(len: i32) -> i32` of the given body (which
/// ends with its `End`).
pub fn encode(n32: u32, n64: u32, body: &[I<'_>]) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut imports = ImportSection::new();
    imports.import("sluice", "pkt_len", EntityType::Function(0));
    for name in ["pkt_u8", "pkt_u16", "pkt_u32"] {
        imports.import("sluice", name, EntityType::Function(1));
    }
    let mut funcs = FunctionSection::new();
    funcs.function(1);
    let mut exports = ExportSection::new();
    exports.export("verdict", ExportKind::Func, F_VERDICT);
    let mut f = Function::new([(n32, ValType::I32), (n64, ValType::I64)]);
    for i in body {
        f.instruction(i);
    }
    let mut code = CodeSection::new();
    code.function(&f);
    let mut m = Module::new();
    m.section(&types)
        .section(&imports)
        .section(&funcs)
        .section(&exports)
        .section(&code);
    m.finish()
}

/// The longest packet made.
pub const MAX_PACKET: usize = 1500;

/// `n` packets (from the IP header on) for a module whose constant loads end at `load_ends`:
/// the lengths 0..4, around 20 and 40, one below/at/above each load end, and random ones.
pub fn packets(rng: &mut Rng, load_ends: &[usize], n: usize) -> Vec<Vec<u8>> {
    let mut lens: Vec<usize> = vec![0, 1, 3, 4, 20, 40];
    // BPF_PROG_TEST_RUN takes a frame of at most about a page.
    for &e in load_ends.iter().filter(|&&e| e < MAX_PACKET).take(8) {
        lens.extend([e.saturating_sub(1), e, e + 1]);
    }
    while lens.len() < n {
        lens.push(match rng.below(10) {
            0 => rng.below(MAX_PACKET + 1),
            1..=3 => rng.below(44),
            _ => 44 + rng.below(100),
        });
    }
    lens.truncate(n);
    lens.into_iter().map(|len| packet(rng, len)).collect()
}

/// A packet of `len` bytes: an IPv4/TCP-looking header half of the time, bytes from the
/// edge pool or random otherwise.
pub fn packet(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|_| {
            if rng.chance(60) {
                rng.pick(BYTES)
            } else {
                rng.next() as u8
            }
        })
        .collect();
    if rng.chance(50) {
        let header = [
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 1, 2, 3, 10, 4, 5, 6, 0x9c, 0x40, 0,
            22, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02,
        ];
        let n = header.len().min(len);
        p[..n].copy_from_slice(&header[..n]);
    }
    p
}
