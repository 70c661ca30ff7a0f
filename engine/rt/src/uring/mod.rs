//! The production backend: one io_uring reactor per thread (thread-per-core, shared-nothing).
//!
//! Files, sockets and timers go through the ring. Two things do not, because io_uring has no
//! operation for them: listing a directory (`getdents`) and creating, binding and listening on a
//! socket; both are short set-up calls made directly. A third does not because the ring would
//! only hand it to a worker thread and back: a small durable write (a WAL batch) runs inline
//! while durable writes stay fast (see `file::write_durable_inline`).
//!
//! Peer messages (`Runtime::net().send/receive`) travel over TCP through [`crate::transport`]
//! when [`UringOptions::peers`] is set; without it, `send` drops (peer messages are unreliable)
//! and `receive` waits forever.

mod file;
mod net;
mod reactor;

pub use reactor::{OPERATIONS_IN_FLIGHT_MAX, RING_ENTRIES};

use crate::backend::{Backend, FileBackend, ListenerBackend, OpenOptions, StreamBackend, TaskId};
use crate::transport::{start_peer_transport, PeerConfig, PeerQueues};
use crate::{check_path, Duration, Instant, LocalBoxFuture, NodeId, Runtime};
use file::{fsync, Descriptor, UringFile};
use io_uring::{opcode, types};
use reactor::{check, Operation, Reactor};
use std::cell::RefCell;
use std::ffi::CString;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What a reactor needs to know about the node it runs.
#[derive(Clone, Debug)]
pub struct UringOptions {
    pub node_id: NodeId,
    /// Every `Disk` path is relative to this directory; it is created if missing.
    pub data_dir: PathBuf,
    /// Where this node and its peers exchange peer messages; `None` for a node alone.
    pub peers: Option<PeerConfig>,
}

struct UringBackend {
    reactor: Rc<Reactor>,
    node_id: NodeId,
    data_dir: PathBuf,
    /// The data directory, as the base of every `*at` operation.
    root: Rc<Descriptor>,
    peer_queues: Rc<PeerQueues>,
}

/// The clock of `now` and of sleep deadlines.
fn monotonic_nanos() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

