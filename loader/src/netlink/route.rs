//! Routes in the main table (`ip route add/replace/del`).

use std::net::IpAddr;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric, RouteProtocol, RouteScope,
    RouteType,
};

use super::addr::family;
use super::{CREATE, Netlink, REPLACE, Result};

/// A unicast route: `dst/prefix_len [via GW] [dev DEV] [mtu N] [onlink]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix_len: u8,
    pub via: Option<IpAddr>,
    /// Output device index.
    pub dev: Option<u32>,
    /// Path MTU for the route (`mtu N`), e.g. to leave room for a tunnel header.
    pub mtu: Option<u32>,
    /// The gateway is reachable on `dev` though no address there covers it.
    pub onlink: bool,
}

impl Route {
    /// `dst/prefix_len dev DEV` (scope link).
    pub fn dev(dst: IpAddr, prefix_len: u8, dev: u32) -> Self {
        Self {
            dst,
            prefix_len,
            via: None,
            dev: Some(dev),
            mtu: None,
            onlink: false,
        }
    }

    /// `dst/prefix_len via GW dev DEV onlink`.
    pub fn via_onlink(dst: IpAddr, prefix_len: u8, via: IpAddr, dev: u32) -> Self {
        Self {
            via: Some(via),
            onlink: true,
            ..Self::dev(dst, prefix_len, dev)
        }
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    fn message(&self) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family(self.dst);
        m.header.destination_prefix_length = self.prefix_len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot; // what `ip route add` uses
        m.header.kind = RouteType::Unicast;
        // A route without a gateway is on the link; one with a gateway goes beyond it.
        m.header.scope = if self.via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if self.onlink {
            m.header.flags |= RouteFlags::Onlink;
        }
        if self.prefix_len > 0 {
            m.attributes
                .push(RouteAttribute::Destination(self.dst.into()));
        }
        if let Some(gw) = self.via {
            m.attributes.push(RouteAttribute::Gateway(gw.into()));
        }
        if let Some(dev) = self.dev {
            m.attributes.push(RouteAttribute::Oif(dev));
        }
        if let Some(mtu) = self.mtu {
            m.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        m
    }

    fn describe(&self, verb: &str) -> String {
        let mut s = format!("route {verb} {}/{}", self.dst, self.prefix_len);
        if let Some(v) = self.via {
            s.push_str(&format!(" via {v}"));
        }
        if let Some(d) = self.dev {
            s.push_str(&format!(" dev #{d}"));
        }
        if let Some(m) = self.mtu {
            s.push_str(&format!(" mtu {m}"));
        }
        if self.onlink {
            s.push_str(" onlink");
        }
        s
    }
}

impl Netlink {
    /// Adds a route (fails if one with the same key exists).
    pub fn add_route(&mut self, r: &Route) -> Result<()> {
        self.change(RouteNetlinkMessage::NewRoute(r.message()), CREATE, &|| {
            r.describe("add")
        })
    }

    /// Adds a route or replaces the one with the same key.
    pub fn replace_route(&mut self, r: &Route) -> Result<()> {
        self.change(RouteNetlinkMessage::NewRoute(r.message()), REPLACE, &|| {
            r.describe("replace")
        })
    }

    pub fn del_route(&mut self, r: &Route) -> Result<()> {
        self.change(RouteNetlinkMessage::DelRoute(r.message()), 0, &|| {
            r.describe("del")
        })
    }
}
