//! What the swap benchmarks share: a node namespace with one veth pair per endpoint (pod
//! namespaces are left out: they add nothing to a swap, and 1,000 of them take minutes to
//! make), its inventory in `GROUPS` label groups, and a policy file whose versions differ in
//! one port of one group's ingress rule. Included with `#[path]`.
#![allow(dead_code)]

use sluice_loader::generation::{self, LoadOptions};
use sluice_loader::netlink::{Netlink, Netns, NewLink, Peer, remove_netns};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

pub const GROUPS: usize = 10;

/// The node namespace with its veths and the pin root; removed on drop.
pub struct Node {
    pub ns: String,
    pub opts: LoadOptions,
}

impl Node {
    pub fn new(prefix: &str, endpoints: usize) -> Node {
        let ns = format!("{prefix}-node");
        let handle = Netns::create(&ns).expect("netns add");
        let node = Node {
            ns: ns.clone(),
            opts: LoadOptions {
                root: PathBuf::from(format!("/sys/fs/bpf/{prefix}-sluice")),
                state_dir: PathBuf::from(format!("/run/{prefix}-sluice")),
                node_netns: Some(ns.clone()),
            },
        };
        let mut nl = Netlink::open_in(&handle).expect("netlink");
        for i in 0..endpoints {
            let (v, w) = (format!("{prefix}v{i}"), format!("{prefix}w{i}"));
            nl.add_link(&NewLink::veth(&v, Peer::new(&w)).up())
                .and_then(|()| nl.set_up(&w, true))
                .expect("creating veths");
        }
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Err(e) = generation::unload(&self.opts) {
            eprintln!("unload: {e}");
        }
        // The veths live in the namespace and go with it.
        let _ = remove_netns(&self.ns);
    }
}

/// The inventory's text: `endpoints` endpoints in `GROUPS` label groups, one veth each.
pub fn inventory_yaml(prefix: &str, endpoints: usize) -> String {
    let mut y = String::from("endpoints:\n");
    for i in 0..endpoints {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i as u32 + 1);
        y.push_str(&format!(
            "- name: ep{i}\n  labels: {{app: g{}}}\n  ips: [{ip}]\n  interface: {prefix}v{i}\n",
            i % GROUPS
        ));
    }
    y
}

/// The policy file; `version` changes one port of group 0's ingress rule.
pub fn policy_text(version: usize) -> String {
    let mut s = String::new();
    for g in 0..GROUPS {
        let port = if g == 0 { 8000 + version % 2 } else { 8000 };
        s.push_str(&format!(
            "policy \"g{g}\" {{\n  select app = g{g}\n  isolate ingress, egress\n  \
             ingress allow from pods {{ app = g{} }} ports 80/tcp, {port}/tcp\n  \
             egress allow to pods {{ app = g{} }} ports 80/tcp, 53/udp\n}}\n",
            (g + 1) % GROUPS,
            (g + GROUPS - 1) % GROUPS
        ));
    }
    s
}

/// The value at quantile `p` (0 to 1) of `v`.
pub fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// One row per stage (p50, p99, max over the swaps; `rows[swap][stage]`), then the verdict on
/// the 10 ms p99 target for the first stage, the end-to-end one.
pub fn print_latency_table<const N: usize>(names: &[&str; N], rows: &[[Duration; N]]) {
    for (k, name) in names.iter().enumerate() {
        let col: Vec<Duration> = rows.iter().map(|r| r[k]).collect();
        println!(
            "| {name} | {} | {} | {} |",
            ms(pct(&col, 0.5)),
            ms(pct(&col, 0.99)),
            ms(pct(&col, 1.0))
        );
    }
    let p99 = pct(&rows.iter().map(|r| r[0]).collect::<Vec<_>>(), 0.99);
    let verdict = if p99 < Duration::from_millis(10) {
        "met"
    } else {
        "missed"
    };
    println!("\nTarget p99 < 10 ms: {verdict} ({} ms).", ms(p99));
}
