//! Shared helpers for the benchmarks in `src/bin/`.
//!
//! [`BlockingBackend`] is a **stand-in** real-disk backend for the storage benchmarks (`wal`,
//! `lsm`): plain blocking `std::fs` calls (`pwrite`, `fsync`, `fallocate`) under a tiny
//! single-threaded executor ([`block_on`]), so the WAL and LSM benchmarks measure real fsyncs now.
//! Every disk future does its work when first polled and is then ready: while one sync runs,
//! nothing else does, so group commit batches whatever was queued before it. Replace it with the
//! io_uring backend of `engine/rt` once that serves these benchmarks. It has no network.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use strata_rt::backend::{FileBackend, ListenerBackend, StreamBackend};
use strata_rt::{
    Backend, BufResult, Duration, Instant, LocalBoxFuture, NodeId, OpenOptions, TaskId,
};

/// Task ids woken since the executor last looked; shared with wakers (which must be `Send`).
#[derive(Default)]
struct WakeList {
    woken: Mutex<Vec<u64>>,
}

struct TaskWaker {
    id: u64,
    list: Arc<WakeList>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.list.woken.lock().expect("wake list lock").push(self.id);
    }
}

#[derive(Default)]
struct Executor {
    tasks: RefCell<BTreeMap<u64, LocalBoxFuture<()>>>,
    ready: RefCell<VecDeque<u64>>,
    next_id: Cell<u64>,
    wakes: Arc<WakeList>,
    /// Deadline → wakers of sleeping tasks.
    timers: RefCell<BTreeMap<(std::time::Instant, u64), Waker>>,
    started: Option<std::time::Instant>,
}

/// A real-disk backend rooted at a directory, on a single-threaded executor.
pub struct BlockingBackend {
    root: PathBuf,
    executor: Rc<Executor>,
    seed: Cell<u64>,
}

impl BlockingBackend {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Rc<BlockingBackend>> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let executor = Executor { started: Some(std::time::Instant::now()), ..Executor::default() };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64);
        Ok(Rc::new(BlockingBackend { root, executor: Rc::new(executor), seed: Cell::new(seed) }))
    }

    fn path(&self, path: &str) -> io::Result<PathBuf> {
        if !path.is_empty() {
            strata_rt::check_path(path)?;
        }
        Ok(self.root.join(path))
    }

    fn started(&self) -> std::time::Instant {
        self.executor.started.expect("set at construction")
    }
}

/// Runs `future` and every task it spawns on `backend`'s executor until `future` finishes.
pub fn block_on<T: 'static>(
    backend: &Rc<BlockingBackend>,
    future: impl Future<Output = T> + 'static,
) -> T {
    let output: Rc<RefCell<Option<T>>> = Rc::default();
    let slot = output.clone();
    backend.spawn(Box::pin(async move {
        *slot.borrow_mut() = Some(future.await);
    }));
    let executor = &backend.executor;
    loop {
        if let Some(value) = output.borrow_mut().take() {
            return value;
        }
        let woken: Vec<u64> =
            std::mem::take(&mut *executor.wakes.woken.lock().expect("wake list lock"));
        executor.ready.borrow_mut().extend(woken);
        let now = std::time::Instant::now();
        let due: Vec<(std::time::Instant, u64)> =
            executor.timers.borrow().range(..=(now, u64::MAX)).map(|(key, _)| *key).collect();
        for key in due {
            if let Some(waker) = executor.timers.borrow_mut().remove(&key) {
                waker.wake();
            }
        }
        let next = executor.ready.borrow_mut().pop_front();
        match next {
            Some(id) => {
                let Some(mut task) = executor.tasks.borrow_mut().remove(&id) else { continue };
                let waker = Waker::from(Arc::new(TaskWaker { id, list: executor.wakes.clone() }));
                if task.as_mut().poll(&mut Context::from_waker(&waker)).is_pending() {
                    executor.tasks.borrow_mut().insert(id, task);
                }
            }
            None => {
                let woken_pending =
                    !executor.wakes.woken.lock().expect("wake list lock").is_empty();
                if woken_pending {
                    continue;
                }
                let first = executor.timers.borrow().keys().next().copied();
                match first {
                    Some((deadline, _)) => std::thread::sleep(
                        deadline.saturating_duration_since(std::time::Instant::now()),
                    ),
                    None => {
                        panic!("block_on: every task is blocked and no timer is set (deadlock)")
                    }
                }
            }
        }
    }
}

fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "BlockingBackend has no network"))
}

