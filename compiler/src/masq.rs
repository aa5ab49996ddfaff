//! Masquerade: which destinations keep a pod's source address, and the SNAT decision itself.
//!
//! The exclusion list has two sources, the DSL `masquerade` block and an ip-masq-agent config
//! (read by `source::ipmasq` with Cilium's semantics); [`MasqPlan`] joins them with the node
//! configuration into the data the datapath consumes: an LPM of excluded IPv4 prefixes, the
//! cluster's node IPs and pod CIDRs, and the SNAT address. [`MasqPlan::decide`] is the
//! reference for the datapath's decision, in the order of Cilium's `snat_v4_needs_masquerade`
//! (spec/node.md, "Masquerade").

use crate::diag::{Diag, Diagnostics};
use crate::node::{NodeConfig, Routing};
use crate::source::ast::{Cidr, Document, Egress, Item, Masquerade, Span};
use crate::source::{SourceMap, dsl, ipmasq};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

pub const LINK_LOCAL_V4: &str = "169.254.0.0/16";
pub const LINK_LOCAL_V6: &str = "fe80::/10";

/// The exclusions of several sources: the union of their CIDRs (host bits cleared), plus the
/// link-local ranges unless every source masquerades them (an exclusion anywhere wins, as
/// in a union). Sorted, and without prefixes another one covers, so an LPM holds each address
/// once. No source at all excludes only the link-local ranges.
pub fn exclusions(sources: &[Masquerade]) -> Vec<Cidr> {
    let mut all: Vec<Cidr> = sources
        .iter()
        .flat_map(|m| m.non_masquerade.iter().map(Cidr::canonical))
        .collect();
    if !sources.iter().all(|m| m.link_local) || sources.is_empty() {
        all.push(LINK_LOCAL_V4.parse().expect("valid"));
    }
    if !sources.iter().all(|m| m.link_local_v6) || sources.is_empty() {
        all.push(LINK_LOCAL_V6.parse().expect("valid"));
    }
    // Widest first, so a prefix is dropped when an earlier one covers it.
    all.sort_by_key(|c| (c.addr.is_ipv6(), c.prefix, c.addr));
    let mut kept: Vec<Cidr> = Vec::new();
    for c in all {
        if !kept.iter().any(|k| k.covers(&c)) {
            kept.push(c);
        }
    }
    kept.sort();
    kept
}

/// What the node's masquerade programs work from (spec/node.md, "Masquerade data").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MasqPlan {
    pub enabled: bool,
    pub routing: Routing,
    /// The SNAT source: the egress interface's node IP (the uplink's), or the DSL's `egress`
    /// address.
    pub snat_ip: Ipv4Addr,
    /// This node's pods: only their traffic is SNATed.
    pub local_pods: Cidr,
    /// Every pod CIDR of the cluster, this node's included: pod-to-pod traffic is routed (or
    /// tunnelled) before the masquerade decision and keeps its addresses.
    pub cluster_pods: Vec<Cidr>,
    /// This node's IP: traffic to it is delivered locally and never leaves by the uplink.
    pub node_ip: Ipv4Addr,
    /// The other nodes' IPs: not SNATed under native routing.
    pub peer_ips: Vec<Ipv4Addr>,
    /// Excluded destinations, IPv4 (the LPM the datapath looks up).
    pub excluded: Vec<Cidr>,
    /// Excluded IPv6 destinations (kept for completeness; the node datapath is IPv4).
    pub excluded_v6: Vec<Cidr>,
}

/// One packet leaving a pod, as the masquerade decision sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Conntrack says this packet is a reply (the connection was opened towards the pod).
    pub reply: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict", content = "detail")]
pub enum Decision {
    /// Rewrite the source to this address.
    Snat(Ipv4Addr),
    Keep(Keep),
}

/// Why a packet keeps its source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Keep {
    Disabled,
    /// Not from a pod of this node (the host, a forwarded packet).
    NotLocalPod,
    /// A reply: connections opened towards a pod are never SNATed.
    Reply,
    /// To a pod: routed or tunnelled, not masqueraded.
    ClusterPod,
    /// To this node: delivered locally.
    LocalNode,
    /// In the exclusion list (this prefix).
    Excluded(Cidr),
    /// To another node's IP under native routing.
    PeerNode,
}

impl MasqPlan {
    /// Joins a node's configuration with its exclusion sources (already read, see [`load`]).
    pub fn new(config: &NodeConfig, sources: &[Masquerade]) -> MasqPlan {
        let (excluded_v6, excluded) = exclusions(sources)
            .into_iter()
            .partition(|c| c.addr.is_ipv6());
        let snat_ip = sources
            .iter()
            .find_map(|m| match m.egress {
                Some(Egress::Address(IpAddr::V4(a))) => Some(a),
                _ => None,
            })
            .unwrap_or(config.ip);
        MasqPlan {
            enabled: config.masquerade.enabled,
            routing: config.routing,
            snat_ip,
            local_pods: config.pod_cidr,
            cluster_pods: std::iter::once(config.pod_cidr)
                .chain(config.peers.iter().map(|p| p.pod_cidr))
                .collect(),
            node_ip: config.ip,
            peer_ips: config.peers.iter().map(|p| p.ip).collect(),
            excluded,
            excluded_v6,
        }
    }

