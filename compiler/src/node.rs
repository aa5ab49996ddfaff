//! Reading and checking node configuration files (`spec/node.md`).
//!
//! A node's configuration decides where its pods' packets go, so a mistake in it misroutes
//! traffic instead of failing a compile. It is checked like policy: every syntax, type and
//! unknown-key error and every semantic problem (a pod CIDR overlapping the node network,
//! another node's pod CIDR or a node IP; host bits; duplicate peers) is a located diagnostic,
//! and nothing is returned unless the whole file is accepted. The types are
//! `sluice_policy::node`, shared with the bundle and the loader.

use crate::diag::{Diag, Diagnostics};
use crate::resolve::inventory::fields_of;
use crate::source::SourceMap;
use crate::source::ast::{Cidr, SourceId, Span};
use crate::source::yaml::{self, Node};
pub use sluice_policy::node::*;
use std::net::IpAddr;
use std::path::Path;

/// The smallest IPv4 MTU every link must carry (RFC 791).
const MIN_MTU: u32 = 576;
/// Linux's interface-name limit (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Reads and checks a node configuration (YAML or JSON). Notes and warnings come back with the
/// config; any error means no config.
pub fn read(source: SourceId, text: &str) -> (Option<NodeConfig>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let docs = match yaml::parse_tree(source, text, &|o| o) {
        Ok(d) => d,
        Err(e) => {
            diags.push(e);
            return (None, diags);
        }
    };
    let docs: Vec<&Node> = docs.iter().filter(|d| !d.is_null()).collect();
    let [root] = docs.as_slice() else {
        let span = docs
            .get(1)
            .map_or(Span::new(source, 0, text.len()), |d| d.span);
        diags.push(
            Diag::error(
                "sluice::node::documents",
                format!(
                    "a node configuration is one YAML document, found {}",
                    docs.len()
                ),
            )
            .with_label(
                span,
                "expected one mapping with `name`, `ip`, `network`, ...",
            )
            .with_help("spec/node.md shows the format"),
        );
        return (None, diags);
    };
    let mut errs = Vec::new();
    yaml::check_fields(
        root,
        "the node configuration",
        fields_of::<NodeConfig>(),
        &mut errs,
    );
    for p in root.get("peers").map_or(&[][..], Node::items) {
        yaml::check_fields(p, "a peer", fields_of::<Peer>(), &mut errs);
    }
    if let Some(m) = root.get("masquerade") {
        yaml::check_fields(
            m,
            "the masquerade settings",
            fields_of::<MasqueradeSources>(),
            &mut errs,
        );
    }
    if !errs.is_empty() {
        for d in errs {
            diags.push(d);
        }
        return (None, diags);
    }
    let config: NodeConfig = match serde_norway::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            let all = [(*root).clone()];
            diags.push(yaml::serde_diag(source, text, &e, &all, &|o| o));
            return (None, diags);
        }
    };
    check(&config, root, &mut diags);
    if diags.has_errors() {
        return (None, diags);
    }
    (Some(config), diags)
}

/// Reads a node configuration file into `sources` (so diagnostics can be rendered).
pub fn load(sources: &mut SourceMap, path: &Path) -> (Option<NodeConfig>, Diagnostics) {
    match sources.load(path) {
        Ok(id) => {
            let text = sources.file(id).text.clone();
            read(id, &text)
        }
        Err(e) => {
            let mut diags = Diagnostics::default();
            diags.push(Diag::error(
                "sluice::node::io",
                format!("cannot read {}: {e}", path.display()),
            ));
            (None, diags)
        }
    }
}

