//! The BPF filesystem: is it mounted, and mount it when it is not.
//!
//! Pins live on bpffs; a fresh machine or container may not have it mounted at /sys/fs/bpf.

use std::io;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};

/// Whether `path` is on a bpffs mount.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    Ok(statfs(path)?.filesystem_type() == BPF_FS_MAGIC)
}

/// Mounts a bpffs at `path` (which must exist).
pub fn mount_bpffs(path: &Path) -> io::Result<()> {
    mount(
        Some("bpf"),
        path,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("mount -t bpf bpf {}: {e}", path.display()),
        )
    })
}

/// Takes an exclusive `flock` on `file`, waiting for it; released when the file is closed.
pub fn lock_exclusive(file: &std::fs::File) -> io::Result<()> {
    file.lock()
}
