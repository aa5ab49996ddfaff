//! Links, addresses, routes, neighbours and namespaces through rtnetlink, with no `ip`
//! processes.
//!
//! A [`Netlink`] is a route-netlink socket. A socket belongs to the network namespace it
//! was opened in for its whole life, whichever thread uses it later, so
//! [`Netlink::open_in`] visits a namespace once (one short-lived thread) and every request
//! afterwards acts there. Requests are synchronous: each waits for the kernel's
//! acknowledgement, so an error names the request that failed.
//!
//! The typed pieces live in submodules: [`link`] (list, create, delete, up/down, move to a
//! namespace; veth and VXLAN kinds), [`addr`], [`route`] and [`neigh`]. Named namespaces
//! (`/run/netns/NAME`, as `ip netns add` makes them) are [`Netns`].

pub mod addr;
pub mod link;
pub mod neigh;
pub mod route;

use std::io;
use std::os::fd::AsFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, ParseableParametrized,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

pub use crate::sys::netns::{Netns, remove_named as remove_netns};
pub use addr::Address;
pub use link::{Link, NewLink, Peer, Vxlan};
pub use neigh::Neighbour;
pub use route::Route;

/// What went wrong talking to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Opening, binding or using the socket failed.
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused a request (`errno` in the source).
    #[error("{request}: {source}")]
    Kernel {
        request: String,
        #[source]
        source: io::Error,
    },
    /// The kernel's answer could not be read.
    #[error("{request}: malformed reply: {detail}")]
    Decode { request: String, detail: String },
    /// Entering or opening a namespace failed.
    #[error("netns {netns}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: io::Error,
    },
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The object named by the request does not exist (ENODEV, ENOENT, ESRCH).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH)
        )
    }
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

/// A route-netlink socket in one network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("seq", &self.seq).finish()
    }
}

/// Receive buffer: the kernel sends dump parts of up to 32 KiB; a larger buffer takes more.
const RECV_BUF: usize = 64 * 1024;

impl Netlink {
    /// A socket in the calling thread's namespace.
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        // Errors name the attribute the kernel disliked.
        let _ = sock.set_ext_ack(true);
        Ok(Self {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// A socket in `ns` (one visit: a helper thread enters it and opens the socket).
    pub fn open_in(ns: &Netns) -> Result<Self> {
        ns.run(Self::open).map_err(|source| NetlinkError::Netns {
            netns: ns.name().to_owned(),
            source,
        })?
    }

    /// A socket in the namespace named `name` under /run/netns, or in the calling thread's
    /// own when `None`.
    pub fn open_named(name: Option<&str>) -> Result<Self> {
        match name {
            None => Self::open(),
            Some(n) => {
                let ns = Netns::open(n).map_err(|source| NetlinkError::Netns {
                    netns: n.to_owned(),
                    source,
                })?;
                Self::open_in(&ns)
            }
        }
    }

    /// The cookie of this socket's namespace: it identifies the namespace for the kernel's
    /// uptime, so a namespace recreated under the same name has another.
    pub fn netns_cookie(&self) -> Result<u64> {
        crate::sys::netns::netns_cookie(self.sock.as_fd()).map_err(NetlinkError::Socket)
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.sock.send(&bytes, 0).map_err(NetlinkError::Socket)?;
        Ok(self.seq)
    }

    /// Reads replies to request `seq` until `Done` or an error/ack, handing the type and
    /// payload of every other message to `each` (which may parse only what it needs).
    fn receive_raw(
        &mut self,
        seq: u32,
        request: &dyn Fn() -> String,
        mut each: impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let decode = |detail: String| NetlinkError::Decode {
            request: request(),
            detail,
        };
        loop {
            self.buf.clear();
            self.buf.reserve(RECV_BUF);
            let n = self
                .sock
                .recv(&mut self.buf, 0)
                .map_err(NetlinkError::Socket)?;
            if n > self.buf.len() {
                return Err(decode(format!(
                    "a {n}-byte datagram did not fit the buffer"
                )));
            }
            let mut off = 0;
            while off < n {
                let msg = NetlinkBuffer::new_checked(&self.buf[off..n])
                    .map_err(|e| decode(e.to_string()))?;
                let len = msg.length() as usize; // at least a header: checked above
                let (kind, msg_seq) = (msg.message_type(), msg.sequence_number());
                let whole = &self.buf[off..off + len];
                off += len.next_multiple_of(4);
                if msg_seq != seq {
                    continue; // a late answer to an earlier request
                }
                match kind {
                    NLMSG_DONE | NLMSG_ERROR => {}
                    NLMSG_NOOP | NLMSG_OVERRUN => continue,
                    _ => {
                        each(kind, msg.payload())?;
                        continue;
                    }
                }
                let end = NetlinkMessage::<RouteNetlinkMessage>::deserialize(whole)
                    .map_err(|e| decode(e.to_string()))?;
                return match end.payload {
                    NetlinkPayload::Done(d) if d.code < 0 => Err(NetlinkError::Kernel {
                        request: request(),
                        source: io::Error::from_raw_os_error(-d.code),
                    }),
                    NetlinkPayload::Error(e) if e.code.is_some() => Err(NetlinkError::Kernel {
                        request: request(),
                        source: e.to_io(),
                    }),
                    _ => Ok(()), // the end of a dump, or the acknowledgement
                };
            }
        }
    }

    /// [`Self::receive_raw`], every message parsed whole.
    fn receive(
        &mut self,
        seq: u32,
        request: &dyn Fn() -> String,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<()> {
        self.receive_raw(seq, request, |kind, payload| {
            let m = RouteNetlinkMessage::parse_with_param(payload, kind).map_err(|e| {
                NetlinkError::Decode {
                    request: request(),
                    detail: e.to_string(),
                }
            })?;
            each(m);
            Ok(())
        })
    }

    /// Sends one change (new/set/del) and waits for the kernel's acknowledgement.
    pub(crate) fn change(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        request: &dyn Fn() -> String,
    ) -> Result<()> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        tracing::trace!(request = %request(), "netlink");
        self.receive(seq, request, |_| {})
    }

    /// A dump request: every object of a kind.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        request: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.receive(seq, request, |m| out.push(m))?;
        Ok(out)
    }

    /// A dump request whose replies `each` reads raw (type, payload).
    pub(crate) fn dump_raw(
        &mut self,
        msg: RouteNetlinkMessage,
        request: &dyn Fn() -> String,
        each: impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        self.receive_raw(seq, request, each)
    }

    /// A get request for one object.
    pub(crate) fn get(
        &mut self,
        msg: RouteNetlinkMessage,
        request: &dyn Fn() -> String,
    ) -> Result<Option<RouteNetlinkMessage>> {
        // With ACK the kernel follows the object with an acknowledgement: the end marker.
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK)?;
        let mut out = None;
        self.receive(seq, request, |m| out = Some(m))?;
        Ok(out)
    }
}

/// Flags of a create request: fail if it exists (`ip ... add`).
pub(crate) const CREATE: u16 = netlink_packet_core::NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL;
/// Flags of a create-or-replace request (`ip ... replace`).
pub(crate) const REPLACE: u16 =
    netlink_packet_core::NLM_F_CREATE | netlink_packet_core::NLM_F_REPLACE;
