//! The reference evaluator against the external NetworkPolicy conformance corpus
//! (`shared/conformance/netpol`, translated from the Kubernetes e2e suite): every non-loopback
//! cell of every case must pass. The corpus is required, not optional.

use sluice_compiler::conformance::{self, Case};
use std::path::PathBuf;

fn corpus() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_CONFORMANCE_DIR") {
        return dir.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared/conformance/netpol"))
        .find(|p| p.is_dir())
        .expect("shared/conformance/netpol not found beside the repository")
}

#[test]
fn reference_evaluator_passes_every_non_loopback_cell() {
    let files = conformance::case_files(&corpus()).unwrap();
    assert_eq!(files.len(), 58);
    let (mut passed, mut skipped, mut failures) = (0, 0, Vec::new());
    let mut expected_cells = 0;
    for f in &files {
        let case = Case::load(f).unwrap();
        expected_cells += case.probes.iter().filter(|p| !p.loopback).count();
        assert_eq!(case.probes.len(), 486, "{}", case.name);
        let r = conformance::run_file(f, false, &mut conformance::reference_engine);
        assert!(r.error.is_none(), "{}: {:?}", r.name, r.error);
        passed += r.passed;
        skipped += r.skipped_loopback;
        failures.extend(r.failed.iter().take(3).map(|c| format!("{}: {c}", r.name)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // 58 cases x 486 probes, minus 9 pods x 6 port/protocol loopback cells per case.
    assert_eq!(skipped, 58 * 54);
    assert_eq!(passed, 58 * (486 - 54));
    assert_eq!(passed, expected_cells);
    assert_eq!(passed, 25_056);
}

#[test]
fn corpus_policies_warn_only_where_a_rule_is_redundant() {
    // Upstream's policies are deliberate. The two findings are real: cases 037 and 039 add an
    // allow-all policy beside a port-80 one for the same pods, so the port-80 rule is redundant.
    use sluice_compiler::diag::{Severity, render_plain};
    let mut warnings = Vec::new();
    for f in conformance::case_files(&corpus()).unwrap() {
        let case = Case::load(&f).unwrap();
        let prep = conformance::prepare(&case).map_err(|e| e.0).unwrap();
        for d in prep
            .diags
            .items
            .iter()
            .filter(|d| d.severity >= Severity::Warning)
        {
            warnings.push((case.name.clone(), d.code, d.message.clone()));
        }
        if case.name.starts_with("case-037") {
            assert!(render_plain(&prep.diags, &prep.sources).contains("…by this rule"));
        }
    }
    assert_eq!(
        warnings,
        [
            (
                "case-037-enforce-multiple-ingress-policies-with-ingress-allow-al-step2"
                    .to_string(),
                "sluice::rule::shadowed",
                "rule 1 of policy `allow-ingress-port-80` is redundant".to_string()
            ),
            (
                "case-039-enforce-multiple-egress-policies-with-egress-allow-all-step2".to_string(),
                "sluice::rule::shadowed",
                "rule 1 of policy `allow-egress-port-80` is redundant".to_string()
            )
        ]
    );
}

#[test]
fn loopback_cells_follow_plain_semantics_too() {
    // The corpus' loopback `expect` is plain NetworkPolicy semantics; the reference evaluator
    // treats the hairpin like any other packet, so it should agree there as well.
    let mut failed = Vec::new();
    for f in conformance::case_files(&corpus()).unwrap() {
        let r = conformance::run_file(&f, true, &mut conformance::reference_engine);
        failed.extend(r.failed.iter().map(|c| format!("{}: {c}", r.name)));
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
