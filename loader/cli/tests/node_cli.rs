//! `sluice node check`: exit codes, the located diagnostic for a refused pod CIDR, and the
//! masquerade data printed for an accepted file with its ip-masq-agent config.

#[path = "support/cli.rs"]
mod cli;

use cli::{Scratch, sluice};

const NODE: &str = "name: node-1
ip: 192.168.10.11
network: 192.168.10.0/24
uplink: eth0
pod_cidr: 10.244.1.0/24
routing: native
peers: [{name: node-2, ip: 192.168.10.12, pod_cidr: 10.244.2.0/24}]
masquerade: {ip_masq_agent: masq.yaml}
";

#[test]
fn node_check_accepts_refuses_and_prints_the_masquerade_data() {
    let scratch = Scratch::new("node-check");
    scratch
        .write("node.yaml", NODE)
        .write("masq.yaml", "nonMasqueradeCIDRs: [10.0.0.0/16]\n");
    let dir = scratch.path();
    let node = dir.join("node.yaml");
    let r = sluice(
        dir,
        &["node", "check", node.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["node"]["vxlan_port"], 8472);
    assert_eq!(
        v["masquerade"]["excluded"],
        serde_json::json!(["10.0.0.0/16", "169.254.0.0/16"])
    );
    // An absent ip-masq-agent file means the 11 defaults (+ link-local).
    std::fs::remove_file(dir.join("masq.yaml")).unwrap();
    let r = sluice(
        dir,
        &["node", "check", node.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["masquerade"]["excluded"].as_array().unwrap().len(), 12);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    // The DSL's masquerade block adds to the list; a policy file without one is an error.
    std::fs::write(
        &node,
        NODE.replace(
            "{ip_masq_agent: masq.yaml}",
            "{ip_masq_agent: masq.yaml, policy: masq.sluice}",
        ),
    )
    .unwrap();
    scratch
        .write("masq.yaml", "nonMasqueradeCIDRs: [10.0.0.0/16]\n")
        .write(
            "masq.sluice",
            "masquerade {\n  except 8.8.8.0/24\n  link-local on\n}\n",
        );
    let r = sluice(
        dir,
        &["node", "check", node.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["masquerade"]["excluded"],
        serde_json::json!(["8.8.8.0/24", "10.0.0.0/16", "169.254.0.0/16"]),
        "union; link-local stays excluded: the ip-masq-agent file does not masquerade it"
    );
    scratch.write("masq.sluice", "# nothing\n");
    let r = sluice(dir, &["node", "check", node.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("has no `masquerade` block"),
        "{}",
        r.stderr
    );
    std::fs::write(&node, NODE).unwrap();
    // A bad ip-masq-agent file fails the check.
    std::fs::write(dir.join("masq.yaml"), "nonMasqueradeCIDRs: [10.0.0.0/33]\n").unwrap();
    let r = sluice(dir, &["node", "check", node.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("invalid CIDR `10.0.0.0/33`"),
        "{}",
        r.stderr
    );
    // A pod CIDR inside the node network is refused, located, with the reason.
    std::fs::write(&node, NODE.replace("10.244.1.0/24", "192.168.10.128/25")).unwrap();
    let r = sluice(dir, &["node", "check", node.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("overlaps the node network 192.168.10.0/24"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("node.yaml:"), "{}", r.stderr);
}
