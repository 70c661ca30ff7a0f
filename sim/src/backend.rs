//! `strata_rt::Backend` for one simulated node: every operation becomes an event at a virtual
//! time, and its result reaches the caller through a completion, as io_uring's would.

use crate::disk::{DiskContext, SimDisk};
use crate::net::{node_ip, reset_error, ChunkBody, ListenerState};
use crate::world::{Tag, World};
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::task::Poll;
use strata_rt::backend::{FileBackend, ListenerBackend, StreamBackend};
use strata_rt::sync::completion;
use strata_rt::{
    Backend, BufResult, Duration, Instant, LocalBoxFuture, NodeId, OpenOptions, TaskId,
};

/// Latency of a metadata or small I/O operation, in nanoseconds.
const DISK_OPERATION_NANOS: (u64, u64) = (10_000, 50_000);
/// One sync costs 1 to 2 ms on the machines this runs on.
const DISK_SYNC_NANOS: (u64, u64) = (1_000_000, 2_000_000);
/// Transfer rate: 2 GB/s is half a nanosecond per byte.
const DISK_NANOS_PER_KIB: u64 = 500;

/// A node's handle on the world, for one incarnation of the node.
#[derive(Clone)]
pub(crate) struct SimBackend {
    pub world: Weak<RefCell<World>>,
    pub node: u32,
    pub incarnation: u64,
}

enum DiskCost {
    Metadata,
    Transfer(usize),
    Sync,
}

impl World {
    fn disk_latency(&mut self, cost: DiskCost) -> u64 {
        let base = match cost {
            DiskCost::Metadata => {
                self.rng.range_inclusive(DISK_OPERATION_NANOS.0, DISK_OPERATION_NANOS.1)
            }
            DiskCost::Transfer(bytes) => {
                self.rng.range_inclusive(DISK_OPERATION_NANOS.0, DISK_OPERATION_NANOS.1)
                    + (bytes as u64 / 1024) * DISK_NANOS_PER_KIB
            }
            DiskCost::Sync => self.rng.range_inclusive(DISK_SYNC_NANOS.0, DISK_SYNC_NANOS.1),
        };
        if self.fault(self.config.disk.slow_io_probability) {
            self.stats.slow_operations += 1;
            return base * self.rng.range_inclusive(10, 1000);
        }
        base
    }

    pub(crate) fn with_disk<R>(
        &mut self,
        node: u32,
        operation: impl FnOnce(&mut SimDisk, &mut DiskContext) -> R,
    ) -> R {
        let World { nodes, rng, config, faults_active, stats, trace, .. } = self;
        let node = &mut nodes[node as usize];
        let mut context = DiskContext {
            rng,
            faults: &config.disk,
            active: *faults_active,
            corruptible: node.options.corruptible,
            stats,
            trace,
        };
        operation(&mut node.disk, &mut context)
    }
}

/// Waits for a completion; a dropped one means the node stopped, and so will this task.
async fn finish<T>(completion: strata_rt::sync::Completion<T>) -> T {
    match completion.await {
        Some(value) => value,
        None => std::future::pending().await,
    }
}

impl SimBackend {
    /// Runs `operation` on the world if it is still there and this incarnation still runs.
    fn with<R>(&self, operation: impl FnOnce(&mut World) -> R) -> Option<R> {
        let world = self.world.upgrade()?;
        let mut world = world.borrow_mut();
        if !world.is_current(self.node, self.incarnation) {
            return None;
        }
        Some(operation(&mut world))
    }

    /// Schedules a disk operation to run after its latency, and returns its result's future.
    fn disk_operation<T: 'static>(
        &self,
        cost: DiskCost,
        operation: impl FnOnce(&mut SimDisk, &mut DiskContext) -> T + 'static,
    ) -> LocalBoxFuture<T> {
        let (completer, completion) = completion();
        let (node, incarnation) = (self.node, self.incarnation);
        self.with(move |world| {
            let delay = world.disk_latency(cost);
            world.schedule(
                delay,
                Tag::Disk,
                node,
                Box::new(move |world: &mut World| {
                    if world.is_current(node, incarnation) {
                        let value = world.with_disk(node, operation);
                        completer.complete(value);
                    }
                }),
            );
        });
        Box::pin(finish(completion))
    }
}

