//! The spec's `i32.wast` and `i64.wast` vectors in the v1 subset, through the reference runner:
//! every one must come out as the spec expects (the module allows). The same vectors go
//! through the kernel in loader/cli/tests/verdict_spec.rs.

#[path = "support/spec_vectors.rs"]
mod spec_vectors;

use sluice_runtime::{VerdictOutcome, VerdictRunner};

#[test]
fn spec_vectors_hold_under_wasmtime() {
    for file in ["i32.wast", "i64.wast"] {
        let (vectors, skipped) = spec_vectors::vectors(file);
        println!(
            "{file}: {} assert_return in the subset, {skipped} outside",
            vectors.len()
        );
        // The files' counts: 350 assert_return each, 84 of them clz/ctz/popcnt/div/rem.
        assert_eq!((vectors.len(), skipped), (266, 84), "{file}");
        for v in &vectors {
            for from_packet in [false, true] {
                let r = VerdictRunner::new(&v.module(from_packet)).unwrap();
                assert_eq!(
                    r.run(&v.packet()),
                    VerdictOutcome::Allow,
                    "{} {} {:?} = {:?} (from packet: {from_packet})",
                    v.at,
                    v.op,
                    v.args,
                    v.expected
                );
            }
        }
    }
}

/// The check can fail: a wrong expected value denies.
#[test]
fn a_wrong_expectation_is_denied() {
    let (vectors, _) = spec_vectors::vectors("i64.wast");
    let mut v = vectors[0].clone();
    v.expected = match v.expected {
        spec_vectors::Val::I64(x) => spec_vectors::Val::I64(x ^ 1),
        spec_vectors::Val::I32(x) => spec_vectors::Val::I32(x ^ 1),
    };
    let r = VerdictRunner::new(&v.module(true)).unwrap();
    assert_eq!(r.run(&v.packet()), VerdictOutcome::Deny);
}
