//! The BPF filesystem: is it mounted, and mount it when it is not.
//!
//! Pins live on bpffs; a fresh machine or container may not have it mounted at /sys/fs/bpf.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

/// Whether `path` is on a bpffs mount.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = cpath(path)?;
    // SAFETY: statfs is plain old data, fully written by the kernel on success.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated and st is a valid out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Mounts a bpffs at `path` (which must exist).
pub fn mount_bpffs(path: &Path) -> io::Result<()> {
    let target = cpath(path)?;
    let fstype = c"bpf";
    // SAFETY: all strings are NUL-terminated and outlive the call; data is null.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mount -t bpf bpf {}: {e}", path.display()),
        ));
    }
    Ok(())
}

/// Takes an exclusive `flock` on `file`, waiting for it; released when the file is closed.
pub fn lock_exclusive(file: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid open fd.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
