//! `sluice module translate --verify`: the same packets through wasmtime (the reference,
//! `sluice_runtime::verdict::VerdictRunner`) and through the translated program in the
//! kernel (`BPF_PROG_TEST_RUN`), outcome by outcome.
//!
//! **Packets** ([`packets`]) are IP packets (the verdict's view; the kernel gets them behind
//! a 14-byte Ethernet header). They are deterministic for a seed and made, in this order:
//! 1. length edges: for every load at a constant offset `N` of size `S`, packets of length
//!    `N+S-1`, `N+S` and `N+S+1` (the load just out of bounds, just in, one spare), and for
//!    every small constant `C` of the module lengths `C-1`, `C`, `C+1` (compares with
//!    `pkt_len`); each once with random bytes and once all `0xff`;
//! 2. `0xffff` as a value: a packet of 64 bytes of `0xff` (every u16 read is 0xffff, so an
//!    offset or length read from the packet is 0xffff) and one of zeros;
//! 3. random packets: a random length up to 1500 (half of them up to 64), random bytes, an
//!    IPv4-looking first byte (0x45) half the time, and at each constant load offset, with
//!    probability 1/2, one of the module's constants written big-endian (so compares against
//!    those constants take both ways).
//!
//! The first `n` of that sequence are run. A mismatch is any difference in the outcome
//! (`cb[0]`), or a tcx return code that is not the one the outcome and `--on-trap` call for.

use sluice_compiler::wasm_verdict::{
    OnTrap, PacketLoads, VerdictModule, VerdictOutcome, standalone_program_with,
};
use sluice_loader::verdict_run::KernelVerdictRunner;
use sluice_runtime::VerdictRunner;

/// The Ethernet header every frame starts with. Its EtherType is the IEEE local
/// experimental one (0x88b5), not IPv4: BPF_PROG_TEST_RUN refuses an IPv4 frame without a
/// whole IPv4 header, and the verdict must see short and random packets too. The
/// standalone program never reads the EtherType.
const ETH: [u8; 14] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5];
/// Longest packet generated: BPF_PROG_TEST_RUN takes a frame of at most about a page.
pub const MAX_PACKET: usize = 1500;

