//! Running a standalone verdict program (`sluice_compiler::wasm_verdict`) in the kernel, for
//! `sluice module translate --verify` and the differential tests.
//!
//! The program is loaded (verified) once; each frame then goes through `BPF_PROG_TEST_RUN`,
//! which hands back the return value and `skb->cb[0]`, where the program stores the exact
//! outcome code (`sluice_policy::verdict::VerdictOutcome::code`). `cb[0]` goes in holding
//! [`NOT_WRITTEN`], so a program that never writes it is told apart from one that wrote 0.

use crate::load::{LoadError, LoadedObject};
use crate::sys::bpf as sysbpf;
use sluice_bundle::ProgramArtifact;

/// What `cb[0]` holds on the way in: no outcome code has this value.
pub const NOT_WRITTEN: u32 = u32::MAX;

/// A loaded standalone verdict program.
#[derive(Debug)]
pub struct KernelVerdictRunner {
    obj: LoadedObject,
    name: String,
}

impl KernelVerdictRunner {
    /// Loads (verifies) the artifact's program.
    pub fn load(artifact: &ProgramArtifact) -> Result<KernelVerdictRunner, LoadError> {
        let obj = LoadedObject::load(&artifact.elf)?;
        obj.fill(&artifact.maps)?;
        Ok(KernelVerdictRunner {
            obj,
            name: artifact.name.clone(),
        })
    }

    /// Runs one Ethernet frame: the program's return value and `cb[0]` after the run.
    pub fn run(&self, frame: &[u8]) -> Result<(u32, u32), LoadError> {
        let fd = self.obj.program_fd(&self.name)?;
        let mut ctx = [0u8; sysbpf::SK_BUFF_SIZE];
        let cb0 = sluice_bundle::abi::SKB_CB0 as usize;
        ctx[cb0..cb0 + 4].copy_from_slice(&NOT_WRITTEN.to_le_bytes());
        let run =
            sysbpf::prog_test_run_skb(fd, frame, &ctx).map_err(|source| LoadError::TestRun {
                name: self.name.clone(),
                source,
            })?;
        let out = u32::from_le_bytes(run.ctx_out[cb0..cb0 + 4].try_into().expect("4 bytes"));
        Ok((run.retval, out))
    }

    /// How many instructions the verifier processed (`None` before kernel 5.16).
    pub fn verified_insns(&self) -> Result<Option<u32>, LoadError> {
        self.obj.verified_insns(&self.name)
    }

    /// The kernel's id of the loaded program.
    pub fn program_id(&self) -> Result<u32, LoadError> {
        self.obj.program_id(&self.name)
    }
}
