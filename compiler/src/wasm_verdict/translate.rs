//! The second stage: `verdict`'s operators onto the assembler, with Wasm's semantics.
//!
//! - **Values.** Every Wasm value (the function's locals and each operand-stack position)
//!   has its own 8-byte stack slot, fixed at translation time from the stack height, so
//!   control flow needs no register bookkeeping: a branch to a block moves the block's result
//!   values down to its base slots, then jumps. r0-r5 are scratch within one operator. An
//!   i32 lives zero-extended in 64-bit form (32-bit ALU operations zero-extend their result);
//!   an i64 uses all 64 bits.
//! - **Pending values.** Constants and `local.get` are not copied into their slot when
//!   pushed: operators take a constant as the immediate and read a local from its own slot
//!   (before a `local.set`/`local.tee` of that local, the copies are made). A comparison
//!   right before `if`/`br_if` is that jump. Control flow stores everything pending first.
//!   A load from the slot just stored, with no other path joining, takes the register.
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

use super::validate::{Bin, BlockSig, Cmp, Import, ModuleInfo, Op, W};
use super::{PacketLoads, VerdictError};
use crate::bpf::{AluOp, Asm, Cond, Helper, Insn, Label, Operand, Reg, Size, Width};
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
    /// The largest constant offset read directly; -1: every load through the helper.
    direct_max: i32,
    exits: &'a Exits,
    func: u32,
    frames: Vec<Frame>,
    height: u32,
    /// Values pushed but not yet stored, by operand-stack position (valid below `height`):
    /// operators take constants as immediates and read locals from the local's slot; they are
    /// written to their own slots only before control flow ([`Translator::materialize`]).
    konst: Vec<Pending>,
    /// A comparison whose result only decides the `if` or `br_if` that follows it: its left
    /// operand is in R1, and the jump is emitted by that operator.
    cond: Option<(Cond, W, Operand)>,
    reachable: bool,
}

