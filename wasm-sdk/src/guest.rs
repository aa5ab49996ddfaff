//! The runtime a `no_std` module needs on wasm32: an allocator and a panic handler.
//!
//! A module runs once per fresh instance and is then thrown away, so a bump allocator is
//! enough: it never frees, except that growing the most recent block happens in place (the
//! common case when serde_json grows a Vec or String). It is single-threaded by construction
//! (core wasm without threads) and deterministic.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const PAGE: usize = 65536;

struct Bump {
    /// (next free address, end of the memory we own, start of the last block)
    state: UnsafeCell<(usize, usize, usize)>,
}

// SAFETY: wasm32 without the threads proposal has one thread.
unsafe impl Sync for Bump {}

#[global_allocator]
static ALLOC: Bump = Bump {
    state: UnsafeCell::new((0, 0, 0)),
};

impl Bump {
    /// Makes `[next, next+size)` available, growing memory if needed. None when the host
    /// refuses to grow (or traps, with the memory limit).
    unsafe fn reserve(&self, align: usize, size: usize) -> Option<usize> {
        // SAFETY: single-threaded; no reference to the state outlives this call.
        let (next, end, last) = unsafe { &mut *self.state.get() };
        if *end == 0 {
            let pages = core::arch::wasm32::memory_size(0);
            *next = pages * PAGE;
            *end = *next;
        }
        let start = next.checked_add(align - 1)? & !(align - 1);
        let new_next = start.checked_add(size)?;
        if new_next > *end {
            let pages = (new_next - *end).div_ceil(PAGE);
            if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                return None;
            }
            *end += pages * PAGE;
        }
        *next = new_next;
        *last = start;
        Some(start)
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see `reserve`.
        match unsafe { self.reserve(layout.align(), layout.size()) } {
            Some(p) => p as *mut u8,
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: single-threaded; the borrow ends before `alloc` below.
        let (next, end, last) = unsafe { &mut *self.state.get() };
        if ptr as usize == *last {
            // The last block: grow (or shrink) it where it is.
            let new_next = *last + new_size;
            if new_next <= *end {
                *next = new_next.max(*last);
                return ptr;
            }
            let pages = (new_next - *end).div_ceil(PAGE);
            if core::arch::wasm32::memory_grow(0, pages) != usize::MAX {
                *end += pages * PAGE;
                *next = new_next;
                return ptr;
            }
            return core::ptr::null_mut();
        }
        // SAFETY: as GlobalAlloc::realloc's default: a fresh block, copy, (no) free.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Say why before trapping; the host reports the trap and shows this line.
    let mut buf = alloc::string::String::new();
    let _ = core::fmt::write(&mut buf, format_args!("panic: {info}"));
    crate::log::error(&buf);
    core::arch::wasm32::unreachable()
}
