//! Kernel tests of `sluice lab` (needs root): a 2-node lab built by the binary, real sockets
//! between its members, `lab exec`, `lab status --output json`, and nothing left behind after
//! `lab down`. Each test uses its own prefix and state directory, so it never meets a user's
//! lab.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/leftovers.rs"]
mod support;

use cli::{Run, Scratch, sluice};
use sluice_cli::lab::{self, ROUTER_LOOPS, VM_IP};
use sluice_cli::topology::{self, ProbeOutcome, Proto, Servers, unique_prefix};
use sluice_loader::netlink::Netlink;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(700);

/// Removes the test's namespaces and state however the test ends.
struct Guard {
    prefix: String,
    state: Scratch,
}

impl Guard {
    fn new(name: &str) -> Guard {
        Guard {
            prefix: unique_prefix(),
            state: Scratch::new(name),
        }
    }

    fn lab(&self, args: &[&str]) -> Run {
        let mut all = vec!["lab", "--prefix", &self.prefix, "--state-dir"];
        let dir = self.state.path().to_str().unwrap().to_owned();
        all.push(&dir);
        all.extend_from_slice(args);
        sluice(Path::new("."), &all)
    }

    fn made(&self) -> support::Made {
        support::Made {
            prefix: self.prefix.clone(),
            dirs: vec![
                self.state.path().join(&self.prefix),
                PathBuf::from("/sys/fs/bpf").join(&self.prefix),
            ],
            ..Default::default()
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = topology::cleanup_stale(&format!("{}-", self.prefix));
    }
}

fn probe(from: &str, to: Ipv4Addr, port: u16, proto: Proto) -> ProbeOutcome {
    topology::probe::probe(from, to, port, proto, TIMEOUT).expect("probe")
}

#[test]
fn two_node_native_lab_carries_real_traffic_and_goes_away() {
    let g = Guard::new("lab-native");
    let up = g.lab(&[
        "up",
        "--nodes",
        "2",
        "--routing",
        "native",
        "--router-pod-routes",
    ]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    let ns = |member: &str| format!("{}-{member}", g.prefix);
    assert!(
        up.stdout.contains(&ns("node-1")),
        "namespaces are printed: {}",
        up.stdout
    );

    // Status lists every member with its role, node, addresses and namespace.
    let st = g.lab(&["status", "--output", "json"]);
    assert_eq!(st.code, 0, "{}", st.stderr);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let members = v["members"].as_array().unwrap();
    let role = |r: &str| members.iter().filter(|m| m["role"] == r).count();
    assert_eq!(
        (role("router"), role("vm"), role("node"), role("pod")),
        (1, 1, 2, 4)
    );
    let pod = |name: &str| {
        let m = members.iter().find(|m| m["name"] == name).unwrap();
        let addr = m["addresses"][0].as_str().unwrap();
        let ip: Ipv4Addr = addr.trim_end_matches("/32").parse().unwrap();
        (
            m["netns"].as_str().unwrap().to_owned(),
            m["node"].clone(),
            ip,
        )
    };
    let (fe, fe_node, _) = pod("web/frontend");
    let (api, api_node, api_ip) = pod("web/api");
    assert_eq!((fe_node, api_node), ("node-1".into(), "node-2".into()));
    assert_eq!(
        members.iter().find(|m| m["name"] == "vm").unwrap()["netns"],
        ns("vm")
    );

    // Real sockets: pod -> router (both loops), pod -> VM, pod -> pod across nodes.
    let ports = [(7000, Proto::Tcp), (7001, Proto::Udp)];
    let _router = Servers::start(&ns("router"), &ports).unwrap();
    let _vm = Servers::start(&ns("vm"), &ports).unwrap();
    let _api = Servers::start(&api, &ports).unwrap();
    for (to, what) in [
        (ROUTER_LOOPS[0], "router loop1"),
        (ROUTER_LOOPS[1], "router loop2"),
        (VM_IP, "vm"),
        (api_ip, "pod on node-2"),
    ] {
        for (port, proto) in ports {
            assert_eq!(
                probe(&fe, to, port, proto),
                ProbeOutcome::Connected,
                "frontend -> {what} ({to}:{port}/{proto})"
            );
        }
    }
    // The node configuration each node got is one `sluice node check` accepts.
    let cfg = g.state.path().join(&g.prefix).join("node-2.yaml");
    let check = sluice(Path::new("."), &["node", "check", cfg.to_str().unwrap()]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check.stdout.contains("node node-2 (192.168.10.12"),
        "{}",
        check.stdout
    );

    // exec runs in the member's namespace and passes the exit status on.
    let devs = g.lab(&["exec", "node-1", "--", "cat", "/proc/net/dev"]);
    assert_eq!(devs.code, 0, "{}", devs.stderr);
    assert!(
        devs.stdout.contains("lxc0:") && devs.stdout.contains("eth0:"),
        "{}",
        devs.stdout
    );
    assert!(
        !devs.stdout.contains("br0:"),
        "the bridge is in the LAN's namespace"
    );
    assert_eq!(g.lab(&["exec", "vm", "--", "false"]).code, 1);
    assert_ne!(g.lab(&["exec", "node-9", "--", "true"]).code, 0);
    let again = g.lab(&["up"]);
    assert_ne!(again.code, 0, "a second up with the same prefix is refused");
    assert!(again.stderr.contains("already up"), "{}", again.stderr);
    // Without the state file, the namespaces are still not taken over (nor removed).
    let other_state = Scratch::new("lab-native-other");
    let dir = other_state.path().to_str().unwrap();
    let taken = sluice(
        Path::new("."),
        &[
            "lab",
            "--prefix",
            &g.prefix,
            "--state-dir",
            dir,
            "up",
            "--routing",
            "native",
        ],
    );
    assert_ne!(taken.code, 0);
    assert!(taken.stderr.contains("exists already"), "{}", taken.stderr);
    assert_eq!(
        probe(&fe, api_ip, 7000, Proto::Tcp),
        ProbeOutcome::Connected,
        "untouched"
    );

    // Down removes exactly what up made; a second down is not an error.
    let down = g.lab(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    support::assert_clean(&g.made());
    let down = g.lab(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(down.stdout.contains("nothing to remove"), "{}", down.stdout);
}

#[test]
fn vxlan_lab_has_a_collect_md_device_per_node_and_the_router_needs_pod_routes() {
    let g = Guard::new("lab-vxlan");
    g.state
        .write("masq.yaml", "nonMasqueradeCIDRs: [10.0.0.0/16]\n");
    let masq = g.state.path().join("masq.yaml");
    let up = g.lab(&[
        "up",
        "--nodes",
        "2",
        "--routing",
        "vxlan",
        "--ip-masq-agent",
        masq.to_str().unwrap(),
    ]);
    assert_eq!(up.code, 0, "{}{}", up.stdout, up.stderr);
    let lab = lab::Lab::load(g.state.path(), &g.prefix).unwrap().unwrap();
    for n in &lab.nodes {
        let mut nl = Netlink::open_named(Some(&n.netns)).unwrap();
        let vx = nl.link(lab::VXLAN_DEV).unwrap().expect("the VXLAN device");
        assert_eq!(vx.kind.as_deref(), Some("vxlan"));
        assert_eq!(vx.mtu, Some(1450), "device MTU - 50");
        assert!(vx.up);
    }
    let shown = support::ip(&[
        "-d",
        "-j",
        "-n",
        &lab.nodes[0].netns,
        "link",
        "show",
        lab::VXLAN_DEV,
    ]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let data = &v[0]["linkinfo"]["info_data"];
    assert_eq!(
        (data["external"].clone(), data["port"].clone()),
        (true.into(), 8472.into()),
        "{data}"
    );
    // Same-node pods and the node's own LAN work on plain kernel routes; the router, without
    // routes to the pod CIDRs (the study's starting point, no masquerade yet), cannot answer.
    let fe = lab.netns_of("web/frontend").unwrap();
    let client = &lab.nodes[0].pods[1];
    let ports = [(7002, Proto::Tcp)];
    let _c = Servers::start(&client.netns, &ports).unwrap();
    let _r = Servers::start(&lab.router_netns, &ports).unwrap();
    assert_eq!(
        probe(&fe, client.ip, 7002, Proto::Tcp),
        ProbeOutcome::Connected
    );
    assert_eq!(
        probe(&fe, ROUTER_LOOPS[0], 7002, Proto::Tcp),
        ProbeOutcome::TimedOut
    );
    // Each node's configuration names the ip-masq-agent file written beside it.
    let cfg = g.state.path().join(&g.prefix).join("node-1.yaml");
    let check = sluice(
        Path::new("."),
        &["node", "check", cfg.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(check.code, 0, "{}", check.stderr);
    let v: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(
        v["masquerade"]["excluded"],
        serde_json::json!(["10.0.0.0/16", "169.254.0.0/16"])
    );
    assert_eq!(g.lab(&["down"]).code, 0);
    support::assert_clean(&g.made());
    // A bad ip-masq-agent file is refused before anything is built.
    g.state
        .write("masq.yaml", "nonMasqueradeCIDRs: [10.0.0.0/40]\n");
    let bad = g.lab(&["up", "--ip-masq-agent", masq.to_str().unwrap()]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("invalid CIDR"), "{}", bad.stderr);
    support::assert_clean(&g.made());
}