/// Why a comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Translate(#[from] sluice_compiler::wasm_verdict::VerdictError),
    #[error("wasmtime refused the module: {0}")]
    Reference(#[from] sluice_runtime::RuntimeError),
    #[error("the kernel refused or failed the program: {0}")]
    Kernel(#[from] sluice_loader::load::LoadError),
}

/// One packet on which the engines disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The IP packet.
    pub packet: Vec<u8>,
    pub wasmtime: VerdictOutcome,
    /// `cb[0]` as the kernel program left it.
    pub kernel_code: u32,
    pub kernel_retval: u32,
    pub expected_retval: u32,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kernel = match VerdictOutcome::from_code(self.kernel_code) {
            Some(o) => o.to_string(),
            None => format!("code {:#x}", self.kernel_code),
        };
        write!(
            f,
            "mismatch: wasmtime {} (tc {}), kernel {kernel} (tc {}) on {} bytes: {}",
            self.wasmtime,
            self.expected_retval,
            self.kernel_retval,
            self.packet.len(),
            hex(&self.packet)
        )
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Both engines, loaded once.
pub struct Verifier {
    reference: VerdictRunner,
    kernel: KernelVerdictRunner,
    on_trap: OnTrap,
}

impl Verifier {
    /// Compiles the module in wasmtime and loads its translation into the kernel.
    pub fn new(wasm: &[u8], on_trap: OnTrap) -> Result<Verifier, VerifyError> {
        Verifier::with_loads(wasm, on_trap, PacketLoads::Direct)
    }

    /// [`Verifier::new`] with the kernel program reading the packet as `loads` says.
    pub fn with_loads(
        wasm: &[u8],
        on_trap: OnTrap,
        loads: PacketLoads,
    ) -> Result<Verifier, VerifyError> {
        let module = VerdictModule::parse(wasm)?;
        let art = standalone_program_with(&module, on_trap, loads)?;
        Ok(Verifier {
            reference: VerdictRunner::new(wasm)?,
            kernel: KernelVerdictRunner::load(&art)?,
            on_trap,
        })
    }

    /// The loaded program, for what the kernel says about it.
    pub fn kernel(&self) -> &KernelVerdictRunner {
        &self.kernel
    }

    /// One packet through both; `Some` when they disagree.
    pub fn check(&self, packet: &[u8]) -> Result<Option<Mismatch>, VerifyError> {
        let want = self.reference.run(packet);
        let mut frame = ETH.to_vec();
        frame.extend_from_slice(packet);
        let (retval, code) = self.kernel.run(&frame)?;
        let expected_retval = tc_code(want, self.on_trap);
        Ok(
            (code != want.code() || retval != expected_retval).then(|| Mismatch {
                packet: packet.to_vec(),
                wasmtime: want,
                kernel_code: code,
                kernel_retval: retval,
                expected_retval,
            }),
        )
    }
}

/// The tcx return code an outcome calls for.
pub fn tc_code(o: VerdictOutcome, on_trap: OnTrap) -> u32 {
    match o {
        VerdictOutcome::Pass | VerdictOutcome::Allow => 0,
        VerdictOutcome::Deny => 2,
        VerdictOutcome::Trap(_) => tc_code(on_trap.outcome(), on_trap),
    }
}

/// xorshift64*: deterministic packets without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The first `n` packets for `m` (see the module docs for the sequence).
pub fn packets(m: &VerdictModule, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed | 1);
    let loads = m.constant_loads();
    let constants = m.constants();
    let mut edges: Vec<usize> = Vec::new();
    let fits = |v: i64| usize::try_from(v).ok().filter(|&v| v <= MAX_PACKET);
    for &(off, size) in &loads {
        if let Some(end) = fits(i64::from(off) + i64::from(size)) {
            edges.extend([end.saturating_sub(1), end, end + 1]);
        }
    }
    for &c in &constants {
        if let Some(c) = fits(c) {
            edges.extend([c.saturating_sub(1), c, c + 1]);
        }
    }
    edges.sort_unstable();
    edges.dedup();
    edges.retain(|&l| l <= MAX_PACKET);

    let mut out = Vec::new();
    for &len in &edges {
        out.push(rng.bytes(len));
        out.push(vec![0xff; len]);
    }
    out.push(vec![0xff; 64]);
    out.push(vec![0; 64]);
    while out.len() < n {
        let len = if rng.below(2) == 0 {
            rng.below(65)
        } else {
            rng.below(MAX_PACKET + 1)
        };
        let mut p = rng.bytes(len);
        if !p.is_empty() && rng.below(2) == 0 {
            p[0] = 0x45;
        }
        for &(off, size) in &loads {
            if constants.is_empty() || rng.below(2) == 0 {
                continue;
            }
            let v = constants[rng.below(constants.len())].to_be_bytes();
            // A negative constant offset is a load that always traps: nothing to write.
            let (Ok(off), size) = (usize::try_from(off), size as usize) else {
                continue;
            };
            if off + size <= p.len() {
                p[off..off + size].copy_from_slice(&v[8 - size..]);
            }
        }
        out.push(p);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_hold_the_length_edges_and_0xffff_and_are_deterministic() {
        let wasm = wat::parse_str(
            r#"(module
                 (import "sluice" "pkt_u16" (func $u16 (param i32) (result i32)))
                 (func (export "verdict") (param i32) (result i32)
                   (drop (call $u16 (i32.const -3)))
                   (i32.and (call $u16 (i32.const 30)) (i32.const 1))))"#,
        )
        .unwrap();
        let m = VerdictModule::parse(&wasm).unwrap();
        assert_eq!(m.constant_loads(), vec![(-3, 2), (30, 2)]);
        let ps = packets(&m, 200, 9);
        assert_eq!(ps.len(), 200);
        assert_eq!(ps, packets(&m, 200, 9), "deterministic for a seed");
        assert_ne!(ps, packets(&m, 200, 10));
        let lens: Vec<usize> = ps.iter().map(Vec::len).collect();
        // The load at 30 of 2 bytes: one short, exact, one spare; each random and all 0xff.
        for len in [31, 32, 33] {
            assert!(
                ps.iter()
                    .any(|p| p.len() == len && p.iter().all(|&b| b == 0xff))
            );
            assert!(lens.iter().filter(|&&l| l == len).count() >= 2, "{len}");
        }
        assert!(
            ps.iter()
                .any(|p| p.len() == 64 && p.iter().all(|&b| b == 0xff))
        );
        assert!(ps.iter().all(|p| p.len() <= MAX_PACKET));
        // Random packets plant the module's constants at the constant load offsets.
        assert!(
            ps.iter()
                .any(|p| p.len() >= 32 && p[30..32] == [0, 30] && p.len() > 40),
            "a random packet with 30 planted at offset 30"
        );
    }
}
