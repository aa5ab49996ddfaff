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
        let default = Cidr {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix: 0,
        };
        addrs.entry(default).or_insert_with(|| key_of(default.addr));

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