impl Backend for SimBackend {
    fn node_id(&self) -> NodeId {
        NodeId(self.node)
    }

    fn now(&self) -> Instant {
        let world = self.world.upgrade().expect("simulation dropped");
        let world = world.borrow();
        Instant::from_nanos(world.node(self.node).clock.local(world.now))
    }

    fn now_unix(&self) -> Duration {
        let world = self.world.upgrade().expect("simulation dropped");
        let world = world.borrow();
        Duration::from_nanos(world.node(self.node).clock.wall(world.now))
    }

    fn sleep_until(&self, deadline: Instant) -> LocalBoxFuture<()> {
        let (completer, completion) = completion();
        let (node, incarnation) = (self.node, self.incarnation);
        self.with(move |world| {
            let at = world.node(node).clock.global_at(deadline.as_nanos(), world.now);
            world.schedule_at(
                at,
                Tag::Timer,
                node,
                Box::new(move |world: &mut World| {
                    if world.is_current(node, incarnation) {
                        completer.complete(());
                    }
                }),
            );
        });
        Box::pin(finish(completion))
    }

    fn spawn(&self, task: LocalBoxFuture<()>) -> TaskId {
        let mut task = Some(task);
        let id = self.with(|world| {
            let queue = world.wake_queue.clone();
            world.tasks.insert(self.node, task.take().expect("inserted once"), &queue)
        });
        // A task spawned by a stopped node is dropped here, outside the world's borrow.
        drop(task);
        TaskId(id.unwrap_or(u64::MAX))
    }

    fn abort(&self, task: TaskId) {
        let Some(world) = self.world.upgrade() else { return };
        let removed = {
            let mut world = world.borrow_mut();
            match world.tasks.get_mut(task.0) {
                Some(running) if running.future.is_none() => {
                    running.aborted = true;
                    None
                }
                Some(_) => world.tasks.remove(task.0),
                None => None,
            }
        };
        drop(removed);
    }

    fn random_seed(&self) -> u64 {
        self.with(|world| world.node_mut(self.node).rng.next_u64()).unwrap_or(0)
    }

    fn open(
        &self,
        path: &str,
        options: OpenOptions,
    ) -> LocalBoxFuture<io::Result<Rc<dyn FileBackend>>> {
        let path = path.to_string();
        let backend = self.clone();
        let opened =
            self.disk_operation(DiskCost::Metadata, move |disk, _| disk.open(&path, options));
        Box::pin(async move {
            let inode = opened.await?;
            Ok(Rc::new(SimFile { backend, inode }) as Rc<dyn FileBackend>)
        })
    }

    fn remove(&self, path: &str) -> LocalBoxFuture<io::Result<()>> {
        let path = path.to_string();
        self.disk_operation(DiskCost::Metadata, move |disk, _| disk.remove(&path))
    }

    fn rename(&self, from: &str, to: &str) -> LocalBoxFuture<io::Result<()>> {
        let (from, to) = (from.to_string(), to.to_string());
        self.disk_operation(DiskCost::Metadata, move |disk, _| disk.rename(&from, &to))
    }

    fn list(&self, dir: &str) -> LocalBoxFuture<io::Result<Vec<String>>> {
        let dir = dir.to_string();
        self.disk_operation(DiskCost::Metadata, move |disk, _| disk.list(&dir))
    }

    fn create_dir_all(&self, dir: &str) -> LocalBoxFuture<io::Result<()>> {
        let dir = dir.to_string();
        self.disk_operation(DiskCost::Metadata, move |disk, _| disk.create_dir_all(&dir))
    }

    fn sync_dir(&self, dir: &str) -> LocalBoxFuture<io::Result<()>> {
        let dir = dir.to_string();
        self.disk_operation(DiskCost::Sync, move |disk, _| disk.sync_dir(&dir))
    }

    fn send(&self, to: NodeId, message: Vec<u8>) {
        self.with(|world| world.send_message(self.node, to, message));
    }

    fn receive(&self) -> LocalBoxFuture<(NodeId, Vec<u8>)> {
        let backend = self.clone();
        Box::pin(std::future::poll_fn(move |context| {
            let polled = backend.with(|world| {
                let node = world.node_mut(backend.node);
                match node.inbox.pop_front() {
                    Some(message) => Poll::Ready(message),
                    None => {
                        node.inbox_waker = Some(context.waker().clone());
                        Poll::Pending
                    }
                }
            });
            polled.unwrap_or(Poll::Pending)
        }))
    }

