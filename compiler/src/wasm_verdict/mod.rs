//! Wasm verdict functions translated to eBPF (`spec/wasm-verdict.md`).
//!
//! A user writes the per-packet decision itself as a WebAssembly function
//! (`verdict(len: i32) -> i32`, ABI v1 in [`sluice_policy::verdict`]); this module turns it
//! into verifier-clean eBPF with exactly the answer wasmtime gives. It exists so that the
//! decision runs in the kernel at eBPF speed without a Wasm interpreter there.
//!
//! The stages, one file each:
//! - [`validate`]: wasmparser's validator (floats, SIMD, threads, bulk memory, memory64 off),
//!   the module's shape (imports, the `verdict` export), and every operator of `verdict`
//!   against the v1 allow-list. Anything else is a located [`VerdictError`].
//! - [`translate`]: the operators onto [`crate::bpf::Asm`]: the Wasm operand stack and locals
//!   in 8-byte stack slots, i32 values zero-extended in 64-bit form, bounds-checked packet
//!   loads, and one exit per outcome.
//! - [`standalone`]: the tcx program `sluice module translate` prints and `--verify` runs.

mod standalone;
mod translate;
mod validate;

#[cfg(test)]
mod tests;

pub use sluice_policy::verdict::{OnTrap, TrapKind, VerdictOutcome};
pub use standalone::{PROGRAM_NAME, standalone_program, standalone_program_with};

use crate::bpf::{Asm, BpfError, Label};
use sluice_policy::Digest;

/// A validated, allow-listed verdict module, ready to translate.
#[derive(Clone, Debug)]
pub struct VerdictModule {
    bytes: Vec<u8>,
    /// What [`validate`] learned: the `verdict` function's body and locals, which import
    /// index is which `pkt_*` function.
    pub(crate) info: validate::ModuleInfo,
}

impl VerdictModule {
    /// Validates (floats, SIMD, threads, bulk memory, memory64 off) and walks every operator
    /// against the v1 allow-list. Err carries function index, byte offset, found, allowed.
    pub fn parse(wasm: &[u8]) -> Result<VerdictModule, VerdictError> {
        let info = validate::check(wasm)?;
        Ok(VerdictModule {
            bytes: wasm.to_vec(),
            info,
        })
    }

    /// The sha256 of the module bytes.
    pub fn digest(&self) -> [u8; 32] {
        Digest::of(&self.bytes).0
    }

    /// The module bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The `verdict` function's index in the module.
    pub fn function_index(&self) -> u32 {
        self.info.func
    }

