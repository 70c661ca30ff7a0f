//! Each network fault of the simulator, shown by what a receiver observes.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use common::{idle_cluster, run_on};
use std::cell::RefCell;
use std::rc::Rc;
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

const A: NodeId = NodeId(0);
const B: NodeId = NodeId(1);

fn config_with(change: impl FnOnce(&mut FaultConfig)) -> FaultConfig {
    let mut config = FaultConfig::none();
    change(&mut config);
    config
}

/// Everything `node` receives, in order, with the local arrival time.
fn collect(sim: &Sim, node: NodeId) -> Rc<RefCell<Vec<(NodeId, u32)>>> {
    let received: Rc<RefCell<Vec<(NodeId, u32)>>> = Rc::default();
    let sink = received.clone();
    let rt = sim.runtime(node);
    let net = rt.net();
    let _receiver = rt.spawn(async move {
        loop {
            let (from, bytes) = net.receive().await;
            sink.borrow_mut().push((from, u32::from_le_bytes(bytes[..4].try_into().unwrap())));
        }
    });
    received
}

/// `from` sends messages 0..count to `to`, one per millisecond.
fn send_numbered(sim: &mut Sim, from: NodeId, to: NodeId, count: u32) {
    run_on(sim, from, Duration::from_secs(100), move |rt: Runtime| async move {
        for number in 0..count {
            rt.net().send(to, number.to_le_bytes().to_vec());
            rt.sleep(Duration::from_millis(1)).await;
        }
    });
    sim.run_for(Duration::from_secs(20));
}

fn numbers(received: &Rc<RefCell<Vec<(NodeId, u32)>>>) -> Vec<u32> {
    received.borrow().iter().map(|&(_, number)| number).collect()
}

#[test]
fn without_faults_every_message_arrives_once_in_order() {
    let mut sim = idle_cluster(1, 2, FaultConfig::none(), NodeOptions::SERVER);
    let received = collect(&sim, B);
    send_numbered(&mut sim, A, B, 500);
    assert_eq!(numbers(&received), (0..500).collect::<Vec<_>>());
    assert!(received.borrow().iter().all(|&(from, _)| from == A));
}

#[test]
fn drop_loses_messages() {
    let mut sim =
        idle_cluster(2, 2, config_with(|c| c.network.drop_probability = 0.5), NodeOptions::SERVER);
    let received = collect(&sim, B);
    send_numbered(&mut sim, A, B, 1000);
    let count = received.borrow().len();
    assert!((350..650).contains(&count), "{count} of 1000 arrived");
    assert_eq!(sim.stats().messages_dropped as usize, 1000 - count);
}

#[test]
fn duplicate_delivers_some_messages_twice() {
    let mut sim = idle_cluster(
        3,
        2,
        config_with(|c| c.network.duplicate_probability = 0.5),
        NodeOptions::SERVER,
    );
    let received = collect(&sim, B);
    send_numbered(&mut sim, A, B, 1000);
    let mut all = numbers(&received);
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 1000, "nothing lost");
    assert!((1350..1650).contains(&count), "{count} deliveries of 1000 messages");
}

#[test]
fn reorder_lets_later_messages_overtake() {
    let mut sim = idle_cluster(
        4,
        2,
        config_with(|c| c.network.reorder_probability = 0.3),
        NodeOptions::SERVER,
    );
    let received = collect(&sim, B);
    send_numbered(&mut sim, A, B, 1000);
    let order = numbers(&received);
    assert_eq!(order.len(), 1000);
    let inversions = order.windows(2).filter(|pair| pair[0] > pair[1]).count();
    assert!(inversions > 10, "{inversions} inversions");
}

