//! Network namespaces by name (`/run/netns/NAME`, as `ip netns` makes them).
//!
//! A thread can move itself into a network namespace with `setns(2)`; sockets it opens there
//! stay in that namespace for their whole life, whichever thread uses them later. Interface
//! names and indexes are also resolved in the calling thread's namespace, which is why the
//! loader attaches programs from a thread that entered the node namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Where `ip netns add` bind-mounts named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open handle on a named network namespace. Holding it keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    name: String,
    fd: OwnedFd,
}

impl Netns {
    /// Opens `/run/netns/NAME`.
    pub fn open(name: &str) -> io::Result<Self> {
        let path = PathBuf::from(NETNS_RUN_DIR).join(name);
        let file = File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
        Ok(Self {
            name: name.to_owned(),
            fd: file.into(),
        })
    }

    /// The namespace's name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread (only this thread) into the namespace.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: setns on a valid, owned fd; CLONE_NEWNET only changes this thread's netns.
        let rc = unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc == 0 {
            Ok(())
        } else {
            let e = io::Error::last_os_error();
            Err(io::Error::new(
                e.kind(),
                format!("setns into netns {}: {e}", self.name),
            ))
        }
    }

    /// Runs `f` on a fresh thread that first entered this namespace, and waits for it.
    /// `f` may borrow from the caller. A panic in `f` is re-raised here.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                self.enter()?;
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

/// Names of all namespaces under /run/netns (empty when the directory does not exist).
pub fn list_named() -> io::Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in dir {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Interface index of `name` in the calling thread's namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("interface {name}: {e}")))
    } else {
        Ok(idx)
    }
}

/// Name of the interface with index `index` in the calling thread's namespace.
pub fn if_name(index: u32) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("interface #{index}: {e}")));
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// Whether a process with this pid exists (used to spot leftovers of crashed runs).
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The kernel's largest pid (4194304 when it cannot be read, the kernel's ceiling).
pub fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304)
}
