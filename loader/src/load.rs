//! Loading sluice-written ELF objects into the kernel, and running them on packets.
//!
//! This is the typed wrapper over aya for one object: load it without reading the vmlinux
//! BTF (our objects need no CO-RE, and skipping it saves about 35 ms), verify every
//! program, and run one with `BPF_PROG_TEST_RUN` on a crafted packet. Tests and benchmarks
//! of generated code go through here.

use std::time::Duration;

use aya::programs::{Program, ProgramError, SchedClassifier, Xdp};
use aya::{Ebpf, EbpfError, EbpfLoader, TestRun, TestRunOptions};

/// Errors from loading or running an object.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("parsing or creating the maps of the object failed")]
    Object(#[from] EbpfError),
    #[error("program `{name}`: {source}")]
    Program {
        name: String,
        #[source]
        source: ProgramError,
    },
    #[error("the object has no program `{0}`")]
    NoProgram(String),
    #[error("program `{name}` is a {kind}, which sluice does not load")]
    UnsupportedKind { name: String, kind: String },
}

/// What one `BPF_PROG_TEST_RUN` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The program's return value (`TC_ACT_*` or `XDP_*`).
    pub retval: u32,
    /// Kernel-measured time per run, averaged over `repeat`.
    pub duration: Duration,
    /// The packet after the program ran (it may rewrite it).
    pub packet_out: Vec<u8>,
}

/// A loaded object: its maps are created and its programs verified.
pub struct LoadedObject {
    ebpf: Ebpf,
}

impl std::fmt::Debug for LoadedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.ebpf.programs().map(|(n, _)| n).collect();
        f.debug_struct("LoadedObject")
            .field("programs", &names)
            .finish()
    }
}

impl LoadedObject {
    /// Creates the object's maps and loads (verifies) all its tc and XDP programs.
    pub fn load(elf: &[u8]) -> Result<LoadedObject, LoadError> {
        let mut ebpf = EbpfLoader::new().btf(None).load(elf)?;
        for (name, prog) in ebpf.programs_mut() {
            let res = match prog {
                Program::SchedClassifier(p) => p.load(),
                Program::Xdp(p) => p.load(),
                other => {
                    return Err(LoadError::UnsupportedKind {
                        name: name.to_string(),
                        kind: format!("{:?}", other.prog_type()),
                    });
                }
            };
            res.map_err(|source| LoadError::Program {
                name: name.to_string(),
                source,
            })?;
            tracing::debug!(program = name, "loaded");
        }
        Ok(LoadedObject { ebpf })
    }

    /// The aya handle, for map access.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    fn program(&self, name: &str) -> Result<&Program, LoadError> {
        self.ebpf
            .program(name)
            .ok_or_else(|| LoadError::NoProgram(name.to_string()))
    }

    /// The kernel's id of a loaded program (as `bpftool prog show id N` takes it).
    pub fn program_id(&self, name: &str) -> Result<u32, LoadError> {
        let info = self
            .program(name)?
            .info()
            .map_err(|source| LoadError::Program {
                name: name.to_string(),
                source,
            })?;
        Ok(info.id())
    }

    /// Runs program `name` once per `repeat` on `packet` with `BPF_PROG_TEST_RUN`.
    pub fn test_run(
        &self,
        name: &str,
        packet: &[u8],
        repeat: u32,
    ) -> Result<RunOutcome, LoadError> {
        // Room for programs that grow the packet.
        let mut out = vec![0u8; packet.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            repeat: repeat.max(1),
            ..TestRunOptions::default()
        };
        let res = match self.program(name)? {
            Program::SchedClassifier(p) => <SchedClassifier as TestRun>::test_run(p, opts),
            Program::Xdp(p) => <Xdp as TestRun>::test_run(p, opts),
            other => {
                return Err(LoadError::UnsupportedKind {
                    name: name.to_string(),
                    kind: format!("{:?}", other.prog_type()),
                });
            }
        }
        .map_err(|source| LoadError::Program {
            name: name.to_string(),
            source,
        })?;
        out.truncate(res.data_size_out as usize);
        Ok(RunOutcome {
            retval: res.return_value,
            duration: res.duration,
            packet_out: out,
        })
    }
}
