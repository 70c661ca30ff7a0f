//! The state of a whole simulated cluster: virtual time, the event queue, every task of every
//! node, the disks and the network. It lives in one `RefCell` on one thread.
//!
//! The rule that keeps it sound: no user code runs while the world is borrowed. Event actions are
//! the simulator's own closures; user futures are polled, dropped and booted only by
//! [`crate::Sim`] between borrows (removed futures wait in the graveyard, restarts in `boots`).

use crate::disk::SimDisk;
use crate::faults::FaultConfig;
use crate::net::NetState;
use std::any::Any;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use strata_rt::{LocalBoxFuture, NodeId, Rng, Runtime};

/// Starts (or restarts) a node's software on a fresh runtime handle.
pub type Boot = Rc<dyn Fn(Runtime) -> LocalBoxFuture<()>>;

/// An action the simulator performs at a point of virtual time.
pub(crate) type Action = Box<dyn FnOnce(&mut World)>;

/// Event kinds, folded into the trace hash with each executed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Tag {
    Timer = 1,
    Disk = 2,
    Message = 3,
    Stream = 4,
    Nemesis = 5,
    Poll = 6,
    Send = 7,
    Write = 8,
    Control = 9,
}

struct Scheduled {
    time: u64,
    sequence: u64,
    tag: Tag,
    node: u32,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.sequence) == (other.time, other.sequence)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: the heap's top is the earliest event, ties broken by scheduling order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.sequence).cmp(&(self.time, self.sequence))
    }
}

/// Task ids woken since the scheduler last looked. Wakers must be `Send + Sync`, so this is the one
/// lock in the simulator; it is never contended.
#[derive(Default)]
pub(crate) struct WakeQueue {
    woken: Mutex<Vec<u64>>,
}

struct TaskWaker {
    task: u64,
    queue: Arc<WakeQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.woken.lock().expect("wake queue poisoned").push(self.task);
    }
}

pub(crate) struct Task {
    pub node: u32,
    /// `None` while the task is being polled.
    pub future: Option<LocalBoxFuture<()>>,
    pub waker: Waker,
    /// In the ready list, or parked on a paused node.
    pub queued: bool,
    /// Aborted while being polled: drop it when the poll returns.
    pub aborted: bool,
}

struct TaskSlot {
    generation: u32,
    task: Option<Task>,
}

/// A slab of tasks; a task id is `generation << 32 | index`, so a stale id never hits a new task.
#[derive(Default)]
pub(crate) struct Tasks {
    slots: Vec<TaskSlot>,
    free: Vec<u32>,
    pub ready: Vec<u64>,
    pub count: usize,
}

impl Tasks {
    pub fn insert(&mut self, node: u32, future: LocalBoxFuture<()>, queue: &Arc<WakeQueue>) -> u64 {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(TaskSlot { generation: 0, task: None });
                u32::try_from(self.slots.len() - 1).expect("over 4 billion tasks")
            }
        };
        let slot = &mut self.slots[index as usize];
        let id = (u64::from(slot.generation) << 32) | u64::from(index);
        let waker = Waker::from(Arc::new(TaskWaker { task: id, queue: queue.clone() }));
        slot.task = Some(Task { node, future: Some(future), waker, queued: true, aborted: false });
        self.ready.push(id);
        self.count += 1;
        id
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Task> {
        let slot = self.slots.get_mut((id & 0xffff_ffff) as usize)?;
        if u64::from(slot.generation) != id >> 32 {
            return None;
        }
        slot.task.as_mut()
    }

    pub fn remove(&mut self, id: u64) -> Option<Task> {
        let index = (id & 0xffff_ffff) as usize;
        let slot = self.slots.get_mut(index)?;
        if u64::from(slot.generation) != id >> 32 {
            return None;
        }
        let task = slot.task.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index as u32);
        self.count -= 1;
        Some(task)
    }

    /// Ids of every live task of `node`, in slab order.
    pub fn of_node(&self, node: u32) -> Vec<u64> {
        let mut ids = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            if let Some(task) = &slot.task {
                if task.node == node {
                    ids.push((u64::from(slot.generation) << 32) | index as u64);
                }
            }
        }
        ids
    }

    pub fn all(&self) -> Vec<u64> {
        let mut ids = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.task.is_some() {
                ids.push((u64::from(slot.generation) << 32) | index as u64);
            }
        }
        ids
    }
}

