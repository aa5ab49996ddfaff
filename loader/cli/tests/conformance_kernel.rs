//! Kernel conformance: the NetworkPolicy corpus, and the project's own cases with destinations
//! outside the cluster (`tests/conformance-extra`), against sluice's generated programs
//! attached in network namespaces (BPF_PROG_TEST_RUN on every cell, real sockets on a sample).
//! Needs root, which CI has: without it these tests fail, they never skip.

#[path = "support/cli.rs"]
mod cli;

use cli::corpus;
use std::path::PathBuf;
use std::sync::Mutex;

use sluice_cli::conformance::{KernelEngine, KernelOptions};
use sluice_cli::topology;
use sluice_compiler::conformance::{self, Case, Expect};
use sluice_compiler::datapath::Mode;
use sluice_compiler::ir::L4;

/// Tests here share the pid in their namespace names: one at a time, so that "nothing of
/// ours is left" is checkable.
static SERIAL: Mutex<()> = Mutex::new(());

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kernel conformance needs root (BPF, tcx, netns); run the tests as root"
    );
}

fn case_file(prefix: &str) -> PathBuf {
    conformance::case_files(&corpus())
        .unwrap()
        .into_iter()
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no case {prefix}"))
}

/// `sluice ARGS`: exit code and stdout.
fn sluice(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let r = cli::sluice(&cli::repo(), args);
    (r.code, r.stdout)
}

/// Namespaces whose names carry this process's pid (see `topology::unique_prefix`).
fn our_namespaces() -> Vec<String> {
    let mine = &topology::unique_prefix()[..7];
    sluice_loader::sys::netns::list_named()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(mine))
        .collect()
}

#[test]
fn whole_corpus_passes_in_the_kernel() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = corpus();
    let (code, out) = sluice(&[
        "conformance".as_ref(),
        "run".as_ref(),
        dir.as_os_str(),
        "--engine".as_ref(),
        "kernel".as_ref(),
    ]);
    println!("{out}");
    assert_eq!(code, 0, "{out}");
    let ok: Vec<&str> = out.lines().filter(|l| l.starts_with("ok ")).collect();
    assert_eq!(ok.len(), 58, "{out}");
    for l in &ok {
        assert!(
            l.contains("test-run 432 passed, 0 failed; sockets 24 passed, 0 failed"),
            "{l}"
        );
    }
    // One box for the whole corpus: the first case attaches, the 57 others swap (a hook whose
    // program is the same as in the case before keeps it; case 015 compiles like 014).
    assert!(
        ok[0].contains("(0 replaced, 0 unchanged, 18 attached"),
        "{}",
        ok[0]
    );
    assert!(ok[1..].iter().all(|l| l.contains(", 0 attached,")), "{out}");
    assert!(ok[1..].iter().any(|l| !l.contains("(0 replaced")), "{out}");
    assert!(out.contains("3132 loopback cells skipped"), "{out}");
    assert!(out.contains("test-run: 25056 passed, 0 failed"), "{out}");
    assert!(out.contains("sockets: 1392 passed, 0 failed"), "{out}");
}

#[test]
fn generic_mode_passes_the_cidr_named_port_and_sctp_cases() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let files: Vec<PathBuf> = [
        "case-018", "case-020", "case-042", "case-043", "case-044", "case-048", "case-057",
    ]
    .iter()
    .map(|c| case_file(c))
    .collect();
    let mut args: Vec<&std::ffi::OsStr> = vec!["conformance".as_ref(), "run".as_ref()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    for a in ["--engine", "kernel", "--mode", "generic"] {
        args.push(std::ffi::OsStr::new(a));
    }
    let (code, out) = sluice(&args);
    println!("{out}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("mode Generic"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("ok ")).count(), 7);
}

#[test]
fn wrong_expectations_fail_both_checks() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Every expectation flipped: every cell must now fail, in the kernel and on the wire.
    let mut case = Case::load(&case_file("case-014")).unwrap();
    for p in &mut case.probes {
        p.expect = match p.expect {
            Expect::Allow => Expect::Deny,
            Expect::Deny => Expect::Allow,
        };
    }
    let prep = conformance::prepare(&case).map_err(|e| e.0).unwrap();
    let mut engine = KernelEngine::new(KernelOptions::default());
    let reports = conformance::run_prepared_checks(&case, &prep, false, &mut engine);
    drop(engine);
    assert_eq!(reports.len(), 2);
    let (tr, so) = (&reports[0], &reports[1]);
    assert_eq!(
        (tr.check.as_str(), so.check.as_str()),
        ("test-run", "sockets")
    );
    assert!(
        tr.error.is_none() && so.error.is_none(),
        "{:?} {:?}",
        tr.error,
        so.error
    );
    assert_eq!((tr.passed, tr.failed.len()), (0, 432));
    assert_eq!((so.passed, so.failed.len()), (0, 24));
    // The sample has both kinds of cell (case-014 allows only port 81 into x/a).
    let wrongly_allowed = so.failed.iter().filter(|f| f.got == Ok(true)).count();
    assert!(
        wrongly_allowed > 0 && wrongly_allowed < 24,
        "{wrongly_allowed}"
    );
    let shown = tr.failed[0].to_string();
    assert!(shown.contains("from_ep"), "{shown}");
    assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
}

