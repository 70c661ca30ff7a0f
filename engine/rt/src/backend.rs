//! The contract a backend (the simulator, io_uring) fulfils. Service code never sees these traits:
//! it holds a [`crate::Runtime`] and the handle types built on it.
//!
//! Every operation that touches a device is completion-based and takes owned buffers, because
//! io_uring keeps a buffer until the kernel reports the operation complete; a buffer comes back
//! with the result. Futures are `'static` and local to the thread (no `Send`): one node's tasks run
//! on one executor.

use crate::buffer::AlignedBuffer;
use crate::net::NodeId;
use crate::time::{Duration, Instant};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;

/// A boxed future local to the current thread.
pub type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T> + 'static>>;

/// A buffer handed back with the result of the operation that borrowed it.
pub type BufResult<T> = (io::Result<T>, Vec<u8>);

/// Identifies a task spawned on a backend, for aborting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u64);

/// How to open a file. Paths are relative to the node's data directory, `/`-separated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create the file if it does not exist.
    pub create: bool,
    /// Fail with `AlreadyExists` if it exists (implies create).
    pub create_new: bool,
    /// Bypass the page cache (O_DIRECT): buffers, offsets and lengths must be aligned to 4096.
    pub direct: bool,
}

/// One node's view of the world.
pub trait Backend {
    /// The node this backend runs, as named in the cluster's configuration.
    fn node_id(&self) -> NodeId;

    // Clock.
    fn now(&self) -> Instant;
    /// Wall-clock time since the Unix epoch. May jump (NTP) and drift apart from [`Self::now`].
    fn now_unix(&self) -> Duration;
    /// Completes at `deadline` on this node's monotonic clock; dropping it cancels the timer.
    fn sleep_until(&self, deadline: Instant) -> LocalBoxFuture<()>;

    // Tasks.
    fn spawn(&self, task: LocalBoxFuture<()>) -> TaskId;
    /// Drops the task's future at the next scheduling point. A no-op for a finished task.
    fn abort(&self, task: TaskId);

    // Randomness.
    /// A fresh seed for an [`crate::Rng`]: drawn from the simulation seed, or from the OS.
    fn random_seed(&self) -> u64;

    // Disk.
    fn open(
        &self,
        path: &str,
        options: OpenOptions,
    ) -> LocalBoxFuture<io::Result<Rc<dyn FileBackend>>>;
    fn remove(&self, path: &str) -> LocalBoxFuture<io::Result<()>>;
    /// Atomically replaces `to` with `from`. Durable once the directory is synced.
    fn rename(&self, from: &str, to: &str) -> LocalBoxFuture<io::Result<()>>;
    /// Names of the entries directly inside `dir` (`""` is the data directory), sorted.
    fn list(&self, dir: &str) -> LocalBoxFuture<io::Result<Vec<String>>>;
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &str) -> LocalBoxFuture<io::Result<()>>;
    /// Makes the creations, renames and removals of entries in `dir` durable.
    fn sync_dir(&self, dir: &str) -> LocalBoxFuture<io::Result<()>>;

    // Network: peer messages.
    /// Sends one message to a peer node. Unreliable: it may be dropped, delayed, duplicated or
    /// reordered; there is no error because a lost message looks the same as a failed send.
    fn send(&self, to: NodeId, message: Vec<u8>);
    /// The next message from any peer. One receiver at a time per node.
    fn receive(&self) -> LocalBoxFuture<(NodeId, Vec<u8>)>;

    // Network: byte streams.
    fn listen(&self, address: SocketAddr) -> io::Result<Rc<dyn ListenerBackend>>;
    fn connect(&self, address: SocketAddr) -> LocalBoxFuture<io::Result<Rc<dyn StreamBackend>>>;
}

