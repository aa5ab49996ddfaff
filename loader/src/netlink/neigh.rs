//! Neighbour (ARP / NDP) entries (`ip neigh replace/del`).

use std::net::IpAddr;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;

use super::addr::family;
use super::{Netlink, REPLACE, Result};

/// `ip lladdr MAC dev DEV nud permanent|reachable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub dev: u32,
    pub ip: IpAddr,
    pub mac: [u8; 6],
    /// Never expires, never probed.
    pub permanent: bool,
}

impl Neighbour {
    pub fn permanent(dev: u32, ip: IpAddr, mac: [u8; 6]) -> Self {
        Self {
            dev,
            ip,
            mac,
            permanent: true,
        }
    }

    fn message(&self) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = family(self.ip);
        m.header.ifindex = self.dev;
        m.header.kind = RouteType::Unicast;
        m.header.state = if self.permanent {
            NeighbourState::Permanent
        } else {
            NeighbourState::Reachable
        };
        let dst = match self.ip {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        };
        m.attributes.push(NeighbourAttribute::Destination(dst));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(self.mac.to_vec()));
        m
    }

    fn describe(&self, verb: &str) -> String {
        let m = self.mac;
        format!(
            "neigh {verb} {} lladdr {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} dev #{}{}",
            self.ip,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            self.dev,
            if self.permanent { " nud permanent" } else { "" }
        )
    }
}

impl Netlink {
    /// Adds the entry or replaces the one for the same address and device.
    pub fn replace_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        self.change(
            RouteNetlinkMessage::NewNeighbour(n.message()),
            REPLACE,
            &|| n.describe("replace"),
        )
    }

    pub fn del_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        self.change(RouteNetlinkMessage::DelNeighbour(n.message()), 0, &|| {
            n.describe("del")
        })
    }
}
