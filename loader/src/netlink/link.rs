//! Network devices: list them, create them (one constructor per kind: veth, VXLAN, bridge),
//! delete them, bring them up or down, move them between namespaces.
//!
//! A new kind is one constructor on [`NewLink`] that builds its `IFLA_INFO_DATA` and
//! calls [`NewLink::of_kind`]; the rest (MAC, MTU, target namespace, up) is shared.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo,
    LinkMessage, State,
};

use netlink_packet_core::NlasIterator;

use super::{CREATE, Netlink, NetlinkError, Netns, Result};

const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;

/// A device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` ("veth", "vxlan", ...); None for devices without one (lo).
    pub kind: Option<String>,
    /// `IFLA_LINK`: for a veth, its peer's index (in `peer_netnsid`'s namespace when set).
    pub peer: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the peer lives in another namespace, known here by this id.
    pub peer_netnsid: Option<i32>,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// `IFLA_MASTER`: the bridge this device is a port of.
    pub master: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operationally up (`IF_OPER_UP`): carrier on and the queueing discipline attached,
    /// which the kernel does a moment after both ends of a veth are up.
    pub oper_up: bool,
}

impl Link {
    fn from_message(m: &LinkMessage) -> Link {
        let mut link = Link {
            index: m.header.index,
            name: String::new(),
            kind: None,
            peer: None,
            peer_netnsid: None,
            mac: None,
            mtu: None,
            master: None,
            up: m.header.flags.contains(LinkFlags::Up),
            oper_up: false,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Link(i) => link.peer = Some(*i),
                LinkAttribute::LinkNetNsId(i) => link.peer_netnsid = Some(*i),
                LinkAttribute::Controller(i) => link.master = Some(*i),
                LinkAttribute::Address(a) => link.mac = a.as_slice().try_into().ok(),
                LinkAttribute::Mtu(m) => link.mtu = Some(*m),
                LinkAttribute::OperState(s) => link.oper_up = *s == State::Up,
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            link.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The other end of a new veth pair.
#[derive(Debug, Clone)]
pub struct Peer<'n> {
    name: String,
    mac: Option<[u8; 6]>,
    netns: Option<&'n Netns>,
}

impl<'n> Peer<'n> {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            mac: None,
            netns: None,
        }
    }

    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Create the peer directly in `ns`.
    pub fn netns(mut self, ns: &'n Netns) -> Self {
        self.netns = Some(ns);
        self
    }
}

/// A VXLAN device. `external` (collect_md) takes the VNI and remote from each packet's
/// tunnel metadata (set by a BPF program), so one device serves every peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vxlan {
    /// Fixed VNI; None with `external`.
    pub vni: Option<u32>,
    /// UDP destination port (4789 is the IANA one; Linux's default is 8472).
    pub port: u16,
    pub external: bool,
    pub learning: bool,
    pub local: Option<IpAddr>,
    /// Underlay device index.
    pub dev: Option<u32>,
}

/// A device to create: a kind plus the settings every kind shares.
#[derive(Debug, Clone)]
pub struct NewLink<'n> {
    name: String,
    msg: LinkMessage,
    /// Namespaces whose fds the message carries: they must stay open until it is sent.
    _netns: Vec<&'n Netns>,
    describe: String,
}

impl<'n> NewLink<'n> {
    /// A device of `kind` with kind-specific `data`: what every kind constructor calls.
    pub fn of_kind(name: &str, kind: InfoKind, data: Option<InfoData>) -> Self {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let mut info = vec![LinkInfo::Kind(kind.clone())];
        info.extend(data.map(LinkInfo::Data));
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        Self {
            name: name.to_owned(),
            msg,
            _netns: Vec::new(),
            describe: format!("link add {name} type {kind}"),
        }
    }

