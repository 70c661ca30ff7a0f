//! Process and clock faults: crash and restart, pause and resume, drift and jumps.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use common::{idle_cluster, run_on};
use std::cell::Cell;
use std::rc::Rc;
use strata_rt::{Duration, NodeId};
use strata_sim::{FaultConfig, NodeOptions, NodeState, Sim};

const NODE: NodeId = NodeId(0);

/// A node that counts its boots and then ticks a counter every millisecond.
fn ticking_node(sim: &mut Sim) -> (Rc<Cell<u64>>, Rc<Cell<u64>>) {
    let (boots, ticks) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (boot_count, tick_count) = (boots.clone(), ticks.clone());
    sim.add_node(NodeOptions::SERVER, move |rt| {
        boot_count.set(boot_count.get() + 1);
        let ticks = tick_count.clone();
        Box::pin(async move {
            loop {
                rt.sleep(Duration::from_millis(1)).await;
                ticks.set(ticks.get() + 1);
            }
        })
    });
    (boots, ticks)
}

#[test]
fn a_crash_stops_every_task_and_a_restart_boots_again() {
    let mut sim = Sim::new(1, FaultConfig::none());
    let (boots, ticks) = ticking_node(&mut sim);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(boots.get(), 1);
    let before = ticks.get();
    assert!((95..=100).contains(&before), "{before}");
    sim.crash(NODE);
    assert_eq!(sim.node_state(NODE), NodeState::Crashed);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(ticks.get(), before, "no task runs on a crashed node");
    sim.restart(NODE);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(boots.get(), 2);
    assert!(ticks.get() > before + 90);
}

#[test]
fn a_pause_stops_progress_until_resumed() {
    let mut sim = Sim::new(2, FaultConfig::none());
    let (_, ticks) = ticking_node(&mut sim);
    sim.run_for(Duration::from_millis(50));
    sim.pause(NODE);
    let before = ticks.get();
    sim.run_for(Duration::from_millis(500));
    assert_eq!(ticks.get(), before);
    sim.resume(NODE);
    sim.run_for(Duration::from_millis(50));
    assert!(ticks.get() > before, "resumed");
}

#[test]
fn clocks_drift_apart_at_their_configured_rates() {
    let mut config = FaultConfig::none();
    config.process.clock_drift_ppm_max = 50_000;
    let mut sim = idle_cluster(3, 4, config, NodeOptions::SERVER);
    let starts: Vec<_> = (0..4).map(|node| sim.runtime(NodeId(node)).now()).collect();
    sim.run_for(Duration::from_secs(100));
    let mut rates = Vec::new();
    for node in 0..4 {
        let elapsed = sim.runtime(NodeId(node)).now() - starts[node as usize];
        let drift_ppm = sim.clock_drift_ppm(NodeId(node));
        let expected = 100.0 * (1.0 + drift_ppm as f64 / 1e6);
        assert!(
            (elapsed.as_secs_f64() - expected).abs() < 1e-3,
            "node {node}: {elapsed:?} vs {expected}"
        );
        rates.push(drift_ppm);
    }
    rates.dedup();
    assert!(rates.len() > 1, "nodes run at different rates: {rates:?}");
}

#[test]
fn timers_fire_by_the_node_clock() {
    let mut config = FaultConfig::none();
    config.process.clock_drift_ppm_max = 100_000;
    let mut sim = idle_cluster(4, 1, config, NodeOptions::SERVER);
    let true_start = sim.now();
    let local = run_on(&mut sim, NODE, Duration::from_secs(20), |rt| async move {
        let start = rt.now();
        rt.sleep(Duration::from_secs(10)).await;
        rt.now() - start
    });
    assert!(local >= Duration::from_secs(10) && local < Duration::from_millis(10_001), "{local:?}");
    let true_elapsed = (sim.now() - true_start).as_secs_f64();
    let expected = 10.0 / (1.0 + sim.clock_drift_ppm(NODE) as f64 / 1e6);
    assert!((true_elapsed - expected).abs() < 1e-3, "{true_elapsed} vs {expected}");
}

#[test]
fn a_wall_clock_jump_moves_wall_time_but_not_monotonic_time() {
    let mut sim = idle_cluster(5, 1, FaultConfig::none(), NodeOptions::SERVER);
    let rt = sim.runtime(NODE);
    let (wall, monotonic) = (rt.now_unix(), rt.now());
    sim.jump_wall_clock(NODE, -30_000_000_000);
    assert_eq!(rt.now(), monotonic);
    assert_eq!(wall - rt.now_unix(), Duration::from_secs(30));
    assert!(wall > Duration::from_secs(1_767_225_600), "wall time starts in 2026");
}

#[test]
fn buggify_fires_only_when_switched_on() {
    let count_fired = |seed: u64, on: bool| {
        let mut config = FaultConfig::none();
        config.buggify = on;
        let mut sim = idle_cluster(seed, 1, config, NodeOptions::SERVER);
        run_on(&mut sim, NODE, Duration::from_secs(1), |_| async {
            (0..1000).filter(|_| strata_rt::buggify!()).count()
        })
    };
    let fired: Vec<usize> = (0..16).map(|seed| count_fired(seed, true)).collect();
    assert!(
        fired.iter().any(|&count| count > 100 && count < 400),
        "active in some runs: {fired:?}"
    );
    assert!(fired.contains(&0), "inactive in others: {fired:?}");
    assert!((0..16).all(|seed| count_fired(seed, false) == 0));
}
