//! The nemesis: while the fault phase lasts, it acts every so often (exponential gaps around the
//! configured mean), choosing among the fault kinds the run switched on, and undoes each action
//! after a while. At the end of the fault phase everything heals at once.

use crate::faults::CrashLoss;
use crate::world::{NodeClock, NodeState, Tag, World};
use strata_rt::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Partition,
    OneWayPartition,
    Isolate,
    Clog,
    Crash,
    Pause,
    BitRot,
    ClockJump,
}

/// How long an undone fault lasts: 100 ms to 3 s.
fn fault_duration(rng: &mut Rng) -> u64 {
    rng.range_inclusive(100_000_000, 3_000_000_000)
}

impl World {
    fn enabled_actions(&self) -> Vec<Action> {
        let (network, disk, process) =
            (&self.config.network, &self.config.disk, &self.config.process);
        let node_count = self.nodes.len();
        [
            (Action::Partition, network.partitions && node_count > 1),
            (Action::OneWayPartition, network.one_way_partitions && node_count > 1),
            (Action::Isolate, network.isolation && node_count > 1),
            (Action::Clog, network.clogging && node_count > 1),
            (Action::Crash, process.crash),
            (Action::Pause, process.pause),
            (Action::BitRot, disk.bit_rot),
            (Action::ClockJump, process.clock_jumps),
        ]
        .into_iter()
        .filter(|&(_, on)| on)
        .map(|(action, _)| action)
        .collect()
    }

    /// Starts the nemesis and ends the fault phase at `faults_until` (virtual nanoseconds).
    pub fn start_faults(&mut self, faults_until: u64) {
        self.faults_active = true;
        self.schedule_at(
            faults_until.max(self.now),
            Tag::Nemesis,
            u32::MAX,
            Box::new(World::end_faults),
        );
        if !self.enabled_actions().is_empty() {
            self.schedule_next_nemesis(faults_until);
        }
    }

    fn schedule_next_nemesis(&mut self, faults_until: u64) {
        let mean = self.config.nemesis_interval_ms.max(1) as f64 * 1e6;
        let gap = (-(1.0 - self.rng.unit_f64()).ln() * mean) as u64;
        if self.now + gap >= faults_until {
            return;
        }
        self.schedule(
            gap,
            Tag::Nemesis,
            u32::MAX,
            Box::new(move |world: &mut World| {
                if world.faults_active {
                    world.nemesis_act();
                    world.schedule_next_nemesis(faults_until);
                }
            }),
        );
    }

