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
const BPF_LINK_DETACH: libc::c_long = 34;
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

/// `union bpf_attr` for BPF_LINK_DETACH.
#[repr(C)]
#[derive(Default)]
struct LinkDetach {
    link_fd: u32,
}

/// Detaches a link from its hook now. Dropping the last reference (fd or pin) detaches too,
/// but the kernel does that from a workqueue, a moment later; an unload or a swap that
/// removes a hook wants it gone when it returns.
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = LinkDetach {
        link_fd: link.as_raw_fd() as u32,
    };
    bpf(BPF_LINK_DETACH, &mut attr).map(|_| ())
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
    map_update_elem(map, key, value, flags)
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
    map_lookup_elem(map, key, value)
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

const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// Deletes one element; Ok(false) if it was not there.
pub fn map_delete(map: BorrowedFd<'_>, key_size: u32, key: &[u8]) -> io::Result<bool> {
    check_len("key", key.len(), key_size as usize)?;
    let mut attr = MapElem {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `union bpf_attr` for BPF_PROG_TEST_RUN (the `test` member).
#[repr(C)]
#[derive(Default)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// Runs the program behind `prog` (any fd, e.g. one opened by id from a hook's link) on
/// `packet` with BPF_PROG_TEST_RUN: returns its return value and the kernel-measured ns per
/// run. Unlike aya's test run this needs no aya `Program`, so it runs exactly the program a
/// link runs, not a copy.
pub fn prog_test_run(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
    let mut attr = TestRun {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: repeat.max(1),
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok((attr.retval, attr.duration))
}

/// Size of `struct __sk_buff` (uapi, unchanged since 5.16): the context a tc program's
/// test run takes in and hands back.
pub const SK_BUFF_SIZE: usize = 192;

/// What one BPF_PROG_TEST_RUN of a tc program returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkbRun {
    pub retval: u32,
    /// Kernel-measured ns per run.
    pub duration_ns: u32,
    /// `struct __sk_buff` after the run (mark, priority, cb[] as the program left them).
    pub ctx_out: [u8; SK_BUFF_SIZE],
}

/// Runs a tc program once on `packet` (a whole Ethernet frame) with `ctx_in` as its
/// `struct __sk_buff` (only mark, priority, ifindex, cb, tstamp, wire_len, gso fields may be
/// non-zero, as the kernel demands) and returns the context it left. The packet goes
/// through no device: nothing is sent, and only the program's own map writes persist.
pub fn prog_test_run_skb(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    ctx_in: &[u8; SK_BUFF_SIZE],
) -> io::Result<SkbRun> {
    let mut ctx_out = [0u8; SK_BUFF_SIZE];
    let mut attr = TestRun {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: 1,
        ctx_size_in: SK_BUFF_SIZE as u32,
        ctx_size_out: SK_BUFF_SIZE as u32,
        ctx_in: ctx_in.as_ptr() as u64,
        ctx_out: ctx_out.as_mut_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(SkbRun {
        retval: attr.retval,
        duration_ns: attr.duration,
        ctx_out,
    })
}

/// What the kernel says about a program (`struct bpf_prog_info`, the fields trace needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgInfo {
    pub id: u32,
    pub name: String,
    pub map_ids: Vec<u32>,
}

/// Reads a program's id, name and the ids of the maps it uses.
pub fn prog_info(prog: BorrowedFd<'_>) -> io::Result<ProgInfo> {
    // struct bpf_prog_info: type u32 @0, id u32 @4, tag [8] @8, jited_prog_len @16,
    // xlated_prog_len @20, jited_prog_insns u64 @24, xlated_prog_insns u64 @32,
    // load_time u64 @40, created_by_uid u32 @48, nr_map_ids u32 @52, map_ids u64 @56,
    // name [16] @64.
    let mut ids = vec![0u32; 64];
    let mut buf = [0u64; 32];
    buf[52 / 8] = (ids.len() as u64) << 32; // nr_map_ids (in), high half of word 6
    buf[56 / 8] = ids.as_mut_ptr() as u64;
    let mut attr = InfoByFd {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&buf) as u32,
        info: buf.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_le_bytes()).collect();
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let n = (u32_at(52) as usize).min(ids.len());
    ids.truncate(n);
    let name = &bytes[64..80];
    let name = String::from_utf8_lossy(&name[..name.iter().position(|b| *b == 0).unwrap_or(16)])
        .into_owned();
    Ok(ProgInfo {
        id: u32_at(4),
        name,
        map_ids: ids,
    })
}

const BPF_PROG_QUERY: libc::c_long = 16;
/// `enum bpf_attach_type`: the tcx hooks.
pub const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_TCX_EGRESS: u32 = 47;

/// `union bpf_attr` for BPF_PROG_QUERY (the `query` member).
#[repr(C)]
#[derive(Default)]
struct ProgQuery {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    count: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// A tcx hook's chain as BPF_PROG_QUERY reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcxChain {
    pub revision: u64,
    /// (link id, program id) in run order; link id 0 for a program attached without a link.
    pub entries: Vec<(u32, u32)>,
}

/// What runs on tcx hook `attach_type` of interface `ifindex` in the calling thread's
/// network namespace: one syscall, no look-up by name.
pub fn tcx_query(ifindex: u32, attach_type: u32) -> io::Result<TcxChain> {
    let mut cap = 16usize;
    loop {
        let mut progs = vec![0u32; cap];
        let mut links = vec![0u32; cap];
        let mut attr = ProgQuery {
            target_ifindex: ifindex,
            attach_type,
            prog_ids: progs.as_mut_ptr() as u64,
            link_ids: links.as_mut_ptr() as u64,
            count: cap as u32,
            ..Default::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            // ENOSPC: more entries than room; `count` says how many.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && attr.count as usize > cap => {
                cap = attr.count as usize;
                continue;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let n = (attr.count as usize).min(cap);
        return Ok(TcxChain {
            revision: attr.revision,
            entries: links[..n]
                .iter()
                .copied()
                .zip(progs[..n].iter().copied())
                .collect(),
        });
    }
}