#[test]
fn delay_follows_the_configured_latency() {
    let config = config_with(|c| {
        c.network.latency_min_us = 2_000;
        c.network.latency_max_us = 3_000;
    });
    let mut sim = idle_cluster(5, 2, config, NodeOptions::SERVER);
    let rt_b = sim.runtime(B);
    let _echo = rt_b.spawn({
        let net = rt_b.net();
        async move {
            loop {
                let (from, bytes) = net.receive().await;
                net.send(from, bytes);
            }
        }
    });
    let round_trips = run_on(&mut sim, A, Duration::from_secs(10), |rt| async move {
        let mut round_trips = Vec::new();
        for _ in 0..50 {
            let start = rt.now();
            rt.net().send(B, vec![0; 4]);
            rt.net().receive().await;
            round_trips.push(rt.now() - start);
        }
        round_trips
    });
    for round_trip in round_trips {
        assert!(
            round_trip >= Duration::from_millis(4) && round_trip <= Duration::from_millis(6),
            "{round_trip:?}"
        );
    }
}

#[test]
fn a_symmetric_partition_cuts_both_ways_until_healed() {
    let mut sim = idle_cluster(6, 2, FaultConfig::none(), NodeOptions::SERVER);
    let (at_a, at_b) = (collect(&sim, A), collect(&sim, B));
    sim.partition(&[A], &[B]);
    send_numbered(&mut sim, A, B, 10);
    send_numbered(&mut sim, B, A, 10);
    assert!(at_a.borrow().is_empty() && at_b.borrow().is_empty());
    sim.heal();
    send_numbered(&mut sim, A, B, 10);
    send_numbered(&mut sim, B, A, 10);
    assert_eq!((at_a.borrow().len(), at_b.borrow().len()), (10, 10));
}

#[test]
fn a_one_way_partition_cuts_one_direction() {
    let mut sim = idle_cluster(7, 2, FaultConfig::none(), NodeOptions::SERVER);
    let (at_a, at_b) = (collect(&sim, A), collect(&sim, B));
    sim.partition_one_way(A, B);
    send_numbered(&mut sim, A, B, 10);
    send_numbered(&mut sim, B, A, 10);
    assert_eq!((at_a.borrow().len(), at_b.borrow().len()), (10, 0));
}

#[test]
fn a_clogged_link_delivers_late() {
    let mut sim = idle_cluster(8, 2, FaultConfig::none(), NodeOptions::SERVER);
    let received = collect(&sim, B);
    sim.clog(A, B, Duration::from_secs(60));
    let start = sim.now();
    run_on(&mut sim, A, Duration::from_secs(1), |rt| async move {
        rt.net().send(B, 1u32.to_le_bytes().to_vec())
    });
    sim.run_until(Duration::from_secs(5), || !received.borrow().is_empty());
    assert!(
        sim.now() - start >= Duration::from_millis(100),
        "arrived after {:?}",
        sim.now() - start
    );
    assert_eq!(sim.stats().messages_clogged, 1);
}

/// The nemesis fires every kind of action it is given, and heals when the fault phase ends.
#[test]
fn the_nemesis_fires_each_enabled_fault_and_heals_at_the_end() {
    type Switch = fn(&mut FaultConfig);
    type Fired = fn(&strata_sim::Stats) -> u64;
    let kinds: [(&str, Switch, Fired); 7] = [
        ("partition", |c| c.network.partitions = true, |s| s.partitions),
        ("one-way", |c| c.network.one_way_partitions = true, |s| s.one_way_partitions),
        ("isolation", |c| c.network.isolation = true, |s| s.isolations),
        ("clog", |c| c.network.clogging = true, |s| s.clogs),
        ("crash", |c| c.process.crash = true, |s| s.crashes.min(s.restarts)),
        ("pause", |c| c.process.pause = true, |s| s.pauses),
        ("clock jump", |c| c.process.clock_jumps = true, |s| s.clock_jumps),
    ];
    for (name, switch, fired) in kinds {
        let mut config = FaultConfig::none();
        switch(&mut config);
        config.nemesis_interval_ms = 100;
        let mut sim = Sim::new(9, config);
        for _ in 0..3 {
            sim.add_node(NodeOptions::SERVER, |_| Box::pin(async {}));
        }
        sim.start_faults(Duration::from_secs(5));
        sim.run_for(Duration::from_secs(6));
        assert!(fired(&sim.stats()) > 0, "{name} never fired");
        assert!(!sim.faults_active());
        let received = collect(&sim, B);
        send_numbered(&mut sim, A, B, 10);
        assert_eq!(received.borrow().len(), 10, "{name}: healed after the fault phase");
    }
}
