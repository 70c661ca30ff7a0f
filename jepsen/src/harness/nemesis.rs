//! The nemesis: a thread that injects real faults into the cluster on a seeded schedule.
//!
//! It alternates a quiet interval and a fault held for a while, then ended (a killed node
//! restarted with the same arguments, a paused one continued, a partition healed). The seed picks
//! the faults, their targets and their durations; real timing is not reproducible, so the same
//! seed gives the same *schedule*, not the same history.
//!
//! - `kill`: `kill -9` a minority of the nodes, restart them later;
//! - `pause`: SIGSTOP a minority, SIGCONT later;
//! - `partition`: cut the peer links of random halves (a majority and a minority), of one isolated
//!   node, or of a bridge (two sides that only one node reaches both of), or a one-way cut.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use crate::generate::Rng;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// `kill -9` and restart.
    Kill,
    /// SIGSTOP and SIGCONT.
    Pause,
    /// Cut peer links through the proxies.
    Partition,
}

impl FaultKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
        }
    }

    /// Parses a name used on the command line.
    pub fn parse(name: &str) -> Option<FaultKind> {
        match name {
            "kill" => Some(FaultKind::Kill),
            "pause" => Some(FaultKind::Pause),
            "partition" => Some(FaultKind::Partition),
            _ => None,
        }
    }
}

/// The nemesis's settings.
#[derive(Clone, Debug)]
pub struct NemesisConfig {
    /// The faults to draw from (none: the nemesis does nothing).
    pub faults: Vec<FaultKind>,
    /// Seeds the schedule.
    pub seed: u64,
    /// Quiet time between faults: drawn in `[quiet / 2, quiet * 3 / 2]`.
    pub quiet: Duration,
    /// How long a fault is held: drawn in `[hold / 2, hold * 3 / 2]`.
    pub hold: Duration,
    /// No fault starts after this.
    pub deadline: Instant,
}

