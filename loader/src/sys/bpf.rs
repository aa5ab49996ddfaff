//! The few `bpf(2)` commands aya 0.14 does not expose the way the swap needs them.
//!
//! aya's `attach_to_link` moves the link into the call and closes it if BPF_LINK_UPDATE
//! fails, which detaches the running program: the opposite of what an atomic swap promises.
//! So the loader keeps its link and updates it in place here, with `BPF_F_REPLACE` so the
//! update only happens if the link still runs the program we think it runs.
//!
//! Map elements are read and written here as plain byte slices (aya's typed maps need the
//! key and value types at compile time; bundle maps have their sizes in data). They go
//! through a [`MapElems`], which asks the kernel for the map's key and value sizes once and
//! checks every slice against them, so no safe call lets the kernel read or write past a
//! buffer. The attribute and info structs are aya-obj's bindings of the kernel's uapi.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use aya_obj::generated::{
    BPF_F_REPLACE, bpf_attach_type, bpf_attr, bpf_cmd, bpf_link_info, bpf_map_info, bpf_map_type,
    bpf_prog_info,
};

/// A slice whose length is not what the map takes (the `io::Error`'s inner error, kind
/// `InvalidInput`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {got} bytes, the map takes {want}")]
pub struct LengthMismatch {
    pub what: &'static str,
    pub got: usize,
    pub want: usize,
}

fn check_len(what: &'static str, got: usize, want: usize) -> io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            LengthMismatch { what, got, want },
        ))
    }
}

/// An all-zero `union bpf_attr`, as the kernel wants the bytes a command does not use.
fn attr() -> bpf_attr {
    // SAFETY: bpf_attr is a union of structs of integers and integer arrays; all-zero bytes
    // are a valid value of every member.
    unsafe { std::mem::zeroed() }
}

/// Calls bpf(cmd, attr, sizeof attr).
///
/// # Safety
/// Every pointer the member of `attr` for `cmd` holds must point at a live buffer at least
/// as long as the kernel reads or writes for that command (e.g. a map's key and value size).
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, initialised bpf_attr of the size given; the buffers it points
    // at are the caller's promise.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr as *mut libc::c_void,
            std::mem::size_of::<bpf_attr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Maps `ENOENT` to `Ok(false)`: the key (or a next key) is absent.
fn found(r: io::Result<libc::c_long>) -> io::Result<bool> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A slice's address for the kernel; null for an empty one (maps with no key, such as
/// queues, demand a null key pointer).
fn addr(b: &[u8]) -> u64 {
    if b.is_empty() { 0 } else { b.as_ptr() as u64 }
}

/// Fills `info` (a uapi `bpf_*_info` struct, zeroed on entry) with BPF_OBJ_GET_INFO_BY_FD.
///
/// # Safety
/// Pointers the caller put into `info` (e.g. `map_ids` with `nr_map_ids`) must point at live
/// buffers of the sizes given.
unsafe fn obj_info<T>(fd: BorrowedFd<'_>, info: &mut T) -> io::Result<()> {
    let mut a = attr();
    a.info.bpf_fd = fd.as_raw_fd() as u32;
    a.info.info_len = std::mem::size_of::<T>() as u32;
    a.info.info = info as *mut T as u64;
    // SAFETY: the kernel writes at most info_len bytes into `info`; the buffers `info`
    // points at are the caller's promise.
    unsafe { bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut a) }.map(|_| ())
}

/// `BPF_ANY`: create or update.
pub const BPF_ANY: u64 = 0;
/// `BPF_NOEXIST`: create only.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: update only.
pub const BPF_EXIST: u64 = 2;

/// What the kernel says about a map (`struct bpf_map_info`, the fields the loader needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapInfo {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl MapInfo {
    /// Whether lookups and updates carry one value per possible CPU.
    pub fn is_per_cpu(&self) -> bool {
        use bpf_map_type::*;
        [
            BPF_MAP_TYPE_PERCPU_HASH,
            BPF_MAP_TYPE_PERCPU_ARRAY,
            BPF_MAP_TYPE_LRU_PERCPU_HASH,
            BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE_DEPRECATED,
        ]
        .iter()
        .any(|t| *t as u32 == self.map_type)
    }

    /// The length of a value buffer for lookups and updates from user space: the value size,
    /// or for per-CPU maps the value size rounded up to 8 times `possible_cpus`.
    pub fn value_len(&self, possible_cpus: usize) -> usize {
        if self.is_per_cpu() {
            (self.value_size as usize).next_multiple_of(8) * possible_cpus
        } else {
            self.value_size as usize
        }
    }
}

