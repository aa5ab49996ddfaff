//! Property tests of the masquerade exclusions and decision (`sluice_compiler::masq`):
//!
//! 1. `exclusions` keeps exactly the addresses of its sources (the union of their prefixes,
//!    plus link-local unless every source masquerades it), however the prefixes nest;
//! 2. `MasqPlan::decide` SNATs exactly when a brute-force reading of spec/node.md's rule says
//!    so, written independently here, and the reason it gives is true of the packet;
//! 3. `excluded_by` returns the longest matching prefix, as the kernel's LPM lookup does.

use proptest::prelude::*;
use sluice_compiler::masq::{Decision, Flow, Keep, LINK_LOCAL_V4, MasqPlan, exclusions};
use sluice_compiler::node::{self, NodeConfig, Routing};
use sluice_compiler::source::ast::{Cidr, Masquerade, SourceId, Span};
use std::net::{IpAddr, Ipv4Addr};

/// Addresses drawn from a few /16s so that prefixes, pods, nodes and flows collide often.
fn addr() -> impl Strategy<Value = Ipv4Addr> {
    (
        prop_oneof![
            Just([10u8, 0]),
            Just([10, 244]),
            Just([192, 168]),
            Just([169, 254]),
            Just([8, 8])
        ],
        0u8..4,
        any::<u8>(),
    )
        .prop_map(|(hi, c, d)| Ipv4Addr::new(hi[0], hi[1], c, d))
}

fn cidr() -> impl Strategy<Value = Cidr> {
    (addr(), 8u8..=32).prop_map(|(a, p)| {
        Cidr {
            addr: IpAddr::V4(a),
            prefix: p,
        }
        .canonical()
    })
}

fn source() -> impl Strategy<Value = Masquerade> {
    (prop::collection::vec(cidr(), 0..5), any::<bool>()).prop_map(|(c, ll)| Masquerade {
        non_masquerade: c,
        link_local: ll,
        link_local_v6: true,
        egress: None,
        span: Span::NONE,
    })
}

fn config(routing: Routing, enabled: bool) -> NodeConfig {
    let routing = if routing == Routing::Native {
        "native"
    } else {
        "vxlan"
    };
    let text = format!(
        "{{name: node-1, ip: 192.168.1.11, network: 192.168.1.0/24, uplink: eth0,
          pod_cidr: 10.244.1.0/24, routing: {routing}, masquerade: {{enabled: {enabled}}},
          peers: [{{name: node-2, ip: 192.168.1.12, pod_cidr: 10.244.2.0/24}}]}}"
    );
    let (config, diags) = node::read(SourceId(0), &text);
    config.unwrap_or_else(|| panic!("{diags:?}"))
}

fn within(c: &str, a: Ipv4Addr) -> bool {
    c.parse::<Cidr>().unwrap().contains(IpAddr::V4(a))
}

proptest! {
    #[test]
    fn exclusions_keep_exactly_the_union(sources in prop::collection::vec(source(), 0..3), probe in addr()) {
        let ex = exclusions(&sources);
        let listed = sources.iter().any(|m| m.non_masquerade.iter().any(|c| c.contains(IpAddr::V4(probe))));
        let link_local = (sources.is_empty() || !sources.iter().all(|m| m.link_local))
            && within(LINK_LOCAL_V4, probe);
        let got = ex.iter().any(|c| c.contains(IpAddr::V4(probe)));
        prop_assert_eq!(got, listed || link_local);
        // No prefix covers another: the LPM holds each address once.
        for (i, a) in ex.iter().enumerate() {
            for b in &ex[i + 1..] {
                prop_assert!(!a.overlaps(b), "{} and {}", a, b);
            }
        }
    }

    #[test]
    fn decide_matches_the_rule(
        sources in prop::collection::vec(source(), 0..3),
        native in any::<bool>(),
        enabled in any::<bool>(),
        src in prop_oneof![addr(), (0u8..4).prop_map(|d| Ipv4Addr::new(10, 244, 1, d))],
        dst in prop_oneof![addr(), (11u8..14).prop_map(|d| Ipv4Addr::new(192, 168, 1, d))],
        reply in any::<bool>(),
    ) {
        let routing = if native { Routing::Native } else { Routing::Vxlan };
        let cfg = config(routing, enabled);
        let plan = MasqPlan::new(&cfg, &sources);
        let d = plan.decide(&Flow { src, dst, reply });
        let excluded = exclusions(&sources).iter().any(|c| c.contains(IpAddr::V4(dst)));
        let from_local_pod = within("10.244.1.0/24", src);
        let to_pod = within("10.244.1.0/24", dst) || within("10.244.2.0/24", dst);
        let to_node = dst == cfg.ip || (native && dst == cfg.peers[0].ip);
        let snat = enabled && from_local_pod && !reply && !to_pod && !excluded && !to_node;
        prop_assert_eq!(matches!(d, Decision::Snat(_)), snat, "{:?}", d);
        match d {
            Decision::Snat(ip) => prop_assert_eq!(ip, cfg.ip),
            Decision::Keep(Keep::Excluded(c)) => {
                prop_assert!(c.contains(IpAddr::V4(dst)));
                // The longest match, as the kernel's LPM lookup returns.
                prop_assert!(plan.excluded.iter().all(|o| !o.contains(IpAddr::V4(dst)) || o.prefix <= c.prefix));
            }
            Decision::Keep(Keep::Reply) => prop_assert!(reply),
            Decision::Keep(Keep::PeerNode) => prop_assert!(native),
            Decision::Keep(_) => {}
        }
    }
}
