//! Kernel tests of `sluice demo`: the whole demo end to end (real namespaces, programs
//! attached with tcx, real sockets), in both code shapes; every connection must do what the
//! reference evaluator says, and nothing may be left behind. Also Ctrl-C in the middle of a
//! run. Needs root.

#[path = "support/leftovers.rs"]
mod support;

use support::ip;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_cli::cli::demo::{DemoOptions, nodes, run_demo};
use sluice_cli::topology::{self, ProbeOutcome};
use sluice_compiler::datapath::Mode;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Namespaces, interfaces, pins and state directories that carry `prefix`.
fn leftovers(prefix: &str) -> Vec<String> {
    support::leftovers(&support::Made {
        prefix: prefix.to_owned(),
        dirs: [
            PathBuf::from(format!("/sys/fs/bpf/sluice/demo-{prefix}")),
            PathBuf::from(format!("/run/sluice-demo-{prefix}")),
        ]
        .into_iter()
        .chain(nodes::made_dirs(prefix))
        .collect(),
        ..Default::default()
    })
}

/// `nodes`: also the second act (two nodes, cross-node, masquerade with and without).
fn run(mode: Mode, nodes: bool) {
    let prefix = topology::unique_prefix();
    let opts = DemoOptions {
        policy: repo_root().join("policies/demo.sluice"),
        prefix: Some(prefix.clone()),
        keep: false,
        timeout: Duration::from_millis(1000),
        handle_signals: false,
        mode,
        nodes,
    };
    let mut out = Vec::new();
    let result = run_demo(&opts, &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    println!("{text}");
    let report = result.unwrap_or_else(|e| panic!("demo failed: {e}\n{text}"));
    assert!(report.enforced, "the policy was attached");
    assert!(report.rows.len() >= 10, "{text}");
    for r in &report.rows {
        assert!(
            r.agrees(),
            "{} → {} {}/{}: expected {}, observed {:?} ({})",
            r.from,
            r.to,
            r.port,
            r.proto,
            if r.expected.allow { "allow" } else { "deny" },
            r.observed,
            r.why
        );
        assert!(
            r.why.contains(".sluice:"),
            "reason names file:line: {}",
            r.why
        );
    }
    let allowed = report
        .rows
        .iter()
        .filter(|r| r.observed == ProbeOutcome::Connected)
        .count();
    assert!(
        allowed >= 3 && allowed < report.rows.len(),
        "both allowed and denied connections ({allowed} allowed)"
    );
    assert!(text.contains("connections did what the reference evaluator expects"));
    match &report.nodes {
        Some(n) => {
            assert!(n.agrees(), "{n:?}\n{text}");
            // The three lines the README quotes: what the far end saw.
            let line = |start: &str| -> &str {
                text.lines()
                    .find(|l| l.trim_start().starts_with(start))
                    .unwrap_or_else(|| panic!("no `{start}` line:\n{text}"))
            };
            let cross = line("cross-node");
            assert!(
                cross.contains(&format!(
                    "the pod sees {} (the client pod's own IP) ✓",
                    n.client
                )),
                "{cross}"
            );
            let masq = line("masquerade ");
            assert!(
                masq.contains("→ router 10.0.1.1:7000")
                    && masq.contains("the router sees 192.168.10.11 (node-1's IP) ✓"),
                "{masq}"
            );
            assert!(
                line("no route").contains("the router gets no connection"),
                "{text}"
            );
            let excluded = line("no masquerade");
            assert!(
                excluded.contains(&format!("the router sees {} (the pod's IP) ✓", n.client)),
                "{excluded}"
            );
            assert_ne!(n.client, n.node_ip);
            assert!(text.contains("[9] removed the lab"), "{text}");
        }
        None => assert!(!nodes, "the second act ran"),
    }
    let left = leftovers(&prefix);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn demo_specialized_then_two_nodes_with_masquerade_and_leaves_nothing() {
    run(Mode::Specialized, true);
}

#[test]
fn demo_generic_observed_equals_expected_and_leaves_nothing() {
    run(Mode::Generic, false);
}

/// The prefix `topology::unique_prefix` gives the first box of process `pid`.
fn first_prefix_of(pid: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = pid;
    let mut d = [b'0'; 5];
    for slot in d.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    format!("sl{}00", std::str::from_utf8(&d).unwrap())
}

/// Starts `sluice demo`, waits until `ready(prefix)`, sends SIGINT and checks that the demo
/// exits with 130 and leaves nothing behind.
fn interrupt_when(ready: impl Fn(&str) -> bool, what: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--timeout-ms", "3000"])
        .current_dir(repo_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sluice demo");
    let prefix = first_prefix_of(child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(&prefix) {
        assert!(Instant::now() < deadline, "the demo never got to {what}");
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "demo exited early ({status}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT to the demo");
    let out = child.wait_with_output().expect("demo exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("removing the cluster"), "{stderr}");
    let left = leftovers(&prefix);
    assert!(
        left.is_empty(),
        "left behind after Ctrl-C in {what}: {left:?}"
    );
}

/// Whether `dir/links` holds a pin (a generation is attached there).
fn attached(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("links")).is_ok_and(|mut d| d.next().is_some())
}

#[test]
fn ctrl_c_in_the_middle_removes_everything() {
    // The first act: the box exists and the policy is attached (its link pins appear).
    interrupt_when(
        |prefix| {
            ip(&["netns", "list"]).contains(&format!("{prefix}-node"))
                && attached(&PathBuf::from(format!("/sys/fs/bpf/sluice/demo-{prefix}")))
        },
        "the first act",
    );
}

#[test]
fn ctrl_c_in_the_second_act_removes_the_lab_and_both_nodes() {
    // Both nodes have the node datapath attached.
    interrupt_when(
        |prefix| {
            (1..=2).all(|n| {
                attached(&PathBuf::from(format!(
                    "/sys/fs/bpf/sluice/demo-{prefix}-node-{n}"
                )))
            })
        },
        "the second act",
    );
}
