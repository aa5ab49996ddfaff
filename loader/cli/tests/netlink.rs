//! Kernel tests of the netlink layer (needs root): namespaces, veth pairs, VXLAN devices,
//! addresses, routes and neighbours made through `sluice_loader::netlink`, then looked at
//! from outside with `ip -j`. Every name carries a unique prefix; a guard removes the
//! namespaces even when a test panics, and the test checks nothing with its prefix is left.

#[path = "support/leftovers.rs"]
mod leftovers;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use leftovers::ip;
use sluice_cli::topology::unique_prefix;
use sluice_loader::netlink::link::parse_mac;
use sluice_loader::netlink::{
    Address, Neighbour, Netlink, Netns, NewLink, Peer, Route, Vxlan, remove_netns,
};

/// Removes the namespaces it names when dropped, then checks nothing with the prefix stays.
struct Guard {
    prefix: String,
    names: Vec<String>,
}

impl Guard {
    fn new() -> Guard {
        Guard {
            prefix: unique_prefix(),
            names: Vec::new(),
        }
    }

    fn netns(&mut self, suffix: &str) -> Netns {
        let name = format!("{}-{suffix}", self.prefix);
        let ns = Netns::create(&name).expect("netns add");
        self.names.push(name);
        ns
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = remove_netns(n);
        }
        if !std::thread::panicking() {
            leftovers::assert_clean(&leftovers::Made {
                prefix: self.prefix.clone(),
                ..Default::default()
            });
        }
    }
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    serde_json::from_str(&ip(&all)).unwrap()
}

#[test]
fn veth_pair_addresses_routes_and_neighbours_show_up_in_ip() {
    let mut g = Guard::new();
    let a = g.netns("a");
    let b = g.netns("b");
    // `ip netns` sees namespaces made here.
    let listed = ip(&["netns", "list"]);
    assert!(
        listed.contains(a.name()) && listed.contains(b.name()),
        "{listed}"
    );

    let mut na = Netlink::open_in(&a).unwrap();
    let mut nb = Netlink::open_in(&b).unwrap();
    assert_ne!(na.netns_cookie().unwrap(), nb.netns_cookie().unwrap());
    let host_mac = parse_mac("02:00:00:00:00:0a").unwrap();
    let peer_mac = parse_mac("02:00:00:00:00:0b").unwrap();
    na.add_link(
        &NewLink::veth("va", Peer::new("vb").mac(peer_mac).netns(&b))
            .mac(host_mac)
            .mtu(1400)
            .up(),
    )
    .unwrap();
    // Creating it twice fails with EEXIST and names the request.
    let again = na
        .add_link(&NewLink::veth("va", Peer::new("vb2").netns(&b)))
        .unwrap_err();
    assert_eq!(again.errno(), Some(libc::EEXIST), "{again}");
    assert!(
        again.to_string().contains("link add va type veth"),
        "{again}"
    );

    let va = na.link("va").unwrap().expect("va listed");
    let vb = nb.link("vb").unwrap().expect("vb in b");
    assert_eq!(va.kind.as_deref(), Some("veth"));
    assert_eq!(va.peer, Some(vb.index), "a veth's IFLA_LINK is its peer");
    assert_eq!(vb.peer, Some(va.index));
    assert!(
        va.peer_netnsid.is_some(),
        "the peer is in another namespace"
    );
    assert_eq!((va.mac, va.mtu, va.up), (Some(host_mac), Some(1400), true));
    assert_eq!(vb.mac, Some(peer_mac));
    assert!(!vb.up);
    let mut full: Vec<(u32, String)> = na
        .links()
        .unwrap()
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    let mut fast = na.link_names().unwrap();
    full.sort();
    fast.sort();
    assert_eq!(
        fast, full,
        "the fast name dump reads what the full one does"
    );
    assert!(full.iter().any(|(_, n)| n == "lo") && full.iter().any(|(_, n)| n == "va"));
    assert_eq!(nb.link("nonexistent0").unwrap(), None);

    nb.set_up("vb", true).unwrap();
    nb.set_up("lo", true).unwrap();
    na.wait_oper_up("va", Duration::from_secs(5)).unwrap();
    let v4a = Ipv4Addr::new(10, 99, 0, 1);
    let v6a: Ipv6Addr = "fd00:99::1".parse().unwrap();
    na.add_address(&Address::new(va.index, v4a.into(), 24))
        .unwrap();
    na.add_address(&Address::new(va.index, v6a.into(), 64))
        .unwrap();
    nb.add_address(&Address::new(
        vb.index,
        Ipv4Addr::new(10, 99, 0, 2).into(),
        24,
    ))
    .unwrap();
    let addrs = json(&["-n", a.name(), "addr", "show", "dev", "va"]);
    let infos = addrs[0]["addr_info"].as_array().unwrap();
    let v6 = infos
        .iter()
        .find(|i| i["local"] == "fd00:99::1")
        .expect("v6 address");
    assert_eq!(v6["prefixlen"], 64);
    assert!(v6.get("tentative").is_none(), "nodad: usable at once: {v6}");
    assert!(
        infos
            .iter()
            .any(|i| i["local"] == "10.99.0.1" && i["prefixlen"] == 24)
    );
    assert!(
        na.addresses()
            .unwrap()
            .contains(&(va.index, IpAddr::V6(v6a), 64))
    );

    // A route via a gateway with an MTU, a link route, a permanent neighbour.
    let gw = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2));
    na.add_route(&Route {
        dst: Ipv4Addr::new(192, 0, 2, 0).into(),
        prefix_len: 24,
        via: Some(gw),
        dev: Some(va.index),
        mtu: Some(1300),
        onlink: false,
    })
    .unwrap();
    na.add_route(&Route::dev(
        Ipv4Addr::new(198, 51, 100, 7).into(),
        32,
        va.index,
    ))
    .unwrap();
    na.replace_neighbour(&Neighbour::permanent(va.index, gw, peer_mac))
        .unwrap();
    let routes = json(&["-n", a.name(), "route", "show", "dev", "va"]);
    let via = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "192.0.2.0/24")
        .expect("route via");
    assert_eq!(via["gateway"], "10.99.0.2");
    assert_eq!(via["metrics"][0]["mtu"], 1300, "{via}");
    let link_route = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "198.51.100.7")
        .expect("link route");
    assert_eq!(link_route["scope"], "link");
    let neigh = json(&["-n", a.name(), "neigh", "show", "dev", "va"]);
    let n = &neigh[0];
    assert_eq!(n["dst"], "10.99.0.2");
    assert_eq!(n["lladdr"], "02:00:00:00:00:0b");
    assert!(
        n["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "PERMANENT"),
        "{n}"
    );

    // Delete what was made, one by one.
    na.del_neighbour(&Neighbour::permanent(va.index, gw, peer_mac))
        .unwrap();
    na.del_route(&Route::dev(
        Ipv4Addr::new(198, 51, 100, 7).into(),
        32,
        va.index,
    ))
    .unwrap();
    na.del_address(&Address::new(va.index, v6a.into(), 64))
        .unwrap();
    assert_eq!(
        json(&["-n", a.name(), "neigh", "show", "dev", "va"]),
        serde_json::json!([])
    );
    na.set_up("va", false).unwrap();
    assert!(!na.link("va").unwrap().unwrap().up);
    na.del_link("va").unwrap();
    assert_eq!(na.link("va").unwrap(), None);
    assert_eq!(
        nb.link("vb").unwrap(),
        None,
        "deleting one end removes both"
    );
    let gone = na.del_link("va").unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
}