    fn random_node(&mut self, eligible: impl Fn(&crate::world::Node) -> bool) -> Option<u32> {
        let candidates: Vec<u32> =
            self.nodes.iter().filter(|node| eligible(node)).map(|node| node.id.0).collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.index(candidates.len())])
    }

    fn random_pair(&mut self) -> (u32, u32) {
        let count = self.nodes.len() as u64;
        let from = self.rng.below(count) as u32;
        let to = (from + 1 + self.rng.below(count - 1) as u32) % count as u32;
        (from, to)
    }

    /// Blocks the directed links in `cuts` now and unblocks them after a while.
    fn cut_links(&mut self, cuts: Vec<(u32, u32)>) {
        for &(from, to) in &cuts {
            self.net.block(from, to);
        }
        let duration = fault_duration(&mut self.rng);
        self.schedule(
            duration,
            Tag::Nemesis,
            u32::MAX,
            Box::new(move |world: &mut World| {
                for (from, to) in cuts {
                    world.net.unblock(from, to);
                }
            }),
        );
    }

    fn nemesis_act(&mut self) {
        let actions = self.enabled_actions();
        let action = actions[self.rng.index(actions.len())];
        self.trace.fold(0x4e45_4d00 | action as u64);
        let node_count = self.nodes.len() as u32;
        match action {
            Action::Partition => {
                let mut order: Vec<u32> = (0..node_count).collect();
                self.rng.shuffle(&mut order);
                let split = 1 + self.rng.index(order.len() - 1);
                let (left, right) = order.split_at(split);
                let mut cuts = Vec::new();
                for &a in left {
                    for &b in right {
                        cuts.push((a, b));
                        cuts.push((b, a));
                    }
                }
                self.stats.partitions += 1;
                self.cut_links(cuts);
            }
            Action::OneWayPartition => {
                let (from, to) = self.random_pair();
                self.stats.one_way_partitions += 1;
                self.cut_links(vec![(from, to)]);
            }
            Action::Isolate => {
                let lonely = self.rng.below(u64::from(node_count)) as u32;
                let cuts = (0..node_count)
                    .filter(|&other| other != lonely)
                    .flat_map(|other| [(lonely, other), (other, lonely)])
                    .collect();
                self.stats.isolations += 1;
                self.cut_links(cuts);
            }
            Action::Clog => {
                let link = self.random_pair();
                let until = self.now + fault_duration(&mut self.rng);
                self.net.clogged.insert(link, until);
                self.stats.clogs += 1;
            }
            Action::Crash => {
                let eligible = |node: &crate::world::Node| {
                    node.options.crashable && node.state != NodeState::Crashed
                };
                if let Some(node) = self.random_node(eligible) {
                    self.crash_node(node);
                    let down_for = self.rng.below(2_000_000_000);
                    self.schedule(
                        down_for,
                        Tag::Nemesis,
                        node,
                        Box::new(move |world: &mut World| world.restart_node(node)),
                    );
                }
            }
            Action::Pause => {
                let eligible = |node: &crate::world::Node| {
                    node.options.crashable && node.state == NodeState::Running
                };
                if let Some(node) = self.random_node(eligible) {
                    self.pause_node(node);
                    let duration = fault_duration(&mut self.rng);
                    self.schedule(
                        duration,
                        Tag::Nemesis,
                        node,
                        Box::new(move |world: &mut World| world.resume_node(node)),
                    );
                }
            }
            Action::BitRot => {
                let World { nodes, rng, stats, .. } = self;
                let corruptible: Vec<usize> =
                    (0..nodes.len()).filter(|&index| nodes[index].options.corruptible).collect();
                if !corruptible.is_empty() {
                    let node = corruptible[rng.index(corruptible.len())];
                    if nodes[node].disk.rot_bit(rng).is_some() {
                        stats.bit_flips += 1;
                    }
                }
            }
            Action::ClockJump => {
                let node = self.rng.below(u64::from(node_count)) as u32;
                let magnitude = self.rng.below(60_000_000_000) as i64;
                let delta = if self.rng.chance(0.5) { magnitude } else { -magnitude };
                self.node_mut(node).clock.jump_wall(delta);
                self.stats.clock_jumps += 1;
            }
        }
    }

    /// The end of the fault phase: heal the network, wake paused nodes, restart crashed ones.
    pub fn end_faults(&mut self) {
        self.faults_active = false;
        self.net.heal_all();
        for node in 0..self.nodes.len() as u32 {
            match self.node(node).state {
                NodeState::Paused => self.resume_node(node),
                NodeState::Crashed => self.restart_node(node),
                NodeState::Running => {}
            }
        }
    }

    /// Power loss on `node`: its tasks, connections and unsynced writes are gone.
    pub fn crash_node(&mut self, node: u32) {
        if self.node(node).state == NodeState::Crashed {
            return;
        }
        let state = self.node_mut(node);
        state.state = NodeState::Crashed;
        state.incarnation += 1;
        state.inbox.clear();
        state.inbox_waker = None;
        state.parked.clear();
        for id in self.tasks.of_node(node) {
            if let Some(task) = self.tasks.remove(id) {
                self.graveyard.push(Box::new(task.future));
            }
        }
        self.net_crash(node);
        let modes = self.config.disk.crash_loss.clone();
        let loss =
            if modes.is_empty() { CrashLoss::All } else { modes[self.rng.index(modes.len())] };
        self.with_disk(node, |disk, context| disk.crash(loss, context));
        self.stats.crashes += 1;
        self.trace.fold(0xc7a5_0000 | u64::from(node));
    }

    /// Boots a crashed node again, with fresh randomness; its clock keeps running.
    pub fn restart_node(&mut self, node: u32) {
        if self.node(node).state != NodeState::Crashed {
            return;
        }
        let seed = self.seed;
        let state = self.node_mut(node);
        state.state = NodeState::Running;
        state.rng = Rng::with_seed(node_seed(seed, node, state.incarnation));
        self.boots.push(node);
        self.stats.restarts += 1;
    }

    pub fn pause_node(&mut self, node: u32) {
        if self.node(node).state == NodeState::Running {
            self.node_mut(node).state = NodeState::Paused;
            self.stats.pauses += 1;
        }
    }

    pub fn resume_node(&mut self, node: u32) {
        if self.node(node).state == NodeState::Paused {
            let state = self.node_mut(node);
            state.state = NodeState::Running;
            let parked = std::mem::take(&mut state.parked);
            self.tasks.ready.extend(parked);
        }
    }

    pub fn new_clock(&mut self) -> NodeClock {
        let drift_max = self.config.process.clock_drift_ppm_max.min(100_000) as i64;
        let rate = if drift_max > 0 {
            self.rng.range_inclusive(0, 2 * drift_max as u64) as i64 - drift_max
        } else {
            0
        };
        // A random uptime, so nothing can assume a clock that starts at zero.
        let boot_local = self.rng.below(1_000_000_000_000_000);
        NodeClock::new(self.now, boot_local, rate, self.unix_start)
    }
}

/// The seed of one incarnation of one node, derived from the run's seed.
pub(crate) fn node_seed(seed: u64, node: u32, incarnation: u64) -> u64 {
    let mut rng = Rng::with_seed(seed ^ (u64::from(node) << 40) ^ incarnation.rotate_left(17));
    rng.next_u64()
}
