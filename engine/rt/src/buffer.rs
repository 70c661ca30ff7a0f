//! Buffers aligned for direct I/O (O_DIRECT wants memory, offsets and lengths aligned to the
//! device's logical block; 4096 covers every device in use).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

pub const DIRECT_IO_ALIGNMENT: usize = 4096;

/// A zero-initialised, 4096-byte-aligned byte buffer whose length is a multiple of 4096.
pub struct AlignedBuffer {
    pointer: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its memory exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuffer {}
// SAFETY: shared access only reads.
unsafe impl Sync for AlignedBuffer {}

impl AlignedBuffer {
    /// A buffer of `len` zero bytes; `len` must be a non-zero multiple of 4096.
    pub fn zeroed(len: usize) -> AlignedBuffer {
        assert!(len > 0, "empty aligned buffer");
        assert!(len.is_multiple_of(DIRECT_IO_ALIGNMENT), "aligned buffer of {len} bytes");
        let layout = Layout::from_size_align(len, DIRECT_IO_ALIGNMENT).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { alloc_zeroed(layout) };
        let pointer =
            NonNull::new(pointer).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuffer { pointer, len }
    }
}

impl Deref for AlignedBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `pointer` owns `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: `pointer` owns `len` initialised bytes, borrowed mutably once.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, DIRECT_IO_ALIGNMENT).expect("valid layout");
        // SAFETY: allocated in `zeroed` with this very layout.
        unsafe { dealloc(self.pointer.as_ptr(), layout) };
    }
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AlignedBuffer").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        let mut buffer = AlignedBuffer::zeroed(8192);
        assert_eq!(buffer.as_ptr() as usize % DIRECT_IO_ALIGNMENT, 0);
        assert!(buffer.iter().all(|&byte| byte == 0));
        buffer[8191] = 7;
        assert_eq!(buffer[8191], 7);
        assert_eq!(buffer.len(), 8192);
    }
}