    fn listen(&self, address: SocketAddr) -> io::Result<Rc<dyn ListenerBackend>> {
        let own_ip = node_ip(NodeId(self.node));
        if !address.ip().is_unspecified() && address.ip() != own_ip {
            let message = format!("cannot bind {address}: this node is {own_ip}");
            return Err(io::Error::new(io::ErrorKind::AddrNotAvailable, message));
        }
        let bound = self.with(|world| {
            let port = if address.port() == 0 { world.allocate_port() } else { address.port() };
            let bound = SocketAddr::new(own_ip, port);
            if world.net.listeners.contains_key(&bound) {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, bound.to_string()));
            }
            let listener =
                ListenerState { node: self.node, backlog: Default::default(), waker: None };
            world.net.listeners.insert(bound, listener);
            Ok(bound)
        });
        let bound = bound.unwrap_or_else(|| Err(io::Error::other("node stopped")))?;
        Ok(Rc::new(SimListener { backend: self.clone(), address: bound }))
    }

    fn connect(&self, address: SocketAddr) -> LocalBoxFuture<io::Result<Rc<dyn StreamBackend>>> {
        let (completer, completion) = completion();
        let node = self.node;
        self.with(|world| world.stream_connect(node, address, completer));
        let backend = self.clone();
        Box::pin(async move {
            let (connection, peer) = finish(completion).await?;
            Ok(Rc::new(SimStream { backend, connection, side: 0, peer }) as Rc<dyn StreamBackend>)
        })
    }
}

struct SimFile {
    backend: SimBackend,
    inode: u64,
}

impl FileBackend for SimFile {
    fn read_at(&self, mut buf: Vec<u8>, offset: u64) -> LocalBoxFuture<BufResult<usize>> {
        let inode = self.inode;
        self.backend.disk_operation(DiskCost::Transfer(buf.len()), move |disk, context| {
            let result = disk.read(inode, offset, &mut buf, context);
            (result, buf)
        })
    }

    fn write_at(&self, buf: Vec<u8>, offset: u64) -> LocalBoxFuture<BufResult<()>> {
        let inode = self.inode;
        self.backend.disk_operation(DiskCost::Transfer(buf.len()), move |disk, context| {
            let result = disk.write(inode, offset, &buf, context);
            (result, buf)
        })
    }

    fn sync(&self) -> LocalBoxFuture<io::Result<()>> {
        let inode = self.inode;
        self.backend.disk_operation(DiskCost::Sync, move |disk, context| disk.sync(inode, context))
    }

    fn len(&self) -> LocalBoxFuture<io::Result<u64>> {
        let inode = self.inode;
        self.backend.disk_operation(DiskCost::Metadata, move |disk, _| disk.len(inode))
    }

    fn truncate(&self, len: u64) -> LocalBoxFuture<io::Result<()>> {
        let inode = self.inode;
        self.backend.disk_operation(DiskCost::Metadata, move |disk, _| disk.set_len(inode, len))
    }

    fn allocate(&self, len: u64) -> LocalBoxFuture<io::Result<()>> {
        let inode = self.inode;
        // Space is not accounted in simulation: the file only grows to `len`, in zeros.
        self.backend.disk_operation(DiskCost::Metadata, move |disk, context| {
            disk.allocate(inode, len, context)
        })
    }
}

struct SimListener {
    backend: SimBackend,
    address: SocketAddr,
}

impl ListenerBackend for SimListener {
    fn accept(&self) -> LocalBoxFuture<io::Result<(Rc<dyn StreamBackend>, SocketAddr)>> {
        let backend = self.backend.clone();
        let address = self.address;
        Box::pin(std::future::poll_fn(move |context| {
            let polled = backend.with(|world| {
                let Some(listener) = world.net.listeners.get_mut(&address) else {
                    return Poll::Ready(Err(io::Error::other("listener closed")));
                };
                match listener.backlog.pop_front() {
                    Some((connection, peer)) => Poll::Ready(Ok((connection, peer))),
                    None => {
                        listener.waker = Some(context.waker().clone());
                        Poll::Pending
                    }
                }
            });
            match polled {
                Some(Poll::Ready(Ok((connection, peer)))) => {
                    let stream = SimStream { backend: backend.clone(), connection, side: 1, peer };
                    Poll::Ready(Ok((Rc::new(stream) as Rc<dyn StreamBackend>, peer)))
                }
                Some(Poll::Ready(Err(error))) => Poll::Ready(Err(error)),
                Some(Poll::Pending) | None => Poll::Pending,
            }
        }))
    }