/// What the nemesis did.
#[derive(Default)]
pub struct NemesisLog {
    /// One line per fault begun or ended, with the time since the run started.
    pub lines: Vec<String>,
    /// Faults injected, by kind.
    pub counts: std::collections::BTreeMap<&'static str, u64>,
    /// Errors met while injecting (a failed `kill -STOP`, a node that would not restart).
    pub errors: Vec<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fault in force, to end later.
enum Active {
    Killed(Vec<usize>),
    Paused(Vec<usize>),
    Partitioned,
}

/// Sleeps `duration`, waking early when `stop` is set; returns whether it was.
fn sleep_or_stop(duration: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

fn around(rng: &mut Rng, mean: Duration) -> Duration {
    let mean_ms = mean.as_millis().max(2) as u64;
    Duration::from_millis(mean_ms / 2 + rng.below(mean_ms + 1))
}

/// `count` distinct node indexes out of `nodes`, drawn from `rng`.
fn pick(rng: &mut Rng, nodes: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..nodes).collect();
    for index in (1..all.len()).rev() {
        let other = rng.below(index as u64 + 1) as usize;
        all.swap(index, other);
    }
    all.truncate(count);
    all.sort_unstable();
    all
}

/// The largest minority of `nodes`.
fn minority(nodes: usize) -> usize {
    (nodes - 1) / 2
}

/// Runs the nemesis until `deadline` or `stop`; ends the fault in force before returning.
pub fn run(config: &NemesisConfig, cluster: &Cluster, stop: &AtomicBool, log: &Mutex<NemesisLog>) {
    if config.faults.is_empty() {
        return;
    }
    let started = Instant::now();
    let mut rng = Rng::new(config.seed ^ 0x6E65_6D65_7369_7321);
    let note = |line: String| {
        let elapsed = started.elapsed().as_secs_f64();
        lock(log).lines.push(format!("{elapsed:8.3}s {line}"));
    };
    let error = |line: String| lock(log).errors.push(line);
    let nodes = cluster.len();
    loop {
        if sleep_or_stop(around(&mut rng, config.quiet), stop) || Instant::now() >= config.deadline
        {
            return;
        }
        let kind = config.faults[rng.below(config.faults.len() as u64) as usize];
        let victims_count =
            if nodes == 1 { 1 } else { 1 + rng.below(minority(nodes) as u64) as usize };
        let active = match kind {
            FaultKind::Kill => {
                let victims = pick(&mut rng, nodes, victims_count);
                for &index in &victims {
                    cluster.kill(index);
                }
                note(format!("kill -9 {}", names(cluster, &victims)));
                Active::Killed(victims)
            }
            FaultKind::Pause => {
                let victims = pick(&mut rng, nodes, victims_count);
                for &index in &victims {
                    if let Err(failure) = cluster.pause(index) {
                        error(format!("pause node {}: {failure}", index + 1));
                    }
                }
                note(format!("SIGSTOP {}", names(cluster, &victims)));
                Active::Paused(victims)
            }
            FaultKind::Partition => {
                if nodes < 2 {
                    continue;
                }
                let description = partition(&mut rng, cluster);
                note(format!("partition: {description}"));
                Active::Partitioned
            }
        };
        *lock(log).counts.entry(kind.name()).or_default() += 1;
        let stopped = sleep_or_stop(around(&mut rng, config.hold), stop);
        match active {
            Active::Killed(victims) => {
                for &index in &victims {
                    if let Err(failure) = cluster.restart(index) {
                        error(format!("restart node {}: {failure}", index + 1));
                    }
                }
                note(format!("restart {}", names(cluster, &victims)));
            }
            Active::Paused(victims) => {
                for &index in &victims {
                    if let Err(failure) = cluster.resume(index) {
                        error(format!("resume node {}: {failure}", index + 1));
                    }
                }
                note(format!("SIGCONT {}", names(cluster, &victims)));
            }
            Active::Partitioned => {
                cluster.partition(|_, _| true);
                note("heal the network".to_string());
            }
        }
        if stopped {
            return;
        }
    }
}

fn names(cluster: &Cluster, indexes: &[usize]) -> String {
    let names: Vec<String> =
        indexes.iter().map(|&index| format!("n{}", cluster.addresses()[index].id)).collect();
    names.join(",")
}

/// Cuts a random partition; returns its description.
fn partition(rng: &mut Rng, cluster: &Cluster) -> String {
    let nodes = cluster.len();
    let mut description = String::new();
    match rng.below(4) {
        0 => {
            // Random halves: a minority cut off from the majority, both ways.
            let side = pick(rng, nodes, (nodes / 2).max(1));
            let in_side = |index: usize| side.contains(&index);
            cluster.partition(|source, target| in_side(source) == in_side(target));
            let _ = write!(description, "halves, {} | the rest", names(cluster, &side));
        }
        1 => {
            let isolated = rng.below(nodes as u64) as usize;
            cluster.partition(|source, target| source != isolated && target != isolated);
            let _ = write!(description, "{} isolated", names(cluster, &[isolated]));
        }
        2 if nodes >= 3 => {
            // A bridge: the others split in two sides that only the bridge node reaches both of.
            let order = pick(rng, nodes, nodes);
            let bridge = order[0];
            let left: Vec<usize> = order[1..].iter().copied().step_by(2).collect();
            let side = |index: usize| {
                if index == bridge {
                    0
                } else if left.contains(&index) {
                    1
                } else {
                    2
                }
            };
            cluster.partition(|source, target| {
                side(source) == 0 || side(target) == 0 || side(source) == side(target)
            });
            let _ = write!(
                description,
                "bridge {} between {} and the rest",
                names(cluster, &[bridge]),
                names(cluster, &left)
            );
        }
        _ => {
            // One way: a node's messages to the others are dropped, theirs to it go through.
            let mute = rng.below(nodes as u64) as usize;
            cluster.partition(|source, _| source != mute);
            let _ = write!(description, "{} cannot send (one-way)", names(cluster, &[mute]));
        }
    }
    description
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_distinct_and_bounded() {
        let mut rng = Rng::new(7);
        for _ in 0..100 {
            let picked = pick(&mut rng, 5, 2);
            assert_eq!(picked.len(), 2);
            assert!(picked[0] < picked[1] && picked[1] < 5);
        }
        assert_eq!(minority(3), 1);
        assert_eq!(minority(5), 2);
    }
}