impl Backend for BlockingBackend {
    fn node_id(&self) -> NodeId {
        NodeId(0)
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.started().elapsed().as_nanos() as u64)
    }

    fn now_unix(&self) -> Duration {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
    }

    fn sleep_until(&self, deadline: Instant) -> LocalBoxFuture<()> {
        let executor = self.executor.clone();
        let deadline = self.started() + Duration::from_nanos(deadline.as_nanos());
        let id = executor.next_id.get();
        executor.next_id.set(id + 1);
        Box::pin(std::future::poll_fn(move |context| {
            if std::time::Instant::now() >= deadline {
                return Poll::Ready(());
            }
            executor.timers.borrow_mut().insert((deadline, id), context.waker().clone());
            Poll::Pending
        }))
    }

    fn spawn(&self, task: LocalBoxFuture<()>) -> TaskId {
        let id = self.executor.next_id.get();
        self.executor.next_id.set(id + 1);
        self.executor.tasks.borrow_mut().insert(id, task);
        self.executor.ready.borrow_mut().push_back(id);
        TaskId(id)
    }

    fn abort(&self, task: TaskId) {
        self.executor.tasks.borrow_mut().remove(&task.0);
    }

    fn random_seed(&self) -> u64 {
        let seed =
            self.seed.get().wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.seed.set(seed);
        seed
    }

    fn open(
        &self,
        path: &str,
        options: OpenOptions,
    ) -> LocalBoxFuture<io::Result<Rc<dyn FileBackend>>> {
        let result = self.path(path).and_then(|full| {
            let mut open = fs::OpenOptions::new();
            open.read(true).write(true).create(options.create).create_new(options.create_new);
            if options.direct {
                open.custom_flags(libc::O_DIRECT);
            }
            let file = open.open(full)?;
            Ok(Rc::new(BlockingFile { file }) as Rc<dyn FileBackend>)
        });
        Box::pin(std::future::ready(result))
    }

    fn remove(&self, path: &str) -> LocalBoxFuture<io::Result<()>> {
        Box::pin(std::future::ready(self.path(path).and_then(fs::remove_file)))
    }

    fn rename(&self, from: &str, to: &str) -> LocalBoxFuture<io::Result<()>> {
        let result = self.path(from).and_then(|from| fs::rename(from, self.path(to)?));
        Box::pin(std::future::ready(result))
    }

    fn list(&self, dir: &str) -> LocalBoxFuture<io::Result<Vec<String>>> {
        let result = self.path(dir).and_then(|full| {
            let mut names = Vec::new();
            for entry in fs::read_dir(full)? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        });
        Box::pin(std::future::ready(result))
    }

    fn create_dir_all(&self, dir: &str) -> LocalBoxFuture<io::Result<()>> {
        Box::pin(std::future::ready(self.path(dir).and_then(fs::create_dir_all)))
    }

    fn sync_dir(&self, dir: &str) -> LocalBoxFuture<io::Result<()>> {
        let result = self.path(dir).and_then(|full| fs::File::open(full)?.sync_all());
        Box::pin(std::future::ready(result))
    }

    fn send(&self, _to: NodeId, _message: Vec<u8>) {}

    fn receive(&self) -> LocalBoxFuture<(NodeId, Vec<u8>)> {
        Box::pin(std::future::pending())
    }

    fn listen(&self, _address: SocketAddr) -> io::Result<Rc<dyn ListenerBackend>> {
        unsupported()
    }

    fn connect(&self, _address: SocketAddr) -> LocalBoxFuture<io::Result<Rc<dyn StreamBackend>>> {
        Box::pin(std::future::ready(unsupported()))
    }
}

struct BlockingFile {
    file: fs::File,
}

impl FileBackend for BlockingFile {
    fn read_at(&self, mut buf: Vec<u8>, offset: u64) -> LocalBoxFuture<BufResult<usize>> {
        let mut filled = 0;
        let result = loop {
            match self.file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break Ok(filled),
                Ok(count) => {
                    filled += count;
                    if filled == buf.len() {
                        break Ok(filled);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => break Err(error),
            }
        };
        Box::pin(std::future::ready((result, buf)))
    }

    fn write_at(&self, buf: Vec<u8>, offset: u64) -> LocalBoxFuture<BufResult<()>> {
        let result = self.file.write_all_at(&buf, offset);
        Box::pin(std::future::ready((result, buf)))
    }

    fn sync(&self) -> LocalBoxFuture<io::Result<()>> {
        Box::pin(std::future::ready(self.file.sync_all()))
    }

    fn len(&self) -> LocalBoxFuture<io::Result<u64>> {
        Box::pin(std::future::ready(self.file.metadata().map(|metadata| metadata.len())))
    }

    fn truncate(&self, len: u64) -> LocalBoxFuture<io::Result<()>> {
        Box::pin(std::future::ready(self.file.set_len(len)))
    }

    fn allocate(&self, len: u64) -> LocalBoxFuture<io::Result<()>> {
        let length = i64::try_from(len).unwrap_or(i64::MAX);
        // SAFETY: fallocate on an open descriptor with in-range arguments.
        let status =
            unsafe { libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, length) };
        let result = if status == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
        Box::pin(std::future::ready(result))
    }
}

/// A fresh directory for one benchmark run: `$STRATA_BENCH_DIR` or the system temp dir, plus
/// `name` and the process id. Removed and recreated.
pub fn scratch_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("STRATA_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("strata-bench-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the benchmark directory");
    dir
}

/// A small splitmix64 generator for benchmark data (not the runtime's: the anchors use it too).
pub struct DataRng(pub u64);

impl DataRng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Keeps a value alive (and its computation) past the optimiser.
pub fn consume<T>(value: T) -> T {
    std::hint::black_box(value)
}
