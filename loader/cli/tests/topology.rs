//! Kernel tests of the cluster in a box: real namespaces, veths and sockets (needs root).

#[path = "support/leftovers.rs"]
mod support;

use support::ip;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use sluice_cli::topology::{
    self, Probe, ProbeOutcome, Proto, Topology, TopologySpec, probe::probe_many,
};

const SHORT: Duration = Duration::from_millis(500);

/// Namespaces and interfaces that carry `prefix`.
fn leftovers(prefix: &str) -> Vec<String> {
    support::leftovers(&support::Made {
        prefix: prefix.to_owned(),
        ..Default::default()
    })
}

fn three_pods() -> TopologySpec {
    TopologySpec::new()
        .pod("default", "a", Ipv4Addr::new(10, 200, 0, 1))
        .pod("default", "b", Ipv4Addr::new(10, 200, 0, 2))
        .pod("prod", "c", Ipv4Addr::new(10, 200, 1, 3))
        .node_ip(Ipv4Addr::new(192, 0, 2, 1))
        .external(Ipv4Addr::new(198, 51, 100, 7))
}

#[test]
fn pods_reach_each_other_over_tcp_and_udp() {
    let topo = Topology::build(&three_pods()).expect("build");
    let a = topo.pod("default", "a").unwrap();
    let b = topo.pod("default", "b").unwrap();
    let c = topo.pod("prod", "c").unwrap();

    // Each pod sees eth0 with its address; the node sees one veth per pod plus the uplink.
    let addrs = ip(&["-n", &b.netns, "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("10.200.0.2/32"), "{addrs}");
    let node_links = ip(&[
        "-n",
        topo.node_netns(),
        "-o",
        "link",
        "show",
        "type",
        "veth",
    ]);
    assert_eq!(node_links.lines().count(), 4, "{node_links}");
    assert!(topo.pods().iter().all(|p| p.host_if.len() <= 15));

    let ports = [(80, Proto::Tcp), (53, Proto::Udp), (8080, Proto::Udp)];
    let _sb = topo.serve(&b.netns, &ports).expect("servers in b");
    let _sc = topo.serve(&c.netns, &ports).expect("servers in c");
    let ext = topo.external().unwrap();
    let _sx = topo
        .serve(&ext.netns, &[(443, Proto::Tcp)])
        .expect("servers outside");

    let p = |from: &str, to, port, proto| topo.probe(from, to, port, proto, SHORT).unwrap();
    assert_eq!(p(&a.netns, b.ip, 80, Proto::Tcp), ProbeOutcome::Connected);
    assert_eq!(p(&a.netns, b.ip, 53, Proto::Udp), ProbeOutcome::Connected);
    assert_eq!(p(&a.netns, c.ip, 8080, Proto::Udp), ProbeOutcome::Connected);
    assert_eq!(p(&c.netns, b.ip, 80, Proto::Tcp), ProbeOutcome::Connected);
    // Pods reach the world beyond the node, and the world reaches pods.
    assert_eq!(
        p(&a.netns, ext.ips[0], 443, Proto::Tcp),
        ProbeOutcome::Connected
    );
    assert_eq!(p(&ext.netns, c.ip, 80, Proto::Tcp), ProbeOutcome::Connected);

    // No server: the pod's kernel answers with RST / ICMP port unreachable.
    assert_eq!(p(&a.netns, b.ip, 81, Proto::Tcp), ProbeOutcome::Refused);
    assert_eq!(p(&a.netns, b.ip, 54, Proto::Udp), ProbeOutcome::Refused);
    // An address nobody owns goes out the node's default route and is dropped silently.
    let nowhere = Ipv4Addr::new(203, 0, 113, 99);
    let t = Instant::now();
    assert_eq!(p(&a.netns, nowhere, 80, Proto::Tcp), ProbeOutcome::TimedOut);
    assert_eq!(p(&a.netns, nowhere, 53, Proto::Udp), ProbeOutcome::TimedOut);
    eprintln!(
        "two timed-out probes ({SHORT:?} timeout each) took {:?}",
        t.elapsed()
    );
}

#[test]
fn udp_echo_answers_from_the_address_it_was_sent_to() {
    // The external host owns several addresses; a server bound to 0.0.0.0 must answer a
    // datagram to any of them from that address, or the prober's connected socket ignores
    // the reply and the probe reads as dropped.
    let spec = TopologySpec::new()
        .pod("default", "a", Ipv4Addr::new(10, 200, 0, 1))
        .external(Ipv4Addr::new(198, 51, 100, 1))
        .external(Ipv4Addr::new(203, 0, 113, 10))
        .external(Ipv4Addr::new(203, 0, 113, 200));
    let topo = Topology::build(&spec).expect("build");
    let a = topo.pod("default", "a").unwrap();
    let ext = topo.external().unwrap();
    let _s = topo
        .serve(&ext.netns, &[(81, Proto::Udp), (81, Proto::Tcp)])
        .expect("servers outside");
    let probes: Vec<Probe> = ext
        .ips
        .iter()
        .flat_map(|&to| {
            [Proto::Udp, Proto::Tcp].map(|proto| Probe {
                from_netns: a.netns.clone(),
                to,
                port: 81,
                proto,
            })
        })
        .collect();
    let got = probe_many(&probes, SHORT);
    for (p, r) in probes.iter().zip(&got) {
        assert_eq!(
            r.as_ref().unwrap(),
            &ProbeOutcome::Connected,
            "{} {}",
            p.to,
            p.proto
        );
    }
}

#[test]
fn servers_stop_and_release_their_ports() {
    let topo = Topology::build(
        &TopologySpec::new()
            .pod("default", "a", Ipv4Addr::new(10, 201, 0, 1))
            .pod("default", "b", Ipv4Addr::new(10, 201, 0, 2)),
    )
    .expect("build");
    let (a, b) = (&topo.pods()[0], &topo.pods()[1]);
    let s = topo.serve(&b.netns, &[(80, Proto::Tcp)]).unwrap();
    let conn = |t: &Topology| t.probe(&a.netns, b.ip, 80, Proto::Tcp, SHORT).unwrap();
    assert_eq!(conn(&topo), ProbeOutcome::Connected);
    // The same port cannot be served twice in one namespace.
    assert!(topo.serve(&b.netns, &[(80, Proto::Tcp)]).is_err());
    s.stop();
    assert_eq!(conn(&topo), ProbeOutcome::Refused);
    let _again = topo.serve(&b.netns, &[(80, Proto::Tcp)]).unwrap();
    assert_eq!(conn(&topo), ProbeOutcome::Connected);
}

#[test]
fn nine_pods_and_a_hundred_and_fifty_six_probes() {
    let mut spec = TopologySpec::new().external(Ipv4Addr::new(198, 51, 100, 9));
    for i in 0..9u8 {
        spec = spec.pod(
            "default",
            &format!("pod{i}"),
            Ipv4Addr::new(10, 202, 0, 10 + i),
        );
    }
    let t = Instant::now();
    let topo = Topology::build(&spec).expect("build");
    let built = t.elapsed();
    eprintln!("built 9 pods + external in {built:?}");

    let _servers = topo
        .serve_pods(&[(80, Proto::Tcp), (53, Proto::Udp)])
        .unwrap();
    // Every ordered pair of distinct pods on tcp/80 and udp/53 (144 probes), plus 12 that
    // cannot succeed: refused ports and an address that drops.
    let mut probes = Vec::new();
    let mut expect = Vec::new();
    for from in topo.pods() {
        for to in topo.pods().iter().filter(|t| t.ip != from.ip) {
            for (port, proto) in [(80, Proto::Tcp), (53, Proto::Udp)] {
                probes.push(Probe {
                    from_netns: from.netns.clone(),
                    to: to.ip,
                    port,
                    proto,
                });
                expect.push(ProbeOutcome::Connected);
            }
        }
    }
    for from in topo.pods().iter().take(4) {
        let to = topo.pods()[8].ip;
        probes.push(Probe {
            from_netns: from.netns.clone(),
            to,
            port: 81,
            proto: Proto::Tcp,
        });
        expect.push(ProbeOutcome::Refused);
        probes.push(Probe {
            from_netns: from.netns.clone(),
            to,
            port: 54,
            proto: Proto::Udp,
        });
        expect.push(ProbeOutcome::Refused);
        let drop_to = Ipv4Addr::new(203, 0, 113, 1);
        probes.push(Probe {
            from_netns: from.netns.clone(),
            to: drop_to,
            port: 80,
            proto: Proto::Tcp,
        });
        expect.push(ProbeOutcome::TimedOut);
    }
    let t = Instant::now();
    let got: Vec<ProbeOutcome> = probe_many(&probes, Duration::from_secs(1))
        .into_iter()
        .map(|r| r.expect("probe ran"))
        .collect();
    let took = t.elapsed();
    eprintln!("{} probes in {took:?}", probes.len());
    for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
        assert_eq!(g, e, "probe {:?}", probes[i]);
    }
    // Figures only (speed belongs in benchmarks): sequential would be 4+ s of timeouts.
    eprintln!("figures: build {built:?}, {} probes {took:?}", probes.len());
}

#[test]
fn drop_removes_everything_even_on_panic() {
    let spec = three_pods();
    // Normal drop, with servers still running when the topology goes.
    let topo = Topology::build(&spec).expect("build");
    let prefix = topo.prefix().to_owned();
    assert_eq!(
        ip(&["netns", "list"])
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count(),
        5,
        "node, three pods, external"
    );
    let servers = topo
        .serve(&topo.pods()[0].netns, &[(80, Proto::Tcp)])
        .unwrap();
    drop(topo);
    drop(servers);
    assert_eq!(leftovers(&prefix), Vec::<String>::new());

    // A panic while the topology is alive.
    let r = std::panic::catch_unwind(|| {
        let topo = Topology::build(&spec).expect("build");
        std::panic::panic_any(topo.prefix().to_owned());
    });
    let prefix = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(prefix.starts_with(topology::PREFIX_BASE));
    assert_eq!(leftovers(&prefix), Vec::<String>::new());

    // Explicit teardown reports success and leaves nothing.
    let topo = Topology::build(&spec).expect("build");
    let prefix = topo.prefix().to_owned();
    topo.teardown().expect("teardown");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}

#[test]
fn stale_leftovers_of_a_crashed_run_are_removed() {
    let topo = Topology::build(&three_pods()).expect("build");
    let prefix = topo.prefix().to_owned();
    std::mem::forget(topo); // what a SIGKILLed run leaves
    assert!(!leftovers(&prefix).is_empty());
    let removed = topology::cleanup_stale(&prefix).expect("cleanup");
    assert_eq!(removed.len(), 5, "{removed:?}");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    // A second sweep finds nothing, and the dead-run sweep leaves live runs alone.
    assert!(topology::cleanup_stale(&prefix).unwrap().is_empty());
    let live = Topology::build(&three_pods()).expect("build");
    topology::cleanup_dead_runs().expect("sweep");
    assert_eq!(leftovers(live.prefix()).len(), 5);
}

#[test]
fn impossible_specs_fail_before_touching_the_kernel() {
    let spec = TopologySpec::new().pod("default", "a", Ipv4Addr::new(224, 0, 0, 1));
    let err = Topology::build(&spec).unwrap_err();
    assert!(matches!(err, topology::TopologyError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("224.0.0.1"), "{err}");
}
