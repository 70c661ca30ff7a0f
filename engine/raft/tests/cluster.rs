//! Randomized whole-cluster runs over the in-memory network of `common`: drops, duplicates,
//! delays, partitions, leader isolation, crashes that lose unpersisted state, leader transfers,
//! proposals and ReadIndex reads, with safety checked after every ready and liveness after
//! healing.
//!
//! The normal suite runs a few hundred seeds. The long sweep:
//!
//! ```text
//! STRATA_RAFT_SEEDS=20000 cargo nextest run -p strata-raft --run-ignored only cluster_many_seeds
//! ```
//!
//! (`STRATA_RAFT_SEED_START` shifts the range; a failure names its seed, and
//! `STRATA_RAFT_SEED_START=<seed> STRATA_RAFT_SEEDS=1` replays it.)

mod common;

use common::{Faults, Network};
use strata_raft::Config;

const CHAOS_TICKS: u64 = 1500;
const LIVENESS_TICKS_MAX: u64 = 1000;

fn defaults(_: &mut Config) {}

fn tight_flow_control(config: &mut Config) {
    config.append_entries_max = 2;
    config.append_bytes_max = 40;
    config.inflight_appends_max = 2;
    config.inflight_bytes_max = 64;
}

fn plain_raft(config: &mut Config) {
    config.pre_vote = false;
    config.check_quorum = false;
}

/// Runs one seed; returns the entries committed and the reads confirmed.
fn run_seed(seed: u64) -> (u64, u64) {
    let count = if seed.is_multiple_of(2) { 3 } else { 5 };
    let configure = match (seed / 2) % 3 {
        0 => defaults,
        1 => tight_flow_control,
        _ => plain_raft,
    };
    let mut network = Network::new(count, seed, configure);
    network.faults = Faults::draw(&mut network.rng, &[0.0, 0.02, 0.1, 0.25], 6);
    for _ in 0..CHAOS_TICKS {
        network.step_chaos();
    }
    network.heal_and_check_liveness(LIVENESS_TICKS_MAX);
    (network.committed.len() as u64, network.reads_confirmed)
}

fn run_seeds(seeds: std::ops::Range<u64>) {
    let seed_count = seeds.end - seeds.start;
    let (committed, reads) = common::sweep("cluster", seeds, run_seed);
    eprintln!("{seed_count} seeds: {committed} entries committed, {reads} reads confirmed");
    // The runs must do real work, or they prove nothing.
    assert!(committed >= seed_count * 50, "too little committed: {committed}");
    assert!(reads >= seed_count, "too few reads confirmed: {reads}");
}

#[test]
fn cluster_seeds() {
    run_seeds(0..400);
}

#[test]
#[ignore = "long sweep; see the module documentation"]
fn cluster_many_seeds() {
    run_seeds(common::long_sweep_seeds(5000));
}
