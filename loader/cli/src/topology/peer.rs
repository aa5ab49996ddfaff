//! Servers that tell each client the address they see it from, and the clients that read it.
//!
//! Masquerade is only visible from the far end: whether the router accepted a connection from
//! the node's IP or from the pod's. The masquerade tests and `sluice demo` both need that
//! answer on real sockets, so the server and its client live here, once.

use sluice_loader::sys::netns::Netns;
use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// TCP and UDP servers in a namespace that answer each peer with its address as they see
/// it (`a.b.c.d:port`, then a newline on TCP). Dropping it stops them.
pub struct PeerEcho {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl PeerEcho {
    /// Listens on TCP `port` (all addresses) in `ns`, and on UDP `port` of each address of
    /// `udp_on`, one socket each, so a reply leaves from the address the datagram was sent to.
    /// With `echo`, each TCP connection then echoes what it gets until the peer closes;
    /// otherwise the server closes first (TIME_WAIT stays on its side, so a client reuses its
    /// ports at once).
    pub fn serve(
        ns: &str,
        port: u16,
        udp_on: &[Ipv4Addr],
        echo: bool,
    ) -> std::io::Result<PeerEcho> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp, udps) = Netns::open(ns)?.run(|| -> std::io::Result<_> {
            let t = TcpListener::bind(("0.0.0.0", port))?;
            let u: Vec<UdpSocket> = udp_on
                .iter()
                .map(|a| UdpSocket::bind((*a, port)))
                .collect::<Result<_, _>>()?;
            Ok((t, u))
        })??;
        // accept() waits at most 100 ms (SO_RCVTIMEO), so the thread sees `stop`.
        let tv = nix::sys::time::TimeVal::new(0, 100_000);
        nix::sys::socket::setsockopt(&tcp, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
            .map_err(std::io::Error::from)?;
        let s = stop.clone();
        let mut threads = vec![std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok((mut c, peer)) = tcp.accept() {
                    std::thread::spawn(move || {
                        let _ = c.write_all(format!("{peer}\n").as_bytes());
                        if !echo {
                            return;
                        }
                        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                        let mut buf = [0u8; 64];
                        while let Ok(n @ 1..) = c.read(&mut buf) {
                            let _ = c.write_all(&buf[..n]);
                        }
                    });
                }
            }
        })];
        for udp in udps {
            udp.set_read_timeout(Some(Duration::from_millis(100)))?;
            let s = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !s.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                        let _ = udp.send_to(peer.to_string().as_bytes(), peer);
                    }
                }
            }));
        }
        Ok(PeerEcho { stop, threads })
    }
}

impl Drop for PeerEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The first line a connection receives.
pub fn first_line(c: &TcpStream) -> Option<String> {
    let mut line = String::new();
    std::io::BufReader::new(c).read_line(&mut line).ok()?;
    Some(line.trim_end().to_owned())
}

/// A TCP connection from `ns` to a [`PeerEcho`] at `to:port`, and the peer address the server
/// saw (None: no connection, or no answer within `timeout`).
pub fn tcp_open(
    ns: &str,
    to: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> std::io::Result<Option<(TcpStream, SocketAddrV4)>> {
    Netns::open(ns)?.run(|| {
        let c = TcpStream::connect_timeout(&SocketAddr::from((to, port)), timeout).ok()?;
        c.set_read_timeout(Some(timeout)).ok()?;
        let peer = first_line(&c)?.parse().ok()?;
        Some((c, peer))
    })
}

/// What a [`PeerEcho`] at `to:port` saw as the peer of a TCP connection from `ns`.
pub fn tcp_peer(
    ns: &str,
    to: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> std::io::Result<Option<SocketAddrV4>> {
    Ok(tcp_open(ns, to, port, timeout)?.map(|(_, peer)| peer))
}
