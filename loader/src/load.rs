//! Loading sluice-written ELF objects into the kernel, and running them on packets.
//!
//! This is the typed wrapper over aya for one object: load it without reading the vmlinux
//! BTF (our objects need no CO-RE, and skipping it saves about 35 ms), verify every
//! program, and run one with `BPF_PROG_TEST_RUN` on a crafted packet. Tests and benchmarks
//! of generated code go through here.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::Duration;

use aya::maps::{Map, MapData};
use aya::programs::{Program, ProgramError, SchedClassifier, Xdp};
use aya::{Ebpf, EbpfError, EbpfLoader, TestRun, TestRunOptions};
use sluice_bundle::{MapContents, MapScope};

use crate::sys::bpf::{self as sysbpf, MapElems};

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
    #[error("the object has no map `{0}`")]
    NoMap(String),
    #[error("map `{map}`: {what}")]
    MapContents { map: String, what: String },
    #[error("BPF_PROG_TEST_RUN of program `{name}`: {source}")]
    TestRun {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("map `{map}`: {source}")]
    MapIo {
        map: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the maps an object shares live.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The directory maps marked "pinned by name" (conntrack) are found in or pinned to.
    /// `None`: aya's default, `/sys/fs/bpf`.
    pub pin_dir: Option<PathBuf>,
    /// Per-map pin paths (aya's `map_pin_path`), e.g. a generation's ipcache.
    pub map_pins: Vec<(String, PathBuf)>,
}

fn map_data(map: &Map) -> Option<&MapData> {
    Some(match map {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::ProgramArray(d)
        | Map::PerfEventArray(d)
        | Map::RingBuf(d) => d,
        _ => return None,
    })
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
        Self::load_with(elf, &LoadOptions::default())
    }

    /// [`LoadedObject::load`] with shared maps placed as `opts` says.
    pub fn load_with(elf: &[u8], opts: &LoadOptions) -> Result<LoadedObject, LoadError> {
        let mut ebpf = if opts.pin_dir.is_none() && opts.map_pins.is_empty() {
            load_unpinned(elf)?
        } else {
            let mut loader = EbpfLoader::new();
            loader.btf(None);
            if let Some(dir) = &opts.pin_dir {
                loader.default_map_pin_directory(dir);
            }
            for (name, path) in &opts.map_pins {
                loader.map_pin_path(name.as_str(), path.as_path());
            }
            loader.load(elf)?
        };
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

    /// The fd of map `name`.
    pub fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| LoadError::NoMap(name.to_string()))?;
        let data = map_data(map).ok_or_else(|| LoadError::MapContents {
            map: name.to_string(),
            what: "unsupported map type".into(),
        })?;
        Ok(data.fd().as_fd())
    }

    /// Writes the compiler's map contents (program- and generation-scoped maps; persistent
    /// ones such as conntrack are never written). Key and value sizes are checked.
    pub fn fill(&self, maps: &[MapContents]) -> Result<(), LoadError> {
        for m in maps.iter().filter(|m| m.scope != MapScope::Persistent) {
            let map = self.map(&m.name)?;
            for (k, v) in &m.entries {
                if k.len() != m.def.key_size as usize || v.len() != m.def.value_size as usize {
                    return Err(LoadError::MapContents {
                        map: m.name.clone(),
                        what: format!(
                            "entry of {}+{} bytes, map takes {}+{}",
                            k.len(),
                            v.len(),
                            m.def.key_size,
                            m.def.value_size
                        ),
                    });
                }
                map.update(k, v, sysbpf::BPF_ANY)
                    .map_err(|source| LoadError::MapIo {
                        map: m.name.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// Map `name` with the key and value sizes the kernel reports for it.
    pub fn map(&self, name: &str) -> Result<MapElems<'_>, LoadError> {
        MapElems::new(self.map_fd(name)?).map_err(|source| LoadError::MapIo {
            map: name.to_string(),
            source,
        })
    }

    /// Reads `map[key]` as raw bytes (for per-CPU maps, the value size rounded up to 8 times
    /// the number of possible CPUs). `None` when absent; a key of the wrong size is an error.
    pub fn read_map(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, LoadError> {
        self.map(name)?.get(key).map_err(|source| LoadError::MapIo {
            map: name.to_string(),
            source,
        })
    }

    /// Writes `map[key] = value` as raw bytes; slices of the wrong size are an error.
    pub fn write_map(&self, name: &str, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        self.map(name)?
            .update(key, value, sysbpf::BPF_ANY)
            .map_err(|source| LoadError::MapIo {
                map: name.to_string(),
                source,
            })
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

    /// The fd of a loaded program (for runs through `crate::trace`).
    pub fn program_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        let prog = self.program(name)?;
        let fd = match prog {
            Program::SchedClassifier(p) => p.fd(),
            Program::Xdp(p) => p.fd(),
            other => {
                return Err(LoadError::UnsupportedKind {
                    name: name.to_string(),
                    kind: format!("{:?}", other.prog_type()),
                });
            }
        };
        fd.map(|f| f.as_fd()).map_err(|source| LoadError::Program {
            name: name.to_string(),
            source,
        })
    }

    /// What the kernel says about a loaded program.
    fn info(&self, name: &str) -> Result<aya::programs::ProgramInfo, LoadError> {
        self.program(name)?
            .info()
            .map_err(|source| LoadError::Program {
                name: name.to_string(),
                source,
            })
    }

    /// The kernel's id of a loaded program (as `bpftool prog show id N` takes it).
    pub fn program_id(&self, name: &str) -> Result<u32, LoadError> {
        Ok(self.info(name)?.id())
    }

    /// How many instructions the verifier processed loading program `name` (`None` on
    /// kernels before 5.16, which do not say).
    pub fn verified_insns(&self, name: &str) -> Result<Option<u32>, LoadError> {
        Ok(self.info(name)?.verified_instruction_count())
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

/// Loads an object without pinned maps through one process-wide loader. `EbpfLoader::new`
/// reads and parses the kernel's BTF (about 40 ms) even though we then load without it, which
/// dominated loading many small programs (the differential tests load thousands).
fn load_unpinned(elf: &[u8]) -> Result<Ebpf, aya::EbpfError> {
    static LOADER: std::sync::LazyLock<std::sync::Mutex<EbpfLoader<'static>>> =
        std::sync::LazyLock::new(|| {
            let mut loader = EbpfLoader::new();
            loader.btf(None);
            std::sync::Mutex::new(loader)
        });
    LOADER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .load(elf)
}
