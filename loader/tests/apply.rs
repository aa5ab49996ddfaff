//! `sluice apply` in the kernel (needs root): the binary compiles DSL for an inventory of a
//! cluster in a box, loads it, and real connections follow the policy; a second `apply` of a
//! changed policy replaces the first; `sluice unload` removes everything. A guard unloads and
//! removes the box even when the test panics.

#[path = "support/leftovers.rs"]
mod leftovers;

use sluice_loader::generation::{self, LoadOptions};
use sluice_loader::topology::{ProbeOutcome, Proto, Servers, Topology, TopologySpec};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(750);

struct Rig {
    topo: Option<Topology>,
    servers: Vec<Servers>,
    opts: LoadOptions,
    dir: PathBuf,
    made: leftovers::Made,
}

impl Rig {
    fn new() -> Rig {
        let spec = TopologySpec::new()
            .pod("shop", "lb", Ipv4Addr::new(10, 223, 0, 1))
            .pod("shop", "web", Ipv4Addr::new(10, 223, 0, 2))
            .pod("shop", "other", Ipv4Addr::new(10, 223, 0, 3));
        let topo = Topology::build(&spec).expect("build topology");
        let opts = LoadOptions {
            root: PathBuf::from(format!("/sys/fs/bpf/{}-sluice", topo.prefix())),
            state_dir: PathBuf::from(format!("/run/{}-sluice", topo.prefix())),
            node_netns: Some(topo.node_netns().to_owned()),
        };
        let dir = std::env::temp_dir().join(format!("{}-apply", topo.prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = leftovers::Made {
            prefix: topo.prefix().to_owned(),
            dirs: vec![opts.root.clone(), opts.state_dir.clone()],
            ..Default::default()
        };
        let web = topo.pod("shop", "web").unwrap().netns.clone();
        let servers = vec![
            topo.serve(&web, &[(80, Proto::Tcp), (81, Proto::Tcp)])
                .expect("servers"),
        ];
        let mut inv = String::from("endpoints:\n");
        for p in topo.pods() {
            inv.push_str(&format!(
                "- name: {}\n  namespace: shop\n  labels: {{app: {}}}\n  ips: [{}]\n  interface: {}\n",
                p.name, p.name, p.ip, p.host_if
            ));
        }
        std::fs::write(dir.join("inv.yaml"), inv).unwrap();
        Rig {
            topo: Some(topo),
            servers,
            opts,
            dir,
            made,
        }
    }

    fn topo(&self) -> &Topology {
        self.topo.as_ref().expect("built")
    }

    fn pin_args(&self) -> Vec<String> {
        vec![
            "--root".into(),
            self.opts.root.display().to_string(),
            "--state-dir".into(),
            self.opts.state_dir.display().to_string(),
        ]
    }

    /// `sluice apply` of `policy`; returns stdout.
    fn apply(&self, policy: &str) -> String {
        std::fs::write(self.dir.join("policy.sluice"), policy).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(&self.dir)
            .args([
                "apply",
                "policy.sluice",
                "--inventory",
                "inv.yaml",
                "--netns",
            ])
            .arg(self.topo().node_netns())
            .args(self.pin_args())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        );
        assert!(out.status.success(), "apply failed:\n{stdout}\n{stderr}");
        stdout
    }

    fn probe(&self, from: &str, to: &str, port: u16) -> ProbeOutcome {
        let t = self.topo();
        let (from, to) = (t.pod("shop", from).unwrap(), t.pod("shop", to).unwrap());
        t.probe(&from.netns, to.ip, port, Proto::Tcp, TIMEOUT)
            .expect("probe")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Whatever the test did, nothing may stay loaded (unload is idempotent).
        let unloaded = generation::unload(&self.opts);
        self.servers.clear();
        let torn = self.topo.take().map(Topology::teardown);
        let _ = std::fs::remove_dir_all(&self.dir);
        if std::thread::panicking() {
            return;
        }
        unloaded.expect("unload");
        torn.expect("topology").expect("topology teardown");
        leftovers::assert_clean(&self.made);
    }
}

fn ids(stdout: &str) -> (Vec<u32>, Vec<u32>) {
    // "  shop/web   <target>   link    12 program    34  attached"
    let mut links = Vec::new();
    let mut progs = Vec::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "link") {
            links.push(words[i + 1].parse().unwrap());
        }
        if let Some(i) = words.iter().position(|w| *w == "program") {
            progs.push(words[i + 1].parse().unwrap());
        }
    }
    (links, progs)
}

#[test]
fn apply_enforces_replaces_and_unloads() {
    if !Path::new("/sys/fs/bpf").exists() || !nix::unistd::geteuid().is_root() {
        panic!("this test needs root and bpffs (see PREAMBLE: kernel tests are not skipped)");
    }
    let mut rig = Rig::new();
    // Before any policy everything connects.
    assert_eq!(rig.probe("other", "web", 81), ProbeOutcome::Connected);

    let out = rig.apply(
        "policy \"web\" in namespace shop {\n  select app = web\n  ingress allow from pods { app = lb } ports 80/tcp\n}\n",
    );
    assert!(out.starts_with("generation 1 live"), "{out}");
    let (links, progs) = ids(&out);
    assert_eq!(links.len(), 6, "{out}");
    rig.made.links.extend(&links);
    rig.made.programs.extend(&progs);
    assert_eq!(rig.probe("lb", "web", 80), ProbeOutcome::Connected);
    assert_eq!(rig.probe("lb", "web", 81), ProbeOutcome::TimedOut);
    assert_eq!(rig.probe("other", "web", 80), ProbeOutcome::TimedOut);

    // A changed policy replaces the first: same links, new programs.
    let out = rig.apply(
        "policy \"web\" in namespace shop {\n  select app = web\n  ingress allow from pods { app = other } ports 81/tcp\n}\n",
    );
    assert!(
        out.starts_with("generation 2 live") && out.contains("replacing generation 1"),
        "{out}"
    );
    let (links2, progs2) = ids(&out);
    assert_eq!(links2, links, "{out}");
    rig.made.programs.extend(&progs2);
    assert_eq!(rig.probe("other", "web", 81), ProbeOutcome::Connected);
    assert_eq!(rig.probe("lb", "web", 80), ProbeOutcome::TimedOut);

    // `sluice trace` asks the programs `apply` attached, and names the rule in policy.sluice.
    let trace = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("trace")
            .args(args)
            .args(rig.pin_args())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let out = trace(&[
        "--from",
        "shop/other",
        "--to",
        "shop/web",
        "--port",
        "81/tcp",
    ]);
    assert!(
        out.contains("policy.sluice:3:3 rule 1 of policy `web`") && out.contains("generation 2"),
        "{out}"
    );
    assert!(out.contains("verdict: ALLOW"), "{out}");
    let out = trace(&[
        "--from", "lb", "--to", "web", "--port", "80", "--output", "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allow"], false, "{out}");
    assert_eq!(v["denied_by"], 1, "{out}");

    // `sluice unload` removes it all; traffic flows again.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("unload")
        .args(rig.pin_args())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("unloaded generation 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(rig.probe("lb", "web", 81), ProbeOutcome::Connected);
    rig.made.links.sort();
    rig.made.links.dedup();
    rig.made.programs.sort();
    rig.made.programs.dedup();
}
