//! A global allocator guard for the decoders.
//!
//! The generated message decoders reserve an array's capacity from the element count on the
//! wire before they check that the bytes are there. A 13-byte frame that claims 2^30 elements
//! asks for tens of gigabytes at once; the system allocator refuses, and Rust aborts the whole
//! process. [`LargeAllocGuard`] serves every allocation above [`LARGE_ALLOCATION_BYTES`] from an
//! anonymous `MAP_NORESERVE` mapping instead: address space is reserved, but memory is committed
//! only for the pages actually written. Decoding such a frame then fails cleanly at the end of
//! its bytes, having touched a few pages, and only that connection is closed. Allocations below
//! the threshold go to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at or above this size are lazily committed mappings.
pub const LARGE_ALLOCATION_BYTES: usize = 1 << 30;

/// The guard; install it with `#[global_allocator]` in a binary that decodes untrusted frames.
pub struct LargeAllocGuard;

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE_ALLOCATION_BYTES && layout.align() <= 4096
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

unsafe impl GlobalAlloc for LargeAllocGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // SAFETY: size is non-zero (above the threshold).
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // Fresh anonymous pages are zero.
            // SAFETY: as in alloc.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(&layout) {
            // SAFETY: ptr came from map() with this size.
            unsafe {
                libc::munmap(ptr as *mut libc::c_void, layout.size());
            }
        } else {
            // SAFETY: ptr came from System with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size is valid for layout.align().
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_large(&layout) && !is_large(&new_layout) {
            // SAFETY: both sides are System allocations.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: a fresh block of the new layout, filled from the old one, then the old freed.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservations_cost_only_what_is_touched() {
        let guard = LargeAllocGuard;
        // 64 GiB: more than the machine has; reserved, not committed.
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        unsafe {
            let p = guard.alloc(layout);
            assert!(!p.is_null());
            p.write(7);
            p.add(10 << 30).write(9);
            assert_eq!(p.read(), 7);
            let q = guard.realloc(p, layout, 1024);
            assert_eq!(q.read(), 7);
            guard.dealloc(q, Layout::from_size_align(1024, 8).unwrap());
        }
        let small = Layout::from_size_align(64, 8).unwrap();
        unsafe {
            let p = guard.alloc_zeroed(small);
            assert_eq!(p.read(), 0);
            guard.dealloc(p, small);
        }
    }
}
