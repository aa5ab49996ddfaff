//! `sluice node check`: exit codes, the located diagnostic for a refused pod CIDR, and the
//! masquerade data printed for an accepted file with its ip-masq-agent config.

use std::process::Command;

fn sluice(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

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
    let dir = std::env::temp_dir().join(format!("sluice-node-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let node = dir.join("node.yaml");
    std::fs::write(&node, NODE).unwrap();
    std::fs::write(dir.join("masq.yaml"), "nonMasqueradeCIDRs: [10.0.0.0/16]\n").unwrap();
    let (code, out, err) = sluice(&["node", "check", node.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["node"]["vxlan_port"], 8472);
    assert_eq!(
        v["masquerade"]["excluded"],
        serde_json::json!(["10.0.0.0/16", "169.254.0.0/16"])
    );
    // An absent ip-masq-agent file means the 11 defaults (+ link-local).
    std::fs::remove_file(dir.join("masq.yaml")).unwrap();
    let (code, out, err) = sluice(&["node", "check", node.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["masquerade"]["excluded"].as_array().unwrap().len(), 12);
    assert!(err.contains("does not exist"), "{err}");
    // A bad ip-masq-agent file fails the check.
    std::fs::write(dir.join("masq.yaml"), "nonMasqueradeCIDRs: [10.0.0.0/33]\n").unwrap();
    let (code, _, err) = sluice(&["node", "check", node.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid CIDR `10.0.0.0/33`"), "{err}");
    // A pod CIDR inside the node network is refused, located, with the reason.
    std::fs::write(&node, NODE.replace("10.244.1.0/24", "192.168.10.128/25")).unwrap();
    let (code, _, err) = sluice(&["node", "check", node.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("overlaps the node network 192.168.10.0/24"),
        "{err}"
    );
    assert!(err.contains("node.yaml:"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
