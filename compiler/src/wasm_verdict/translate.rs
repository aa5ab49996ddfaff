//! The second stage: `verdict`'s operators onto the assembler, with Wasm's semantics.
//!
//! - **Values.** Every Wasm value (the function's locals and each operand-stack position)
//!   has its own 8-byte stack slot, fixed at translation time from the stack height, so
//!   control flow needs no register bookkeeping: a branch to a block moves the block's result
//!   values down to its base slots, then jumps. r0-r5 are scratch within one operator. An
//!   i32 lives zero-extended in 64-bit form (32-bit ALU operations zero-extend their result);
//!   an i64 uses all 64 bits.
//! - **Semantics.** Shift counts are masked (`& 31`, `& 63`: eBPF shifts by the width or
//!   more are not Wasm's), rotates are built from two shifts, signed compares use the signed
//!   jumps (`jmp32` for i32), `i64.extend_i32_s` and the sign-extension operators shift left
//!   then arithmetic-right, `i32.wrap_i64` is a 32-bit move.
//! - **Packet loads.** `offset < 0` traps. An offset the linear part of the skb holds is
//!   read directly (bounds-checked against `data_end`, the pattern the verifier accepts);
//!   anything else goes through `bpf_skb_load_bytes`, which reads non-linear data and fails
//!   exactly when `offset + size > len`, which traps. So a non-linear skb gives the answer a
//!   linear copy would.
//! - **Dead code.** Operators after `br`, `return` or `unreachable` up to the end of their
//!   block are not emitted (the verifier rejects unreachable instructions), and a block end
//!   nothing reaches emits nothing.

use super::VerdictError;
use super::validate::{Bin, BlockSig, Cmp, Import, ModuleInfo, Op, W};
use crate::bpf::{AluOp, Asm, Cond, Helper, Insn, Label, Reg, Size, Width};
use crate::datapath::CtxLayout;
use Reg::*;
use sluice_policy::verdict::TrapKind;

/// Where translated code leaves to: one label per outcome, one per trap kind (indexed by
/// [`trap_index`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exits {
    pub pass: Label,
    pub allow: Label,
    pub deny: Label,
    pub trap: [Label; 3],
}

/// The index of a trap kind in [`Exits::trap`].
pub(crate) fn trap_index(k: TrapKind) -> usize {
    match k {
        TrapKind::Unreachable => 0,
        TrapKind::PacketOutOfBounds => 1,
        TrapKind::BadVerdict => 2,
    }
}

/// `__sk_buff.len`: the frame's length.
const SKB_LEN: i16 = 0;
/// The largest offset read directly from the linear part. Beyond it `bpf_skb_load_bytes`
/// reads: the verifier tracks packet pointers only up to 0xffff bytes, variable part and
/// fixed offset together.
const DIRECT_MAX: i32 = 0x7fff;

/// The stack layout: 8-byte slots, all inside the scratch range.
struct Layout {
    ctx: i16,
    /// The buffer `bpf_skb_load_bytes` writes into.
    buf: i16,
    /// The slot of local 0; local `i` is `8 * i` below it.
    locals: i16,
    nlocals: u32,
    /// The slot of operand-stack position 0.
    stack: i16,
    /// How many operand slots fit.
    capacity: u32,
}

impl Layout {
    fn local(&self, i: u32) -> i16 {
        self.locals - 8 * i as i16
    }

    fn slot(&self, h: u32) -> i16 {
        self.stack - 8 * h as i16
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Func,
    Block,
    If,
}

/// An open block.
struct Frame {
    kind: Kind,
    sig: BlockSig,
    /// Operand-stack height below the block's parameters.
    base: u32,
    end: Label,
    /// An `if` whose `else` has not come: where its false path goes.
    else_label: Option<Label>,
    /// The whole construct is unreachable: nothing of it is emitted.
    dead: bool,
}

struct Translator<'a> {
    a: &'a mut Asm,
    l: Layout,
    ip_offset: i32,
    exits: &'a Exits,
    func: u32,
    frames: Vec<Frame>,
    height: u32,
    reachable: bool,
}

