//! Peer classes and the ipcache.
//!
//! A rule's peers match on two facts about the remote address: its identity (endpoint labels,
//! or a reserved identity such as world or host) and its CIDR identity (the most specific
//! prefix any rule names that contains it; see [`crate::resolve::identity`]). The pair is a
//! *peer class*. Classes are interned and numbered densely from 1 (0 is never used, so a zero
//! value in a map always means "missing"), sorted by (identity, CIDR identity) so the numbers
//! are deterministic.
//!
//! The ipcache is the LPM trie the datapath looks the remote address up in. It has a /32 per
//! endpoint and node address, one entry per named prefix, and `0.0.0.0/0`, so every lookup
//! hits and longest-prefix match yields exactly the class [`Classes::class_of_ip`] computes.

use crate::resolve::identity::{self, Identities};
use crate::resolve::inventory::Inventory;
use crate::source::ast::Cidr;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// A peer class number (dense, from 1).
pub type ClassId = u32;

/// The (identity, CIDR identity) pair a class stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassKey {
    pub identity: u32,
    pub cidr_identity: Option<u32>,
}

/// One ipcache entry (IPv4; IPv6 is not enforced yet, see spec/datapath.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpcacheEntry {
    pub prefix: Cidr,
    pub class: ClassId,
    /// The node address a packet to this prefix is tunnelled or routed to: set for the
    /// addresses of pods on other nodes and for other nodes' pod CIDRs (only when compiling
    /// for one node).
    pub tunnel: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, Default)]
pub struct Classes {
    /// `keys[c - 1]` is class `c`.
    keys: Vec<ClassKey>,
    by_key: BTreeMap<ClassKey, ClassId>,
    /// Sorted by prefix (address, then length): deterministic map contents.
    pub ipcache: Vec<IpcacheEntry>,
}

impl Classes {
    /// Classes and ipcache for the endpoints of `local_node` (`None`: a single-node view in
    /// which every node address is the local host).
    pub fn build(inv: &Inventory, ids: &Identities, local_node: Option<&str>) -> Classes {
        let mut addrs: BTreeMap<Cidr, ClassKey> = BTreeMap::new();
        let key_of = |ip: IpAddr| ClassKey {
            identity: ids.of_ip(inv, ip, local_node),
            cidr_identity: ids.cidr_of_ip(ip),
        };
        let host = |ip: IpAddr| Cidr {
            addr: ip,
            prefix: 32,
        };
        for ep in &inv.endpoints {
            for ip in ep.ips.iter().filter(|ip| ip.is_ipv4()) {
                addrs.insert(host(*ip), key_of(*ip));
            }
        }
        for node in &inv.nodes {
            for ip in node.ips.iter().filter(|ip| ip.is_ipv4()) {
                addrs.entry(host(*ip)).or_insert_with(|| key_of(*ip));
            }
        }
        for (prefix, cidr_id) in &ids.cidrs {
            if prefix.addr.is_ipv4() {
                addrs.entry(*prefix).or_insert(ClassKey {
                    identity: identity::WORLD,
                    cidr_identity: Some(*cidr_id),
                });
            }
        }
        // The default route stands for every address no longer prefix covers: `world`, in
        // no named prefix (a named 0.0.0.0/0 is already in). Not `key_of(0.0.0.0)`: a named
        // prefix holding 0.0.0.0 (0.0.0.0/31, say) would then claim every unknown address.
        let default = Cidr {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix: 0,
        };
        addrs.entry(default).or_insert(ClassKey {
            identity: identity::WORLD,
            cidr_identity: None,
        });
        let tunnels =
            local_node.map_or_else(BTreeMap::new, |l| remote_prefixes(inv, l, &mut addrs));

        let mut distinct: Vec<ClassKey> = addrs.values().copied().collect();
        distinct.sort();
        distinct.dedup();
        let by_key: BTreeMap<ClassKey, ClassId> = distinct
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i as ClassId + 1))
            .collect();
        let ipcache = addrs
            .iter()
            .map(|(prefix, key)| IpcacheEntry {
                prefix: *prefix,
                class: by_key[key],
                tunnel: tunnels.get(prefix).copied(),
            })
            .collect();
        Classes {
            keys: distinct,
            by_key,
            ipcache,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every class with its key, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (ClassId, ClassKey)> + '_ {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| (i as ClassId + 1, *k))
    }

    pub fn key(&self, class: ClassId) -> ClassKey {
        self.keys[class as usize - 1]
    }

    pub fn class(&self, key: ClassKey) -> Option<ClassId> {
        self.by_key.get(&key).copied()
    }

    /// The class an IPv4 address gets by longest-prefix match in the ipcache (what the kernel
    /// does); `None` for IPv6.
    pub fn class_of_ip(&self, ip: IpAddr) -> Option<ClassId> {
        self.ipcache
            .iter()
            .filter(|e| e.prefix.contains(ip))
            .max_by_key(|e| e.prefix.prefix)
            .map(|e| e.class)
    }
}

