//! `CLOCK_MONOTONIC`, the clock `bpf_ktime_get_ns` reads, so the loader can compare the
//! datapath's timestamps (NAT `last_seen`) with "now". std's `Instant` uses the same clock
//! but does not expose its nanoseconds.

use std::io;

/// Nanoseconds of `CLOCK_MONOTONIC` (the datapath's `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}