pub(crate) fn emit(
    m: &ModuleInfo,
    a: &mut Asm,
    ctx_slot: i16,
    scratch: std::ops::Range<i16>,
    ip_offset: u32,
    exits: &Exits,
) -> Result<(), VerdictError> {
    // Whole 8-byte slots inside the scratch range.
    let top = scratch.end.div_euclid(8) * 8;
    let bottom = -((-scratch.start).div_euclid(8) * 8);
    let available = (top - bottom).max(0) as usize;
    let nlocals = 1 + m.locals;
    let fixed = 8 * (1 + nlocals as usize);
    if fixed > available {
        return Err(VerdictError::StackTooDeep {
            func: m.func,
            offset: m.body_offset,
            needed: fixed,
            available,
        });
    }
    let buf = top - 8;
    let locals = buf - 8;
    let stack = locals - 8 * nlocals as i16;
    let l = Layout {
        ctx: ctx_slot,
        buf,
        locals,
        nlocals,
        stack,
        capacity: ((available - fixed) / 8) as u32,
    };
    let ip_offset = i32::try_from(ip_offset).expect("an IP header offset within a frame");
    let mut t = Translator {
        a,
        l,
        ip_offset,
        exits,
        func: m.func,
        frames: Vec::new(),
        height: 0,
        reachable: true,
    };
    t.prologue();
    let end = t.a.label();
    t.frames.push(Frame {
        kind: Kind::Func,
        sig: BlockSig {
            params: 0,
            results: 1,
        },
        base: 0,
        end,
        else_label: None,
        dead: false,
    });
    for (offset, op) in &m.ops {
        t.op(op, *offset)?;
        if t.frames.is_empty() {
            break;
        }
    }
    Ok(())
}

