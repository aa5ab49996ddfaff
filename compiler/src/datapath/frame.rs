//! The one frame every datapath emitter allocates from: each stack slot of the programs
//! (offset from `R10`, size, owner) and each register role (register, the phases it lives
//! through).
//!
//! Slots are laid out once, at compile time, by `allocate`: each just below the one listed
//! before it, aligned to its own alignment, so two slots cannot overlap and a frame beyond the
//! verifier's 512 bytes does not build. The emitters ([`super::parse`], [`super::ct`],
//! [`super::decide`], [`super::verdict`]) take every offset from [`Var::off`] and every
//! register from the constants here; `spec/codegen.md` shows the same table.

use crate::bpf::Reg;

/// The verifier's stack limit for one program (bytes below `R10`).
pub const STACK_MAX: i16 = 512;

/// The emitter that writes a slot (and, for a register, that sets it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Parse,
    Conntrack,
    Decide,
    Verdict,
    /// The node datapath (`super::node`): forwarding after the policy verdict.
    Node,
    /// Inlined Wasm verdict modules (`crate::wasm_verdict`).
    Wasm,
}

/// Every stack variable of the programs, in allocation order (the first just below `R10`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// IPv4 source address, u32 in network order.
    Saddr,
    /// IPv4 destination address, u32 in network order.
    Daddr,
    /// Source port (TCP, UDP, SCTP) or ICMP query identifier, u16 host order; 0 otherwise.
    Sport,
    /// Offset of the L4 header from the frame start, u16 (0 when there is none).
    L4Off,
    /// ICMP type, u8.
    IcmpType,
    /// ICMP code, u8.
    IcmpCode,
    /// The flow's conntrack key (16 bytes), kept for the insert in the tail.
    CtKey,
    /// The reverse flow's conntrack key (16 bytes).
    CtRevKey,
    /// The timestamp the insert writes (u64).
    CtNow,
    /// Port map key (12 bytes).
    PortKey,
    /// ipcache key (8 bytes).
    IpcacheKey,
    /// A u32 map key (class → profile).
    U32Key,
    /// The context, saved at entry with rule recording or verdict modules (u64).
    Ctx,
    /// The node ingress key (16 bytes): table, class, protocol, port.
    NodeKey,
    /// `struct bpf_tunnel_key` up to `tunnel_label` (24 bytes).
    TunnelKey,
    /// A pointer to the destination endpoint's `sluice_eps` value (u64).
    EpPtr,
    /// The source's peer class, as the destination's ingress decides it (u32).
    Class,
    /// `struct bpf_fib_lookup` (64 bytes).
    FibParams,
    /// A NAT table key (16 bytes), also the exclusion LPM key.
    NatKey,
    /// A NAT table value (16 bytes), and the scratch the rewrite stores from.
    NatVal,
    /// What `skb->cb[0]` held on entry (a trace probe's mark), u32; 0 in programs that
    /// are never traced.
    Probe,
    /// The rest of the stack: inlined Wasm verdict modules keep their locals and operand
    /// stack here (`InlineEnv::scratch`).
    WasmScratch,
}

/// One stack slot: `size` bytes at `R10 + off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub var: Var,
    pub owner: Owner,
    pub off: i16,
    pub size: i16,
    pub align: i16,
}

const fn spec(var: Var, owner: Owner, size: i16, align: i16) -> Slot {
    Slot {
        var,
        owner,
        off: 0,
        size,
        align,
    }
}

/// The size of a slot that takes the rest of the frame (the last one).
const REST: i16 = -1;

/// Places each slot just below the one before it, aligned down to its alignment.
const fn allocate<const N: usize>(mut slots: [Slot; N]) -> [Slot; N] {
    let mut top = 0i16;
    let mut i = 0;
    while i < N {
        assert!(
            slots[i].var as usize == i,
            "SLOTS lists the variables in the order Var declares them"
        );
        let s = &mut slots[i];
        if s.size == REST {
            // Whatever the slots above leave, whole aligned units.
            s.off = (-STACK_MAX).div_euclid(s.align) * s.align;
            let below = top.div_euclid(s.align) * s.align;
            s.size = below - s.off;
        } else {
            s.off = (top - s.size).div_euclid(s.align) * s.align;
        }
        top = s.off;
        i += 1;
    }
    assert!(
        top >= -STACK_MAX,
        "the frame exceeds the verifier's 512 bytes"
    );
    slots
}

