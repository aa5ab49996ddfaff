//! Socket helpers of the real-traffic tests, run inside a named network namespace.

use sluice_loader::sys::netns::Netns;
use std::net::Ipv4Addr;
use std::time::Duration;

/// One echo request from `ns` to `to` over a ping socket: true when the reply came.
pub fn ping(ns: &str, to: Ipv4Addr, timeout: Duration) -> bool {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recv, sendto,
        setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    Netns::open(ns)
        .unwrap()
        .run(|| {
            let s = socket(
                AddressFamily::Inet,
                SockType::Datagram,
                SockFlag::empty(),
                SockProtocol::Icmp,
            )
            .unwrap();
            let tv = nix::sys::time::TimeVal::new(timeout.as_secs().max(1) as i64, 0);
            setsockopt(&s, sockopt::ReceiveTimeout, &tv).unwrap();
            let req = [8u8, 0, 0, 0, 0, 0, 0, 1, b's', b'l', b'c', b'e'];
            let addr = SockaddrIn::from(std::net::SocketAddrV4::new(to, 0));
            sendto(s.as_raw_fd(), &req, &addr, MsgFlags::empty()).unwrap();
            let mut buf = [0u8; 64];
            matches!(recv(s.as_raw_fd(), &mut buf, MsgFlags::empty()), Ok(n) if n >= 8 && buf[0] == 0)
        })
        .unwrap()
}

/// Writes `/proc/sys/{key}` inside `ns`.
pub fn sysctl(ns: &str, key: &str, value: &str) {
    Netns::open(ns)
        .unwrap()
        .run(|| std::fs::write(format!("/proc/sys/{key}"), value))
        .unwrap()
        .unwrap_or_else(|e| panic!("{key} in {ns}: {e}"));
}
