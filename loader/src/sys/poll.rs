//! Waiting on several sockets at once with `poll(2)`.
//!
//! The probe servers serve every port of a pod from one thread, and must wake up at once when
//! they are told to stop; std has no portable readiness API, so this is the one raw call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Blocks until at least one of `fds` is readable or `timeout` passes, and returns which are
/// readable (same order as `fds`). EINTR counts as "nothing ready".
pub fn readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: pfds is a valid, exclusively borrowed array of pfds.len() pollfd structs, and
    // every fd in it is borrowed for the duration of the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
        .collect())
}
