//! Real sockets inside the box: echo servers in a namespace, and probes from another.
//!
//! A thread enters the namespace with `setns` and opens its sockets there; they stay in that
//! namespace. Servers echo what they receive (TCP until EOF, UDP per datagram, answered from the
//! address it was sent to), so a probe proves the path in both directions. [`probe_many`] runs probes on a pool of threads, so
//! a hundred probes that mostly time out still finish in a few seconds.

use std::collections::HashMap;
use std::io::{self, ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn};

use sluice_loader::sys::netns::Netns;
use sluice_loader::sys::poll;

/// Transport protocol of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// What a probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeOutcome {
    /// Handshake (TCP) and echo came back.
    Connected,
    /// TCP RST to the SYN, or ICMP port unreachable for UDP.
    Refused,
    /// The TCP connection was established, then reset before the echo.
    Reset,
    /// Nothing came back in time (what a dropping policy looks like).
    TimedOut,
    /// ICMP host/net unreachable, or no route.
    Unreachable,
}

/// A probe or server that could not even be tried.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("netns {netns}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} in netns {netns}: {source}")]
    Socket {
        what: String,
        netns: String,
        #[source]
        source: io::Error,
    },
}

/// One probe to run with [`probe_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub from_netns: String,
    pub to: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
}

const POOL: usize = 64;
const UDP_RESEND: Duration = Duration::from_millis(200);

fn netns_err(netns: &str) -> impl FnOnce(io::Error) -> ProbeError + '_ {
    move |source| ProbeError::Netns {
        netns: netns.to_owned(),
        source,
    }
}

/// Probes `to:port` from inside `from_netns`.
pub fn probe(
    from_netns: &str,
    to: Ipv4Addr,
    port: u16,
    proto: Proto,
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let ns = Netns::open(from_netns).map_err(netns_err(from_netns))?;
    ns.run(|| probe_here(from_netns, to, port, proto, timeout))
        .map_err(netns_err(from_netns))?
}

/// Runs all `probes` in parallel (bounded pool) and returns outcomes in the same order.
pub fn probe_many(probes: &[Probe], timeout: Duration) -> Vec<Result<ProbeOutcome, ProbeError>> {
    let mut handles: HashMap<&str, Result<Netns, io::Error>> = HashMap::new();
    for p in probes {
        handles
            .entry(p.from_netns.as_str())
            .or_insert_with(|| Netns::open(&p.from_netns));
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..POOL.min(probes.len()) {
            let tx = tx.clone();
            let (next, handles) = (&next, &handles);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = probes.get(i) else { break };
                    let r = match &handles[p.from_netns.as_str()] {
                        Err(e) => Err(ProbeError::Netns {
                            netns: p.from_netns.clone(),
                            source: io::Error::new(e.kind(), e.to_string()),
                        }),
                        Ok(ns) => ns.enter().map_err(netns_err(&p.from_netns)).and_then(|()| {
                            probe_here(&p.from_netns, p.to, p.port, p.proto, timeout)
                        }),
                    };
                    let _ = tx.send((i, r));
                }
            });
        }
    });
    drop(tx);
    let mut out: Vec<Option<Result<ProbeOutcome, ProbeError>>> =
        (0..probes.len()).map(|_| None).collect();
    for (i, r) in rx {
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.expect("every probe reports once"))
        .collect()
}

fn classify(e: &io::Error) -> Option<ProbeOutcome> {
    match e.kind() {
        ErrorKind::ConnectionRefused => Some(ProbeOutcome::Refused),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Some(ProbeOutcome::Reset)
        }
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Some(ProbeOutcome::TimedOut),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
            Some(ProbeOutcome::Unreachable)
        }
        _ => None,
    }
}

fn nonce(port: u16) -> Vec<u8> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sluice-probe {} {} {port}\n",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

/// A probe from the calling thread's current namespace.
fn probe_here(
    netns: &str,
    to: Ipv4Addr,
    port: u16,
    proto: Proto,
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let deadline = Instant::now() + timeout;
    let sock_err = |what: &str, source: io::Error| ProbeError::Socket {
        what: format!("{what} {proto} {to}:{port}"),
        netns: netns.to_owned(),
        source,
    };
    let dst = SocketAddr::V4(SocketAddrV4::new(to, port));
    let msg = nonce(port);
    match proto {
        Proto::Tcp => {
            let mut s = match TcpStream::connect_timeout(&dst, timeout) {
                Ok(s) => s,
                Err(e) => return classify(&e).ok_or_else(|| sock_err("connect", e)),
            };
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let io = (|| {
                s.set_read_timeout(Some(left))?;
                s.set_write_timeout(Some(left))?;
                s.write_all(&msg)?;
                let mut buf = vec![0; msg.len()];
                s.read_exact(&mut buf)?;
                Ok::<_, io::Error>(buf)
            })();
            match io {
                Ok(buf) if buf == msg => Ok(ProbeOutcome::Connected),
                Ok(_) => Err(sock_err(
                    "echo",
                    io::Error::new(ErrorKind::InvalidData, "echo did not match"),
                )),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(ProbeOutcome::Reset),
                Err(e) => classify(&e).ok_or_else(|| sock_err("echo", e)),
            }
        }
        Proto::Udp => {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| sock_err("bind", e))?;
            s.connect(dst).map_err(|e| sock_err("connect", e))?;
            let mut buf = vec![0; 512];
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(ProbeOutcome::TimedOut);
                }
                match s.send(&msg) {
                    Ok(_) => {}
                    Err(e) => return classify(&e).ok_or_else(|| sock_err("send", e)),
                }
                // Resend now and then: one lost datagram should not read as a drop.
                let wait_until = (now + UDP_RESEND).min(deadline);
                loop {
                    let left = wait_until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s.set_read_timeout(Some(left))
                        .map_err(|e| sock_err("set timeout", e))?;
                    match s.recv(&mut buf) {
                        Ok(n) if buf[..n] == msg[..] => return Ok(ProbeOutcome::Connected),
                        Ok(_) => continue, // a late echo of someone else's probe
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            break;
                        }
                        Err(e) => return classify(&e).ok_or_else(|| sock_err("recv", e)),
                    }
                }
            }
        }
    }
}