    /// Every packet load at a constant offset (`i32.const N; call pkt_uS`): `(N, S)`. Packet
    /// generators put length edges around these.
    pub fn constant_loads(&self) -> Vec<(i32, u32)> {
        let mut out: Vec<(i32, u32)> = self
            .info
            .ops
            .windows(2)
            .filter_map(|w| match (&w[0].1, &w[1].1) {
                (validate::Op::I32Const(n), validate::Op::Call(validate::Import::Load(s))) => {
                    Some((*n, u32::from(*s)))
                }
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every integer constant of `verdict`: values worth planting in packets.
    pub fn constants(&self) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .info
            .ops
            .iter()
            .filter_map(|(_, op)| match op {
                validate::Op::I32Const(n) => Some(i64::from(*n)),
                validate::Op::I64Const(n) => Some(*n),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The translated code, inlined into a program being assembled (see [`InlineEnv`]).
    pub fn emit_inline(&self, asm: &mut Asm, env: &InlineEnv) -> Result<(), VerdictError> {
        let exits = translate::Exits {
            pass: env.on_pass,
            allow: env.on_allow,
            deny: env.on_deny,
            trap: [env.on_trap; 3],
        };
        translate::emit(
            &self.info,
            asm,
            env.ctx_slot,
            env.scratch.clone(),
            env.ip_offset,
            &exits,
            PacketLoads::Direct,
        )
    }
}

/// Contract of inlined code: on entry the packet context pointer is in stack slot
/// `env.ctx_slot` (r10 + offset); the code uses r0-r5 and the stack bytes in `env.scratch`
/// (an r10-relative range it may use freely), preserves r6-r9, and leaves by jumping to
/// exactly one of the labels, with nothing expected in registers.
///
/// The caller binds each exit label after the code; an exit the code never takes is not
/// targeted, so bind only the labels [`Asm::is_targeted`] reports (the verifier rejects
/// unreachable instructions).
#[derive(Clone, Debug)]
pub struct InlineEnv {
    pub ctx_slot: i16,
    pub scratch: std::ops::Range<i16>,
    /// Where the IP header starts in the frame (14 behind Ethernet).
    pub ip_offset: u32,
    pub on_pass: Label,
    pub on_allow: Label,
    pub on_deny: Label,
    pub on_trap: Label,
}

/// How translated code reads the packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PacketLoads {
    /// From the linear part directly when it holds the bytes, else `bpf_skb_load_bytes`.
    #[default]
    Direct,
    /// Always `bpf_skb_load_bytes`: the path loads beyond the linear part of a non-linear
    /// skb take. `BPF_PROG_TEST_RUN` builds only linear skbs, so tests use this to run that
    /// path on every packet.
    HelperOnly,
}

/// Everything that can keep a module from becoming a program. Every refusal of the module
/// itself is located: a byte offset into the module and, for code, the function index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerdictError {
    /// wasmparser's validator (with the v1 feature set) rejected the module.
    /// `func` is the function whose body holds `offset`, when one does.
    #[error("{}byte offset {offset:#x}: not a valid WebAssembly module for verdict ABI v1 (integer \
        code only: no floats, SIMD, threads, bulk memory, memory64): {message}",
        func.map(|f| format!("function {f}, ")).unwrap_or_default())]
    Invalid {
        func: Option<u32>,
        offset: usize,
        message: String,
    },
    /// The module's imports, exports or sections are not what ABI v1 accepts.
    #[error("byte offset {offset:#x}: {found}; verdict ABI v1 allows {allowed}")]
    Shape {
        offset: usize,
        found: String,
        allowed: &'static str,
    },
    /// An operator outside the v1 subset.
    #[error(
        "function {func}, instruction at byte offset {offset:#x}: `{found}` is outside verdict \
         ABI v1; it allows {allowed}"
    )]
    Unsupported {
        func: u32,
        offset: usize,
        found: String,
        allowed: &'static str,
    },
    /// The function needs more stack than the eBPF frame leaves it.
    #[error(
        "function {func}, instruction at byte offset {offset:#x}: needs {needed} bytes of stack \
         for its locals and operand stack, but only {available} are free (eBPF allows 512 per \
         program); use fewer locals or shallower expressions"
    )]
    StackTooDeep {
        func: u32,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// The assembler refused the program (a jump beyond 16 bits, ...).
    #[error("assembling the verdict program: {0}")]
    Asm(#[from] BpfError),
}

/// What v1 allows, as diagnostics say it.
pub const ALLOWED_OPERATORS: &str = "i32/i64 constants, local.get/set/tee, add/sub/mul, \
    and/or/xor, shl/shr_s/shr_u/rotl/rotr, eqz, the comparisons, i32.wrap_i64, \
    i64.extend_i32_s/u, the sign-extension operators, select, drop, nop, block/if/else/br/\
    br_if/br_table (forward only), return, unreachable, and calls to the `sluice` pkt_* imports";

impl miette::Diagnostic for VerdictError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(match self {
            VerdictError::Invalid { .. } => "sluice::verdict::invalid",
            VerdictError::Shape { .. } => "sluice::verdict::shape",
            VerdictError::Unsupported { .. } => "sluice::verdict::unsupported",
            VerdictError::StackTooDeep { .. } => "sluice::verdict::stack",
            VerdictError::Asm(_) => "sluice::verdict::asm",
        }))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        let h = match self {
            VerdictError::Unsupported { .. } | VerdictError::Invalid { .. } => {
                "verdict ABI v1 is integer code without loops, memory, globals, calls between \
                 functions, division or floats (spec/wasm-verdict.md); Rust authors build for \
                 wasm32v1-none with opt-level 3 or s"
            }
            VerdictError::Shape { .. } => {
                "a verdict module exports `verdict(len: i32) -> i32` and imports only \
                 sluice.pkt_len/pkt_u8/pkt_u16/pkt_u32 (spec/wasm-verdict.md)"
            }
            VerdictError::StackTooDeep { .. } => {
                "each local and each operand-stack value takes 8 of the 512 stack bytes"
            }
            VerdictError::Asm(_) => return None,
        };
        Some(Box::new(h))
    }
}
