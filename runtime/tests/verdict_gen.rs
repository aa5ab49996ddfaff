//! The random verdict-module generator (tests/support/verdict_gen.rs), checked on its own
//! before the kernel differential tests lean on it: its modules are valid Wasm, stay inside
//! the v1 subset's module shape, use every operator the subset allows, and reach every
//! outcome under the reference runner (so a differential run compares all of them).

#[path = "support/verdict_gen.rs"]
mod verdict_gen;

use sluice_runtime::{TrapKind, VerdictOutcome, VerdictRunner};
use std::collections::{BTreeMap, BTreeSet};
use verdict_gen::{BIN32, BIN64, EXT32, EXT64, REL32, REL64, Rng};
use wasmparser::{Operator, Parser, Payload, Validator, WasmFeatures};

const MODULES: u64 = 1_000;
const PACKETS: usize = 50;

/// The operator names a module's `verdict` body uses (`{:?}` of wasmparser's Operator, up to
/// the first field).
fn operators(wasm: &[u8]) -> Vec<String> {
    let mut ops = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::CodeSectionEntry(body) = payload.unwrap() {
            let mut r = body.get_operators_reader().unwrap();
            while !r.eof() {
                let op = r.read().unwrap();
                let name = format!("{op:?}");
                let name = name.split([' ', '{', '(']).next().unwrap().to_string();
                assert!(
                    !matches!(op, Operator::Loop { .. } | Operator::CallIndirect { .. }),
                    "{name}"
                );
                if let Operator::Call { function_index } = op {
                    assert!(function_index < 4, "calls only the pkt_* imports");
                }
                ops.push(name);
            }
        }
    }
    ops
}

fn wasm_encoder_name(i: &wasm_encoder::Instruction<'_>) -> String {
    // wasm-encoder and wasmparser spell operators alike (`I32Add`, `I64ExtendI32S`, ...).
    format!("{i:?}")
}

#[test]
fn modules_are_valid_in_subset_and_reach_every_outcome() {
    // The v1 feature set: no floats, SIMD, threads, bulk memory, memory64.
    let features = WasmFeatures::MUTABLE_GLOBAL | WasmFeatures::SIGN_EXTENSION;
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut rng = Rng::new(7);
    let mut sizes = Vec::new();
    for seed in 0..MODULES {
        let g = verdict_gen::module(seed);
        assert_eq!(
            g.wasm,
            verdict_gen::module(seed).wasm,
            "seed {seed} is deterministic"
        );
        Validator::new_with_features(features)
            .validate_all(&g.wasm)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let ops = operators(&g.wasm);
        sizes.push(ops.len());
        used.extend(ops);
        let runner = VerdictRunner::new(&g.wasm).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for p in verdict_gen::packets(&mut rng, &g.load_ends, PACKETS) {
            *outcomes.entry(format!("{:?}", runner.run(&p))).or_default() += 1;
        }
    }
    println!("outcomes over {MODULES} modules x {PACKETS} packets: {outcomes:?}");
    sizes.sort();
    println!(
        "operators per module: median {}, max {}",
        sizes[sizes.len() / 2],
        sizes[sizes.len() - 1]
    );

    let mut want: Vec<String> = [BIN32, BIN64, REL32, REL64, EXT32, EXT64]
        .concat()
        .iter()
        .map(wasm_encoder_name)
        .collect();
    want.extend(
        [
            "I32Const",
            "I64Const",
            "LocalGet",
            "LocalSet",
            "LocalTee",
            "I32Eqz",
            "I64Eqz",
            "I32WrapI64",
            "I64ExtendI32S",
            "I64ExtendI32U",
            "Select",
            "Drop",
            "Block",
            "If",
            "Else",
            "End",
            "Br",
            "BrIf",
            "Return",
            "Unreachable",
            "Call",
        ]
        .map(String::from),
    );
    let missing: Vec<_> = want.iter().filter(|w| !used.contains(*w)).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");

    for o in [
        VerdictOutcome::Pass,
        VerdictOutcome::Allow,
        VerdictOutcome::Deny,
        VerdictOutcome::Trap(TrapKind::Unreachable),
        VerdictOutcome::Trap(TrapKind::PacketOutOfBounds),
        VerdictOutcome::Trap(TrapKind::BadVerdict),
    ] {
        let n = outcomes.get(&format!("{o:?}")).copied().unwrap_or(0);
        // Each outcome at least 2% of runs, or the comparison would hardly test it.
        assert!(
            n * 50 >= (MODULES as usize) * PACKETS,
            "{o:?} in only {n} runs: {outcomes:?}"
        );
    }
}

#[test]
fn packets_cover_the_length_edges() {
    let mut rng = Rng::new(1);
    let ps = verdict_gen::packets(&mut rng, &[20, 64], PACKETS);
    assert_eq!(ps.len(), PACKETS);
    let lens: BTreeSet<usize> = ps.iter().map(Vec::len).collect();
    for l in [0, 1, 19, 20, 21, 63, 64, 65] {
        assert!(lens.contains(&l), "{l} in {lens:?}");
    }
}
