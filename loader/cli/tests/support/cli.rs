//! Running the `sluice` binary from the CLI tests (`check`, `compile`, `convert`, `fmt`,
//! `module`, `conformance`), each in a scratch directory of its own. Included with `#[path]`, not a crate
//! module.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The NetworkPolicy conformance corpus (`SLUICE_CONFORMANCE_DIR`, or `shared/conformance/netpol`
/// beside the repository).
pub fn corpus() -> PathBuf {
    sluice_compiler::conformance::corpus_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).expect(
        "shared/conformance/netpol not found beside the repository (set SLUICE_CONFORMANCE_DIR)",
    )
}

/// A fresh directory, unique to this test binary, `name` and process; removed on drop (also
/// when the test panics).
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!(
            "sluice-{}-{name}-{}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    /// Writes `name` (parent directories included) under the directory.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> &Scratch {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
        self
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One run of the binary.
pub struct Run {
    /// The exit code; -1 when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `sluice args` in `dir`, with no `RUST_LOG` (stderr holds only what a user sees).
pub fn sluice<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