/// The frame: every slot, laid out.
pub const SLOTS: [Slot; 22] = allocate([
    spec(Var::Saddr, Owner::Parse, 4, 4),
    spec(Var::Daddr, Owner::Parse, 4, 4),
    spec(Var::Sport, Owner::Parse, 2, 2),
    spec(Var::L4Off, Owner::Parse, 2, 2),
    spec(Var::IcmpType, Owner::Parse, 1, 1),
    spec(Var::IcmpCode, Owner::Parse, 1, 1),
    // Keys are built with aligned stores of up to 8 bytes (the verifier's rule).
    spec(Var::CtKey, Owner::Conntrack, 16, 8),
    spec(Var::CtRevKey, Owner::Conntrack, 16, 8),
    spec(Var::CtNow, Owner::Conntrack, 8, 8),
    spec(Var::PortKey, Owner::Decide, 12, 8),
    spec(Var::IpcacheKey, Owner::Decide, 8, 8),
    spec(Var::U32Key, Owner::Decide, 4, 4),
    spec(Var::Ctx, Owner::Verdict, 8, 8),
    spec(Var::NodeKey, Owner::Node, 16, 8),
    spec(Var::TunnelKey, Owner::Node, 24, 8),
    spec(Var::EpPtr, Owner::Node, 8, 8),
    spec(Var::Class, Owner::Node, 4, 4),
    spec(Var::FibParams, Owner::Node, 64, 8),
    spec(Var::NatKey, Owner::Node, 16, 8),
    spec(Var::NatVal, Owner::Node, 16, 8),
    spec(Var::Probe, Owner::Node, 4, 4),
    spec(Var::WasmScratch, Owner::Wasm, REST, 8),
]);

impl Var {
    pub const fn slot(self) -> Slot {
        SLOTS[self as usize]
    }

    /// The slot's offset from `R10`.
    pub const fn off(self) -> i16 {
        self.slot().off
    }
}

/// The parser zeroes `[PARSE_FRAME, 0)` with 8-byte stores first, so every field it
/// promises is initialized: the lowest parser slot, rounded down to 8.
pub const PARSE_FRAME: i16 = {
    let mut low = 0;
    let mut i = 0;
    while i < SLOTS.len() {
        if matches!(SLOTS[i].owner, Owner::Parse) && SLOTS[i].off < low {
            low = SLOTS[i].off;
        }
        i += 1;
    }
    low.div_euclid(8) * 8
};

/// Bytes of stack the programs use.
pub const FRAME_SIZE: i16 = -SLOTS[SLOTS.len() - 1].off;

/// The stages of a program, in the order a packet goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// [`super::parse`].
    Parse,
    /// IPv4, ARP or other ([`super::program`]).
    Classify,
    /// The lookups before policy ([`super::ct`]).
    Conntrack,
    /// [`super::decide`].
    Decide,
    /// [`super::verdict`] (trace, conntrack insert, return).
    Tail,
}

/// The context (`R1` on entry), while the parser reads it.
pub const CTX: Reg = Reg::R6;
/// L3 protocol: the EtherType in host order.
pub const L3_PROTO: Reg = Reg::R7;
/// L4 protocol: the IPv4 protocol number, 0 if not IPv4.
pub const L4_PROTO: Reg = Reg::R8;
/// L4 key: destination port (host order), or `type << 8 | code` for ICMP, else 0.
pub const L4_KEY: Reg = Reg::R9;
/// A conntrack hit's value pointer, kept across `bpf_ktime_get_ns`.
pub const CT_VALUE: Reg = Reg::R6;
/// A class or profile id.
pub const ID: Reg = Reg::R6;
/// The verdict code (`spec/datapath.md`); every path into the tail sets it last.
pub const CODE: Reg = Reg::R7;

/// A register role and the phases it is live in (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Role {
    pub name: &'static str,
    pub reg: Reg,
    pub from: Phase,
    pub to: Phase,
}

const fn role(name: &'static str, reg: Reg, from: Phase, to: Phase) -> Role {
    Role {
        name,
        reg,
        from,
        to,
    }
}

