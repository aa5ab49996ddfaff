//! The WebAssembly spec's `i32.wast` and `i64.wast` vectors in the v1 subset, translated and run
//! in the kernel (BPF_PROG_TEST_RUN) next to wasmtime: each vector's module allows exactly when
//! the operator gives the spec's expected value, with the arguments as constants and read from
//! the packet. Both engines must allow on every one (runtime/tests/support/spec_vectors.rs).

#[path = "../../../runtime/tests/support/spec_vectors.rs"]
mod spec_vectors;

use sluice_cli::verdict_verify::Verifier;
use sluice_compiler::wasm_verdict::{OnTrap, VerdictOutcome};
use sluice_runtime::VerdictRunner;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn spec_vectors_hold_in_the_kernel() {
    let mut all = Vec::new();
    for file in ["i32.wast", "i64.wast"] {
        let (vectors, _) = spec_vectors::vectors(file);
        assert_eq!(vectors.len(), 266, "{file}");
        for v in vectors {
            all.push((v.clone(), false));
            all.push((v, true));
        }
    }
    let next = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..std::thread::available_parallelism().map_or(2, |n| n.get()) {
            s.spawn(|| {
                while let Some((v, from_packet)) = all.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let what = format!(
                        "{} {} {:?} = {:?} (from packet: {from_packet})",
                        v.at, v.op, v.args, v.expected
                    );
                    let wasm = v.module(*from_packet);
                    let packet = v.packet();
                    // The reference must give the spec's answer; the kernel must agree with it
                    // (outcome code and tc return code).
                    let reference = VerdictRunner::new(&wasm).unwrap().run(&packet);
                    let problem = if reference != VerdictOutcome::Allow {
                        Some(format!("{what}: wasmtime {reference}"))
                    } else {
                        match Verifier::new(&wasm, OnTrap::Deny) {
                            Err(e) => Some(format!("{what}: {e}")),
                            Ok(k) => match k.check(&packet) {
                                Ok(None) => None,
                                Ok(Some(m)) => Some(format!("{what}: {m}")),
                                Err(e) => Some(format!("{what}: {e}")),
                            },
                        }
                    };
                    problems.lock().unwrap().extend(problem);
                }
            });
        }
    });
    let problems = problems.into_inner().unwrap();
    println!("{} spec vector modules through both engines", all.len());
    assert!(
        problems.is_empty(),
        "{} of {} disagree:\n{}",
        problems.len(),
        all.len(),
        problems.join("\n")
    );
}