fn clock(id: libc::clockid_t) -> u64 {
    // SAFETY: timespec is plain old data; clock_gettime fills it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a live timespec.
    let result = unsafe { libc::clock_gettime(id, &mut now) };
    assert_eq!(result, 0, "clock_gettime({id}) failed");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn path_string(path: &str) -> io::Result<CString> {
    CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
}

impl UringBackend {
    fn relative(&self, path: &str) -> io::Result<CString> {
        check_path(path)?;
        path_string(path)
    }

    /// `dir` as an `*at` path: `""` (the data directory) is `"."`.
    fn directory(&self, dir: &str) -> io::Result<CString> {
        if dir.is_empty() {
            path_string(".")
        } else {
            self.relative(dir)
        }
    }

    fn root_fd(&self) -> types::Fd {
        types::Fd(self.root.fd)
    }
}

/// Runs one operation on path memory `keep` (C strings the entry points into).
async fn with_paths(
    reactor: &Rc<Reactor>,
    entry: io_uring::squeue::Entry,
    keep: Box<dyn std::any::Any>,
) -> io::Result<u32> {
    let (result, _) = Operation::new(reactor, entry, Some(keep)).await;
    check(result)
}

impl Backend for UringBackend {
    fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(monotonic_nanos())
    }

    fn now_unix(&self) -> Duration {
        Duration::from_nanos(clock(libc::CLOCK_REALTIME))
    }

    fn sleep_until(&self, deadline: Instant) -> LocalBoxFuture<()> {
        Box::pin(reactor::Sleep::new(&self.reactor, deadline.as_nanos()))
    }

    fn spawn(&self, task: LocalBoxFuture<()>) -> TaskId {
        TaskId(self.reactor.spawn(task))
    }

    fn abort(&self, task: TaskId) {
        self.reactor.abort(task.0);
    }

    fn random_seed(&self) -> u64 {
        let mut seed = 0u64;
        // SAFETY: fills 8 bytes of a live u64.
        let filled = unsafe { libc::getrandom((&mut seed as *mut u64).cast(), 8, 0) };
        assert_eq!(filled, 8, "getrandom failed: {}", io::Error::last_os_error());
        seed
    }

    fn open(
        &self,
        path: &str,
        options: OpenOptions,
    ) -> LocalBoxFuture<io::Result<Rc<dyn FileBackend>>> {
        let path = self.relative(path);
        let (reactor, root) = (self.reactor.clone(), self.root.clone());
        Box::pin(async move {
            let path = path?;
            let mut flags = libc::O_RDWR | libc::O_CLOEXEC;
            if options.create_new {
                flags |= libc::O_CREAT | libc::O_EXCL;
            } else if options.create {
                flags |= libc::O_CREAT;
            }
            if options.direct {
                flags |= libc::O_DIRECT;
            }
            let entry = opcode::OpenAt::new(types::Fd(root.fd), path.as_ptr())
                .flags(flags)
                .mode(0o644)
                .build();
            let fd = with_paths(&reactor, entry, Box::new(path)).await? as libc::c_int;
            let descriptor = Rc::new(Descriptor { reactor, fd });
            Ok(Rc::new(UringFile { descriptor }) as Rc<dyn FileBackend>)
        })
    }

    fn remove(&self, path: &str) -> LocalBoxFuture<io::Result<()>> {
        let path = self.relative(path);
        let (reactor, root) = (self.reactor.clone(), self.root_fd());
        Box::pin(async move {
            let path = path?;
            let entry = opcode::UnlinkAt::new(root, path.as_ptr()).build();
            with_paths(&reactor, entry, Box::new(path)).await.map(drop)
        })
    }

    fn rename(&self, from: &str, to: &str) -> LocalBoxFuture<io::Result<()>> {
        let paths = self.relative(from).and_then(|from| Ok((from, self.relative(to)?)));
        let (reactor, root) = (self.reactor.clone(), self.root_fd());
        Box::pin(async move {
            let (from, to) = paths?;
            let entry = opcode::RenameAt::new(root, from.as_ptr(), root, to.as_ptr()).build();
            with_paths(&reactor, entry, Box::new((from, to))).await.map(drop)
        })
    }

    fn list(&self, dir: &str) -> LocalBoxFuture<io::Result<Vec<String>>> {
        // io_uring has no getdents: a direct call, as rare as it is short.
        let listed = (|| {
            if !dir.is_empty() {
                check_path(dir)?;
            }
            let mut names = Vec::new();
            for entry in std::fs::read_dir(self.data_dir.join(dir))? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        })();
        Box::pin(std::future::ready(listed))
    }

    fn create_dir_all(&self, dir: &str) -> LocalBoxFuture<io::Result<()>> {
        let checked = check_path(dir).map(|()| dir.to_string());
        let (reactor, root) = (self.reactor.clone(), self.root_fd());
        Box::pin(async move {
            let dir = checked?;
            let mut prefix = String::new();
            for part in dir.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                let path = path_string(&prefix)?;
                let entry = opcode::MkDirAt::new(root, path.as_ptr()).mode(0o755).build();
                match with_paths(&reactor, entry, Box::new(path)).await {
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &str) -> LocalBoxFuture<io::Result<()>> {
        let path = self.directory(dir);
        let (reactor, root) = (self.reactor.clone(), self.root_fd());
        Box::pin(async move {
            let path = path?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
            let entry = opcode::OpenAt::new(root, path.as_ptr()).flags(flags).build();
            let fd = with_paths(&reactor, entry, Box::new(path)).await? as libc::c_int;
            fsync(&Descriptor { reactor, fd }, types::FsyncFlags::empty()).await
        })
    }

    fn send(&self, to: NodeId, message: Vec<u8>) {
        self.peer_queues.send(to, message);
    }

    fn receive(&self) -> LocalBoxFuture<(NodeId, Vec<u8>)> {
        let queues = self.peer_queues.clone();
        Box::pin(async move { queues.receive().await })
    }

    fn listen(&self, address: SocketAddr) -> io::Result<Rc<dyn ListenerBackend>> {
        net::listen(&self.reactor, address)
    }

    fn connect(&self, address: SocketAddr) -> LocalBoxFuture<io::Result<Rc<dyn StreamBackend>>> {
        net::connect(&self.reactor, address)
    }
}

fn open_root(reactor: &Rc<Reactor>, data_dir: &Path) -> io::Result<Rc<Descriptor>> {
    std::fs::create_dir_all(data_dir).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot create data directory {}: {error}", data_dir.display()),
        )
    })?;
    let path = CString::new(data_dir.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "data directory path with a NUL byte")
    })?;
    // SAFETY: a valid C string; the descriptor is owned by the returned Descriptor.
    let fd =
        unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Rc::new(Descriptor { reactor: reactor.clone(), fd }))
}

