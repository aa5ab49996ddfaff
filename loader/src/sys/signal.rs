//! Turning Ctrl-C (SIGINT) and SIGTERM into a call on a dedicated thread.
//!
//! A signal handler may do almost nothing, but removing a topology means talking to the
//! kernel and waiting for it. signal-hook's handler only records the signal (and wakes a
//! pipe); one thread waits on its iterator and runs the teardown, where any code may run.
//! Handlers are reset on exec, so child processes still see Ctrl-C as usual.

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Starts a thread that calls `on_signal` with the signal number when the first SIGINT or
/// SIGTERM arrives. The handler stays registered afterwards, so a second signal during the
/// teardown does not kill the process halfway through it.
pub fn on_termination(on_signal: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                on_signal(sig);
            }
        })?;
    Ok(())
}