pub(crate) fn emit(
    m: &ModuleInfo,
    a: &mut Asm,
    ctx_slot: i16,
    scratch: std::ops::Range<i16>,
    ip_offset: u32,
    exits: &Exits,
    loads: PacketLoads,
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
    let capacity = l.capacity as usize;
    let mut t = Translator {
        a,
        l,
        ip_offset,
        direct_max: match loads {
            PacketLoads::Direct => DIRECT_MAX,
            PacketLoads::HelperOnly => -1,
        },
        exits,
        func: m.func,
        frames: Vec::new(),
        height: 0,
        konst: vec![Pending::Stored; capacity],
        cond: None,
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
    for (i, (offset, op)) in m.ops.iter().enumerate() {
        let next = m.ops.get(i + 1).map(|(_, op)| op);
        t.op(op, *offset, next)?;
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
        let at = match self.konst[h as usize] {
            Pending::Const(v) => {
                mov_const(self.a, dst, v);
                return;
            }
            Pending::Local(i) => self.l.local(i),
            Pending::Stored => self.l.slot(h),
        };
        // The value was just stored from a register, on this path only: take the register.
        if let Some(&last) = self.a.last_on_this_path()
            && last.code == Insn::stx(Size::DW, R10, at, R0).code
            && last.dst == R10 as u8
            && last.off == at
        {
            let src = Reg::from_u8(last.src).expect("a register");
            if src != dst {
                self.a.mov64(dst, src);
            }
            return;
        }
        self.a.ldx(Size::DW, dst, R10, at);
    }

    fn store(&mut self, h: u32, src: Reg) {
        let at = self.l.slot(h);
        self.a.stx(Size::DW, R10, at, src);
        self.konst[h as usize] = Pending::Stored;
    }

    /// Writes every pending value to its slot: control flow reads values from slots. Uses
    /// only R0 (a pending condition lives in R1 and R2).
    fn materialize(&mut self) {
        self.materialize_where(|_| true);
    }

    /// Writes the pending values `pick` selects to their slots.
    fn materialize_where(&mut self, pick: impl Fn(Pending) -> bool) {
        for h in 0..self.height {
            let p = self.konst[h as usize];
            if p == Pending::Stored || !pick(p) {
                continue;
            }
            let at = self.l.slot(h);
            match p {
                Pending::Const(v) => match i32::try_from(v as i64) {
                    // A 64-bit store sign-extends its immediate.
                    Ok(imm) => {
                        self.a.st(Size::DW, R10, at, imm);
                    }
                    Err(_) => {
                        mov_const(self.a, R0, v).stx(Size::DW, R10, at, R0);
                    }
                },
                Pending::Local(i) => {
                    let from = self.l.local(i);
                    self.a
                        .ldx(Size::DW, R0, R10, from)
                        .stx(Size::DW, R10, at, R0);
                }
                Pending::Stored => {}
            }
            self.konst[h as usize] = Pending::Stored;
        }
    }

    /// The constant at `h` as the immediate of a `w`-wide operation, if it is one and fits.
    fn imm(&self, h: u32, w: W) -> Option<i32> {
        let Pending::Const(v) = self.konst[h as usize] else {
            return None;
        };
        match w {
            // 32-bit operations read the low 32 bits of the immediate.
            W::I32 => Some(v as u32 as i32),
            W::I64 => i32::try_from(v as i64).ok(),
        }
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

    fn op(&mut self, op: &Op, offset: usize, next: Option<&Op>) -> Result<(), VerdictError> {
        // Only an if or br_if right after a comparison takes its condition.
        let fuse = matches!(next, Some(Op::If(_) | Op::BrIf(_)));
        if !self.reachable {
            return self.dead_op(op);
        }
        match *op {
            // An i32 lives zero-extended.
            Op::I32Const(v) => {
                let h = self.push(offset)?;
                self.konst[h as usize] = Pending::Const(u64::from(v as u32));
            }
            Op::I64Const(v) => {
                let h = self.push(offset)?;
                self.konst[h as usize] = Pending::Const(v as u64);
            }
            Op::LocalGet(i) => {
                let h = self.push(offset)?;
                self.konst[h as usize] = Pending::Local(i);
            }
            Op::LocalSet(i) | Op::LocalTee(i) => {
                // Values pushed by local.get of this local keep what it held until now (this
                // uses R0, so it comes first).
                self.materialize_where(|p| p == Pending::Local(i));
                let x = self.top();
                self.load(R0, x);
                let at = self.l.local(i);
                self.a.stx(Size::DW, R10, at, R0);
                if matches!(op, Op::LocalSet(_)) {
                    self.height -= 1;
                }
            }
            Op::Bin(bin, w) => {
                let (x, y) = (self.height - 2, self.height - 1);
                self.load(R0, x);
                let rhs = match self.imm(y, w) {
                    Some(imm) => Rhs::Imm(imm),
                    None => {
                        self.load(R1, y);
                        Rhs::R1
                    }
                };
                self.binary(bin, w, rhs);
                self.store(x, R0);
                self.height -= 1;
            }
            Op::Cmp(cmp, w) => {
                let (x, y) = (self.height - 2, self.height - 1);
                self.load(R1, x);
                let rhs = match self.imm(y, w) {
                    Some(imm) => imm.into(),
                    None => {
                        self.load(R2, y);
                        R2.into()
                    }
                };
                if fuse {
                    self.cond = Some((cond(cmp), w, rhs));
                    self.height -= 2;
                } else {
                    self.set_if(cond(cmp), w, R1, rhs);
                    self.store(x, R0);
                    self.height -= 1;
                }
            }
            Op::Eqz(w) => {
                let x = self.top();
                self.load(R1, x);
                if fuse {
                    self.cond = Some((Cond::Eq, w, 0.into()));
                    self.height -= 1;
                } else {
                    self.set_if(Cond::Eq, w, R1, 0.into());
                    self.store(x, R0);
                }
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
                self.materialize();
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
                self.materialize();
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
                let (c, w, rhs) = self.condition();
                self.materialize();
                let (end, otherwise) = (self.a.label(), self.a.label());
                match c.negate() {
                    Some(not) => self.jump(not, w, rhs, otherwise),
                    None => unreachable!("conditions come from comparisons"),
                }
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
                self.materialize();
                // The then arm left exactly the results at the base.
                let f = self.frames.last_mut().expect("else inside if");
                let (end, otherwise) = (f.end, f.else_label.take().expect("one else"));
                self.height = f.base + f.sig.params;
                self.a.ja(end).bind(otherwise);
                self.params_stored();
            }
            Op::End => {
                if self.frames.len() == 1 && self.return_const() {
                    self.reachable = false;
                } else {
                    self.materialize();
                }
                self.end();
            }
            Op::Br(depth) => {
                let to_function = depth as usize == self.frames.len() - 1;
                if !(to_function && self.return_const()) {
                    self.materialize();
                    self.branch(depth);
                }
                self.reachable = false;
            }
            Op::BrIf(depth) => {
                let (c, w, rhs) = self.condition();
                self.materialize();
                let (target, moves) = self.target(depth);
                if moves {
                    let skip = self.a.label();
                    let not = c.negate().expect("conditions come from comparisons");
                    self.jump(not, w, rhs, skip);
                    self.branch(depth);
                    self.a.bind(skip);
                } else {
                    self.jump(c, w, rhs, target);
                }
            }
            Op::BrTable {
                ref targets,
                default,
            } => {
                self.materialize();
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
                if !self.return_const() {
                    self.materialize();
                    let depth = self.frames.len() as u32 - 1;
                    self.branch(depth);
                }
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
                    self.params_stored();
                }
            }
            Op::End => self.end(),
            _ => {}
        }
        Ok(())
    }

    /// At `else`: the parameters are in their slots (stored at the `if`), whatever the then
    /// arm left pending at those positions.
    fn params_stored(&mut self) {
        let f = self.frames.last().expect("else inside if");
        for h in f.base..f.base + f.sig.params {
            self.konst[h as usize] = Pending::Stored;
        }
    }

    /// The condition of an if or br_if: a fused comparison, or the i32 on the stack being
    /// non-zero; its left operand is in R1.
    fn condition(&mut self) -> (Cond, W, Operand) {
        if let Some(c) = self.cond.take() {
            return c;
        }
        let x = self.top();
        self.load(R1, x);
        self.height -= 1;
        (Cond::Ne, W::I32, 0.into())
    }

    /// `if r1 cond rhs goto target`, 32- or 64-bit.
    fn jump(&mut self, c: Cond, w: W, rhs: Operand, target: Label) {
        match w {
            W::I32 => self.a.jmp32(c, R1, rhs, target),
            W::I64 => self.a.jmp(c, R1, rhs, target),
        };
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
        for h in f.base..self.height {
            self.konst[h as usize] = Pending::Stored;
        }
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

    /// Returning a constant goes straight to its exit. False when the value is not one.
    fn return_const(&mut self) -> bool {
        let Pending::Const(v) = self.konst[self.top() as usize] else {
            return false;
        };
        let e = *self.exits;
        let exit = match v as u32 as i32 {
            0 => e.pass,
            1 => e.allow,
            2 => e.deny,
            _ => e.trap[trap_index(TrapKind::BadVerdict)],
        };
        self.a.ja(exit);
        true
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

    /// `r0 = r0 op rhs` with Wasm's semantics for the width.
    fn binary(&mut self, bin: Bin, w: W, rhs: Rhs) {
        let (width, mask) = match w {
            W::I32 => (Width::W32, 31),
            W::I64 => (Width::W64, 63),
        };
        let alu = |a: &mut Asm, op: AluOp, dst: Reg, src: Operand| {
            a.emit(Insn::alu(width, op, dst, src));
        };
        // A constant shift count is masked here; a register one at run time.
        let (count, rhs): (Operand, Operand) = match rhs {
            Rhs::Imm(i) => ((i & mask).into(), i.into()),
            Rhs::R1 => (R1.into(), R1.into()),
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
            alu(self.a, op, R0, rhs);
            return;
        }
        if rhs == Operand::Reg(R1) {
            self.a.emit(Insn::alu(width, AluOp::And, R1, mask));
        }
        match bin {
            Bin::Shl => alu(self.a, AluOp::Lsh, R0, count),
            Bin::ShrS => alu(self.a, AluOp::Arsh, R0, count),
            Bin::ShrU => alu(self.a, AluOp::Rsh, R0, count),
            Bin::Rotl | Bin::Rotr => {
                // x rotl k = (x << k) | (x >> (-k & mask)); k = 0 shifts both by 0.
                let (first, second) = if bin == Bin::Rotl {
                    (AluOp::Lsh, AluOp::Rsh)
                } else {
                    (AluOp::Rsh, AluOp::Lsh)
                };
                self.a.mov64(R2, R0);
                alu(self.a, first, R0, count);
                let back: Operand = match count {
                    Operand::Imm(k) => ((-k) & mask).into(),
                    Operand::Reg(_) => {
                        self.a.emit(Insn::neg(width, R1)).emit(Insn::alu(
                            width,
                            AluOp::And,
                            R1,
                            mask,
                        ));
                        R1.into()
                    }
                };
                alu(self.a, second, R2, back);
                alu(self.a, AluOp::Or, R0, R2.into());
            }
            _ => unreachable!("simple operators returned above"),
        }
    }

    /// `r0 = (x cond y) as i32` (0 or 1), comparing 32 or 64 bits.
    fn set_if(&mut self, cond: Cond, w: W, x: Reg, y: Operand) {
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
        let ip = self.ip_offset;
        match self.imm(x, W::I32) {
            Some(off) if off < 0 => {
                self.a.ja(oob);
                self.reachable = false;
                return;
            }
            // A constant offset: the bounds check and the load take it as an immediate.
            Some(off) if off <= self.direct_max => {
                self.a
                    .ldx(Size::DW, R1, R10, self.l.ctx)
                    .ldx(Size::W, R3, R1, tc.data_off())
                    .ldx(Size::W, R4, R1, tc.data_end_off())
                    .add64(R3, ip)
                    .mov64(R5, R3)
                    .add64(R5, off + size as i32)
                    .jmp(Cond::Gt, R5, R4, slow)
                    .ldx(sz, R0, R3, off as i16)
                    .ja(done)
                    .bind(slow)
                    .mov64(R2, off + ip);
            }
            // Past what is read directly: only the helper.
            Some(off) => {
                self.a
                    .ldx(Size::DW, R1, R10, self.l.ctx)
                    .mov64(R2, off)
                    .add64(R2, ip);
            }
            None if self.direct_max < 0 => {
                self.load(R2, x);
                self.a
                    .jmp32(Cond::Slt, R2, 0, oob)
                    .ldx(Size::DW, R1, R10, self.l.ctx)
                    .add64(R2, ip);
            }
            None => {
                self.load(R2, x);
                self.a
                    .jmp32(Cond::Slt, R2, 0, oob)
                    .ldx(Size::DW, R1, R10, self.l.ctx)
                    // Direct: data + ip_offset + offset, proved below data_end.
                    .jmp(Cond::Gt, R2, DIRECT_MAX, slow)
                    .ldx(Size::W, R3, R1, tc.data_off())
                    .ldx(Size::W, R4, R1, tc.data_end_off())
                    .add64(R3, ip)
                    .add64(R3, R2)
                    .mov64(R5, R3)
                    .add64(R5, size as i32)
                    .jmp(Cond::Gt, R5, R4, slow)
                    .ldx(sz, R0, R3, 0)
                    .ja(done)
                    .bind(slow)
                    .add64(R2, ip);
            }
        }
        // Beyond the linear part, or beyond the packet: the helper tells which.
        self.a
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

/// Where an operand-stack value is until it is stored in its own slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    /// In its slot.
    Stored,
    /// A constant (the 64-bit pattern: an i32 zero-extended).
    Const(u64),
    /// What local `i` holds (no local.set or local.tee of it since).
    Local(u32),
}

/// The right operand of a binary operator.
#[derive(Clone, Copy, Debug)]
enum Rhs {
    /// A constant, as the instruction's immediate.
    Imm(i32),
    /// In R1.
    R1,
}

/// `dst = v` (a 64-bit pattern) in the fewest instructions.
fn mov_const(a: &mut Asm, dst: Reg, v: u64) -> &mut Asm {
    if let Ok(imm) = i32::try_from(v as i64) {
        // Sign-extends: right for every pattern that is an i32 read as i64.
        a.mov64(dst, imm)
    } else if let Ok(imm) = u32::try_from(v) {
        // Zero-extends: an i32 with the top bit set.
        a.mov32(dst, imm as i32)
    } else {
        a.ld_imm64(dst, v)
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