/// The first IPv4 address of node `name`: where its pods are reached.
pub fn node_ipv4(inv: &Inventory, name: &str) -> Option<Ipv4Addr> {
    inv.nodes
        .iter()
        .find(|n| n.name == name)?
        .ips
        .iter()
        .find_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
}

/// The prefixes of pods on other nodes than `local`, each with its node's address: every
/// remote endpoint address (already in `addrs`) and every other node's pod CIDR. A pod CIDR
/// that is not in `addrs` yet goes in with the key of the longest prefix already containing
/// all of it, so longest-prefix match gives every address the class it had before.
fn remote_prefixes(
    inv: &Inventory,
    local: &str,
    addrs: &mut BTreeMap<Cidr, ClassKey>,
) -> BTreeMap<Cidr, Ipv4Addr> {
    let mut out = BTreeMap::new();
    for ep in &inv.endpoints {
        let Some(node) = ep.node.as_deref().filter(|n| *n != local) else {
            continue;
        };
        let Some(t) = node_ipv4(inv, node) else {
            continue;
        };
        for ip in ep.ips.iter().filter(|ip| ip.is_ipv4()) {
            out.insert(
                Cidr {
                    addr: *ip,
                    prefix: 32,
                },
                t,
            );
        }
    }
    for node in inv.nodes.iter().filter(|n| n.name != local) {
        let (Some(cidr), Some(t)) = (node.pod_cidr, node_ipv4(inv, &node.name)) else {
            continue;
        };
        let cidr = cidr.canonical();
        if !cidr.addr.is_ipv4() {
            continue;
        }
        if !addrs.contains_key(&cidr) {
            let enclosing = addrs
                .iter()
                .filter(|(p, _)| p.prefix <= cidr.prefix && p.contains(cidr.addr))
                .max_by_key(|(p, _)| p.prefix)
                .map(|(_, k)| *k)
                .expect("0.0.0.0/0 contains every prefix");
            addrs.insert(cidr, enclosing);
        }
        // An endpoint /32 keeps its own node (it is more specific anyway).
        out.entry(cidr).or_insert(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::InventoryFiles;
    use proptest::prelude::*;

    const INV: &str = "
nodes:
- {name: n1, ips: [192.168.1.1], pod_cidr: 10.0.0.0/24}
- {name: n2, ips: [192.168.1.2], pod_cidr: 10.0.1.0/25}
endpoints:
- {name: a, namespace: x, labels: {app: a}, ips: [10.0.0.1], node: n1}
- {name: b, namespace: x, labels: {app: b}, ips: [10.0.0.2], node: n1}
- {name: c, namespace: x, labels: {app: c}, ips: [10.0.1.5], node: n2}
";

    /// Prefixes that nest, sit at either end of the address space, hold the endpoint and
    /// node addresses, or hold nothing known (0.0.0.0/31: a regression).
    fn prefix() -> impl Strategy<Value = Cidr> {
        let fixed = prop_oneof![
            Just("0.0.0.0/0"),
            Just("0.0.0.0/31"),
            Just("0.0.0.0/1"),
            Just("255.255.255.254/31"),
            Just("10.0.0.0/8"),
            Just("10.0.0.0/31"),
            Just("10.0.0.1/32"),
            Just("10.0.0.0/24"),
            Just("10.0.1.0/24"),
            Just("10.0.1.0/26"),
            Just("10.0.1.0/25"),
            Just("192.168.1.1/32"),
            Just("192.168.0.0/16"),
        ]
        .prop_map(|s| s.parse::<Cidr>().unwrap());
        let random = (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
            Cidr {
                addr: IpAddr::V4(a.into()),
                prefix: p,
            }
            .canonical()
        });
        prop_oneof![fixed, random]
    }

    /// The addresses that tell classes apart: each prefix's ends and their neighbours, the
    /// known addresses, and the ends of the address space.
    fn probes(prefixes: &[Cidr]) -> Vec<IpAddr> {
        let mut out: Vec<u32> = vec![0, 1, 2, u32::MAX, 0x0a00_0001, 0x0a00_0002, 0xc0a8_0101];
        // The pod CIDRs' ends and neighbours, and c.
        out.extend([
            0x0a00_00ff,
            0x0a00_0100,
            0x0a00_0105,
            0x0a00_017f,
            0x0a00_0180,
        ]);
        out.push(0x0808_0808);
        for c in prefixes {
            let IpAddr::V4(a) = c.addr else { continue };
            let first = u32::from(a);
            let last = first | u32::MAX.checked_shr(u32::from(c.prefix)).unwrap_or(0);
            out.extend([first.wrapping_sub(1), first, last, last.wrapping_add(1)]);
        }
        out.into_iter().map(|a| IpAddr::V4(a.into())).collect()
    }

    proptest! {
        /// Longest-prefix match in the ipcache (what the kernel does) gives every address the
        /// class of exactly its (identity, CIDR identity), as resolution computes them.
        #[test]
        fn ipcache_lookup_gives_every_address_its_own_class(
            prefixes in proptest::collection::vec(prefix(), 0..6)
        ) {
            let inv = Inventory::parse("inv", INV).unwrap();
            let mut ids = identity::allocate(&inv, &crate::ir::Ir::default());
            ids.cidrs = prefixes
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .enumerate()
                .map(|(i, c)| (c, identity::LOCAL_IDENTITY_BASE + 1 + i as u32))
                .collect();
            for local in [None, Some("n1"), Some("n2")] {
                let classes = Classes::build(&inv, &ids, local);
                for ip in probes(&prefixes) {
                    let want = ClassKey {
                        identity: ids.of_ip(&inv, ip, local),
                        cidr_identity: ids.cidr_of_ip(ip),
                    };
                    let got = classes.class_of_ip(ip).map(|c| classes.key(c));
                    prop_assert_eq!(got, Some(want), "{} with {:?}", ip, prefixes);
                }
            }
        }
    }

    /// Compiled for one node, the ipcache knows where every remote pod is: its address and
    /// its node's pod CIDR carry the node's address; local pods and the single-node view
    /// carry none.
    #[test]
    fn remote_pods_and_pod_cidrs_carry_their_node() {
        let inv = Inventory::parse("inv", INV).unwrap();
        let mut ids = identity::allocate(&inv, &crate::ir::Ir::default());
        ids.cidrs = [(
            "10.0.1.0/24".parse().unwrap(),
            identity::LOCAL_IDENTITY_BASE + 1,
        )]
        .into_iter()
        .collect();
        let tunnel = |c: &Classes, p: &str| {
            let p: Cidr = p.parse().unwrap();
            c.ipcache.iter().find(|e| e.prefix == p).map(|e| e.tunnel)
        };
        let n1 = Classes::build(&inv, &ids, Some("n1"));
        let n2: Ipv4Addr = "192.168.1.2".parse().unwrap();
        assert_eq!(tunnel(&n1, "10.0.1.5/32"), Some(Some(n2)));
        assert_eq!(tunnel(&n1, "10.0.1.0/25"), Some(Some(n2)));
        assert_eq!(tunnel(&n1, "10.0.0.1/32"), Some(None));
        assert_eq!(
            tunnel(&n1, "10.0.0.0/24"),
            None,
            "the local pod CIDR is not remote"
        );
        // The pod CIDR took the class of the named /24 around it.
        let slash24 = n1.class_of_ip("10.0.1.200".parse().unwrap());
        assert_eq!(n1.class_of_ip("10.0.1.6".parse().unwrap()), slash24);
        let single = Classes::build(&inv, &ids, None);
        assert!(single.ipcache.iter().all(|e| e.tunnel.is_none()));
    }
}