/// The semantic checks, each labelled at the value it is about.
fn check(c: &NodeConfig, root: &Node, diags: &mut Diagnostics) {
    let at = |path: &[&str]| -> Span {
        let mut n = root;
        for seg in path {
            let next = match seg.parse::<usize>() {
                Ok(i) => n.at(i),
                Err(_) => n.get(seg),
            };
            match next {
                Some(x) => n = x,
                None => break,
            }
        }
        n.span
    };
    if c.name.trim().is_empty() {
        diags.push(
            Diag::error("sluice::node::name", "the node name is empty")
                .with_label(at(&["name"]), "expected a name"),
        );
    }
    check_ifname(&c.uplink, at(&["uplink"]), diags);
    check_prefix("network", &c.network, at(&["network"]), diags);
    check_prefix("pod_cidr", &c.pod_cidr, at(&["pod_cidr"]), diags);
    if !c.network.contains(IpAddr::V4(c.ip)) {
        diags.push(
            Diag::error(
                "sluice::node::ip-outside-network",
                format!(
                    "the node IP {} is not in the node network {}",
                    c.ip, c.network
                ),
            )
            .with_label(at(&["ip"]), "expected an address inside `network`")
            .with_label(at(&["network"]), "the node network"),
        );
    }
    let min = MIN_MTU
        + match c.routing {
            Routing::Vxlan => VXLAN_OVERHEAD,
            Routing::Native => 0,
        };
    if !(min..=65535).contains(&c.mtu) {
        diags.push(
            Diag::error(
                "sluice::node::mtu",
                format!("MTU {} is out of range ({min}..=65535)", c.mtu),
            )
            .with_label(at(&["mtu"]), format!("expected {min}..=65535"))
            .with_help(format!(
                "pods get the MTU minus {VXLAN_OVERHEAD} under VXLAN, which must stay at least {MIN_MTU}"
            )),
        );
    }
    if c.vxlan_port == 0 {
        diags.push(
            Diag::error("sluice::node::vxlan-port", "the VXLAN port is 0")
                .with_label(at(&["vxlan_port"]), "expected 1..=65535 (default 8472)"),
        );
    }
    // Every pod CIDR of the cluster, with where it is written, for the overlap checks.
    let mut pods: Vec<(String, Cidr, Span)> = vec![(
        format!("this node's pod CIDR ({})", c.name),
        c.pod_cidr,
        at(&["pod_cidr"]),
    )];
    let mut names = vec![(c.name.as_str(), at(&["name"]))];
    let mut ips = vec![(c.ip, c.name.as_str(), at(&["ip"]))];
    for (i, p) in c.peers.iter().enumerate() {
        let i = i.to_string();
        let span = |k: &str| at(&["peers", &i, k]);
        check_prefix("pod_cidr", &p.pod_cidr, span("pod_cidr"), diags);
        if let Some((_, first)) = names.iter().find(|(n, _)| *n == p.name) {
            diags.push(
                Diag::error(
                    "sluice::node::duplicate-peer",
                    format!("node `{}` is named twice", p.name),
                )
                .with_label(span("name"), "expected a name no other node has")
                .with_label(*first, "first here"),
            );
        }
        names.push((&p.name, span("name")));
        if let Some((_, owner, first)) = ips.iter().find(|(ip, _, _)| *ip == p.ip) {
            diags.push(
                Diag::error(
                    "sluice::node::duplicate-ip",
                    format!(
                        "node IP {} belongs to both `{owner}` and `{}`",
                        p.ip, p.name
                    ),
                )
                .with_label(span("ip"), "expected an address no other node has")
                .with_label(*first, "first here"),
            );
        }
        ips.push((p.ip, &p.name, span("ip")));
        if c.routing == Routing::Native && !c.network.contains(IpAddr::V4(p.ip)) {
            diags.push(
                Diag::warning(
                    "sluice::node::peer-off-link",
                    format!(
                        "peer `{}` ({}) is outside the node network {}: native routing sends its pods' packets to its node IP as the next hop, which must be on the link",
                        p.name, p.ip, c.network
                    ),
                )
                .with_label(span("ip"), "not on the node network"),
            );
        }
        pods.push((
            format!("the pod CIDR of `{}`", p.name),
            p.pod_cidr,
            span("pod_cidr"),
        ));
    }
    // Overlaps: pod CIDRs against the node network, each other and every node IP.
    for (i, (what, cidr, span)) in pods.iter().enumerate() {
        if cidr.overlaps(&c.network) {
            diags.push(
                Diag::error(
                    "sluice::node::pod-cidr-overlap",
                    format!(
                        "{what} {cidr} overlaps the node network {}",
                        c.network
                    ),
                )
                .with_label(*span, "expected a range outside the node network")
                .with_label(at(&["network"]), "the node network")
                .with_help(
                    "a pod address that is also a LAN address is ambiguous: the node would send packets for it to the LAN (or answer for the LAN's hosts), and replies could not tell a pod from a host",
                ),
            );
        }
        for (other, ocidr, ospan) in &pods[..i] {
            if cidr.overlaps(ocidr) {
                diags.push(
                    Diag::error(
                        "sluice::node::pod-cidr-overlap",
                        format!("{what} {cidr} overlaps {other} {ocidr}"),
                    )
                    .with_label(*span, "expected a range no other node uses")
                    .with_label(*ospan, "the other range")
                    .with_help(
                        "each pod address must belong to one node: the tunnel or route for it is chosen by its pod CIDR",
                    ),
                );
            }
        }
        for (ip, owner, ispan) in &ips {
            if cidr.contains(IpAddr::V4(*ip)) && !cidr.overlaps(&c.network) {
                diags.push(
                    Diag::error(
                        "sluice::node::pod-cidr-overlap",
                        format!("{what} {cidr} holds the node IP {ip} of `{owner}`"),
                    )
                    .with_label(*span, "expected a range without node IPs")
                    .with_label(*ispan, "the node IP"),
                );
            }
        }
    }
}

