//! The few `bpf(2)` commands aya 0.14 does not expose the way the swap needs them.
//!
//! aya's `attach_to_link` moves the link into the call and closes it if BPF_LINK_UPDATE
//! fails, which detaches the running program: the opposite of what an atomic swap promises.
//! So the loader keeps its link and updates it in place here, with `BPF_F_REPLACE` so the
//! update only happens if the link still runs the program we think it runs.
//!
//! Map elements are read and written here as plain byte slices (aya's typed maps need the
//! key and value types at compile time; bundle maps have their sizes in data). Every call
//! checks the slice lengths against the sizes the caller says the map has, so the kernel
//! never reads or writes past a buffer.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_F_REPLACE: u32 = 1 << 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr` for the BPF_MAP_*_ELEM and GET_NEXT_KEY commands.
#[repr(C)]
#[derive(Default)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64, // next_key for GET_NEXT_KEY
    flags: u64,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `union bpf_attr` for the *_GET_FD_BY_ID commands.
#[repr(C)]
#[derive(Default)]
struct GetFdById {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `map[key] = value` with raw bytes (for map contents the compiler wrote as data). The
/// caller makes the lengths match the map's key and value sizes.
pub fn map_update_elem(fd: BorrowedFd<'_>, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
    let mut attr = MapElem {
        map_fd: fd.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Reads `map[key]` into `value` (for per-CPU maps: value size rounded up to 8, times the
/// number of possible CPUs); `false` when the key is absent.
pub fn map_lookup_elem(fd: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut attr = MapElem {
        map_fd: fd.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `union bpf_attr` for BPF_OBJ_PIN.
#[repr(C)]
#[derive(Default)]
struct ObjPin {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
}

/// `union bpf_attr` for BPF_LINK_UPDATE.
#[repr(C)]
#[derive(Default)]
struct LinkUpdate {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Calls bpf(cmd, attr, sizeof attr).
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr points to a live, initialised repr(C) struct of the given size, laid out
    // as the kernel's union bpf_attr member for `cmd`; the kernel reads at most that size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd_by_id(cmd: libc::c_long, id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdById {
        id,
        ..Default::default()
    };
    let fd = bpf(cmd, &mut attr)?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A new fd for the link with this kernel id.
pub fn link_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    fd_by_id(BPF_LINK_GET_FD_BY_ID, id)
}

/// A new fd for the program with this kernel id.
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    fd_by_id(BPF_PROG_GET_FD_BY_ID, id)
}

/// Points `link` at `new_prog` in one BPF_LINK_UPDATE. With `old_prog`, the kernel only
/// does it if the link still runs that program (EPERM otherwise). On error the link is
/// unchanged and stays attached.
pub fn link_update(
    link: BorrowedFd<'_>,
    new_prog: BorrowedFd<'_>,
    old_prog: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut attr = LinkUpdate {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: new_prog.as_raw_fd() as u32,
        flags: if old_prog.is_some() { BPF_F_REPLACE } else { 0 },
        old_prog_fd: old_prog.map_or(0, |fd| fd.as_raw_fd() as u32),
    };
    bpf(BPF_LINK_UPDATE, &mut attr).map(|_| ())
}

/// Pins the BPF object behind `fd` at `path` (on bpffs; the parent must exist). Unlike
/// aya's pin calls it borrows the fd, so a failure leaves the object as it was.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    let mut attr = ObjPin {
        pathname: c.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}

fn check_len(what: &str, got: usize, want: usize) -> io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} is {got} bytes, the map takes {want}"),
        ))
    }
}

/// `BPF_ANY`: create or update.
pub const BPF_ANY: u64 = 0;

/// Writes one element. `key_size`/`value_size` are the map's (from its info); a slice of
/// another length is refused before the kernel sees it.
pub fn map_update(
    map: BorrowedFd<'_>,
    (key_size, value_size): (u32, u32),
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> io::Result<()> {
    check_len("key", key.len(), key_size as usize)?;
    check_len("value", value.len(), value_size as usize)?;
    let mut attr = MapElem {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Reads one element into `value` (exactly the map's value size); Ok(false) if absent.
pub fn map_lookup(
    map: BorrowedFd<'_>,
    (key_size, value_size): (u32, u32),
    key: &[u8],
    value: &mut [u8],
) -> io::Result<bool> {
    check_len("key", key.len(), key_size as usize)?;
    check_len("value", value.len(), value_size as usize)?;
    let mut attr = MapElem {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The key after `key` (the first key with None) into `next`; Ok(false) at the end.
pub fn map_next_key(
    map: BorrowedFd<'_>,
    key_size: u32,
    key: Option<&[u8]>,
    next: &mut [u8],
) -> io::Result<bool> {
    if let Some(k) = key {
        check_len("key", k.len(), key_size as usize)?;
    }
    check_len("next key", next.len(), key_size as usize)?;
    let mut attr = MapElem {
        map_fd: map.as_raw_fd() as u32,
        key: key.map_or(0, |k| k.as_ptr() as u64),
        value: next.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What the kernel says about a tcx link (`struct bpf_link_info`, tcx member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcxLinkInfo {
    pub link_type: u32,
    pub link_id: u32,
    pub prog_id: u32,
    /// 0 once the interface is gone (the link is then defunct).
    pub ifindex: u32,
    pub attach_type: u32,
}

/// Reads a link's info; `ifindex`/`attach_type` are meaningful for tcx links.
pub fn link_info(link: BorrowedFd<'_>) -> io::Result<TcxLinkInfo> {
    // type, id, prog_id, pad, then the union (8-aligned) whose tcx member is
    // { ifindex, attach_type }. The rest of the buffer stays zero, as the kernel demands.
    let mut buf = [0u64; 16];
    let mut attr = InfoByFd {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&buf) as u32,
        info: buf.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let w = |i: usize| (buf[i / 2] >> (32 * (i % 2))) as u32;
    Ok(TcxLinkInfo {
        link_type: w(0),
        link_id: w(1),
        prog_id: w(2),
        ifindex: w(4),
        attach_type: w(5),
    })
}
