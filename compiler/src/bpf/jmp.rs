//! Structured jumps, so that emit code reads top to bottom.
//!
//! Like bpfilter's jump context: instead of naming a label, emitting a branch and binding
//! the label later by hand, codegen writes `a.if_then(cond, dst, src, |a| body)` and the
//! skip-over branch and its label are handled here.

use super::asm::Asm;
use super::insn::{Cond, Operand, Reg};

impl Asm {
    /// Emits `body` so that it runs only when `dst cond src` (64-bit compare) holds.
    pub fn if_then(
        &mut self,
        cond: Cond,
        dst: Reg,
        src: impl Into<Operand>,
        body: impl FnOnce(&mut Asm),
    ) -> &mut Self {
        let src = src.into();
        let end = self.label();
        match cond.negate() {
            Some(not) => {
                self.jmp(not, dst, src, end);
            }
            // `Set` has no negation: jump into the body, fall through past it.
            None => {
                let then = self.label();
                self.jmp(cond, dst, src, then).ja(end).bind(then);
            }
        }
        body(self);
        self.bind(end)
    }

    /// Emits `then` when `dst cond src` holds and `otherwise` when it does not; both fall
    /// through to what follows.
    pub fn if_else(
        &mut self,
        cond: Cond,
        dst: Reg,
        src: impl Into<Operand>,
        then: impl FnOnce(&mut Asm),
        otherwise: impl FnOnce(&mut Asm),
    ) -> &mut Self {
        let then_l = self.label();
        let end = self.label();
        self.jmp(cond, dst, src, then_l);
        otherwise(self);
        self.ja(end).bind(then_l);
        then(self);
        self.bind(end)
    }
}

#[cfg(test)]
mod tests {
    use crate::bpf::insn::{Insn, Reg::*, Width};
    use crate::bpf::{Asm, Cond};

    #[test]
    fn if_then_skips_the_body_on_the_negated_condition() {
        let mut a = Asm::new();
        a.if_then(Cond::Eq, R1, 81, |a| {
            a.ret(2);
        })
        .ret(0);
        let p = a.finish().unwrap();
        assert_eq!(p.insns[0], Insn::jmp(Width::W64, Cond::Ne, R1, 81, 2));
        assert_eq!(p.insns.len(), 5);
    }

    #[test]
    fn if_then_with_set_uses_a_trampoline() {
        let mut a = Asm::new();
        a.if_then(Cond::Set, R1, 4, |a| {
            a.mov64(R0, 1);
        })
        .exit();
        let p = a.finish().unwrap();
        assert_eq!(p.insns[0], Insn::jmp(Width::W64, Cond::Set, R1, 4, 1));
        assert_eq!(p.insns[1], Insn::ja(1));
        assert_eq!(p.insns[2], Insn::mov64(R0, 1));
    }

    #[test]
    fn if_else_places_both_arms() {
        let mut a = Asm::new();
        a.if_else(
            Cond::Gt,
            R1,
            R2,
            |a| {
                a.mov64(R0, 1);
            },
            |a| {
                a.mov64(R0, 2);
            },
        )
        .exit();
        let p = a.finish().unwrap();
        assert_eq!(p.insns[0], Insn::jmp(Width::W64, Cond::Gt, R1, R2, 2));
        assert_eq!(p.insns[1], Insn::mov64(R0, 2));
        assert_eq!(p.insns[2], Insn::ja(1));
        assert_eq!(p.insns[3], Insn::mov64(R0, 1));
        assert_eq!(p.insns[4], Insn::exit());
    }
}
