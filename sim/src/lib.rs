//! The deterministic simulator: a whole cluster on one thread, driven by one seed.
//!
//! A [`Sim`] owns virtual time, a seeded scheduler that picks among ready tasks at random, an
//! event queue that time jumps along, and per node a simulated disk, clock and network endpoint
//! with the faults of [`FaultConfig`]. Node software is written against `strata_rt::Runtime` and
//! cannot tell it is simulated. Every executed event and every task poll is folded into a trace
//! hash: the same seed must give the same hash, which the tests check.

mod backend;
mod disk;
pub mod faults;
mod nemesis;
mod net;
pub mod scenario;
mod world;

pub use disk::SECTOR_SIZE;
pub use faults::{CrashLoss, DiskFaults, FaultConfig, NetworkFaults, ProcessFaults};
pub use net::node_ip;
pub use world::{Boot, NodeOptions, NodeState, Stats};

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::task::Context;
use strata_rt::{Duration, LocalBoxFuture, NodeId, Runtime};
use world::{Node, Tag, World};

/// What one call to [`Sim::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Polled,
    Event,
    /// No task is ready and the next event lies beyond the limit (or there is none).
    Idle,
}

/// One simulated cluster.
pub struct Sim {
    world: Rc<RefCell<World>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Sim").field("seed", &self.seed()).field("now", &self.now()).finish()
    }
}

struct BuggifySites {
    active: BTreeMap<&'static str, bool>,
}

impl Sim {
    /// A cluster with no nodes yet. Faults stay off until [`Sim::start_faults`].
    pub fn new(seed: u64, config: FaultConfig) -> Sim {
        let world = World::new(seed, config);
        world.borrow_mut().faults_active = false;
        let sim = Sim { world };
        sim.install_buggify();
        sim
    }

