//! Adaptive group commit: a closed loop of clients, each proposing again shortly after its answer,
//! on one node in a fault-free simulation. Without holding proposals back, the clients split
//! into cohorts that wait on alternate syncs; with it, each sync carries most of them.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use common::Counter;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use strata_multiraft::{GroupId, Host, HostConfig, HostStats};
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

const CLIENTS: u64 = 32;
const GROUP: GroupId = 1;

/// Runs the clients for five virtual seconds; returns the host's stats and the writes answered.
fn run(seed: u64, group_commit_wait_max: Duration) -> (HostStats, u64) {
    let mut sim = Sim::new(seed, FaultConfig::none());
    let result: Rc<Cell<Option<(HostStats, u64)>>> = Rc::default();
    let out = result.clone();
    sim.add_node(NodeOptions::SERVER, move |rt| {
        let out = out.clone();
        Box::pin(async move {
            let mut config = HostConfig::new(NodeId(0), vec![NodeId(0)]);
            config.group_commit_wait_max = group_commit_wait_max;
            let machines = BTreeMap::from([(GROUP, Rc::new(Counter::default()))]);
            let host = Host::open(&rt, config, machines).await.unwrap();
            while host.propose(GROUP, b"warm up").await.is_err() {}
            let answered = Rc::new(Cell::new(0u64));
            let clients: Vec<_> = (0..CLIENTS)
                .map(|client| {
                    rt.spawn(client_loop(rt.clone(), host.clone(), client, answered.clone()))
                })
                .collect();
            let before = host.stats();
            rt.sleep(Duration::from_secs(5)).await;
            let mut stats = host.stats();
            stats.wal_syncs -= before.wal_syncs;
            stats.entries_persisted -= before.entries_persisted;
            out.set(Some((stats, answered.get())));
            for client in clients {
                client.abort();
            }
        })
    });
    sim.run_until(Duration::from_secs(10), || {
        let done = result.take();
        let finished = done.is_some();
        result.set(done);
        finished
    });
    result.take().expect("the run finished")
}

/// Proposes, and after each answer waits a client's turnaround (network and parsing) before
/// the next proposal.
async fn client_loop(rt: Runtime, host: Host<Counter>, client: u64, answered: Rc<Cell<u64>>) {
    let mut rng = rt.rng();
    loop {
        host.propose(GROUP, &client.to_le_bytes()).await.unwrap();
        answered.set(answered.get() + 1);
        rt.sleep(Duration::from_micros(rng.range_inclusive(100, 600))).await;
    }
}

fn entries_per_sync(stats: &HostStats) -> f64 {
    stats.entries_persisted as f64 / stats.wal_syncs as f64
}

#[test]
fn held_proposals_merge_the_clients_into_one_round_per_sync() {
    for seed in 0..3 {
        let (held, held_answered) = run(seed, Duration::from_millis(1));
        let (unheld, unheld_answered) = run(seed, Duration::ZERO);
        eprintln!(
            "seed {seed}: entries per sync {:.1} held, {:.1} not; writes {held_answered} held, \
             {unheld_answered} not",
            entries_per_sync(&held),
            entries_per_sync(&unheld)
        );
        assert!(
            entries_per_sync(&held) >= 0.9 * CLIENTS as f64,
            "seed {seed}: {:.1} entries per sync with group commit",
            entries_per_sync(&held)
        );
        assert!(entries_per_sync(&unheld) < 0.6 * CLIENTS as f64, "the clients split without it");
        assert!(
            held_answered > unheld_answered * 5 / 4,
            "seed {seed}: holding answers a quarter more writes"
        );
    }
}
