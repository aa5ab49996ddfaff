//! Turning Ctrl-C (SIGINT) and SIGTERM into a call on a dedicated thread.
//!
//! A signal handler may do almost nothing, but removing a topology means running `ip` and
//! waiting for it. So the signals are blocked in the calling thread (and every thread it
//! starts afterwards inherits the mask) and one thread takes them with `sigwait(2)`, where
//! any code may run. Child processes get a clean mask from std's `Command`, so `ip` still
//! sees Ctrl-C as usual.

use std::io;

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread and starts a thread that calls
/// `on_signal` with the signal number when one arrives. Call it before starting any other
/// thread, or those threads keep the default disposition and the process dies unhandled.
pub fn on_termination(on_signal: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    let set = termination_set();
    // SAFETY: pthread_sigmask with a valid set; only this thread's mask changes.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait with a valid set and out pointer; the signals are blocked in
            // every thread started after on_termination, so they queue for this call.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc == 0 {
                on_signal(sig);
            }
        })?;
    Ok(())
}