/// Every register role. `R0`–`R5` are scratch in every phase (helper calls clobber them).
pub const ROLES: [Role; 7] = [
    role("ctx", CTX, Phase::Parse, Phase::Parse),
    role("l3_proto", L3_PROTO, Phase::Parse, Phase::Classify),
    role("l4_proto", L4_PROTO, Phase::Parse, Phase::Decide),
    role("l4_key", L4_KEY, Phase::Parse, Phase::Decide),
    role("ct_value", CT_VALUE, Phase::Conntrack, Phase::Conntrack),
    role("id", ID, Phase::Decide, Phase::Decide),
    role("code", CODE, Phase::Conntrack, Phase::Tail),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a frame; the layout above and deliberately broken ones go through it.
    fn check(slots: &[Slot]) -> Result<(), String> {
        for s in slots {
            if s.off >= 0 || s.off < -STACK_MAX || s.off + s.size > 0 {
                return Err(format!(
                    "{:?} at {} is outside the 512-byte stack",
                    s.var, s.off
                ));
            }
            if s.off % s.align != 0 {
                return Err(format!(
                    "{:?} at {} is not {}-aligned",
                    s.var, s.off, s.align
                ));
            }
        }
        for (i, a) in slots.iter().enumerate() {
            for b in &slots[i + 1..] {
                if a.off < b.off + b.size && b.off < a.off + a.size {
                    return Err(format!("{:?} and {:?} overlap", a.var, b.var));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn slots_are_disjoint_aligned_and_within_512_bytes() {
        check(&SLOTS).unwrap();
        for (i, s) in SLOTS.iter().enumerate() {
            assert_eq!(s.var as usize, i);
            assert_eq!(s.var.slot(), *s);
        }
        // The checker catches what it is there for.
        let mut overlap = SLOTS;
        overlap[7].off += 8;
        assert!(check(&overlap).unwrap_err().contains("overlap"));
        let mut deep = SLOTS;
        deep[12].off = -STACK_MAX - 8;
        assert_eq!(
            Var::WasmScratch.slot().off,
            -STACK_MAX,
            "the Wasm scratch takes the rest"
        );
        assert!(check(&deep).unwrap_err().contains("512"));
        const { assert!(FRAME_SIZE <= STACK_MAX) };
    }

    /// `spec/codegen.md`'s frame table says what the frame is: a row per slot with its
    /// offset, size and owner.
    #[test]
    fn the_spec_table_is_the_frame() {
        let spec =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/codegen.md"))
                .unwrap();
        let rows = spec.lines().filter(|l| {
            l.strip_prefix("| `")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_uppercase()))
                && l.contains("` | `r10 - ")
        });
        assert_eq!(rows.count(), SLOTS.len(), "a row per slot, no more");
        for s in &SLOTS {
            let owner = format!("{:?}", s.owner).to_lowercase();
            let row = format!(
                "| `{:?}` | `r10 - {}` | {} | {owner} |",
                s.var, -s.off, s.size
            );
            assert!(spec.contains(&row), "spec/codegen.md lacks `{row}`");
        }
        assert!(spec.contains(&format!("({FRAME_SIZE} bytes)")));
    }

    /// The parser's zeroing reaches only its own slots: the context is saved before it runs.
    #[test]
    fn the_parser_zeroes_only_its_own_slots() {
        for s in &SLOTS {
            let inside = s.off >= PARSE_FRAME;
            assert_eq!(inside, s.owner == Owner::Parse, "{s:?}");
        }
        assert_eq!(PARSE_FRAME % 8, 0);
    }

    /// Roles live at the same time use different registers, and every role survives helper
    /// calls (R6–R9 are callee-saved).
    #[test]
    fn live_register_roles_never_share_a_register() {
        for r in &ROLES {
            assert!(
                matches!(r.reg, Reg::R6 | Reg::R7 | Reg::R8 | Reg::R9),
                "{r:?}"
            );
            assert!(r.from <= r.to, "{r:?}");
        }
        for (i, a) in ROLES.iter().enumerate() {
            for b in &ROLES[i + 1..] {
                let live_together = a.from <= b.to && b.from <= a.to;
                assert!(!(live_together && a.reg == b.reg), "{a:?} and {b:?}");
            }
        }
    }
}