    /// The most specific excluded prefix holding `dst` (what the LPM lookup returns).
    pub fn excluded_by(&self, dst: Ipv4Addr) -> Option<Cidr> {
        self.excluded
            .iter()
            .filter(|c| c.contains(IpAddr::V4(dst)))
            .max_by_key(|c| c.prefix)
            .copied()
    }

    /// Whether the packet is SNATed, in Cilium's `snat_v4_needs_masquerade` order: replies
    /// never; excluded destinations not; other nodes' IPs not under native routing (under VXLAN
    /// they are, as in Cilium: that traffic leaves by the uplink, not the tunnel, cilium#35823);
    /// everything else leaving a local pod is SNATed to the node IP.
    pub fn decide(&self, f: &Flow) -> Decision {
        let (src, dst) = (IpAddr::V4(f.src), IpAddr::V4(f.dst));
        let keep = if !self.enabled {
            Keep::Disabled
        } else if !self.local_pods.contains(src) {
            Keep::NotLocalPod
        } else if f.reply {
            Keep::Reply
        } else if self.cluster_pods.iter().any(|c| c.contains(dst)) {
            Keep::ClusterPod
        } else if f.dst == self.node_ip {
            Keep::LocalNode
        } else if let Some(c) = self.excluded_by(f.dst) {
            Keep::Excluded(c)
        } else if self.routing == Routing::Native && self.peer_ips.contains(&f.dst) {
            Keep::PeerNode
        } else {
            return Decision::Snat(self.snat_ip);
        };
        Decision::Keep(keep)
    }

    /// The excluded prefixes as kernel LPM-trie keys: `u32` prefix length (host order) then
    /// the address (network order), the layout `BPF_MAP_TYPE_LPM_TRIE` expects.
    pub fn lpm_keys(&self) -> Vec<[u8; 8]> {
        self.excluded
            .iter()
            .map(|c| {
                let IpAddr::V4(a) = c.addr else {
                    unreachable!("IPv4 only")
                };
                let mut k = [0u8; 8];
                k[..4].copy_from_slice(&u32::from(c.prefix).to_ne_bytes());
                k[4..].copy_from_slice(&a.octets());
                k
            })
            .collect()
    }
}

/// Reads the exclusion sources a node configuration names, relative to `base` (the
/// configuration file's directory): the DSL file's `masquerade` blocks (lowered and checked like
/// any policy) and the ip-masq-agent file (absent means the defaults, as in Cilium).
pub fn load(
    config: &NodeConfig,
    base: &Path,
    sources: &mut SourceMap,
) -> (Vec<Masquerade>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut out = Vec::new();
    let io = |path: &Path, e: std::io::Error| {
        Diag::error(
            "sluice::node::io",
            format!("cannot read {}: {e}", path.display()),
        )
    };
    if let Some(p) = &config.masquerade.policy {
        let path = base.join(p);
        match sources.load(&path) {
            Err(e) => diags.push(io(&path, e)),
            Ok(id) => {
                let text = sources.file(id).text.clone();
                match dsl::parse(id, &text) {
                    Err(d) => diags.extend(d),
                    Ok(doc) => {
                        let (_, d) = crate::ir::lower(std::slice::from_ref(&doc));
                        diags.extend(d);
                        let blocks = masquerade_items(&doc);
                        if blocks.is_empty() {
                            diags.push(
                                Diag::error(
                                    "sluice::node::no-masquerade-block",
                                    format!("{} has no `masquerade` block", path.display()),
                                )
                                .with_label(Span::new(id, 0, 0), "expected `masquerade { ... }`"),
                            );
                        }
                        out.extend(blocks);
                    }
                }
            }
        }
    }
    if let Some(p) = &config.masquerade.ip_masq_agent {
        let path = base.join(p);
        match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "ip-masq-agent config absent: defaults");
                diags.push(Diag::note(
                    "sluice::ipmasq::defaults",
                    format!(
                        "{} does not exist: the default non-masquerade CIDRs apply",
                        path.display()
                    ),
                ));
                out.push(ipmasq::defaults(Span::NONE));
            }
            Err(e) => diags.push(io(&path, e)),
            Ok(text) => {
                let id = sources.add(path.display().to_string(), text.clone());
                let (doc, d) = ipmasq::read_with_diags(id, &text);
                diags.extend(d);
                out.extend(masquerade_items(&doc));
            }
        }
    }
    (out, diags)
}

