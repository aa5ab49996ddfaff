//! Network namespaces by name (`/run/netns/NAME`, as `ip netns` makes them).
//!
//! A thread can move itself into a network namespace with `setns(2)`; sockets it opens there
//! stay in that namespace for their whole life, whichever thread uses them later (the
//! netlink layer relies on this). Interface names and indexes are also resolved in the
//! calling thread's namespace, which is why the loader attaches programs from a thread that
//! entered the node namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

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
        nix::sched::setns(&self.fd, CloneFlags::CLONE_NEWNET).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("setns into netns {}: {e}", self.name),
            )
        })
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

impl Netns {
    /// Creates a named namespace the way `ip netns add` does, so `ip -n NAME` sees it: a
    /// fresh network namespace bind-mounted at `/run/netns/NAME` (that directory made a
    /// shared mount, so the name is visible from other mount namespaces too). Fails with
    /// `AlreadyExists` when the name is taken.
    pub fn create(name: &str) -> io::Result<Self> {
        let path = named_path(name)?;
        share_run_dir()?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", path.display())))?;
        // unshare moves only this (fresh) thread; /proc/thread-self names its namespace.
        let made = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
                nix::mount::mount(
                    Some(Path::new("/proc/thread-self/ns/net")),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
            })
            .join()
            .unwrap_or(Err(nix::Error::EINVAL))
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("netns add {name}: {e}"),
            ));
        }
        Self::open(name)
    }

    /// The underlying namespace file descriptor (for `IFLA_NET_NS_FD`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// Deletes a named namespace (`ip netns del`): the bind mount and its file. The namespace
/// itself lives on while anything (a socket, a process, an open handle) still holds it.
pub fn remove_named(name: &str) -> io::Result<()> {
    let path = named_path(name)?;
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) => {} // EINVAL: not a mount point (half-made)
        Err(nix::Error::ENOENT) => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("netns {name} does not exist"),
            ));
        }
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("umount {}: {e}", path.display()),
            ));
        }
    }
    std::fs::remove_file(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("remove {}: {e}", path.display())))
}

fn named_path(name: &str) -> io::Result<PathBuf> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid netns name {name:?}"),
        ));
    }
    Ok(Path::new(NETNS_RUN_DIR).join(name))
}

/// Makes /run/netns exist and be a shared mount point, as iproute2 does: mounts made
/// under it then propagate to mount namespaces created later (`ip netns exec`).
fn share_run_dir() -> io::Result<()> {
    // Once per process, and never from two threads at once: two racing "bind it onto itself"
    // steps would stack two mounts on the directory.
    static SHARED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if !*done {
        make_run_dir_shared()?;
        *done = true;
    }
    Ok(())
}

fn make_run_dir_shared() -> io::Result<()> {
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir)?;
    let shared = |what: &str| {
        nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}")))
    };
    match shared("mount --make-rshared /run/netns") {
        Ok(()) => Ok(()),
        Err(_) => {
            // Not a mount point yet: bind it onto itself first (what iproute2 does on EINVAL).
            nix::mount::mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| io::Error::other(format!("mount --bind /run/netns: {e}")))?;
            shared("mount --make-rshared /run/netns")
        }
    }
}

/// `SO_NETNS_COOKIE` (asm-generic; x86_64 and aarch64 use the generic numbers).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace `sock` lives in: a 64-bit id the kernel never reuses
/// while it runs (unlike a namespace's inode number), so a namespace deleted and recreated
/// under the same name has another.
pub fn netns_cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, a live u64.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("SO_NETNS_COOKIE: {e}")));
    }
    Ok(cookie)
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

/// The index of each of `names` in the calling thread's namespace, through one socket and
/// one `SIOCGIFINDEX` ioctl per name (a hash look-up in the kernel, a microsecond or two).
/// Everything else about links goes through `crate::netlink`; this stays because netlink
/// answers with each device's whole record. Measured in release on 2,000 veths: these
/// ioctls take 2.3 ms, one RTM_GETLINK per name 33-35 ms, a dump about 30 ms.
pub fn if_indexes<'n>(
    names: impl IntoIterator<Item = &'n str>,
) -> io::Result<Vec<io::Result<u32>>> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok(names
        .into_iter()
        .map(|name| {
            let bytes = name.as_bytes();
            if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("interface {name}: invalid name"),
                ));
            }
            // SAFETY: ifreq is plain data; zero is a valid value.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
                *d = *s as libc::c_char;
            }
            // SAFETY: SIOCGIFINDEX reads ifr_name (NUL-terminated: zeroed above) and writes
            // ifr_ifindex inside `req`.
            let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("interface {name}: {e}")));
            }
            // SAFETY: on success the kernel filled the ifindex member of the union.
            Ok(unsafe { req.ifr_ifru.ifru_ifindex } as u32)
        })
        .collect())
}