/// Folds every executed event into one 64-bit value. Two runs with equal hashes executed the same
/// events in the same order at the same virtual times.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trace {
    pub hash: u64,
}

impl Trace {
    pub fn fold(&mut self, word: u64) {
        // A multiply-xorshift step (from wyhash's mixer): cheap, and every input bit reaches every
        // output bit within two steps.
        let mixed = (self.hash ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.hash = mixed ^ (mixed >> 29);
    }

    pub fn fold_bytes(&mut self, bytes: &[u8]) {
        self.fold(bytes.len() as u64);
        self.fold(u64::from(crc32c::crc32c(bytes)));
    }
}

/// What happened in a run, by kind: what the tests read to see that each fault fired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub polls: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    /// Arrived at a crashed node or a full inbox.
    pub messages_undeliverable: u64,
    pub messages_duplicated: u64,
    pub messages_reordered: u64,
    pub messages_blocked: u64,
    pub messages_clogged: u64,
    pub stream_bytes: u64,
    pub disk_reads: u64,
    pub disk_writes: u64,
    pub disk_syncs: u64,
    pub torn_writes: u64,
    pub lost_writes: u64,
    pub misdirected_writes: u64,
    pub latent_sector_errors: u64,
    pub latent_read_failures: u64,
    pub bit_flips: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub sync_errors: u64,
    pub no_space_errors: u64,
    pub slow_operations: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub one_way_partitions: u64,
    pub isolations: u64,
    pub clogs: u64,
    pub clock_jumps: u64,
    pub buggify_fired: u64,
}

/// A node's clocks. Monotonic time runs at `1 + rate_ppm / 10^6` of true (virtual) time from an
/// anchor; wall time is monotonic time plus an offset that jumps.
#[derive(Clone, Debug)]
pub(crate) struct NodeClock {
    anchor_global: u64,
    anchor_local: u64,
    rate_ppm: i64,
    wall_offset: i128,
}

const PPM: i128 = 1_000_000;

impl NodeClock {
    pub fn new(now: u64, boot_local: u64, rate_ppm: i64, unix_start: u64) -> NodeClock {
        assert!(rate_ppm.abs() < 500_000, "clock rate {rate_ppm} ppm");
        NodeClock {
            anchor_global: now,
            anchor_local: boot_local,
            rate_ppm,
            wall_offset: i128::from(unix_start) - i128::from(boot_local),
        }
    }

    pub fn local(&self, global: u64) -> u64 {
        let elapsed = i128::from(global.saturating_sub(self.anchor_global));
        let scaled = elapsed * (PPM + i128::from(self.rate_ppm)) / PPM;
        self.anchor_local + scaled as u64
    }

    /// The earliest global time at which the local clock reads at least `local`.
    pub fn global_at(&self, local: u64, now: u64) -> u64 {
        if local <= self.local(now) {
            return now;
        }
        let ahead = i128::from(local - self.anchor_local);
        let rate = PPM + i128::from(self.rate_ppm);
        let global = self.anchor_global as i128 + (ahead * PPM + rate - 1) / rate;
        (global as u64).max(now)
    }

    pub fn wall(&self, global: u64) -> u64 {
        (i128::from(self.local(global)) + self.wall_offset).max(0) as u64
    }

    pub fn jump_wall(&mut self, delta_nanos: i64) {
        self.wall_offset += i128::from(delta_nanos);
    }

    pub fn rate_ppm(&self) -> i64 {
        self.rate_ppm
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    Paused,
    Crashed,
}

/// How the nemesis may treat a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// The nemesis may crash, restart and pause it (servers yes; workload clients no).
    pub crashable: bool,
    /// Silent storage faults (misdirected writes, latent sector errors, bit rot) may hit its disk.
    /// Give this to at most a minority of replicas, as real fault models do.
    pub corruptible: bool,
}

impl NodeOptions {
    pub const SERVER: NodeOptions = NodeOptions { crashable: true, corruptible: false };
    pub const CLIENT: NodeOptions = NodeOptions { crashable: false, corruptible: false };
}

pub(crate) struct Node {
    pub id: NodeId,
    pub options: NodeOptions,
    pub state: NodeState,
    pub incarnation: u64,
    pub clock: NodeClock,
    pub rng: Rng,
    pub boot: Boot,
    pub disk: SimDisk,
    pub inbox: std::collections::VecDeque<(NodeId, Vec<u8>)>,
    pub inbox_waker: Option<Waker>,
    /// Tasks woken while the node was paused.
    pub parked: Vec<u64>,
}