/// Reads a map's info.
pub fn map_info(map: BorrowedFd<'_>) -> io::Result<MapInfo> {
    // SAFETY: all-zero is a valid bpf_map_info (integers only).
    let mut info: bpf_map_info = unsafe { std::mem::zeroed() };
    // SAFETY: the info holds no pointers.
    unsafe { obj_info(map, &mut info) }?;
    Ok(MapInfo {
        map_type: info.type_,
        id: info.id,
        key_size: info.key_size,
        value_size: info.value_size,
        max_entries: info.max_entries,
        flags: info.map_flags,
    })
}

/// The number of possible CPUs (what per-CPU map values are multiplied by).
pub fn possible_cpus() -> io::Result<usize> {
    aya::util::nr_cpus().map_err(|(what, e)| io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// A borrowed map fd together with the key and value sizes the kernel reported for it. The
/// element calls check every slice against these before the kernel sees it. Sizes cannot
/// change for a map's lifetime, and the borrow keeps the fd (and so the map) alive.
#[derive(Debug, Clone, Copy)]
pub struct MapElems<'a> {
    fd: BorrowedFd<'a>,
    info: MapInfo,
    value_len: usize,
}

impl<'a> MapElems<'a> {
    /// Asks the kernel for the map's sizes (one BPF_OBJ_GET_INFO_BY_FD).
    pub fn new(fd: BorrowedFd<'a>) -> io::Result<MapElems<'a>> {
        let info = map_info(fd)?;
        let cpus = if info.is_per_cpu() {
            possible_cpus()?
        } else {
            1
        };
        Ok(MapElems {
            fd,
            info,
            value_len: info.value_len(cpus),
        })
    }

    pub fn info(&self) -> &MapInfo {
        &self.info
    }

    /// Bytes in a key.
    pub fn key_len(&self) -> usize {
        self.info.key_size as usize
    }

    /// Bytes in a value buffer (per-CPU maps: all CPUs' values, see [`MapInfo::value_len`]).
    pub fn value_len(&self) -> usize {
        self.value_len
    }

    /// `map[key] = value`. `flags` is [`BPF_ANY`], [`BPF_NOEXIST`] or [`BPF_EXIST`].
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
        check_len("key", key.len(), self.key_len())?;
        check_len("value", value.len(), self.value_len)?;
        if flags > BPF_EXIST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("map update flags {flags:#x} (only BPF_ANY, BPF_NOEXIST, BPF_EXIST)"),
            ));
        }
        let mut a = attr();
        a.__bindgen_anon_2.map_fd = self.fd.as_raw_fd() as u32;
        a.__bindgen_anon_2.key = addr(key);
        a.__bindgen_anon_2.__bindgen_anon_1.value = addr(value);
        a.__bindgen_anon_2.flags = flags;
        // SAFETY: key and value have the lengths the kernel reads for this map (checked above).
        unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut a) }.map(|_| ())
    }

    /// Reads `map[key]` into `value` ([`MapElems::value_len`] bytes); `Ok(false)` when absent.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        check_len("key", key.len(), self.key_len())?;
        check_len("value", value.len(), self.value_len)?;
        let mut a = attr();
        a.__bindgen_anon_2.map_fd = self.fd.as_raw_fd() as u32;
        a.__bindgen_anon_2.key = addr(key);
        a.__bindgen_anon_2.__bindgen_anon_1.value = if value.is_empty() {
            0
        } else {
            value.as_mut_ptr() as u64
        };
        // SAFETY: key and value have the lengths the kernel reads and writes for this map.
        found(unsafe { bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut a) })
    }

    /// `map[key]` as a new buffer; `None` when absent.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let mut value = vec![0u8; self.value_len];
        Ok(self.lookup(key, &mut value)?.then_some(value))
    }

    /// The key after `key` (the first key with `None`) into `next`; `Ok(false)` at the end.
    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
        if let Some(k) = key {
            check_len("key", k.len(), self.key_len())?;
        }
        check_len("next key", next.len(), self.key_len())?;
        let mut a = attr();
        a.__bindgen_anon_2.map_fd = self.fd.as_raw_fd() as u32;
        a.__bindgen_anon_2.key = key.map_or(0, addr);
        a.__bindgen_anon_2.__bindgen_anon_1.next_key = next.as_mut_ptr() as u64;
        // SAFETY: key and next are exactly the map's key size (checked above).
        found(unsafe { bpf(bpf_cmd::BPF_MAP_GET_NEXT_KEY, &mut a) })
    }

    /// Every key, in the kernel's iteration order.
    pub fn keys(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = vec![0u8; self.key_len()];
            if !self.next_key(keys.last().map(Vec::as_slice), &mut next)? {
                return Ok(keys);
            }
            keys.push(next);
        }
    }

    /// Deletes `map[key]`; `Ok(false)` if it was not there.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        check_len("key", key.len(), self.key_len())?;
        let mut a = attr();
        a.__bindgen_anon_2.map_fd = self.fd.as_raw_fd() as u32;
        a.__bindgen_anon_2.key = addr(key);
        // SAFETY: key is exactly the map's key size (checked above).
        found(unsafe { bpf(bpf_cmd::BPF_MAP_DELETE_ELEM, &mut a) })
    }
}

