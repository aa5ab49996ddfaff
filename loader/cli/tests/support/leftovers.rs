//! "Nothing is left behind": the check kernel tests run after their teardown.
//!
//! After `unload` and the topology's removal there must be no namespace and no interface
//! with the test's prefix, no pin root, no state directory, and none of the kernel links or
//! programs the test saw still loaded. Included with `#[path]` by the tests that use it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

/// Runs `ip ARGS` and returns its stdout; panics when it fails.
pub fn ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// What a test made and must see gone.
#[derive(Debug, Default, Clone)]
pub struct Made {
    /// Unique name prefix of its namespaces and interfaces.
    pub prefix: String,
    /// Pin roots and state directories.
    pub dirs: Vec<PathBuf>,
    /// Kernel link ids and program ids it saw attached.
    pub links: Vec<u32>,
    pub programs: Vec<u32>,
}

/// Every leftover, as text (empty: clean). Kernel objects are freed by deferred work, so
/// their ids are given up to two seconds to disappear.
pub fn leftovers(m: &Made) -> Vec<String> {
    let mut out = Vec::new();
    if !m.prefix.is_empty() {
        for ns in sluice_loader::sys::netns::list_named().unwrap_or_default() {
            if ns.starts_with(&m.prefix) {
                out.push(format!("netns {ns}"));
            }
        }
        // Veths are created inside their namespaces; one that leaked into ours would show here.
        let ip = std::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .expect("run ip");
        for line in String::from_utf8_lossy(&ip.stdout).lines() {
            if let Some(name) = line.split(": ").nth(1)
                && name.starts_with(&m.prefix)
            {
                out.push(format!("interface {name}"));
            }
        }
    }
    for d in &m.dirs {
        if d.exists() {
            out.push(format!("{} still exists", d.display()));
        }
    }
    let gone = |still: &dyn Fn() -> Vec<u32>| {
        for _ in 0..100 {
            if still().is_empty() {
                return Vec::new();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        still()
    };
    let links = gone(&|| {
        aya::programs::loaded_links()
            .filter_map(Result::ok)
            .map(|l| l.id())
            .filter(|id| m.links.contains(id))
            .collect()
    });
    out.extend(links.iter().map(|l| format!("bpf link {l}")));
    let progs = gone(&|| {
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| m.programs.contains(id))
            .collect()
    });
    out.extend(progs.iter().map(|p| format!("bpf program {p}")));
    out
}

/// Panics with the list of leftovers, if any.
pub fn assert_clean(m: &Made) {
    let left = leftovers(m);
    assert!(left.is_empty(), "left behind: {left:#?}");
}
