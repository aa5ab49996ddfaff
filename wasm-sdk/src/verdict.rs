//! Per-packet verdict functions (spec/wasm-verdict.md): a Rust function that sluice translates
//! to eBPF and runs on every packet of the endpoints a policy attaches it to.
//!
//! ```ignore
//! #![no_std]
//! use sluice_wasm_sdk::verdict::{Packet, Verdict, verdict};
//!
//! #[verdict]
//! fn decide(p: &Packet) -> Verdict {
//!     if p.get_u8(9) == Some(17) { Verdict::Deny } else { Verdict::Pass }
//! }
//! ```
//!
//! Build for `wasm32v1-none` with `panic = "abort"`, `lto = true` and `opt-level = 3` (or "s"),
//! depending on the SDK with `default-features = false, features = ["verdict-runtime"]`. v1
//! translates integer code without memory, loops or calls: the accessors here are
//! `#[inline(always)]` wrappers of the host's `pkt_*` imports, so a function that keeps to
//! plain arithmetic, `if`/`match` and early returns compiles to exactly that. A panic (an
//! index out of range, an overflow check, `unreachable!()`) traps, and a trap is the policy's
//! fail-closed verdict (deny unless it says otherwise).

pub use sluice_wasm_sdk_macros::verdict;

/// What the function decides. `Pass` leaves the packet to the normal policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Verdict {
    Pass = 0,
    Allow = 1,
    Deny = 2,
}

/// The packet, from the first byte of the IP header. Loads are big-endian; a load past the
/// end traps (on wasm32 the host traps; natively it panics), the `get_*` forms check first.
pub struct Packet<'a> {
    len: usize,
    #[cfg(not(target_arch = "wasm32"))]
    bytes: &'a [u8],
    #[cfg(target_arch = "wasm32")]
    _bytes: core::marker::PhantomData<&'a [u8]>,
}

#[cfg(target_arch = "wasm32")]
mod host {
    #[link(wasm_import_module = "sluice")]
    unsafe extern "C" {
        // The host bounds-checks every load and traps instead of reading out of range.
        pub safe fn pkt_u8(offset: i32) -> i32;
        pub safe fn pkt_u16(offset: i32) -> i32;
        pub safe fn pkt_u32(offset: i32) -> i32;
    }
}

impl<'a> Packet<'a> {
    /// A packet over `bytes`, for testing a verdict function natively.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_bytes(bytes: &'a [u8]) -> Packet<'a> {
        Packet {
            len: bytes.len(),
            bytes,
        }
    }

    /// Bytes from the IP header to the end of the packet.
    #[inline(always)]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn u8(&self, offset: usize) -> u8 {
        #[cfg(target_arch = "wasm32")]
        return host::pkt_u8(offset as i32) as u8;
        #[cfg(not(target_arch = "wasm32"))]
        return self.bytes[offset];
    }

    #[inline(always)]
    pub fn u16(&self, offset: usize) -> u16 {
        #[cfg(target_arch = "wasm32")]
        return host::pkt_u16(offset as i32) as u16;
        #[cfg(not(target_arch = "wasm32"))]
        return u16::from_be_bytes([self.bytes[offset], self.bytes[offset + 1]]);
    }

    #[inline(always)]
    pub fn u32(&self, offset: usize) -> u32 {
        #[cfg(target_arch = "wasm32")]
        return host::pkt_u32(offset as i32) as u32;
        #[cfg(not(target_arch = "wasm32"))]
        return u32::from_be_bytes(self.bytes[offset..offset + 4].try_into().expect("4 bytes"));
    }

    /// Whether `size` bytes at `offset` are inside the packet.
    #[inline(always)]
    pub fn has(&self, offset: usize, size: usize) -> bool {
        offset <= self.len && size <= self.len - offset
    }

    #[inline(always)]
    pub fn get_u8(&self, offset: usize) -> Option<u8> {
        self.has(offset, 1).then(|| self.u8(offset))
    }

    #[inline(always)]
    pub fn get_u16(&self, offset: usize) -> Option<u16> {
        self.has(offset, 2).then(|| self.u16(offset))
    }

    #[inline(always)]
    pub fn get_u32(&self, offset: usize) -> Option<u32> {
        self.has(offset, 4).then(|| self.u32(offset))
    }
}

/// What `#[verdict]` exports call: not part of the API.
#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
#[inline(always)]
pub fn __run(len: i32, f: fn(&Packet<'_>) -> Verdict) -> i32 {
    let p = Packet {
        len: len as u32 as usize,
        _bytes: core::marker::PhantomData,
    };
    f(&p) as i32
}

/// A panic is a trap and nothing else: no message (that would need memory and an import).
#[cfg(all(target_arch = "wasm32", feature = "verdict-runtime"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