    /// A veth pair: this end named `name`, the other described by `peer`.
    pub fn veth(name: &str, peer: Peer<'n>) -> Self {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.name.clone()));
        if let Some(mac) = peer.mac {
            p.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(ns) = peer.netns {
            p.attributes
                .push(LinkAttribute::NetNsFd(ns.fd().as_raw_fd()));
        }
        let mut link = Self::of_kind(
            name,
            InfoKind::Veth,
            Some(InfoData::Veth(InfoVeth::Peer(p))),
        );
        link.describe.push_str(&format!(" peer name {}", peer.name));
        if let Some(ns) = peer.netns {
            link.describe.push_str(&format!(" netns {}", ns.name()));
            link._netns.push(ns);
        }
        link
    }

    /// A VXLAN device. Its outer UDP checksum is always zero (`udpcsum` off): the inner
    /// packet carries its own, and checksum offload on a tunnel device is what delayed
    /// Calico's VXLAN traffic by 63 seconds (calico#3145).
    pub fn vxlan(name: &str, v: &Vxlan) -> Self {
        let mut d = Vec::new();
        if let Some(vni) = v.vni {
            d.push(InfoVxlan::Id(vni));
        }
        d.push(InfoVxlan::Port(v.port));
        d.push(InfoVxlan::UDPCsum(false));
        d.push(InfoVxlan::Learning(v.learning));
        if v.external {
            d.push(InfoVxlan::CollectMetadata(true));
        }
        match v.local {
            Some(IpAddr::V4(a)) => d.push(InfoVxlan::Local(a)),
            Some(IpAddr::V6(a)) => d.push(InfoVxlan::Local6(a)),
            None => {}
        }
        if let Some(dev) = v.dev {
            d.push(InfoVxlan::Link(dev));
        }
        Self::of_kind(name, InfoKind::Vxlan, Some(InfoData::Vxlan(d)))
    }

    /// A bridge: a switch joining the devices whose master it is. STP stays off (the kernel's
    /// default), so a port forwards as soon as it is up.
    pub fn bridge(name: &str) -> Self {
        Self::of_kind(name, InfoKind::Bridge, None)
    }

    /// Create it as a port of the bridge with index `bridge` (`IFLA_MASTER`).
    pub fn master(mut self, bridge: u32) -> Self {
        self.msg.attributes.push(LinkAttribute::Controller(bridge));
        self.describe.push_str(&format!(" master {bridge}"));
        self
    }

    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.msg
            .attributes
            .push(LinkAttribute::Address(mac.to_vec()));
        self
    }

    pub fn mtu(mut self, mtu: u32) -> Self {
        self.msg.attributes.push(LinkAttribute::Mtu(mtu));
        self
    }

    /// Create the device directly in `ns` (rather than the socket's namespace).
    pub fn netns(mut self, ns: &'n Netns) -> Self {
        self.msg
            .attributes
            .push(LinkAttribute::NetNsFd(ns.fd().as_raw_fd()));
        self.describe.push_str(&format!(" netns {}", ns.name()));
        self._netns.push(ns);
        self
    }

