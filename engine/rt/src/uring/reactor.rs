//! One io_uring reactor per thread: a local executor for the thread's tasks, a ring through
//! which every file and socket operation is submitted and completed, and the thread's timers
//! (kept in user space; the ring's wait times out at the earliest).
//!
//! An operation owns the memory the kernel reads or writes (buffers, paths, socket addresses)
//! in its slot of `operations` until the kernel posts its completion, even if the future that
//! asked for it is dropped: the dropped operation is then cancelled and its memory freed only
//! when the cancelled completion arrives. The number of operations in flight is
//! bounded below the completion queue's size, so completions can never overflow.

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::LocalBoxFuture;

/// Submission queue entries; the completion queue gets twice as many.
pub const RING_ENTRIES: u32 = 1024;
/// Operations in flight at most: below the completion queue's size, so it cannot overflow.
pub const OPERATIONS_IN_FLIGHT_MAX: usize = 2 * RING_ENTRIES as usize - 64;
/// Kernel workers for blocking file operations (fsync, O_DIRECT writes that must wait).
const IO_WORKERS_BOUNDED_MAX: u32 = 64;
/// Tasks polled between two looks at the ring, so I/O completions are not starved.
const POLLS_PER_ROUND_MAX: usize = 256;
/// Durable writes run inline while their moving average stays under this (see `file.rs`).
const INLINE_DURABLE_WRITE_NANOS_MAX: u64 = 2_000_000;
/// `user_data` of operations whose completion nobody waits for (cancels, closes).
const IGNORED: u64 = u64::MAX;
/// `user_data` of the eventfd read that wakes a sleeping reactor from another thread.
const WAKEUP: u64 = u64::MAX - 1;

/// Task ids woken from anywhere, and how to rouse the reactor if it sleeps in the kernel.
pub(crate) struct Wakes {
    woken: Mutex<Vec<u64>>,
    sleeping: AtomicBool,
    eventfd: RawFd,
}

impl Wakes {
    pub(crate) fn push(&self, task: u64) {
        self.woken.lock().expect("wake queue poisoned").push(task);
        if self.sleeping.load(Ordering::SeqCst) {
            self.rouse();
        }
    }

    /// Makes a reactor blocked in `io_uring_enter` return.
    pub(crate) fn rouse(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd this struct keeps open.
        let written = unsafe { libc::write(self.eventfd, (&one as *const u64).cast(), 8) };
        debug_assert!(written == 8 || written == -1);
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        // SAFETY: the eventfd is owned by this struct and closed once.
        unsafe { libc::close(self.eventfd) };
    }
}

struct TaskWaker {
    task: u64,
    wakes: Arc<Wakes>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.push(self.task);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.push(self.task);
    }
}

struct Task {
    future: Option<LocalBoxFuture<()>>,
    waker: Waker,
    queued: bool,
    aborted: bool,
}

enum Slot {
    Free {
        next: usize,
    },
    /// Submitted; `keep` holds what the kernel may touch until completion.
    Waiting {
        waker: Option<Waker>,
        keep: Option<Box<dyn Any>>,
    },
    Completed {
        result: i32,
        keep: Option<Box<dyn Any>>,
    },
    /// Its future was dropped; freed when the completion arrives.
    Abandoned {
        keep: Option<Box<dyn Any>>,
    },
}

const NO_FREE_SLOT: usize = usize::MAX;