#[test]
fn the_box_is_removed_when_a_run_panics() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let file = case_file("case-001");
    let res = std::panic::catch_unwind(|| {
        let mut engine = KernelEngine::new(KernelOptions {
            sample: 0,
            ..KernelOptions::default()
        });
        let r = conformance::run_file_checks(&file, false, &mut engine);
        assert_eq!(r[0].failed.len(), 0, "{:?}", r[0].failed.first());
        assert!(
            !our_namespaces().is_empty(),
            "the box exists while the engine does"
        );
        assert!(
            std::path::Path::new(sluice_cli::conformance::PIN_BASE).is_dir(),
            "pins exist"
        );
        panic!("a failure in the middle of a run");
    });
    assert!(res.is_err());
    assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
}

fn extra() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-extra")
}

#[test]
fn external_destination_cases_pass_on_every_cell_and_socket() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let files = conformance::case_files(&extra()).unwrap();
    assert_eq!(files.len(), 7);
    for mode in [Mode::Specialized, Mode::Generic] {
        // A sample larger than any case: every TCP and UDP cell also runs over sockets,
        // so replies from the external host come back through the pods' hooks.
        let mut engine = KernelEngine::new(KernelOptions {
            mode,
            sample: 1000,
            ..KernelOptions::default()
        });
        let (mut external_allowed, mut external_denied) = (0, 0);
        for f in &files {
            let case = Case::load(f).unwrap();
            let reports = conformance::run_file_checks(f, false, &mut engine);
            let (tr, so) = (&reports[0], &reports[1]);
            assert!(tr.error.is_none() && so.error.is_none(), "{tr:?} {so:?}");
            assert!(
                tr.failed.is_empty(),
                "{mode:?} {}: {}",
                case.name,
                tr.failed[0]
            );
            assert!(
                so.failed.is_empty(),
                "{mode:?} {}: {}",
                case.name,
                so.failed[0]
            );
            assert_eq!(tr.passed, case.probes.len(), "{}", case.name);
            let socket_cells: Vec<_> = case
                .probes
                .iter()
                .filter(|p| matches!(p.protocol, L4::Tcp | L4::Udp))
                .collect();
            assert_eq!(so.passed, socket_cells.len(), "{}", case.name);
            for p in socket_cells
                .iter()
                .filter(|p| p.to.parse::<std::net::Ipv4Addr>().is_ok())
            {
                match p.expect {
                    Expect::Allow => external_allowed += 1,
                    Expect::Deny => external_denied += 1,
                }
            }
        }
        // Both verdicts were seen on the wire to the external host.
        assert!(
            external_allowed >= 10 && external_denied >= 10,
            "{external_allowed} {external_denied}"
        );
        // Whatever the engine built is gone with it.
        drop(engine);
        assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
    }
}

#[test]
fn external_destination_cases_pass_through_the_cli() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = extra();
    let (code, out) = sluice(&[
        "conformance".as_ref(),
        "run".as_ref(),
        dir.as_os_str(),
        "--engine".as_ref(),
        "kernel".as_ref(),
    ]);
    println!("{out}");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        7,
        "{out}"
    );
    assert!(out.contains("test-run: 118 passed, 0 failed"), "{out}");
    assert!(
        out.contains("sockets: ") && out.contains(" passed, 0 failed"),
        "{out}"
    );
}

/// Generations without conntrack run like any other: the table is pinned only once some
/// generation needs it, and a fresh box starts without one. Case 001's cluster, first with
/// no policy at all, then with every pod of x isolated for ingress and every source allowed
/// (programs that parse but can deny nothing, so again no conntrack); every cell is allowed,
/// in the kernel and on the wire.
#[test]
fn cases_without_conntrack_pass_in_the_kernel() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let text = std::fs::read_to_string(case_file("case-001")).unwrap();
    let (head, probes) = (
        &text[..text.find("\npolicies:").unwrap()],
        &text[text.find("\nprobes:").unwrap()..],
    );
    let allow_all = "
policies:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: allow-all-ingress, namespace: x}
  spec:
    podSelector: {}
    ingress: [{}]
    policyTypes: [Ingress]";
    let dir = std::env::temp_dir().join(format!("{}-no-ct", topology::unique_prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut engine = KernelEngine::new(KernelOptions::default());
    for (name, policies) in [("no-policy", "\npolicies: []"), ("allow-all", allow_all)] {
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, format!("{head}{policies}{probes}")).unwrap();
        let mut case = Case::load(&file).unwrap();
        for p in &mut case.probes {
            p.expect = Expect::Allow;
        }
        let prep = conformance::prepare(&case).map_err(|e| e.0).unwrap();
        assert_eq!(prep.ir.policies.len(), usize::from(name == "allow-all"));
        let reports = conformance::run_prepared_checks(&case, &prep, false, &mut engine);
        let (tr, so) = (&reports[0], &reports[1]);
        assert!(
            tr.error.is_none() && so.error.is_none(),
            "{name}: {:?} {:?}",
            tr.error,
            so.error
        );
        assert!(tr.failed.is_empty(), "{name}: {}", tr.failed[0]);
        assert!(so.failed.is_empty(), "{name}: {}", so.failed[0]);
        assert_eq!((tr.passed, so.passed), (432, 24), "{name}");
    }
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(our_namespaces().is_empty(), "{:?}", our_namespaces());
}