/// Runs `main` on an io_uring reactor on this thread until it finishes, then drops every task
/// it spawned and waits for the kernel to release their memory.
pub fn block_on<T: 'static, F>(
    options: &UringOptions,
    main: impl FnOnce(Runtime) -> F,
) -> io::Result<T>
where
    F: Future<Output = T> + 'static,
{
    let reactor = Reactor::new()?;
    let root = open_root(&reactor, &options.data_dir)?;
    let peer_queues = Rc::new(PeerQueues::default());
    let backend = UringBackend {
        reactor: reactor.clone(),
        node_id: options.node_id,
        data_dir: options.data_dir.clone(),
        root,
        peer_queues: peer_queues.clone(),
    };
    let rt = Runtime::new(Rc::new(backend));
    if let Some(peers) = &options.peers {
        start_peer_transport(&rt, peer_queues, peers.clone())?;
    }
    let output: Rc<RefCell<Option<T>>> = Rc::default();
    let slot = output.clone();
    let future = main(rt);
    reactor.spawn(Box::pin(async move {
        let value = future.await;
        *slot.borrow_mut() = Some(value);
    }));
    let result = reactor.run_until(|| output.borrow().is_some());
    reactor.shutdown();
    result?;
    let value = output.borrow_mut().take().expect("run_until returns once the output is set");
    Ok(value)
}

/// Runs one reactor per core on its own thread (shared-nothing): `main(rt, core)` on each, with
/// its own data directory `data_dir/core-N`. Returns each core's output, in core order. Cores talk
/// through [`crate::sync::cross_channel`]s created before the call.
pub fn run_cores<T, F>(
    cores: usize,
    options: &UringOptions,
    main: impl Fn(Runtime, usize) -> F + Sync,
) -> io::Result<Vec<T>>
where
    T: Send + 'static,
    F: Future<Output = T> + 'static,
{
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cores)
            .map(|core| {
                let main = &main;
                let options = UringOptions {
                    node_id: options.node_id,
                    data_dir: options.data_dir.join(format!("core-{core}")),
                    peers: None,
                };
                scope.spawn(move || block_on(&options, |rt| main(rt, core)))
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("a core's thread panicked")).collect()
    })
}

/// Whether this kernel lets this process use io_uring, and why not if it does not.
pub fn probe() -> io::Result<()> {
    Reactor::new().map(drop)
}

/// Set by the handler of SIGINT and SIGTERM (see [`catch_shutdown_signals`]).
static SHUTDOWN_REQUESTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

extern "C" fn request_shutdown(_signal: libc::c_int) {
    // Only an atomic store: the one thing a signal handler may safely do here.
    SHUTDOWN_REQUESTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM request a shutdown instead of killing the process; a server polls
/// [`shutdown_requested`] and stops gracefully. A second signal still only sets the flag.
pub fn catch_shutdown_signals() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain old data; zeroed is a valid empty mask and no flags.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = request_shutdown as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: a valid signal number, a live action, no old action wanted; the handler only
        // stores to an atomic, which is async-signal-safe.
        let result = unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived since [`catch_shutdown_signals`].
pub fn shutdown_requested() -> bool {
    SHUTDOWN_REQUESTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Reads a whole small file named by the operator (a configuration file), before any runtime
/// runs: the one file read that does not go through a `Disk`, whose paths live inside a data
/// directory. Refuses files over 1 MiB.
pub fn read_startup_file(path: &Path) -> io::Result<String> {
    const STARTUP_FILE_BYTES_MAX: u64 = 1 << 20;
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() > STARTUP_FILE_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "larger than 1 MiB"));
    }
    io::read_to_string(file)
}
