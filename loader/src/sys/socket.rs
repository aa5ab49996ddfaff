//! Socket queries that neither std nor nix offer.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// How many segments the kernel retransmitted on this connection (`tcpi_total_retrans` of
/// `TCP_INFO`): a stall under a datapath swap shows up here.
pub fn tcp_total_retrans(s: &TcpStream) -> io::Result<u32> {
    // SAFETY: tcp_info is plain integers; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a live tcp_info of `len` bytes; the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.tcpi_total_retrans)
}