#[test]
fn devices_move_between_namespaces_and_vxlan_is_one_constructor() {
    let mut g = Guard::new();
    let a = g.netns("a");
    let b = g.netns("b");
    let mut na = Netlink::open_in(&a).unwrap();
    na.add_link(&NewLink::veth("m0", Peer::new("m1"))).unwrap();
    na.set_netns("m1", &b).unwrap();
    assert_eq!(na.link("m1").unwrap(), None);
    let mut nb = Netlink::open_in(&b).unwrap();
    assert_eq!(
        nb.link("m1").unwrap().unwrap().kind.as_deref(),
        Some("veth")
    );

    // An external (collect_md) VXLAN device, as the datapath will use.
    na.add_link(
        &NewLink::vxlan(
            "vx0",
            &Vxlan {
                port: 4789,
                external: true,
                ..Default::default()
            },
        )
        .mtu(1450)
        .up(),
    )
    .unwrap();
    let vx = na.link("vx0").unwrap().unwrap();
    assert_eq!(vx.kind.as_deref(), Some("vxlan"));
    assert_eq!(vx.mtu, Some(1450));
    let shown = json(&["-d", "-n", a.name(), "link", "show", "dev", "vx0"]);
    let data = &shown[0]["linkinfo"]["info_data"];
    assert_eq!(data["external"], true, "{data}");
    assert_eq!(data["port"], 4789, "{data}");
    assert_eq!(
        data["udp_csum"], false,
        "the outer UDP checksum is zero: {data}"
    );

    // A bridge, and a veth created as its port (the lab's LAN).
    na.add_link(&NewLink::bridge("br0").up()).unwrap();
    let br = na.link("br0").unwrap().unwrap();
    assert_eq!(br.kind.as_deref(), Some("bridge"));
    na.add_link(&NewLink::veth("p0", Peer::new("p1")).master(br.index).up())
        .unwrap();
    assert_eq!(na.link("p0").unwrap().unwrap().master, Some(br.index));
    assert_eq!(na.link("p1").unwrap().unwrap().master, None);
    let shown = json(&["-n", a.name(), "link", "show", "dev", "p0"]);
    assert_eq!(shown[0]["master"], "br0", "{shown}");

    // A named namespace removed while a socket still holds it: the name goes at once.
    let name = a.name().to_owned();
    drop(a);
    remove_netns(&name).unwrap();
    assert!(!ip(&["netns", "list"]).contains(&name));
    assert!(remove_netns(&name).is_err(), "removing twice fails");
    g.names.retain(|n| *n != name);
    drop(na); // the last reference: the namespace and its devices go
}
