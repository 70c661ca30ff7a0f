//! The simulator's speed: simulated events (and task polls) per wall-clock second for the 5-replica
//! register scenario, against the goal of one million events per second on one core.
//!
//! `cargo run --release -p strata-bench --bin sim_speed [-- SEEDS]`

use std::time::Instant;
use strata_sim::scenario::register::{self, Options};

const GOAL_EVENTS_PER_SECOND: f64 = 1_000_000.0;

fn main() {
    let seeds: u64 = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(200);
    println!(
        "simulator speed, {seeds} seeds each, 5 replicas + 3 clients, 10 s of faults per seed (the checker is not timed)"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>10} {:>14} {:>14} {:>10}",
        "faults", "events", "polls", "wall s", "events/s", "steps/s", "vs goal"
    );
    for faults in [false, true] {
        // The simulator alone: the linearizability check of each history is not timed here.
        let options = Options { faults, check_linearizability: false, ..Options::default() };
        let (mut events, mut polls) = (0u64, 0u64);
        let started = Instant::now();
        for seed in 0..seeds {
            let report = register::run(seed, &options);
            assert!(report.verdict.is_ok(), "seed {seed} failed: {:?}", report.verdict);
            events += report.stats.events;
            polls += report.stats.polls;
        }
        let wall = started.elapsed().as_secs_f64();
        let events_per_second = events as f64 / wall;
        println!(
            "{:<10} {:>12} {:>12} {:>10.2} {:>14.0} {:>14.0} {:>9.2}x",
            if faults { "swarm" } else { "none" },
            events,
            polls,
            wall,
            events_per_second,
            (events + polls) as f64 / wall,
            events_per_second / GOAL_EVENTS_PER_SECOND
        );
    }
}
