//! The Rust verdict example (examples/wasm/verdict/rust/ssh-syn-guard, built with the SDK's
//! `#[verdict]` for wasm32v1-none) translated and run in the kernel next to wasmtime: on the
//! SYN-shaped edge packets and on `module translate --verify`'s packets, through both packet-load
//! paths, the outcome and tc code agree on every packet, and every outcome the example can
//! give (pass, allow, deny, an out-of-bounds trap, a panic) is among them.

#[path = "../../../runtime/tests/support/examples_build.rs"]
mod examples_build;

use sluice_cli::verdict_verify::{Verifier, packets};
use sluice_compiler::wasm_verdict::{OnTrap, PacketLoads, TrapKind, VerdictModule, VerdictOutcome};
use sluice_runtime::VerdictRunner;
use std::collections::BTreeSet;

#[test]
fn rust_verdict_example_agrees_with_wasmtime_in_the_kernel() {
    let wasm = examples_build::built_module("ssh-syn-guard");
    let m = VerdictModule::parse(&wasm).unwrap();
    let mut ps = examples_build::syn_edge_packets();
    ps.extend(packets(&m, 1000, 13));

    let reference = VerdictRunner::new(&wasm).unwrap();
    let seen: BTreeSet<String> = ps.iter().map(|p| reference.run(p).to_string()).collect();
    for o in [
        VerdictOutcome::Pass,
        VerdictOutcome::Allow,
        VerdictOutcome::Deny,
        VerdictOutcome::Trap(TrapKind::PacketOutOfBounds),
        VerdictOutcome::Trap(TrapKind::Unreachable),
    ] {
        assert!(seen.contains(&o.to_string()), "{o} never happens: {seen:?}");
    }

    for loads in [PacketLoads::Direct, PacketLoads::HelperOnly] {
        for on_trap in [OnTrap::Deny, OnTrap::Pass] {
            let v = Verifier::with_loads(&wasm, on_trap, loads).unwrap();
            let bad: Vec<String> = ps
                .iter()
                .filter_map(|p| v.check(p).unwrap().map(|m| m.to_string()))
                .collect();
            assert!(
                bad.is_empty(),
                "{loads:?}, {on_trap:?}: {} of {} packets disagree:\n{}",
                bad.len(),
                ps.len(),
                bad[..bad.len().min(20)].join("\n")
            );
        }
    }
}
