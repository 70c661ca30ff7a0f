//! Files as the storage engine needs them, through the runtime.
//!
//! Durability follows POSIX strictly (the simulator enforces it): a write is durable after the
//! file's `sync`; a creation, rename or removal after `sync_dir` of the directory holding it.

use crate::backend::{Backend, BufResult, FileBackend, OpenOptions};
use crate::buffer::AlignedBuffer;
use std::io;
use std::rc::Rc;

/// Checks a data-directory path: relative, `/`-separated, no empty, `.` or `..` parts. Both
/// backends apply it, so a path that works in simulation works in production.
pub fn check_path(path: &str) -> io::Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.ends_with('/')
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\0'));
    if bad {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad path {path:?}")));
    }
    Ok(())
}

/// The node's data directory.
#[derive(Clone)]
pub struct Disk {
    backend: Rc<dyn Backend>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Disk")
    }
}

impl Disk {
    pub(crate) fn new(backend: Rc<dyn Backend>) -> Disk {
        Disk { backend }
    }

    /// Opens an existing file.
    pub async fn open(&self, path: &str) -> io::Result<File> {
        self.open_with(path, OpenOptions::default()).await
    }

    /// Opens a file, creating it if missing. The creation is durable after `sync_dir`.
    pub async fn create(&self, path: &str) -> io::Result<File> {
        self.open_with(path, OpenOptions { create: true, ..OpenOptions::default() }).await
    }

    /// Creates a file that must not exist yet.
    pub async fn create_new(&self, path: &str) -> io::Result<File> {
        self.open_with(path, OpenOptions { create_new: true, ..OpenOptions::default() }).await
    }

    pub async fn open_with(&self, path: &str, options: OpenOptions) -> io::Result<File> {
        let inner = self.backend.open(path, options).await?;
        Ok(File { inner })
    }

    pub async fn remove(&self, path: &str) -> io::Result<()> {
        self.backend.remove(path).await
    }

    pub async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.backend.rename(from, to).await
    }

    /// Names directly inside `dir` (`""` is the data directory), sorted.
    pub async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        self.backend.list(dir).await
    }

    pub async fn create_dir_all(&self, dir: &str) -> io::Result<()> {
        self.backend.create_dir_all(dir).await
    }

    pub async fn sync_dir(&self, dir: &str) -> io::Result<()> {
        self.backend.sync_dir(dir).await
    }
}

/// An open file; clones share it.
#[derive(Clone)]
pub struct File {
    inner: Rc<dyn FileBackend>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("File")
    }
}

#[allow(clippy::len_without_is_empty, reason = "len is an I/O operation, not a collection size")]
impl File {
    /// Reads up to `buf.len()` bytes at `offset` into the front of `buf`; short only at the end.
    pub async fn read_at(&self, buf: Vec<u8>, offset: u64) -> BufResult<usize> {
        self.inner.read_at(buf, offset).await
    }

    /// Reads exactly `len` bytes at `offset`; `UnexpectedEof` if the file is shorter.
    pub async fn read_exact_at(&self, len: usize, offset: u64) -> io::Result<Vec<u8>> {
        let (result, mut buf) = self.inner.read_at(vec![0; len], offset).await;
        let count = result?;
        if count < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read {count} of {len} bytes at offset {offset}"),
            ));
        }
        buf.truncate(len);
        Ok(buf)
    }

    /// Writes all of `buf` at `offset`.
    pub async fn write_at(&self, buf: Vec<u8>, offset: u64) -> BufResult<()> {
        self.inner.write_at(buf, offset).await
    }

    /// Writes all of `buf` at `offset` and makes that range durable, as `write_at` then
    /// `sync_data` would, in one operation where the backend can (a failure latches the caller,
    /// as a failed sync does). Earlier writes elsewhere in the file are not promised.
    pub async fn write_durable_at(&self, buf: Vec<u8>, offset: u64) -> BufResult<()> {
        self.inner.clone().write_durable_at(buf, offset).await
    }

    /// Makes every completed write of this file durable. A failure here must latch the caller:
    /// the kernel may have dropped the dirty data, and retrying would report a false success.
    pub async fn sync(&self) -> io::Result<()> {
        self.inner.sync().await
    }

    /// Like `sync`, without flushing metadata that reading the data does not need (fdatasync).
    pub async fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data().await
    }

    /// Reads into aligned memory; required for files opened with `direct`.
    pub async fn read_aligned_at(
        &self,
        buf: AlignedBuffer,
        offset: u64,
    ) -> (io::Result<usize>, AlignedBuffer) {
        self.inner.read_aligned_at(buf, offset).await
    }

    /// Writes from aligned memory; required for files opened with `direct`.
    pub async fn write_aligned_at(
        &self,
        buf: AlignedBuffer,
        offset: u64,
    ) -> (io::Result<()>, AlignedBuffer) {
        self.inner.write_aligned_at(buf, offset).await
    }

    pub async fn len(&self) -> io::Result<u64> {
        self.inner.len().await
    }

    pub async fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len).await
    }

    /// Grows the file to at least `len` bytes of zeros that are reserved and written, so later
    /// writes below `len` need no metadata at their sync (see `FileBackend::allocate`).
    pub async fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len).await
    }
}