/// Opens a new fd by id with a `*_GET_FD_BY_ID` command.
fn fd_by_id(cmd: bpf_cmd, id: u32) -> io::Result<OwnedFd> {
    let mut a = attr();
    // The id's member (prog_id, link_id, ...) shares its place with start_id.
    a.__bindgen_anon_6.__bindgen_anon_1.start_id = id;
    // SAFETY: the command takes only integers.
    let fd = unsafe { bpf(cmd, &mut a) }?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A new fd for the link with this kernel id.
pub fn link_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    fd_by_id(bpf_cmd::BPF_LINK_GET_FD_BY_ID, id)
}

/// A new fd for the program with this kernel id.
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    fd_by_id(bpf_cmd::BPF_PROG_GET_FD_BY_ID, id)
}

/// Detaches a link from its hook now. Dropping the last reference (fd or pin) detaches too,
/// but the kernel does that from a workqueue, a moment later; an unload or a swap that
/// removes a hook wants it gone when it returns.
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut a = attr();
    a.link_detach.link_fd = link.as_raw_fd() as u32;
    // SAFETY: the command takes only integers.
    unsafe { bpf(bpf_cmd::BPF_LINK_DETACH, &mut a) }.map(|_| ())
}

/// Points `link` at `new_prog` in one BPF_LINK_UPDATE. With `old_prog`, the kernel only
/// does it if the link still runs that program (EPERM otherwise). On error the link is
/// unchanged and stays attached.
pub fn link_update(
    link: BorrowedFd<'_>,
    new_prog: BorrowedFd<'_>,
    old_prog: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut a = attr();
    a.link_update.link_fd = link.as_raw_fd() as u32;
    a.link_update.__bindgen_anon_1.new_prog_fd = new_prog.as_raw_fd() as u32;
    a.link_update.flags = if old_prog.is_some() { BPF_F_REPLACE } else { 0 };
    a.link_update.__bindgen_anon_2.old_prog_fd = old_prog.map_or(0, |fd| fd.as_raw_fd() as u32);
    // SAFETY: the command takes only integers.
    unsafe { bpf(bpf_cmd::BPF_LINK_UPDATE, &mut a) }.map(|_| ())
}

/// Pins the BPF object behind `fd` at `path` (on bpffs; the parent must exist). Unlike
/// aya's pin calls it borrows the fd, so a failure leaves the object as it was.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    let mut a = attr();
    a.__bindgen_anon_4.pathname = c.as_ptr() as u64;
    a.__bindgen_anon_4.bpf_fd = fd.as_raw_fd() as u32;
    // SAFETY: pathname is a NUL-terminated string that lives until the call returns.
    unsafe { bpf(bpf_cmd::BPF_OBJ_PIN, &mut a) }.map(|_| ())
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
    // SAFETY: all-zero is a valid bpf_link_info (integers, and unions of them).
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    // SAFETY: the info holds no pointers (the members with name buffers stay null).
    unsafe { obj_info(link, &mut info) }?;
    // SAFETY: every member of the union is plain integers; the tcx one is what a tcx link
    // fills, and for others it reads whatever integers are there.
    let tcx = unsafe { info.__bindgen_anon_1.tcx };
    Ok(TcxLinkInfo {
        link_type: info.type_,
        link_id: info.id,
        prog_id: info.prog_id,
        ifindex: tcx.ifindex,
        attach_type: tcx.attach_type,
    })
}