pub(crate) struct World {
    pub now: u64,
    pub seed: u64,
    /// Every simulator decision draws from this one generator, in event order.
    pub rng: Rng,
    pub config: FaultConfig,
    /// Probabilistic faults and the nemesis act only while this holds.
    pub faults_active: bool,
    events: BinaryHeap<Scheduled>,
    sequence: u64,
    pub tasks: Tasks,
    pub nodes: Vec<Node>,
    pub net: NetState,
    pub trace: Trace,
    pub stats: Stats,
    pub wake_queue: Arc<WakeQueue>,
    /// Futures removed while the world was borrowed, dropped by the driver after it lets go.
    pub graveyard: Vec<Box<dyn Any>>,
    /// Nodes to boot once the world is released.
    pub boots: Vec<u32>,
    /// Wall-clock time of virtual time zero.
    pub unix_start: u64,
}

impl World {
    pub fn new(seed: u64, config: FaultConfig) -> Rc<RefCell<World>> {
        let mut rng = Rng::with_seed(seed);
        // 2026-01-01 plus up to a year, so code cannot assume a fixed date.
        let unix_start = 1_767_225_600_000_000_000 + rng.below(365 * 86_400) * 1_000_000_000;
        Rc::new(RefCell::new(World {
            now: 0,
            seed,
            rng,
            faults_active: true,
            config,
            events: BinaryHeap::new(),
            sequence: 0,
            tasks: Tasks::default(),
            nodes: Vec::new(),
            net: NetState::default(),
            trace: Trace { hash: 0xcbf2_9ce4_8422_2325 ^ seed },
            stats: Stats::default(),
            wake_queue: Arc::new(WakeQueue::default()),
            graveyard: Vec::new(),
            boots: Vec::new(),
            unix_start,
        }))
    }

    pub fn schedule(&mut self, delay_nanos: u64, tag: Tag, node: u32, action: Action) {
        self.schedule_at(self.now.saturating_add(delay_nanos), tag, node, action);
    }

    pub fn schedule_at(&mut self, time: u64, tag: Tag, node: u32, action: Action) {
        assert!(time >= self.now, "event scheduled in the past: {time} < {}", self.now);
        self.sequence += 1;
        self.events.push(Scheduled { time, sequence: self.sequence, tag, node, action });
    }

    pub fn next_event_time(&self) -> Option<u64> {
        self.events.peek().map(|event| event.time)
    }

    /// Advances time to the earliest event and runs it.
    pub fn run_next_event(&mut self) {
        let event = self.events.pop().expect("run_next_event on an empty queue");
        self.now = event.time;
        self.stats.events += 1;
        self.trace.fold(event.time);
        self.trace.fold(((event.tag as u64) << 32) | u64::from(event.node));
        (event.action)(self);
    }

    /// Moves woken task ids into the ready list, once each.
    pub fn drain_wakes(&mut self) {
        let woken =
            std::mem::take(&mut *self.wake_queue.woken.lock().expect("wake queue poisoned"));
        for id in woken {
            if let Some(task) = self.tasks.get_mut(id) {
                if !task.queued {
                    task.queued = true;
                    self.tasks.ready.push(id);
                }
            }
        }
    }

    pub fn node(&self, node: u32) -> &Node {
        &self.nodes[node as usize]
    }

    pub fn node_mut(&mut self, node: u32) -> &mut Node {
        &mut self.nodes[node as usize]
    }

    /// Whether `node` still runs the incarnation an operation was issued by.
    pub fn is_current(&self, node: u32, incarnation: u64) -> bool {
        let node = self.node(node);
        node.incarnation == incarnation && node.state != NodeState::Crashed
    }

    /// A latency drawn from the configured range, in nanoseconds.
    pub fn network_latency(&mut self) -> u64 {
        let network = &self.config.network;
        let (low, high) =
            (network.latency_min_us, network.latency_max_us.max(network.latency_min_us));
        self.rng.range_inclusive(low, high) * 1_000
    }

    /// Whether a probabilistic fault fires now.
    pub fn fault(&mut self, probability: f64) -> bool {
        self.faults_active && self.rng.chance(probability)
    }
}
