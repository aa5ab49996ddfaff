//! Interface addresses (`ip addr add/del`).

use std::net::IpAddr;

use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{CREATE, Netlink, Result};

/// An address on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// Device index.
    pub dev: u32,
    pub ip: IpAddr,
    pub prefix_len: u8,
    /// Skip duplicate address detection (IPv6): the address is usable at once instead of
    /// "tentative" for a second or two.
    pub nodad: bool,
    pub scope: AddressScope,
}

impl Address {
    /// `ip/prefix_len` on `dev`; IPv6 addresses skip DAD (nothing else on these links
    /// could own them, and tentative addresses cannot be bound).
    pub fn new(dev: u32, ip: IpAddr, prefix_len: u8) -> Self {
        Self {
            dev,
            ip,
            prefix_len,
            nodad: ip.is_ipv6(),
            scope: AddressScope::Universe,
        }
    }

    fn message(&self) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family(self.ip);
        m.header.prefix_len = self.prefix_len;
        m.header.index = self.dev;
        m.header.scope = self.scope;
        if self.nodad {
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        m.attributes.push(AddressAttribute::Local(self.ip));
        m.attributes.push(AddressAttribute::Address(self.ip));
        m
    }

    fn describe(&self, verb: &str) -> String {
        format!(
            "addr {verb} {}/{} dev #{}{}",
            self.ip,
            self.prefix_len,
            self.dev,
            if self.nodad { " nodad" } else { "" }
        )
    }
}

pub(crate) fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

impl Netlink {
    pub fn add_address(&mut self, a: &Address) -> Result<()> {
        self.change(
            RouteNetlinkMessage::NewAddress(a.message()),
            CREATE,
            &|| a.describe("add"),
        )
    }

    pub fn del_address(&mut self, a: &Address) -> Result<()> {
        self.change(RouteNetlinkMessage::DelAddress(a.message()), 0, &|| {
            a.describe("del")
        })
    }

    /// Every address in the namespace, as (device index, address, prefix length).
    pub fn addresses(&mut self) -> Result<Vec<(u32, IpAddr, u8)>> {
        let what = || "addr show".to_owned();
        let mut out = Vec::new();
        for m in self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            &what,
        )? {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                let ip = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let ip = ip.or_else(|| {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
                if let Some(ip) = ip {
                    out.push((a.header.index, ip, a.header.prefix_len));
                }
            }
        }
        Ok(out)
    }
}