/// Runs the program behind `prog` (any fd, e.g. one opened by id from a hook's link) on
/// `packet` with BPF_PROG_TEST_RUN: returns its return value and the kernel-measured ns per
/// run. Unlike aya's test run this needs no aya `Program`, so it runs exactly the program a
/// link runs, not a copy.
pub fn prog_test_run(prog: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
    let mut a = attr();
    a.test.prog_fd = prog.as_raw_fd() as u32;
    a.test.data_size_in = packet.len() as u32;
    a.test.data_in = packet.as_ptr() as u64;
    a.test.repeat = repeat.max(1);
    // SAFETY: data_in points at `packet` of data_size_in bytes; there is no output buffer.
    unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut a) }?;
    // SAFETY: the test member is what this command uses, and it holds integers only.
    let t = unsafe { a.test };
    Ok((t.retval, t.duration))
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
    let mut a = attr();
    a.test.prog_fd = prog.as_raw_fd() as u32;
    a.test.data_size_in = packet.len() as u32;
    a.test.data_in = packet.as_ptr() as u64;
    a.test.repeat = 1;
    a.test.ctx_size_in = SK_BUFF_SIZE as u32;
    a.test.ctx_size_out = SK_BUFF_SIZE as u32;
    a.test.ctx_in = ctx_in.as_ptr() as u64;
    a.test.ctx_out = ctx_out.as_mut_ptr() as u64;
    // SAFETY: data_in, ctx_in and ctx_out point at buffers of the sizes given; the kernel
    // writes at most ctx_size_out bytes of context and no data (data_out is null).
    unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut a) }?;
    // SAFETY: the test member is what this command uses, and it holds integers only.
    let t = unsafe { a.test };
    Ok(SkbRun {
        retval: t.retval,
        duration_ns: t.duration,
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

/// Reads a program's id, name and the ids of the maps it uses (up to 64).
pub fn prog_info(prog: BorrowedFd<'_>) -> io::Result<ProgInfo> {
    let mut ids = vec![0u32; 64];
    // SAFETY: all-zero is a valid bpf_prog_info (integers and arrays of them).
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    info.nr_map_ids = ids.len() as u32;
    info.map_ids = ids.as_mut_ptr() as u64;
    // SAFETY: map_ids points at nr_map_ids u32s, which is all the kernel writes there.
    unsafe { obj_info(prog, &mut info) }?;
    // The kernel reports how many maps there are, which may exceed what it copied.
    ids.truncate((info.nr_map_ids as usize).min(ids.len()));
    let name: Vec<u8> = info
        .name
        .iter()
        .map(|c| *c as u8)
        .take_while(|b| *b != 0)
        .collect();
    Ok(ProgInfo {
        id: info.id,
        name: String::from_utf8_lossy(&name).into_owned(),
        map_ids: ids,
    })
}

/// `enum bpf_attach_type`: the tcx hooks.
pub const BPF_TCX_INGRESS: u32 = bpf_attach_type::BPF_TCX_INGRESS as u32;
pub const BPF_TCX_EGRESS: u32 = bpf_attach_type::BPF_TCX_EGRESS as u32;

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
        let mut a = attr();
        a.query.__bindgen_anon_1.target_ifindex = ifindex;
        a.query.attach_type = attach_type;
        a.query.prog_ids = progs.as_mut_ptr() as u64;
        a.query.link_ids = links.as_mut_ptr() as u64;
        a.query.__bindgen_anon_2.count = cap as u32;
        // SAFETY: prog_ids and link_ids point at `count` u32s each, all the kernel writes.
        let r = unsafe { bpf(bpf_cmd::BPF_PROG_QUERY, &mut a) };
        // SAFETY: the query member is what this command uses; `count` is an integer.
        let count = unsafe { a.query.__bindgen_anon_2.count } as usize;
        match r {
            // ENOSPC: more entries than room; `count` says how many.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && count > cap => {
                cap = count;
                continue;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let n = count.min(cap);
        // SAFETY: as above, integers only.
        let revision = unsafe { a.query.revision };
        return Ok(TcxChain {
            revision,
            entries: links[..n]
                .iter()
                .copied()
                .zip(progs[..n].iter().copied())
                .collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(map_type: bpf_map_type, value_size: u32) -> MapInfo {
        MapInfo {
            map_type: map_type as u32,
            id: 1,
            key_size: 4,
            value_size,
            max_entries: 1,
            flags: 0,
        }
    }

    #[test]
    fn per_cpu_values_are_rounded_to_8_and_multiplied() {
        use bpf_map_type::*;
        assert_eq!(info(BPF_MAP_TYPE_HASH, 12).value_len(4), 12);
        assert_eq!(info(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4).value_len(4), 4);
        assert_eq!(info(BPF_MAP_TYPE_PERCPU_HASH, 12).value_len(4), 64);
        assert_eq!(info(BPF_MAP_TYPE_PERCPU_ARRAY, 8).value_len(3), 24);
        assert_eq!(info(BPF_MAP_TYPE_LRU_PERCPU_HASH, 1).value_len(2), 16);
    }

    #[test]
    fn lengths_are_checked_exactly() {
        assert!(check_len("key", 4, 4).is_ok());
        for got in [0, 3, 5] {
            let e = check_len("key", got, 4).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(
                e.to_string(),
                format!("key is {got} bytes, the map takes 4")
            );
        }
    }
}