/// Echo servers for a set of ports in one namespace, served by one thread. Stopped on drop.
#[derive(Debug)]
pub struct Servers {
    netns: String,
    ports: Vec<(u16, Proto)>,
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

enum Sock {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Servers {
    /// Binds `0.0.0.0:port` for each (port, proto) inside `netns` and starts serving.
    pub fn start(netns: &str, ports: &[(u16, Proto)]) -> Result<Self, ProbeError> {
        let ns = Netns::open(netns).map_err(netns_err(netns))?;
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(netns_err(netns))?;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ProbeError>>();
        let name = netns.to_owned();
        let list = ports.to_vec();
        let thread = std::thread::Builder::new()
            .name(format!("serve-{netns}"))
            .spawn(move || {
                if let Err(e) = ns.enter() {
                    let _ = ready_tx.send(Err(ProbeError::Netns {
                        netns: name,
                        source: e,
                    }));
                    return;
                }
                let mut socks = Vec::new();
                for &(port, proto) in &list {
                    let addr = (Ipv4Addr::UNSPECIFIED, port);
                    let r = match proto {
                        Proto::Tcp => TcpListener::bind(addr).map(Sock::Tcp),
                        Proto::Udp => UdpSocket::bind(addr)
                            .and_then(|u| want_pktinfo(&u).map(|()| u))
                            .map(Sock::Udp),
                    };
                    match r {
                        Ok(s) => socks.push(s),
                        Err(e) => {
                            let _ = ready_tx.send(Err(ProbeError::Socket {
                                what: format!("bind {proto} port {port}"),
                                netns: name,
                                source: e,
                            }));
                            return;
                        }
                    }
                }
                let _ = ready_tx.send(Ok(()));
                serve(&name, &socks, &wake_rx);
            })
            .map_err(netns_err(netns))?;
        let ready = ready_rx.recv().unwrap_or_else(|_| {
            Err(ProbeError::Netns {
                netns: netns.to_owned(),
                source: io::Error::other("server thread died before binding"),
            })
        });
        let servers = Servers {
            netns: netns.to_owned(),
            ports: ports.to_vec(),
            wake: Some(wake_tx),
            thread: Some(thread),
        };
        ready.map(|()| servers)
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn ports(&self) -> &[(u16, Proto)] {
        &self.ports
    }

    /// Stops serving and closes every socket (also done on drop).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(mut w) = self.wake.take() {
            let _ = w.write_all(b"x");
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(netns: &str, socks: &[Sock], wake: &UnixStream) {
    let mut buf = vec![0u8; 2048];
    loop {
        let mut fds = vec![wake.as_fd()];
        fds.extend(socks.iter().map(|s| match s {
            Sock::Tcp(l) => l.as_fd(),
            Sock::Udp(u) => u.as_fd(),
        }));
        let ready = match poll::readable(&fds, Duration::from_secs(1)) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(netns, error = %e, "probe server poll failed");
                return;
            }
        };
        if ready[0] {
            return; // told to stop, or the owner is gone
        }
        for (sock, _) in socks.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
            match sock {
                Sock::Tcp(l) => {
                    if let Ok((conn, _)) = l.accept() {
                        // The accepted socket needs no netns; echo off this thread.
                        std::thread::spawn(move || echo_tcp(conn));
                    }
                }
                Sock::Udp(u) => {
                    if let Err(e) = echo_udp(u, &mut buf) {
                        tracing::debug!(netns, error = %e, "udp echo failed");
                    }
                }
            }
        }
    }
}

/// Asks for each datagram's destination address (`IP_PKTINFO`), so [`echo_udp`] can answer
/// from it.
fn want_pktinfo(u: &UdpSocket) -> io::Result<()> {
    socket::setsockopt(u, socket::sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)
}

/// Echoes one datagram from the address it was sent to. A socket bound to 0.0.0.0 on a
/// host with several addresses (the external host has one per probed IP) would answer from
/// the interface's first address, and the prober's connected socket ignores that reply.
fn echo_udp(u: &UdpSocket, buf: &mut [u8]) -> io::Result<()> {
    let fd = u.as_raw_fd();
    let mut control = nix::cmsg_space!(libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrIn>(fd, &mut iov, Some(&mut control), MsgFlags::empty())?;
    let (n, from) = (msg.bytes, msg.address);
    let local = msg.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::Ipv4PacketInfo(info) => Some(info.ipi_addr),
        _ => None,
    });
    let reply = local.map(|addr| libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: addr,
        ipi_addr: libc::in_addr { s_addr: 0 },
    });
    let cmsgs: Vec<ControlMessage<'_>> = reply.iter().map(ControlMessage::Ipv4PacketInfo).collect();
    socket::sendmsg(
        fd,
        &[IoSlice::new(&buf[..n])],
        &cmsgs,
        MsgFlags::empty(),
        from.as_ref(),
    )?;
    Ok(())
}

fn echo_tcp(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
