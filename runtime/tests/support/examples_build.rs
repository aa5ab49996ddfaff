//! The example Wasm modules of examples/wasm, built once per test binary with
//! examples/wasm/build.sh (whichever toolchain route the machine has), and packets for the
//! verdict example. Shared by the runtime's
//! example tests and the kernel tests of the verdict example (`#[path]` include).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// examples/wasm, found above the including crate's manifest directory.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("examples/wasm"))
        .find(|d| d.join("build.sh").is_file())
        .expect("examples/wasm above the crate")
}

/// Builds every example once per test binary; returns the output directory.
pub fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-modules");
        let status = Command::new(examples().join("build.sh"))
            .arg("--out")
            .arg(&out)
            .status()
            .expect("running examples/wasm/build.sh");
        assert!(status.success(), "examples/wasm/build.sh failed");
        out
    })
}

/// A built example's bytes (`name` without `.wasm`).
pub fn built_module(name: &str) -> Vec<u8> {
    let path = built().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An IPv4/TCP packet from `src` to port `dport` with TCP `flags`, IHL 5.
pub fn tcp_packet(src: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[33] = flags;
    p
}

/// SYN-shaped packets around every edge of the ssh-syn examples: each IHL 0..15, flag bytes
/// SYN / SYN+ACK / none / all, a source in and out of 10.0.0.0/8, lengths around the TCP
/// header's end (and past it).
pub fn syn_edge_packets() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ihl in 0..16u8 {
        for flags in [0x02, 0x12, 0x00, 0xff] {
            for src in [[10, 0, 0, 1], [9, 255, 255, 255]] {
                for len in [0, 19, 20, 23, 24, 33, 34, 40, 60, 80] {
                    let l4 = ihl as usize * 4;
                    let mut p = vec![0u8; 80];
                    p[0] = 0x40 | ihl;
                    p[9] = 6;
                    p[12..16].copy_from_slice(&src);
                    if l4 + 4 <= 80 {
                        p[l4 + 2..l4 + 4].copy_from_slice(&22u16.to_be_bytes());
                    }
                    if l4 + 13 < 80 {
                        p[l4 + 13] = flags;
                    }
                    p.truncate(len);
                    out.push(p);
                }
            }
        }
    }
    out
}