    fn local_address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        let address = self.address;
        self.backend.with(|world| {
            if let Some(listener) = world.net.listeners.remove(&address) {
                for (connection, _) in listener.backlog {
                    world.stream_reset(connection);
                }
            }
        });
    }
}

struct SimStream {
    backend: SimBackend,
    connection: u64,
    side: usize,
    peer: SocketAddr,
}

impl StreamBackend for SimStream {
    fn read(&self, buf: Vec<u8>) -> LocalBoxFuture<BufResult<usize>> {
        let backend = self.backend.clone();
        let (connection, side) = (self.connection, self.side);
        let mut buf = Some(buf);
        Box::pin(std::future::poll_fn(move |context| {
            let polled = backend.with(|world| {
                let Some(link) = world.net.connections.get_mut(&connection) else {
                    return Poll::Ready(Err(reset_error()));
                };
                let end = &mut link.ends[side];
                if !end.readable.is_empty() {
                    let target = buf.as_mut().expect("polled after completion");
                    let count = target.len().min(end.readable.len());
                    for (slot, byte) in target.iter_mut().zip(end.readable.drain(..count)) {
                        *slot = byte;
                    }
                    return Poll::Ready(Ok(count));
                }
                if end.peer_closed {
                    return Poll::Ready(Ok(0));
                }
                end.reader = Some(context.waker().clone());
                Poll::Pending
            });
            match polled {
                Some(Poll::Ready(result)) => {
                    Poll::Ready((result, buf.take().expect("polled after completion")))
                }
                Some(Poll::Pending) | None => Poll::Pending,
            }
        }))
    }

    fn write(&self, buf: Vec<u8>) -> LocalBoxFuture<BufResult<()>> {
        let (completer, completion) = completion();
        let (connection, side) = (self.connection, self.side);
        let mut pending = Some((buf, completer));
        self.backend.with(|world| {
            let (buf, completer) = pending.take().expect("taken once");
            let shut =
                world.net.connections.get(&connection).is_some_and(|link| link.ends[side].shut);
            if shut {
                let error = io::Error::new(io::ErrorKind::BrokenPipe, "write after shutdown");
                completer.complete((Err(error), buf));
                return;
            }
            world.stream_send(connection, side, ChunkBody::Data { bytes: buf, writer: completer });
        });
        drop(pending);
        Box::pin(finish(completion))
    }

    fn shutdown(&self) -> LocalBoxFuture<io::Result<()>> {
        let (connection, side) = (self.connection, self.side);
        let result = self.backend.with(|world| {
            let Some(link) = world.net.connections.get_mut(&connection) else {
                return Err(reset_error());
            };
            if !std::mem::replace(&mut link.ends[side].shut, true) {
                world.stream_send(connection, side, ChunkBody::Fin);
            }
            Ok(())
        });
        let result = result.unwrap_or_else(|| Err(io::Error::other("node stopped")));
        Box::pin(std::future::ready(result))
    }

    fn peer_address(&self) -> SocketAddr {
        self.peer
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        let (connection, side) = (self.connection, self.side);
        self.backend.with(|world| {
            let Some(link) = world.net.connections.get_mut(&connection) else { return };
            link.ends[side].closed = true;
            let both_closed = link.ends.iter().all(|end| end.closed);
            if both_closed {
                world.stream_reset(connection);
            } else if !std::mem::replace(&mut link.ends[side].shut, true) {
                world.stream_send(connection, side, ChunkBody::Fin);
            }
        });
    }
}

/// A fresh handle for `node`'s current incarnation.
pub(crate) fn backend_for(world: &Rc<RefCell<World>>, node: u32) -> SimBackend {
    let incarnation = world.borrow().node(node).incarnation;
    SimBackend { world: Rc::downgrade(world), node, incarnation }
}