    /// `buggify!()` on this thread: each point is active in a quarter of runs (decided the first
    /// time it is reached) and then fires a quarter of the times it is reached.
    fn install_buggify(&self) {
        let world = Rc::downgrade(&self.world);
        let sites = RefCell::new(BuggifySites { active: BTreeMap::new() });
        strata_rt::install_buggify_hook(Some(Rc::new(move |site: &'static str| {
            let Some(world) = world.upgrade() else { return false };
            let Ok(mut world) = world.try_borrow_mut() else { return false };
            if !world.config.buggify || !world.faults_active {
                return false;
            }
            let mut sites = sites.borrow_mut();
            let active = *sites.active.entry(site).or_insert_with(|| world.rng.chance(0.25));
            let fire = active && world.rng.chance(0.25);
            if fire {
                world.stats.buggify_fired += 1;
                world.trace.fold(u64::from(crc32c::crc32c(site.as_bytes())));
            }
            fire
        })));
    }

    /// Adds a node and boots it: `boot` runs now and after every restart, on a fresh runtime.
    pub fn add_node(
        &mut self,
        options: NodeOptions,
        boot: impl Fn(Runtime) -> LocalBoxFuture<()> + 'static,
    ) -> NodeId {
        let id = {
            let mut world = self.world.borrow_mut();
            let id = world.nodes.len() as u32;
            let clock = world.new_clock();
            let seed = nemesis::node_seed(world.seed, id, 0);
            world.nodes.push(Node {
                id: NodeId(id),
                options,
                state: NodeState::Running,
                incarnation: 0,
                clock,
                rng: strata_rt::Rng::with_seed(seed),
                boot: Rc::new(boot),
                disk: disk::SimDisk::new(),
                inbox: Default::default(),
                inbox_waker: None,
                parked: Vec::new(),
            });
            world.boots.push(id);
            id
        };
        self.settle();
        NodeId(id)
    }

    /// A runtime handle on `node`'s current incarnation (for tests that drive a node directly).
    pub fn runtime(&self, node: NodeId) -> Runtime {
        Runtime::new(Rc::new(backend::backend_for(&self.world, node.0)))
    }

    /// Turns on the probabilistic faults and the nemesis until `duration` from now; then heals.
    pub fn start_faults(&mut self, duration: Duration) {
        let mut world = self.world.borrow_mut();
        let until = world.now + duration.as_nanos() as u64;
        world.start_faults(until);
    }

    /// Turns the probabilistic faults on (or off) without a nemesis, for tests of one fault.
    pub fn set_faults_active(&mut self, active: bool) {
        self.world.borrow_mut().faults_active = active;
    }

    /// Drops what the world set aside and boots what it restarted, outside its borrow.
    fn settle(&mut self) {
        loop {
            let (graveyard, boots) = {
                let mut world = self.world.borrow_mut();
                (std::mem::take(&mut world.graveyard), std::mem::take(&mut world.boots))
            };
            if graveyard.is_empty() && boots.is_empty() {
                return;
            }
            drop(graveyard);
            for node in boots {
                let boot = self.world.borrow().node(node).boot.clone();
                let future = boot(self.runtime(NodeId(node)));
                let mut world = self.world.borrow_mut();
                let queue = world.wake_queue.clone();
                world.trace.fold(((Tag::Control as u64) << 56) | u64::from(node));
                world.tasks.insert(node, future, &queue);
            }
        }
    }

    /// Polls one ready task, or runs one event no later than `limit` (virtual nanoseconds).
    pub fn step(&mut self, limit: u64) -> Step {
        self.settle();
        let picked = {
            let mut guard = self.world.borrow_mut();
            let world = &mut *guard;
            world.drain_wakes();
            loop {
                if world.tasks.ready.is_empty() {
                    break None;
                }
                let index = world.rng.index(world.tasks.ready.len());
                let id = world.tasks.ready.swap_remove(index);
                let Some(task) = world.tasks.get_mut(id) else { continue };
                let node = task.node;
                if world.node(node).state == NodeState::Paused {
                    world.node_mut(node).parked.push(id);
                    continue;
                }
                let task = world.tasks.get_mut(id).expect("looked up above");
                task.queued = false;
                let future = task.future.take().expect("a ready task is not being polled");
                let waker = task.waker.clone();
                world.stats.polls += 1;
                world.trace.fold(((Tag::Poll as u64) << 56) ^ id);
                break Some((id, future, waker));
            }
        };
        if let Some((id, mut future, waker)) = picked {
            let done = future.as_mut().poll(&mut Context::from_waker(&waker)).is_ready();
            let finished = {
                let mut world = self.world.borrow_mut();
                match world.tasks.get_mut(id) {
                    Some(task) if !done && !task.aborted => {
                        task.future = Some(future);
                        None
                    }
                    Some(_) => {
                        world.tasks.remove(id);
                        Some(future)
                    }
                    None => Some(future),
                }
            };
            drop(finished);
            return Step::Polled;
        }
        let mut world = self.world.borrow_mut();
        match world.next_event_time() {
            Some(time) if time <= limit => {
                world.run_next_event();
                Step::Event
            }
            _ => Step::Idle,
        }
    }

    /// Runs until virtual time reaches `now + duration`, or nothing is left to do.
    pub fn run_for(&mut self, duration: Duration) {
        let limit = self.world.borrow().now.saturating_add(duration.as_nanos() as u64);
        while self.step(limit) != Step::Idle {}
        let mut world = self.world.borrow_mut();
        world.now = world.now.max(limit.min(world.next_event_time().unwrap_or(limit)));
    }

    /// Runs until `done` holds (checked between steps) or `timeout` of virtual time passes;
    /// returns whether `done` held.
    pub fn run_until(&mut self, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
        let limit = self.world.borrow().now.saturating_add(timeout.as_nanos() as u64);
        loop {
            if done() {
                return true;
            }
            if self.step(limit) == Step::Idle {
                return done();
            }
        }
    }

    pub fn crash(&mut self, node: NodeId) {
        self.world.borrow_mut().crash_node(node.0);
        self.settle();
    }

    pub fn restart(&mut self, node: NodeId) {
        self.world.borrow_mut().restart_node(node.0);
        self.settle();
    }

    pub fn pause(&mut self, node: NodeId) {
        self.world.borrow_mut().pause_node(node.0);
    }

    pub fn resume(&mut self, node: NodeId) {
        self.world.borrow_mut().resume_node(node.0);
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, left: &[NodeId], right: &[NodeId]) {
        let mut world = self.world.borrow_mut();
        for a in left {
            for b in right {
                world.net.block(a.0, b.0);
                world.net.block(b.0, a.0);
            }
        }
        world.stats.partitions += 1;
    }

    /// Cuts the link from `from` to `to` only.
    pub fn partition_one_way(&mut self, from: NodeId, to: NodeId) {
        let mut world = self.world.borrow_mut();
        world.net.block(from.0, to.0);
        world.stats.one_way_partitions += 1;
    }

    /// Slows every message from `from` to `to` by hundreds of milliseconds for `duration`.
    pub fn clog(&mut self, from: NodeId, to: NodeId, duration: Duration) {
        let mut world = self.world.borrow_mut();
        let until = world.now + duration.as_nanos() as u64;
        world.net.clogged.insert((from.0, to.0), until);
        world.stats.clogs += 1;
    }

    pub fn heal(&mut self) {
        self.world.borrow_mut().net.heal_all();
    }

    /// Steps `node`'s wall clock by `delta_nanos` (negative goes back).
    pub fn jump_wall_clock(&mut self, node: NodeId, delta_nanos: i64) {
        let mut world = self.world.borrow_mut();
        world.node_mut(node.0).clock.jump_wall(delta_nanos);
        world.stats.clock_jumps += 1;
    }

    /// Flips one bit of synced data in a random file of `node`; returns the file and offset.
    pub fn rot_bit(&mut self, node: NodeId) -> Option<(String, u64)> {
        let mut world = self.world.borrow_mut();
        let World { nodes, rng, stats, .. } = &mut *world;
        let flipped = nodes[node.0 as usize].disk.rot_bit(rng);
        if flipped.is_some() {
            stats.bit_flips += 1;
        }
        flipped
    }

    /// Makes the sector holding `offset` of `path` on `node` fail every read until rewritten.
    pub fn add_latent_sector_error(
        &mut self,
        node: NodeId,
        path: &str,
        offset: u64,
    ) -> std::io::Result<()> {
        let mut world = self.world.borrow_mut();
        world.node_mut(node.0).disk.add_bad_sector(path, offset)?;
        world.stats.latent_sector_errors += 1;
        Ok(())
    }

    /// What `path` holds on `node`'s media (what a crash would leave, before torn writes).
    pub fn durable_content(&self, node: NodeId, path: &str) -> Option<Vec<u8>> {
        self.world.borrow().node(node.0).disk.durable_content(path)
    }

    /// What reads of `path` on `node` return now.
    pub fn current_content(&self, node: NodeId, path: &str) -> Option<Vec<u8>> {
        self.world.borrow().node(node.0).disk.current_content(path)
    }

    pub fn node_state(&self, node: NodeId) -> NodeState {
        self.world.borrow().node(node.0).state
    }

    /// The clock rate of `node` relative to true time, in parts per million off.
    pub fn clock_drift_ppm(&self, node: NodeId) -> i64 {
        self.world.borrow().node(node.0).clock.rate_ppm()
    }

    pub fn seed(&self) -> u64 {
        self.world.borrow().seed
    }

    /// Virtual time since the simulation started.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.world.borrow().now)
    }

    pub fn trace_hash(&self) -> u64 {
        self.world.borrow().trace.hash
    }

    pub fn stats(&self) -> Stats {
        self.world.borrow().stats.clone()
    }

    pub fn faults_active(&self) -> bool {
        self.world.borrow().faults_active
    }

    pub fn config(&self) -> FaultConfig {
        self.world.borrow().config.clone()
    }

    /// A generator for the harness, drawn from the run's seed (not the nodes').
    pub fn harness_rng(&self) -> strata_rt::Rng {
        self.world.borrow_mut().rng.fork()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        strata_rt::install_buggify_hook(None);
        // Drop every task's future while the world is not borrowed: their destructors may call in.
        let futures: Vec<_> = {
            let mut world = self.world.borrow_mut();
            let ids = world.tasks.all();
            ids.into_iter()
                .filter_map(|id| world.tasks.remove(id))
                .map(|task| task.future)
                .collect()
        };
        drop(futures);
        let graveyard = std::mem::take(&mut self.world.borrow_mut().graveyard);
        drop(graveyard);
    }
}
