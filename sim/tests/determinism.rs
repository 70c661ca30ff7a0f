//! A seed reproduces a run exactly, different seeds explore different schedules, and a task that
//! lets real randomness in (a randomly seeded hash map) is caught by the trace hash.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use std::collections::HashMap;
use strata_rt::{Duration, NodeId};
use strata_sim::scenario::register;
use strata_sim::{FaultConfig, NodeOptions, Sim};

fn short_options() -> register::Options {
    register::Options { fault_duration: Duration::from_secs(3), ..register::Options::default() }
}

#[test]
fn the_same_seed_gives_the_same_trace_hash_and_history() {
    for seed in [1, 2, 3, 0xdead_beef] {
        let first = register::run(seed, &short_options());
        let second = register::run(seed, &short_options());
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.history, second.history, "seed {seed}");
        assert_eq!(first.stats, second.stats, "seed {seed}");
        assert!(first.verdict.is_ok(), "seed {seed}: {:?}", first.verdict);
    }
}

#[test]
fn different_seeds_give_different_schedules() {
    let hashes: std::collections::BTreeSet<u64> =
        (0..20).map(|seed| register::run(seed, &short_options()).trace_hash).collect();
    assert_eq!(hashes.len(), 20);
    // Even with no faults at all, the scheduler's choices differ.
    let quiet = register::Options { faults: false, ..short_options() };
    assert_ne!(register::run(1, &quiet).trace_hash, register::run(2, &quiet).trace_hash);
}

/// A run whose node 0 sends one message per entry of a map, in the map's iteration order.
fn run_with_map_order(seed: u64, randomly_seeded: bool) -> u64 {
    let mut sim = Sim::new(seed, FaultConfig::none());
    sim.add_node(NodeOptions::SERVER, move |rt| {
        Box::pin(async move {
            let keys: Vec<u32> = if randomly_seeded {
                let map: HashMap<u32, ()> = (0..32).map(|key| (key, ())).collect();
                map.into_keys().collect()
            } else {
                let map: std::collections::BTreeMap<u32, ()> =
                    (0..32).map(|key| (key, ())).collect();
                map.into_keys().collect()
            };
            for key in keys {
                rt.net().send(NodeId(1), key.to_le_bytes().to_vec());
                rt.sleep(Duration::from_micros(10)).await;
            }
        })
    });
    sim.add_node(NodeOptions::SERVER, |rt| {
        Box::pin(async move {
            loop {
                rt.net().receive().await;
            }
        })
    });
    sim.run_for(Duration::from_secs(1));
    sim.trace_hash()
}

#[test]
fn iterating_a_randomly_seeded_map_is_caught_by_the_trace_hash() {
    assert_eq!(run_with_map_order(7, false), run_with_map_order(7, false));
    // Each HashMap gets fresh random keys, so its order of 32 entries differs between runs
    // (the chance of two equal orders is negligible; three tries make it vanishing).
    let hashes: Vec<u64> = (0..3).map(|_| run_with_map_order(7, true)).collect();
    assert!(
        hashes.windows(2).any(|pair| pair[0] != pair[1]),
        "nondeterminism went unnoticed: {hashes:?}"
    );
}