/// A prefix must be IPv4 and written without host bits.
fn check_prefix(field: &str, cidr: &Cidr, span: Span, diags: &mut Diagnostics) {
    if !cidr.addr.is_ipv4() {
        diags.push(
            Diag::error(
                "sluice::node::ipv6",
                format!("`{field}` is IPv6 ({cidr}); the node datapath is IPv4"),
            )
            .with_label(span, "expected an IPv4 prefix"),
        );
    } else if !cidr.is_canonical() {
        diags.push(
            Diag::error(
                "sluice::node::host-bits",
                format!("`{field}` {cidr} has host bits set"),
            )
            .with_label(span, "expected a network address")
            .with_help(format!("write {}", cidr.canonical())),
        );
    }
}

fn check_ifname(name: &str, span: Span, diags: &mut Diagnostics) {
    let bad = name.is_empty()
        || name.len() > MAX_IFNAME
        || name.contains(['/', ':'])
        || name.chars().any(char::is_whitespace)
        || name == "."
        || name == "..";
    if bad {
        diags.push(
            Diag::error(
                "sluice::node::uplink",
                format!("`{name}` is not a valid interface name"),
            )
            .with_label(
                span,
                format!("expected 1 to {MAX_IFNAME} bytes without `/`, `:` or spaces"),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::render_plain;

    const GOOD: &str = "name: node-1
ip: 192.168.10.11
network: 192.168.10.0/24
uplink: eth0
pod_cidr: 10.244.1.0/24
peers:
- {name: node-2, ip: 192.168.10.12, pod_cidr: 10.244.2.0/24}
";

    fn run(text: &str) -> (Option<NodeConfig>, String) {
        let mut sm = SourceMap::new();
        let id = sm.add("node.yaml", text);
        let (c, d) = read(id, text);
        (c, render_plain(&d, &sm))
    }

    #[test]
    fn defaults() {
        let (c, out) = run(GOOD);
        let c = c.unwrap_or_else(|| panic!("{out}"));
        assert_eq!(c.routing, Routing::Vxlan);
        assert_eq!((c.vxlan_port, c.mtu, c.pod_mtu()), (8472, 1500, 1450));
        assert!(c.masquerade.enabled && c.masquerade.ip_masq_agent.is_none());
        assert_eq!(c.peers[0].name, "node-2");
        assert_eq!(
            c.peer_for_pod("10.244.2.7".parse().unwrap()).unwrap().name,
            "node-2"
        );
        assert_eq!(c.node_ips().len(), 2);
    }

    #[test]
    fn overlaps_are_refused_with_the_reason() {
        let (c, out) = run(&GOOD.replace("10.244.1.0/24", "192.168.10.128/25"));
        assert!(c.is_none());
        assert!(
            out.contains("this node's pod CIDR (node-1) 192.168.10.128/25 overlaps the node network 192.168.10.0/24"),
            "{out}"
        );
        assert!(out.contains("5 │ pod_cidr: 192.168.10.128/25"), "{out}");
        let (c, out) = run(&GOOD.replace("10.244.2.0/24", "10.244.0.0/16"));
        assert!(c.is_none());
        assert!(out.contains("overlaps this node's pod CIDR"), "{out}");
        let text = GOOD
            .replace("network: 192.168.10.0/24", "network: 192.168.10.0/28")
            .replace("ip: 192.168.10.12", "ip: 10.244.2.1");
        let (c, out) = run(&text);
        assert!(c.is_none());
        assert!(
            out.contains("holds the node IP 10.244.2.1 of `node-2`"),
            "{out}"
        );
    }

    #[test]
    fn bad_values_are_located() {
        let (c, out) = run(&GOOD
            .replace("routing", "x")
            .replace("uplink: eth0", "uplink: eth0\nrouting: vxlam"));
        assert!(c.is_none());
        assert!(out.contains("unknown variant `vxlam`"), "{out}");
        let (_, out) = run(&GOOD.replace("uplink:", "uplnk:"));
        assert!(out.contains("did you mean `uplink`?"), "{out}");
        let (_, out) = run(&GOOD.replace("10.244.1.0/24", "10.244.1.1/24"));
        assert!(out.contains("write 10.244.1.0/24"), "{out}");
        let (_, out) = run(&GOOD.replace("ip: 192.168.10.11", "ip: 192.168.11.1"));
        assert!(out.contains("not in the node network"), "{out}");
        let (_, out) = run(&GOOD.replace("node-2", "node-1"));
        assert!(out.contains("node `node-1` is named twice"), "{out}");
        let (_, out) = run(&format!("{GOOD}mtu: 600\n"));
        assert!(
            out.contains("MTU 600 is out of range (626..=65535)"),
            "{out}"
        );
        let (c, _) = run(&format!("{GOOD}mtu: 600\nrouting: native\n"));
        assert!(c.is_some());
        let (_, out) = run("");
        assert!(out.contains("one YAML document, found 0"), "{out}");
    }
}