    /// Create it up.
    pub fn up(mut self) -> Self {
        self.msg.header.flags |= LinkFlags::Up;
        self.msg.header.change_mask |= LinkFlags::Up;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// How a request names a device.
fn by_name(name: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    msg
}

fn by_index(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

fn link_of(m: RouteNetlinkMessage, request: &dyn Fn() -> String) -> Result<Link> {
    match m {
        RouteNetlinkMessage::NewLink(l) => Ok(Link::from_message(&l)),
        other => Err(NetlinkError::Decode {
            request: request(),
            detail: format!("expected a link, got {other:?}"),
        }),
    }
}

impl Netlink {
    /// Every device in the namespace (without statistics: they are most of each record).
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let what = || "link show".to_owned();
        self.dump(RouteNetlinkMessage::GetLink(msg), &what)?
            .into_iter()
            .map(|m| link_of(m, &what))
            .collect()
    }

    /// Every device's (index, name), and nothing else: the fast way to resolve many names
    /// (parsing whole records costs far more than reading the two fields).
    pub fn link_names(&mut self) -> Result<Vec<(u32, String)>> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let what = || "link show".to_owned();
        let mut out = Vec::new();
        self.dump_raw(RouteNetlinkMessage::GetLink(msg), &what, |_, payload| {
            let bad = |detail: String| NetlinkError::Decode {
                request: what(),
                detail,
            };
            // struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
            let header = payload
                .get(..IFINFOMSG_LEN)
                .ok_or_else(|| bad(format!("a {}-byte link record", payload.len())))?;
            let index = u32::from_ne_bytes(header[4..8].try_into().expect("4 bytes"));
            for nla in NlasIterator::new(&payload[IFINFOMSG_LEN..]) {
                let nla = nla.map_err(|e| bad(e.to_string()))?;
                if nla.kind() == IFLA_IFNAME {
                    let v = nla.value();
                    let name = v.split(|&b| b == 0).next().unwrap_or(v);
                    out.push((index, String::from_utf8_lossy(name).into_owned()));
                    break;
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The device named `name`; None when there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = by_name(name);
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        self.get_link(msg, &|| format!("link show dev {name}"))
    }

    /// The device with index `index`; None when there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut msg = by_index(index);
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        self.get_link(msg, &|| format!("link show index {index}"))
    }

    fn get_link(&mut self, msg: LinkMessage, what: &dyn Fn() -> String) -> Result<Option<Link>> {
        match self.get(RouteNetlinkMessage::GetLink(msg), what) {
            Ok(Some(m)) => link_of(m, what).map(Some),
            Ok(None) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of the device named `name`, or a not-found error naming it.
    pub fn index_of(&mut self, name: &str) -> Result<u32> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::Kernel {
                request: format!("link show dev {name}"),
                source: std::io::Error::from_raw_os_error(libc::ENODEV),
            })
    }

    /// Creates a device (fails if the name is taken).
    pub fn add_link(&mut self, link: &NewLink<'_>) -> Result<()> {
        let describe = link.describe.clone();
        self.change(
            RouteNetlinkMessage::NewLink(link.msg.clone()),
            CREATE,
            &|| describe.clone(),
        )
    }

    /// Deletes a device (for a veth, both ends).
    pub fn del_link(&mut self, name: &str) -> Result<()> {
        self.change(RouteNetlinkMessage::DelLink(by_name(name)), 0, &|| {
            format!("link del {name}")
        })
    }

    /// Sets a device up or down.
    pub fn set_up(&mut self, name: &str, up: bool) -> Result<()> {
        let mut msg = by_name(name);
        if up {
            msg.header.flags |= LinkFlags::Up;
        }
        msg.header.change_mask |= LinkFlags::Up;
        let state = if up { "up" } else { "down" };
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("link set {name} {state}")
        })
    }

    /// Waits until the device is operationally up. Until then a veth drops what it is
    /// given (no qdisc yet), so a first packet sent right after creation could be lost.
    pub fn wait_oper_up(&mut self, name: &str, timeout: std::time::Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let link = self.link(name)?;
            if link.as_ref().is_some_and(|l| l.oper_up) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(NetlinkError::Kernel {
                    request: format!("waiting for {name} to come up"),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Moves a device into another namespace (its index may change there).
    pub fn set_netns(&mut self, name: &str, ns: &Netns) -> Result<()> {
        let mut msg = by_name(name);
        msg.attributes
            .push(LinkAttribute::NetNsFd(ns.fd().as_raw_fd()));
        self.change(RouteNetlinkMessage::SetLink(msg), 0, &|| {
            format!("link set {name} netns {}", ns.name())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_bad_ones_do_not() {
        assert_eq!(
            parse_mac("ee:ee:ee:ee:ee:0f"),
            Some([0xee, 0xee, 0xee, 0xee, 0xee, 0x0f])
        );
        assert_eq!(parse_mac("ee:ee:ee:ee:ee"), None);
        assert_eq!(parse_mac("ee:ee:ee:ee:ee:ee:ee"), None);
        assert_eq!(parse_mac("zz:ee:ee:ee:ee:ee"), None);
    }

    #[test]
    fn a_veth_request_carries_the_peer_and_its_settings() {
        let l = NewLink::veth("h0", Peer::new("eth0").mac([2, 0, 0, 0, 0, 1]))
            .mac([0xee; 6])
            .up();
        assert!(l.msg.header.flags.contains(LinkFlags::Up));
        let info = l
            .msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i),
                _ => None,
            })
            .unwrap();
        assert_eq!(info[0], LinkInfo::Kind(InfoKind::Veth));
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = &info[1] else {
            panic!("{info:?}")
        };
        assert!(p.attributes.contains(&LinkAttribute::IfName("eth0".into())));
        assert!(
            p.attributes
                .contains(&LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]))
        );
        assert_eq!(l.describe, "link add h0 type veth peer name eth0");
    }
}