pub(crate) struct Reactor {
    ring: RefCell<IoUring>,
    slots: RefCell<Vec<Slot>>,
    free_slot: Cell<usize>,
    in_flight: Cell<usize>,
    /// Operations waiting for room under `OPERATIONS_IN_FLIGHT_MAX`.
    room_waiters: RefCell<VecDeque<Waker>>,
    tasks: RefCell<Vec<(u32, Option<Task>)>>,
    free_tasks: RefCell<Vec<u32>>,
    ready: RefCell<VecDeque<u64>>,
    pub(crate) wakes: Arc<Wakes>,
    wakeup_buffer: Box<Cell<u64>>,
    /// Sleeps by (deadline in monotonic nanoseconds, sequence number). They live in user space:
    /// the ring only learns of the earliest, as the timeout of the wait, so a sleep that is
    /// dropped early (a request's timeout) costs no submission at all.
    timers: RefCell<BTreeMap<(u64, u64), Waker>>,
    timer_sequence: Cell<u64>,
    /// Moving average of how long durable writes took (see `File::write_durable_at`).
    durable_write_nanos: Cell<u64>,
    /// The zeros `File::allocate` writes, kept between its calls (see [`Reactor::take_zeros`]).
    zeros: Cell<Vec<u8>>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Rc<Reactor>> {
        let ring = IoUring::builder()
            .setup_cqsize(2 * RING_ENTRIES)
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(RING_ENTRIES)
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("io_uring unavailable: io_uring_setup failed: {error}"),
                )
            })?;
        // Sleeps wait through the timeout argument of io_uring_enter (Linux 5.11).
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring unavailable: the kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11)",
            ));
        }
        // Operations that cannot complete without blocking (fsync, most O_DIRECT writes) run on
        // the kernel's io-wq workers; by default it allows only a few per CPU for file work,
        // which would cap the queue depth the engine asked for.
        let mut workers_max = [IO_WORKERS_BOUNDED_MAX, 0];
        if let Err(error) = ring.submitter().register_iowq_max_workers(&mut workers_max) {
            return Err(io::Error::new(
                error.kind(),
                format!("io_uring: cannot size the io-wq pool: {error}"),
            ));
        }
        // SAFETY: plain syscall; the fd is owned by `Wakes`.
        let eventfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if eventfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let wakes = Arc::new(Wakes {
            woken: Mutex::new(Vec::new()),
            sleeping: AtomicBool::new(false),
            eventfd,
        });
        let reactor = Rc::new(Reactor {
            ring: RefCell::new(ring),
            slots: RefCell::new(Vec::new()),
            free_slot: Cell::new(NO_FREE_SLOT),
            in_flight: Cell::new(0),
            room_waiters: RefCell::new(VecDeque::new()),
            tasks: RefCell::new(Vec::new()),
            free_tasks: RefCell::new(Vec::new()),
            ready: RefCell::new(VecDeque::new()),
            wakes,
            wakeup_buffer: Box::new(Cell::new(0)),
            timers: RefCell::new(BTreeMap::new()),
            timer_sequence: Cell::new(0),
            durable_write_nanos: Cell::new(0),
            zeros: Cell::new(Vec::new()),
        });
        reactor.arm_wakeup()?;
        Ok(reactor)
    }

    /// Keeps one read of the eventfd in the ring, so another thread can wake this one.
    fn arm_wakeup(&self) -> io::Result<()> {
        let entry =
            opcode::Read::new(types::Fd(self.wakes.eventfd), self.wakeup_buffer.as_ptr().cast(), 8)
                .build()
                .user_data(WAKEUP);
        self.push(&entry)
    }

    /// Puts an entry in the submission queue, flushing the queue to the kernel if it is full.
    fn push(&self, entry: &squeue::Entry) -> io::Result<()> {
        let mut ring = self.ring.borrow_mut();
        loop {
            // SAFETY: every pointer in `entry` refers to memory kept alive until completion
            // (owned by the operation's slot, or by the reactor itself).
            if unsafe { ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            match ring.submit() {
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                    drop(ring);
                    self.reap();
                    ring = self.ring.borrow_mut();
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    fn allocate_slot(&self, keep: Option<Box<dyn Any>>) -> usize {
        let mut slots = self.slots.borrow_mut();
        let waiting = Slot::Waiting { waker: None, keep };
        let free = self.free_slot.get();
        if free == NO_FREE_SLOT {
            slots.push(waiting);
            return slots.len() - 1;
        }
        let Slot::Free { next } = std::mem::replace(&mut slots[free], waiting) else {
            unreachable!("the free list holds only free slots")
        };
        self.free_slot.set(next);
        free
    }

    fn release_slot(&self, index: usize) -> Slot {
        let slot = std::mem::replace(
            &mut self.slots.borrow_mut()[index],
            Slot::Free { next: self.free_slot.get() },
        );
        self.free_slot.set(index);
        self.in_flight.set(self.in_flight.get() - 1);
        if let Some(waiter) = self.room_waiters.borrow_mut().pop_front() {
            waiter.wake();
        }
        slot
    }

    /// Posts an operation whose completion nobody awaits (a close, a cancel).
    pub(crate) fn submit_detached(&self, entry: squeue::Entry) {
        if let Err(error) = self.push(&entry.user_data(IGNORED)) {
            panic!("io_uring submission failed for a detached operation: {error}");
        }
    }

    /// Takes completions from the ring and wakes their operations.
    pub(crate) fn reap(&self) -> usize {
        let completions: Vec<cqueue::Entry> = self.ring.borrow_mut().completion().collect();
        for completion in &completions {
            match completion.user_data() {
                IGNORED => {}
                WAKEUP => {
                    if let Err(error) = self.arm_wakeup() {
                        panic!("cannot re-arm the reactor's wakeup: {error}");
                    }
                }
                index => self.complete(index as usize, completion.result()),
            }
        }
        completions.len()
    }

    fn complete(&self, index: usize, result: i32) {
        let mut slots = self.slots.borrow_mut();
        let slot = std::mem::replace(&mut slots[index], Slot::Free { next: NO_FREE_SLOT });
        match slot {
            Slot::Waiting { waker, keep } => {
                slots[index] = Slot::Completed { result, keep };
                drop(slots);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Slot::Abandoned { keep } => {
                slots[index] = Slot::Abandoned { keep: None };
                drop(slots);
                drop(keep);
                self.release_slot(index);
            }
            Slot::Free { .. } | Slot::Completed { .. } => {
                panic!("io_uring completion for operation {index} that is not in flight")
            }
        }
    }

    // Tasks.

    pub(crate) fn spawn(&self, future: LocalBoxFuture<()>) -> u64 {
        let mut tasks = self.tasks.borrow_mut();
        let index = match self.free_tasks.borrow_mut().pop() {
            Some(index) => index,
            None => {
                tasks.push((0, None));
                u32::try_from(tasks.len() - 1).expect("over 4 billion tasks")
            }
        };
        let (generation, slot) = &mut tasks[index as usize];
        let id = (u64::from(*generation) << 32) | u64::from(index);
        let waker = Waker::from(Arc::new(TaskWaker { task: id, wakes: self.wakes.clone() }));
        *slot = Some(Task { future: Some(future), waker, queued: true, aborted: false });
        self.ready.borrow_mut().push_back(id);
        id
    }

    fn with_task<R>(&self, id: u64, action: impl FnOnce(&mut Task) -> R) -> Option<R> {
        let mut tasks = self.tasks.borrow_mut();
        let (generation, slot) = tasks.get_mut((id & 0xffff_ffff) as usize)?;
        if u64::from(*generation) != id >> 32 {
            return None;
        }
        slot.as_mut().map(action)
    }

    fn remove_task(&self, id: u64) -> Option<Task> {
        let mut tasks = self.tasks.borrow_mut();
        let index = (id & 0xffff_ffff) as usize;
        let (generation, slot) = tasks.get_mut(index)?;
        if u64::from(*generation) != id >> 32 {
            return None;
        }
        let task = slot.take()?;
        *generation = generation.wrapping_add(1);
        self.free_tasks.borrow_mut().push(index as u32);
        Some(task)
    }

    pub(crate) fn abort(&self, id: u64) {
        let polling = self.with_task(id, |task| {
            task.aborted = true;
            task.future.is_none()
        });
        if polling == Some(false) {
            drop(self.remove_task(id));
        }
    }

    fn drain_wakes(&self) {
        let woken = std::mem::take(&mut *self.wakes.woken.lock().expect("wake queue poisoned"));
        for id in woken {
            let newly = self.with_task(id, |task| !std::mem::replace(&mut task.queued, true));
            if newly == Some(true) {
                self.ready.borrow_mut().push_back(id);
            }
        }
    }

    /// Polls up to a round's worth of ready tasks; returns how many ran.
    fn run_ready(&self) -> usize {
        self.drain_wakes();
        let mut polled = 0;
        while polled < POLLS_PER_ROUND_MAX {
            let Some(id) = self.ready.borrow_mut().pop_front() else { break };
            let taken = self.with_task(id, |task| {
                task.queued = false;
                task.future.take().map(|future| (future, task.waker.clone()))
            });
            let Some(Some((mut future, waker))) = taken else { continue };
            polled += 1;
            let done = future.as_mut().poll(&mut Context::from_waker(&waker)).is_ready();
            let keep = self.with_task(id, |task| !done && !task.aborted);
            if keep == Some(true) {
                self.with_task(id, |task| task.future = Some(future));
            } else {
                drop(self.remove_task(id));
                drop(future);
            }
        }
        polled
    }

    /// Runs tasks and I/O until `done` holds.
    pub(crate) fn run_until(&self, done: impl Fn() -> bool) -> io::Result<()> {
        loop {
            self.fire_timers();
            self.run_ready();
            if done() {
                return Ok(());
            }
            // One io_uring_enter per round: it submits what the tasks queued and, when no task
            // is ready, also waits for a completion, a wake from another thread or the earliest
            // sleep's deadline.
            self.wakes.sleeping.store(true, Ordering::SeqCst);
            let runnable = !self.ready.borrow().is_empty()
                || !self.wakes.woken.lock().expect("wake queue poisoned").is_empty();
            let result = if runnable {
                self.ring.borrow().submit()
            } else {
                self.submit_and_wait_until_timer()
            };
            self.wakes.sleeping.store(false, Ordering::SeqCst);
            match result {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {}
                Err(error) if error.raw_os_error() == Some(libc::ETIME) => {}
                Err(error) => return Err(error),
            }
            self.reap();
        }
    }

    /// Submits and waits for a completion, at most until the earliest sleep's deadline.
    fn submit_and_wait_until_timer(&self) -> io::Result<usize> {
        let earliest = self.timers.borrow().first_key_value().map(|(&(deadline, _), _)| deadline);
        let ring = self.ring.borrow();
        let Some(deadline) = earliest else { return ring.submit_and_wait(1) };
        let wait = deadline.saturating_sub(super::monotonic_nanos());
        let timespec =
            types::Timespec::new().sec(wait / 1_000_000_000).nsec((wait % 1_000_000_000) as u32);
        ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&timespec))
    }

    /// Hands what the tasks queued to the kernel now, without waiting: before this thread blocks
    /// in a call of its own, so that the peer messages and replies queued before it go out
    /// first (a leader's appends reach its followers while it syncs its own log).
    pub(crate) fn submit_queued(&self) {
        if self.ring.borrow_mut().submission().is_empty() {
            return;
        }
        // A failure (the ring busy) leaves them queued for the next round, which retries.
        let _ = self.ring.borrow().submit();
    }

    /// Whether durable writes run inline on this thread: while recent ones were fast.
    pub(crate) fn durable_writes_inline(&self) -> bool {
        self.durable_write_nanos.get() < INLINE_DURABLE_WRITE_NANOS_MAX
    }

    /// Folds one durable write's duration into the moving average (weight 1/8).
    pub(crate) fn record_durable_write(&self, nanos: u64) {
        let average = self.durable_write_nanos.get();
        self.durable_write_nanos.set(average - average / 8 + nanos / 8);
    }

    /// `len` zero bytes, to write. A spare WAL segment is zeroed in steps of one size, and a
    /// fresh buffer per step cost an allocation and a memset of the step (3% of the
    /// instructions of the GETs served while a spare was made): the buffer given back is kept.
    pub(crate) fn take_zeros(&self, len: usize) -> Vec<u8> {
        let kept = self.zeros.take();
        if kept.len() == len {
            kept
        } else {
            vec![0; len]
        }
    }

    /// Keeps `zeros` for the next [`Reactor::take_zeros`]: only ever the source of writes, it
    /// still holds nothing but zeros.
    pub(crate) fn give_back_zeros(&self, zeros: Vec<u8>) {
        debug_assert!(zeros.iter().all(|&byte| byte == 0), "zeros stay zeros");
        self.zeros.set(zeros);
    }

    // Timers.

    /// Registers a sleep until `deadline` (monotonic nanoseconds); `None` if it already passed.
    fn add_timer(&self, deadline: u64, waker: Waker) -> Option<(u64, u64)> {
        if deadline <= super::monotonic_nanos() {
            return None;
        }
        let key = (deadline, self.timer_sequence.get());
        self.timer_sequence.set(key.1 + 1);
        self.timers.borrow_mut().insert(key, waker);
        Some(key)
    }

    /// Wakes every sleep whose deadline has passed.
    fn fire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        let now = super::monotonic_nanos();
        loop {
            let mut timers = self.timers.borrow_mut();
            let Some(entry) = timers.first_entry() else { return };
            if entry.key().0 > now {
                return;
            }
            let waker = entry.remove();
            drop(timers);
            waker.wake();
        }
    }

    /// Drops every task, then waits out the operations the kernel still owns memory of.
    pub(crate) fn shutdown(&self) {
        let tasks: Vec<Option<Task>> =
            self.tasks.borrow_mut().drain(..).map(|(_, task)| task).collect();
        drop(tasks);
        self.timers.borrow_mut().clear();
        while self.in_flight.get() > 0 {
            if self.ring.borrow().submit_and_wait(1).is_err() {
                break;
            }
            self.reap();
        }
        // Closes queued by the dropped tasks' descriptors must reach the kernel, or their file
        // descriptors would outlive the reactor.
        let _ = self.ring.borrow().submit();
    }
}

/// A sleep until a deadline, kept in the reactor's timers (not in the ring).
pub(crate) struct Sleep {
    reactor: Rc<Reactor>,
    deadline: u64,
    /// The timer's key while it is registered; `None` before the first poll and once fired.
    key: Option<(u64, u64)>,
    started: bool,
}

impl Sleep {
    /// `deadline` is in monotonic nanoseconds.
    pub(crate) fn new(reactor: &Rc<Reactor>, deadline: u64) -> Sleep {
        Sleep { reactor: reactor.clone(), deadline, key: None, started: false }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if !this.started {
            this.started = true;
            this.key = this.reactor.add_timer(this.deadline, context.waker().clone());
            return if this.key.is_some() { Poll::Pending } else { Poll::Ready(()) };
        }
        let Some(key) = this.key else { return Poll::Ready(()) };
        match this.reactor.timers.borrow_mut().get_mut(&key) {
            Some(waker) => {
                waker.clone_from(context.waker());
                Poll::Pending
            }
            None => {
                this.key = None;
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.reactor.timers.borrow_mut().remove(&key);
        }
    }
}

/// An io_uring operation as a future. It is submitted at its first poll; if dropped before it
/// completes, it is cancelled and its memory (`keep`) stays with the reactor until the kernel
/// lets go of it.
pub(crate) struct Operation {
    reactor: Rc<Reactor>,
    state: OperationState,
}

enum OperationState {
    Unsubmitted { entry: squeue::Entry, keep: Option<Box<dyn Any>> },
    Submitted { index: usize },
    Done,
}

impl Operation {
    /// `keep` must own every buffer `entry` points into.
    pub(crate) fn new(
        reactor: &Rc<Reactor>,
        entry: squeue::Entry,
        keep: Option<Box<dyn Any>>,
    ) -> Operation {
        Operation { reactor: reactor.clone(), state: OperationState::Unsubmitted { entry, keep } }
    }
}

impl Future for Operation {
    /// The kernel's result (negative errno on failure) and the memory handed in.
    type Output = (i32, Option<Box<dyn Any>>);

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let reactor = self.reactor.clone();
        match std::mem::replace(&mut self.state, OperationState::Done) {
            OperationState::Unsubmitted { entry, keep } => {
                if reactor.in_flight.get() >= OPERATIONS_IN_FLIGHT_MAX {
                    reactor.room_waiters.borrow_mut().push_back(context.waker().clone());
                    self.state = OperationState::Unsubmitted { entry, keep };
                    return Poll::Pending;
                }
                let index = reactor.allocate_slot(keep);
                reactor.in_flight.set(reactor.in_flight.get() + 1);
                if let Err(error) = reactor.push(&entry.user_data(index as u64)) {
                    let Slot::Waiting { keep, .. } = reactor.release_slot(index) else {
                        unreachable!()
                    };
                    return Poll::Ready((-error.raw_os_error().unwrap_or(libc::EIO), keep));
                }
                if let Slot::Waiting { waker, .. } = &mut reactor.slots.borrow_mut()[index] {
                    *waker = Some(context.waker().clone());
                }
                self.state = OperationState::Submitted { index };
                Poll::Pending
            }
            OperationState::Submitted { index } => {
                let mut slots = reactor.slots.borrow_mut();
                match &mut slots[index] {
                    Slot::Completed { .. } => {
                        drop(slots);
                        let Slot::Completed { result, keep } = reactor.release_slot(index) else {
                            unreachable!()
                        };
                        Poll::Ready((result, keep))
                    }
                    Slot::Waiting { waker, .. } => {
                        *waker = Some(context.waker().clone());
                        drop(slots);
                        self.state = OperationState::Submitted { index };
                        Poll::Pending
                    }
                    Slot::Free { .. } | Slot::Abandoned { .. } => {
                        panic!("operation {index} polled in a bad state")
                    }
                }
            }
            OperationState::Done => panic!("io_uring operation polled after completion"),
        }
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        let OperationState::Submitted { index } = self.state else { return };
        let reactor = &self.reactor;
        let mut slots = reactor.slots.borrow_mut();
        match std::mem::replace(&mut slots[index], Slot::Free { next: NO_FREE_SLOT }) {
            Slot::Waiting { keep, .. } => {
                slots[index] = Slot::Abandoned { keep };
                drop(slots);
                reactor.submit_detached(opcode::AsyncCancel::new(index as u64).build());
            }
            Slot::Completed { keep, .. } => {
                slots[index] = Slot::Completed { result: 0, keep: None };
                drop(slots);
                drop(keep);
                reactor.release_slot(index);
            }
            Slot::Free { .. } | Slot::Abandoned { .. } => {
                panic!("operation {index} dropped in a bad state")
            }
        }
    }
}

/// Converts a kernel result into an `io::Result` of the non-negative value.
pub(crate) fn check(result: i32) -> io::Result<u32> {
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result))
    } else {
        Ok(result as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durable writes run inline while they are fast, go through the ring once a slow disk pulls
    /// the moving average past the limit, and come back inline once it is fast again.
    #[test]
    fn durable_writes_leave_the_thread_while_the_disk_is_slow() {
        let reactor = Reactor::new().expect("io_uring");
        assert!(reactor.durable_writes_inline(), "a new reactor writes inline");
        for _ in 0..8 {
            reactor.record_durable_write(200_000);
        }
        assert!(reactor.durable_writes_inline(), "fast writes stay inline");
        reactor.record_durable_write(50_000_000);
        assert!(!reactor.durable_writes_inline(), "one stall moves writes to the ring");
        let mut writes = 0;
        while !reactor.durable_writes_inline() {
            reactor.record_durable_write(200_000);
            writes += 1;
            assert!(writes < 64, "fast writes never brought the average back");
        }
    }
}