fn masquerade_items(doc: &Document) -> Vec<Masquerade> {
    doc.items
        .iter()
        .filter_map(|i| match i {
            Item::Masquerade(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{MasqueradeSources, Peer};

    fn masq(cidrs: &[&str], link_local: bool) -> Masquerade {
        Masquerade {
            non_masquerade: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            link_local,
            link_local_v6: false,
            egress: None,
            span: Span::NONE,
        }
    }

    pub(crate) fn config(routing: Routing) -> NodeConfig {
        NodeConfig {
            name: "node-1".into(),
            ip: "192.168.10.11".parse().unwrap(),
            network: "192.168.10.0/24".parse().unwrap(),
            uplink: "eth0".into(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            routing,
            vxlan_port: 8472,
            mtu: 1500,
            peers: vec![Peer {
                name: "node-2".into(),
                ip: "192.168.10.12".parse().unwrap(),
                pod_cidr: "10.244.2.0/24".parse().unwrap(),
            }],
            masquerade: MasqueradeSources::default(),
        }
    }

    fn strs(c: &[Cidr]) -> Vec<String> {
        c.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn exclusions_union_link_local_and_covered_prefixes() {
        assert_eq!(strs(&exclusions(&[])), [LINK_LOCAL_V4, LINK_LOCAL_V6]);
        let ipm = ipmasq::defaults(Span::NONE);
        let got = exclusions(std::slice::from_ref(&ipm));
        assert_eq!(got.len(), 13, "11 defaults + 2 link-local: {got:?}");
        // The DSL adds 10.0.1.0/24 (covered by 10.0.0.0/8) and 8.8.8.0/24.
        let got = exclusions(&[ipm, masq(&["10.0.1.0/24", "8.8.8.0/24"], true)]);
        assert!(strs(&got).contains(&"8.8.8.0/24".to_string()));
        assert!(!strs(&got).contains(&"10.0.1.0/24".to_string()));
        // Link-local is masqueraded only when every source says so.
        let got = exclusions(&[masq(&["10.0.0.0/16"], true)]);
        assert_eq!(strs(&got), ["10.0.0.0/16", LINK_LOCAL_V6]);
    }

    #[test]
    fn decision_order() {
        let cfg = config(Routing::Native);
        let plan = MasqPlan::new(&cfg, &[masq(&["10.0.0.0/16"], false)]);
        let flow = |src: &str, dst: &str, reply| Flow {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            reply,
        };
        let pod = "10.244.1.5";
        let d = |f| plan.decide(&f);
        assert_eq!(
            d(flow(pod, "8.8.8.8", false)),
            Decision::Snat(cfg.ip),
            "outside"
        );
        assert_eq!(d(flow(pod, "8.8.8.8", true)), Decision::Keep(Keep::Reply));
        assert_eq!(
            d(flow(pod, "10.0.1.1", false)),
            Decision::Keep(Keep::Excluded("10.0.0.0/16".parse().unwrap()))
        );
        assert_eq!(
            d(flow(pod, "169.254.169.254", false)),
            Decision::Keep(Keep::Excluded(LINK_LOCAL_V4.parse().unwrap()))
        );
        assert_eq!(
            d(flow(pod, "10.244.2.9", false)),
            Decision::Keep(Keep::ClusterPod)
        );
        assert_eq!(
            d(flow(pod, "192.168.10.12", false)),
            Decision::Keep(Keep::PeerNode)
        );
        assert_eq!(
            d(flow(pod, "192.168.10.11", false)),
            Decision::Keep(Keep::LocalNode)
        );
        assert_eq!(
            d(flow("192.168.10.11", "8.8.8.8", false)),
            Decision::Keep(Keep::NotLocalPod)
        );
        // The VM on the LAN is not a node: SNATed (nothing excludes 192.168.10.0/24 here).
        assert_eq!(d(flow(pod, "192.168.10.20", false)), Decision::Snat(cfg.ip));
        // Under VXLAN another node's IP is SNATed, as in Cilium (cilium#35823).
        let vx = MasqPlan::new(&config(Routing::Vxlan), &[masq(&[], false)]);
        assert_eq!(
            vx.decide(&flow(pod, "192.168.10.12", false)),
            Decision::Snat(cfg.ip)
        );
        let mut off = config(Routing::Vxlan);
        off.masquerade.enabled = false;
        let off = MasqPlan::new(&off, &[]);
        assert_eq!(
            off.decide(&flow(pod, "8.8.8.8", false)),
            Decision::Keep(Keep::Disabled)
        );
    }

    #[test]
    fn lpm_keys_are_prefix_then_address() {
        let plan = MasqPlan::new(&config(Routing::Vxlan), &[masq(&["10.0.0.0/16"], true)]);
        assert_eq!(
            plan.lpm_keys(),
            vec![{
                let mut k = [0u8; 8];
                k[..4].copy_from_slice(&16u32.to_ne_bytes());
                k[4..].copy_from_slice(&[10, 0, 0, 0]);
                k
            }]
        );
    }
}