/// An open file. Dropping the last handle closes it.
#[allow(clippy::len_without_is_empty, reason = "len is an I/O operation, not a collection size")]
pub trait FileBackend {
    /// Reads `min(buf.len(), file length - offset)` bytes into the front of `buf`; returns the
    /// count, which is short only at the end of the file.
    fn read_at(&self, buf: Vec<u8>, offset: u64) -> LocalBoxFuture<BufResult<usize>>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, buf: Vec<u8>, offset: u64) -> LocalBoxFuture<BufResult<()>>;
    /// Makes every completed write and size change of this file durable (fsync).
    fn sync(&self) -> LocalBoxFuture<io::Result<()>>;
    /// Makes the completed writes durable, and the size only if reading them needs it
    /// (fdatasync): cheaper for preallocated files. Same durability model as `sync` otherwise.
    fn sync_data(&self) -> LocalBoxFuture<io::Result<()>> {
        self.sync()
    }
    /// `write_at`, then `sync_data` for at least the written range, in one operation where the
    /// backend has one. A failure latches the caller as a failed sync does. Only the written
    /// range is promised: earlier writes must have been made durable already.
    fn write_durable_at(self: Rc<Self>, buf: Vec<u8>, offset: u64) -> LocalBoxFuture<BufResult<()>>
    where
        Self: 'static,
    {
        Box::pin(async move {
            let (result, buf) = self.write_at(buf, offset).await;
            match result {
                // Asked for only now: a backend may start an operation when it is created.
                Ok(()) => (self.sync_data().await, buf),
                Err(error) => (Err(error), buf),
            }
        })
    }
    /// `read_at` into aligned memory (for files opened with `direct`).
    fn read_aligned_at(
        &self,
        buf: AlignedBuffer,
        offset: u64,
    ) -> LocalBoxFuture<(io::Result<usize>, AlignedBuffer)> {
        let read = self.read_at(vec![0; buf.len()], offset);
        Box::pin(async move {
            let mut buf = buf;
            let (result, bytes) = read.await;
            if let Ok(count) = result {
                buf[..count].copy_from_slice(&bytes[..count]);
            }
            (result, buf)
        })
    }
    /// `write_at` from aligned memory (for files opened with `direct`).
    fn write_aligned_at(
        &self,
        buf: AlignedBuffer,
        offset: u64,
    ) -> LocalBoxFuture<(io::Result<()>, AlignedBuffer)> {
        let write = self.write_at(buf.to_vec(), offset);
        Box::pin(async move { (write.await.0, buf) })
    }
    fn len(&self) -> LocalBoxFuture<io::Result<u64>>;
    fn truncate(&self, len: u64) -> LocalBoxFuture<io::Result<()>>;
    /// Grows the file to at least `len` bytes of zeros, reserved and written on the media, so a
    /// later write below `len` can neither fail ENOSPC nor change metadata (its sync flushes
    /// only data). The new length and zeros are durable at the next `sync`, like a write.
    fn allocate(&self, len: u64) -> LocalBoxFuture<io::Result<()>>;
}

pub trait ListenerBackend {
    fn accept(&self) -> LocalBoxFuture<io::Result<(Rc<dyn StreamBackend>, SocketAddr)>>;
    fn local_address(&self) -> SocketAddr;
}

/// A connected byte stream. Dropping the last handle closes both directions.
pub trait StreamBackend {
    /// Reads at most `buf.len()` bytes into the front of `buf`; 0 means the peer closed its side.
    fn read(&self, buf: Vec<u8>) -> LocalBoxFuture<BufResult<usize>>;
    /// Writes all of `buf`.
    fn write(&self, buf: Vec<u8>) -> LocalBoxFuture<BufResult<()>>;
    /// Writes all of `buf[..len]` and hands the whole buffer back, so a buffer that was read into
    /// can be sent on without copying or resizing it. `len` must not exceed `buf.len()`.
    fn write_prefix(&self, buf: Vec<u8>, len: usize) -> LocalBoxFuture<BufResult<()>> {
        let write = self.write(buf[..len].to_vec());
        Box::pin(async move { (write.await.0, buf) })
    }
    /// Closes the writing direction; the peer reads end-of-stream after the data already written.
    fn shutdown(&self) -> LocalBoxFuture<io::Result<()>>;
    fn peer_address(&self) -> SocketAddr;
}