impl Translator<'_> {
    /// Local 0 is `len`; declared locals start at zero.
    fn prologue(&mut self) {
        self.emit_len(R0);
        let at = self.l.local(0);
        self.a.stx(Size::DW, R10, at, R0);
        for i in 1..self.l.nlocals {
            let at = self.l.local(i);
            self.a.st(Size::DW, R10, at, 0);
        }
    }

    /// `dst = skb->len - ip_offset`, as an i32.
    fn emit_len(&mut self, dst: Reg) {
        self.a
            .ldx(Size::DW, dst, R10, self.l.ctx)
            .ldx(Size::W, dst, dst, SKB_LEN)
            .alu32(AluOp::Sub, dst, self.ip_offset);
    }

    fn load(&mut self, dst: Reg, h: u32) {
        let at = self.l.slot(h);
        self.a.ldx(Size::DW, dst, R10, at);
    }

    fn store(&mut self, h: u32, src: Reg) {
        let at = self.l.slot(h);
        self.a.stx(Size::DW, R10, at, src);
    }

    /// Makes room for one more value, or refuses the function.
    fn push(&mut self, offset: usize) -> Result<u32, VerdictError> {
        let h = self.height;
        if h >= self.l.capacity {
            let per = 8;
            return Err(VerdictError::StackTooDeep {
                func: self.func,
                offset,
                needed: per * (1 + self.l.nlocals as usize + h as usize + 1),
                available: per * (1 + self.l.nlocals as usize + self.l.capacity as usize),
            });
        }
        self.height += 1;
        Ok(h)
    }

    fn top(&self) -> u32 {
        self.height - 1
    }

    fn op(&mut self, op: &Op, offset: usize) -> Result<(), VerdictError> {
        if !self.reachable {
            return self.dead_op(op);
        }
        match *op {
            Op::I32Const(v) => {
                let h = self.push(offset)?;
                let at = self.l.slot(h);
                if v >= 0 {
                    self.a.st(Size::DW, R10, at, v);
                } else {
                    // A negative imm would be sign-extended by a 64-bit store.
                    self.a.mov32(R0, v).stx(Size::DW, R10, at, R0);
                }
            }
            Op::I64Const(v) => {
                let h = self.push(offset)?;
                let at = self.l.slot(h);
                match i32::try_from(v) {
                    Ok(v) => self.a.st(Size::DW, R10, at, v),
                    Err(_) => self.a.ld_imm64(R0, v as u64).stx(Size::DW, R10, at, R0),
                };
            }
            Op::LocalGet(i) => {
                let h = self.push(offset)?;
                let at = self.l.local(i);
                self.a.ldx(Size::DW, R0, R10, at);
                self.store(h, R0);
            }
            Op::LocalSet(i) | Op::LocalTee(i) => {
                self.load(R0, self.top());
                let at = self.l.local(i);
                self.a.stx(Size::DW, R10, at, R0);
                if matches!(op, Op::LocalSet(_)) {
                    self.height -= 1;
                }
            }
            Op::Bin(bin, w) => {
                let (x, y) = (self.height - 2, self.height - 1);
                self.load(R0, x);
                self.load(R1, y);
                self.binary(bin, w);
                self.store(x, R0);
                self.height -= 1;
            }
            Op::Cmp(cmp, w) => {
                let (x, y) = (self.height - 2, self.height - 1);
                self.load(R1, x);
                self.load(R2, y);
                self.set_if(cond(cmp), w, R1, R2.into());
                self.store(x, R0);
                self.height -= 1;
            }
            Op::Eqz(w) => {
                let x = self.top();
                self.load(R1, x);
                self.set_if(Cond::Eq, w, R1, 0.into());
                self.store(x, R0);
            }
            Op::Wrap => {
                let x = self.top();
                self.load(R0, x);
                self.a.mov32(R0, R0);
                self.store(x, R0);
            }
            // An i32 is already zero-extended.
            Op::Extend32 { signed: false } => {}
            Op::Extend32 { signed: true } => self.sign_extend(W::I64, 32),
            Op::SignExt { w, bits } => self.sign_extend(w, bits),
            Op::Select => {
                let (x, y, c) = (self.height - 3, self.height - 2, self.height - 1);
                let keep = self.a.label();
                self.load(R1, c);
                self.a.jmp32(Cond::Ne, R1, 0, keep);
                self.load(R0, y);
                self.store(x, R0);
                self.a.bind(keep);
                self.height -= 2;
            }
            Op::Drop => self.height -= 1,
            Op::Nop => {}
            Op::Block(sig) => {
                let end = self.a.label();
                self.frames.push(Frame {
                    kind: Kind::Block,
                    sig,
                    base: self.height - sig.params,
                    end,
                    else_label: None,
                    dead: false,
                });
            }
            Op::If(sig) => {
                let c = self.top();
                self.height -= 1;
                self.load(R1, c);
                let (end, otherwise) = (self.a.label(), self.a.label());
                self.a.jmp32(Cond::Eq, R1, 0, otherwise);
                self.frames.push(Frame {
                    kind: Kind::If,
                    sig,
                    base: self.height - sig.params,
                    end,
                    else_label: Some(otherwise),
                    dead: false,
                });
            }
            Op::Else => {
                // The then arm left exactly the results at the base.
                let f = self.frames.last_mut().expect("else inside if");
                let (end, otherwise) = (f.end, f.else_label.take().expect("one else"));
                self.height = f.base + f.sig.params;
                self.a.ja(end).bind(otherwise);
            }
            Op::End => self.end(),
            Op::Br(depth) => {
                self.branch(depth);
                self.reachable = false;
            }
            Op::BrIf(depth) => {
                let c = self.top();
                self.height -= 1;
                self.load(R1, c);
                let (target, moves) = self.target(depth);
                if moves {
                    let skip = self.a.label();
                    self.a.jmp32(Cond::Eq, R1, 0, skip);
                    self.branch(depth);
                    self.a.bind(skip);
                } else {
                    self.a.jmp32(Cond::Ne, R1, 0, target);
                }
            }
            Op::BrTable {
                ref targets,
                default,
            } => {
                let c = self.top();
                self.height -= 1;
                self.load(R1, c);
                for (i, &depth) in targets.iter().enumerate() {
                    // Indices past i32::MAX cannot match a 32-bit immediate; they take the
                    // default, as they would in Wasm for any table that short.
                    let Ok(i) = i32::try_from(i) else { break };
                    let (target, moves) = self.target(depth);
                    if moves {
                        let next = self.a.label();
                        self.a.jmp32(Cond::Ne, R1, i, next);
                        self.branch(depth);
                        self.a.bind(next);
                    } else {
                        self.a.jmp32(Cond::Eq, R1, i, target);
                    }
                }
                self.branch(default);
                self.reachable = false;
            }
            Op::Return => {
                let depth = self.frames.len() as u32 - 1;
                self.branch(depth);
                self.reachable = false;
            }
            Op::Unreachable => {
                let trap = self.exits.trap[trap_index(TrapKind::Unreachable)];
                self.a.ja(trap);
                self.reachable = false;
            }
            Op::Call(Import::Len) => {
                let h = self.push(offset)?;
                self.emit_len(R0);
                self.store(h, R0);
            }
            Op::Call(Import::Load(size)) => {
                let x = self.top();
                self.packet_load(x, size);
            }
        }
        Ok(())
    }

    /// Operators in unreachable code: only block structure is followed.
    fn dead_op(&mut self, op: &Op) -> Result<(), VerdictError> {
        match op {
            Op::Block(sig) | Op::If(sig) => {
                let end = self.a.label();
                self.frames.push(Frame {
                    kind: Kind::Block,
                    sig: *sig,
                    base: self.height,
                    end,
                    else_label: None,
                    dead: true,
                });
            }
            Op::Else => {
                let f = self.frames.last_mut().expect("else inside if");
                if !f.dead {
                    // The then arm ended unreachable; the else arm is reached from the if.
                    let otherwise = f.else_label.take().expect("one else");
                    self.height = f.base + f.sig.params;
                    self.a.bind(otherwise);
                    self.reachable = true;
                }
            }
            Op::End => self.end(),
            _ => {}
        }
        Ok(())
    }

    /// The end of the innermost block: its end label, and for the function the exits.
    fn end(&mut self) {
        let f = self.frames.pop().expect("end of an open block");
        if f.dead {
            return;
        }
        // An if without else: its false path carries the parameters through to the end.
        if let Some(otherwise) = f.else_label {
            self.a.bind(otherwise);
            self.reachable = true;
        }
        let reached = self.reachable || self.a.is_targeted(f.end);
        self.a.bind(f.end);
        self.height = f.base + f.sig.results;
        self.reachable = reached;
        if f.kind == Kind::Func && reached {
            self.exits();
        }
    }

    /// The function returned the value in slot 0: 0, 1 and 2 are outcomes, anything else
    /// traps.
    fn exits(&mut self) {
        let e = *self.exits;
        self.load(R0, 0);
        self.a
            .jmp32(Cond::Eq, R0, 0, e.pass)
            .jmp32(Cond::Eq, R0, 1, e.allow)
            .jmp32(Cond::Eq, R0, 2, e.deny)
            .ja(e.trap[trap_index(TrapKind::BadVerdict)]);
        self.reachable = false;
    }

    /// The label a branch of `depth` jumps to, and whether values must move first.
    fn target(&self, depth: u32) -> (Label, bool) {
        let f = &self.frames[self.frames.len() - 1 - depth as usize];
        let arity = f.sig.results;
        (f.end, arity > 0 && self.height - arity != f.base)
    }

    /// Moves the branch's values to the target's base and jumps.
    fn branch(&mut self, depth: u32) {
        let f = &self.frames[self.frames.len() - 1 - depth as usize];
        let (arity, base, end) = (f.sig.results, f.base, f.end);
        let from = self.height - arity;
        if from != base {
            for k in 0..arity {
                self.load(R0, from + k);
                self.store(base + k, R0);
            }
        }
        self.a.ja(end);
    }

    /// `r0 = r0 op r1` with Wasm's semantics for the width.
    fn binary(&mut self, bin: Bin, w: W) {
        let (width, mask) = match w {
            W::I32 => (Width::W32, 31),
            W::I64 => (Width::W64, 63),
        };
        let alu = |a: &mut Asm, op: AluOp, dst: Reg, src: Reg| {
            a.emit(Insn::alu(width, op, dst, src));
        };
        let simple = match bin {
            Bin::Add => Some(AluOp::Add),
            Bin::Sub => Some(AluOp::Sub),
            Bin::Mul => Some(AluOp::Mul),
            Bin::And => Some(AluOp::And),
            Bin::Or => Some(AluOp::Or),
            Bin::Xor => Some(AluOp::Xor),
            _ => None,
        };
        if let Some(op) = simple {
            alu(self.a, op, R0, R1);
            return;
        }
        self.a.emit(Insn::alu(width, AluOp::And, R1, mask));
        match bin {
            Bin::Shl => alu(self.a, AluOp::Lsh, R0, R1),
            Bin::ShrS => alu(self.a, AluOp::Arsh, R0, R1),
            Bin::ShrU => alu(self.a, AluOp::Rsh, R0, R1),
            Bin::Rotl | Bin::Rotr => {
                // x rotl k = (x << k) | (x >> (-k & mask)); k = 0 shifts both by 0.
                let (first, second) = if bin == Bin::Rotl {
                    (AluOp::Lsh, AluOp::Rsh)
                } else {
                    (AluOp::Rsh, AluOp::Lsh)
                };
                self.a.mov64(R2, R0);
                alu(self.a, first, R0, R1);
                self.a
                    .emit(Insn::neg(width, R1))
                    .emit(Insn::alu(width, AluOp::And, R1, mask));
                alu(self.a, second, R2, R1);
                alu(self.a, AluOp::Or, R0, R2);
            }
            _ => unreachable!("simple operators returned above"),
        }
    }

    /// `r0 = (x cond y) as i32` (0 or 1), comparing 32 or 64 bits.
    fn set_if(&mut self, cond: Cond, w: W, x: Reg, y: crate::bpf::Operand) {
        let done = self.a.label();
        self.a.mov64(R0, 1);
        match w {
            W::I32 => self.a.jmp32(cond, x, y, done),
            W::I64 => self.a.jmp(cond, x, y, done),
        };
        self.a.mov64(R0, 0).bind(done);
    }

    /// Sign-extends the low `bits` of the top value to the width.
    fn sign_extend(&mut self, w: W, bits: u8) {
        let x = self.top();
        let shift = 64 - bits as i32;
        self.load(R0, x);
        self.a
            .alu64(AluOp::Lsh, R0, shift)
            .alu64(AluOp::Arsh, R0, shift);
        if w == W::I32 {
            self.a.mov32(R0, R0);
        }
        self.store(x, R0);
    }

    /// `pkt_u8/u16/u32(offset)` on the offset in slot `x`, replaced by the value.
    fn packet_load(&mut self, x: u32, size: u8) {
        let oob = self.exits.trap[trap_index(TrapKind::PacketOutOfBounds)];
        let (slow, done) = (self.a.label(), self.a.label());
        let sz = match size {
            1 => Size::B,
            2 => Size::H,
            _ => Size::W,
        };
        let tc = CtxLayout::Tc;
        self.load(R2, x);
        self.a
            .jmp32(Cond::Slt, R2, 0, oob)
            .ldx(Size::DW, R1, R10, self.l.ctx)
            // Direct: data + ip_offset + offset, proved below data_end.
            .jmp(Cond::Gt, R2, DIRECT_MAX, slow)
            .ldx(Size::W, R3, R1, tc.data_off())
            .ldx(Size::W, R4, R1, tc.data_end_off())
            .add64(R3, self.ip_offset)
            .add64(R3, R2)
            .mov64(R5, R3)
            .add64(R5, size as i32)
            .jmp(Cond::Gt, R5, R4, slow)
            .ldx(sz, R0, R3, 0)
            .ja(done)
            // Beyond the linear part, or beyond the packet: the helper tells which.
            .bind(slow)
            .add64(R2, self.ip_offset)
            .mov64(R3, R10)
            .add64(R3, self.l.buf as i32)
            .mov64(R4, size as i32)
            .call(Helper::SkbLoadBytes)
            .jmp(Cond::Ne, R0, 0, oob)
            .ldx(sz, R0, R10, self.l.buf)
            .bind(done);
        match size {
            2 => {
                self.a.be16(R0);
            }
            4 => {
                self.a.be32(R0);
            }
            _ => {}
        }
        self.store(x, R0);
    }
}

fn cond(c: Cmp) -> Cond {
    match c {
        Cmp::Eq => Cond::Eq,
        Cmp::Ne => Cond::Ne,
        Cmp::LtS => Cond::Slt,
        Cmp::LtU => Cond::Lt,
        Cmp::GtS => Cond::Sgt,
        Cmp::GtU => Cond::Gt,
        Cmp::LeS => Cond::Sle,
        Cmp::LeU => Cond::Le,
        Cmp::GeS => Cond::Sge,
        Cmp::GeU => Cond::Ge,
    }
}
