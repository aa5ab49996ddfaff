//! The large differential test of issue 13: random modules inside the v1 subset
//! (runtime/tests/support/verdict_gen.rs), each translated to a standalone tcx program, loaded
//! through the kernel verifier and run on 50 packets with BPF_PROG_TEST_RUN, and the same
//! packets through wasmtime (`VerdictRunner`). Every outcome and tcx code must agree, and the
//! verifier must accept every translation. Every `OnTrap` mapping and both packet-load paths
//! (direct and `bpf_skb_load_bytes`) take their share of the modules.
//!
//! Half the packets come from the generator (length edges around the module's constant loads,
//! header-shaped and edge-valued bytes), half from `sluice module translate --verify`'s own
//! generator (the module's constants written at its load offsets, so equality tests go both
//! ways). A failure names the module's seed: `VERDICT_DIFF_SEED=N` reruns that one module and
//! writes it to the test's tmpdir.

#[path = "../../../runtime/tests/support/verdict_gen.rs"]
mod verdict_gen;

use sluice_cli::verdict_verify::{Verifier, packets};
use sluice_compiler::wasm_verdict::{OnTrap, PacketLoads, VerdictModule};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const MODULES: u64 = 10_000;
const PACKETS: usize = 50;
/// Seeds of this test start here (the runtime's generator test uses 0..1000).
const FIRST_SEED: u64 = 1 << 32;

/// The trap verdict cycles with the seed so every `OnTrap` mapping is compared.
fn on_trap(seed: u64) -> OnTrap {
    [OnTrap::Deny, OnTrap::Allow, OnTrap::Pass][(seed % 3) as usize]
}

/// Every fourth module loads through `bpf_skb_load_bytes` only: the path of packet bytes beyond
/// the linear part of a real (non-linear) skb, which BPF_PROG_TEST_RUN never builds.
fn loads(seed: u64) -> PacketLoads {
    if seed.is_multiple_of(4) {
        PacketLoads::HelperOnly
    } else {
        PacketLoads::Direct
    }
}

/// One module through both engines: the problems found, as lines.
fn check(seed: u64) -> Vec<String> {
    let g = verdict_gen::module(seed);
    let m = match VerdictModule::parse(&g.wasm) {
        Ok(m) => m,
        Err(e) => return vec![format!("seed {seed}: the translator refused it: {e}")],
    };
    let v = match Verifier::with_loads(&g.wasm, on_trap(seed), loads(seed)) {
        Ok(v) => v,
        Err(e) => return vec![format!("seed {seed}: {e}")],
    };
    let mut rng = verdict_gen::Rng::new(seed ^ 0x5eed);
    let mut ps = verdict_gen::packets(&mut rng, &g.load_ends, PACKETS / 2);
    ps.extend(packets(&m, PACKETS - ps.len(), seed));
    assert_eq!(ps.len(), PACKETS);
    ps.iter()
        .filter_map(|p| match v.check(p) {
            Ok(None) => None,
            Ok(Some(mismatch)) => Some(format!("seed {seed}: {mismatch}")),
            Err(e) => Some(format!("seed {seed}: test run failed: {e}")),
        })
        .collect()
}

#[test]
fn random_modules_agree_with_wasmtime() {
    if let Ok(seed) = std::env::var("VERDICT_DIFF_SEED") {
        let seed: u64 = seed.parse().expect("VERDICT_DIFF_SEED is a number");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{seed}.wasm"));
        std::fs::write(&path, verdict_gen::module(seed).wasm).unwrap();
        println!("module written to {}", path.display());
        let problems = check(seed);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        return;
    }
    let start = Instant::now();
    let next = AtomicU64::new(0);
    let problems = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= MODULES {
                        break;
                    }
                    let found = check(FIRST_SEED + i);
                    if !found.is_empty() {
                        problems.lock().unwrap().extend(found);
                    }
                }
            });
        }
    });
    let problems = problems.into_inner().unwrap();
    println!(
        "{MODULES} modules x {PACKETS} packets on {threads} threads in {:.1?}: {} problems",
        start.elapsed(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems (first 30):\n{}",
        problems.len(),
        problems[..problems.len().min(30)].join("\n")
    );
}
