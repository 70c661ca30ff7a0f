//! Leader leases (`Config::lease_reads`): a leader answers `read_index` at once while a quorum
//! acknowledged a heartbeat round within `Config::lease_ticks`, a bound that accounts for clock
//! drift (see its documentation). Fixed scenarios, then randomized runs whose replicas' clocks
//! drift within the configured bound, with every read checked for linearizability (a read's index
//! covers every entry committed before it was asked).
//!
//! The long sweep: `STRATA_RAFT_SEEDS=5000 cargo nextest run -p strata-raft --run-ignored only
//! lease_many_seeds` (`STRATA_RAFT_SEED_START` shifts the range).

mod common;

use common::{Faults, Network};
use strata_raft::{Config, Message, MessageBody, NodeId, Role};

fn n(id: u32) -> NodeId {
    NodeId(id)
}

fn leases(config: &mut Config) {
    config.lease_reads = true;
}

fn run(network: &mut Network, rounds: u32) {
    for _ in 0..rounds {
        network.tick_all();
        network.deliver_all();
    }
}

/// A 3-replica group with leases, settled under a leader that holds its lease.
fn leased_group(seed: u64) -> (Network, NodeId) {
    let mut network = Network::new(3, seed, leases);
    run(&mut network, 40);
    let leader = network.stable_leader().expect("a leader");
    run(&mut network, 3);
    assert!(network.node(leader).has_lease());
    (network, leader)
}

#[test]
fn the_lease_accounts_for_the_drift_bound() {
    let mut config = Config::new(n(1), vec![n(1)], 0);
    config.election_ticks = 10;
    config.clock_drift_ppm_max = 0;
    // (10 - 1) periods, less one for the tick under way.
    assert_eq!(config.lease_ticks(), 8);
    config.clock_drift_ppm_max = 100_000;
    // ⌊9 × 0.9 / 1.1⌋ - 1 = ⌊7.36⌋ - 1.
    assert_eq!(config.lease_ticks(), 6);
    config.clock_drift_ppm_max = 500_000;
    assert_eq!(config.lease_ticks(), 2);
    config.lease_reads = true;
    assert!(config.validate().is_err(), "a lease no longer than a heartbeat period is refused");
    config.clock_drift_ppm_max = 100_000;
    config.check_quorum = false;
    assert!(config.validate().is_err(), "leases need check-quorum");
}

#[test]
fn a_lease_read_is_answered_at_once_without_a_heartbeat_round() {
    let (mut network, leader) = leased_group(1);
    let node = network.node_mut(leader);
    node.read_index(77).expect("leading");
    let ready = node.ready();
    node.advance();
    assert_eq!(ready.read_states.len(), 1);
    assert_eq!(ready.read_states[0].context, 77);
    assert_eq!(ready.read_states[0].index, node.commit_index());
    assert!(
        !ready.messages.iter().any(|message| matches!(message.body, MessageBody::Heartbeat { .. })),
        "no round of heartbeats for a lease read"
    );
}

#[test]
fn a_lease_read_is_refused_once_an_isolated_leader_outlives_its_lease() {
    let (mut network, leader) = leased_group(2);
    let lease_ticks = network.node(leader).config().lease_ticks();
    network.isolate(leader);
    for _ in 0..lease_ticks + 1 {
        network.tick(leader);
    }
    assert!(!network.node(leader).has_lease(), "the lease ran out");
    assert_eq!(network.node(leader).role(), Role::Leader, "still leading: check-quorum is slower");
    let node = network.node_mut(leader);
    node.read_index(5).expect("still leading");
    let ready = node.ready();
    node.advance();
    assert!(ready.read_states.is_empty(), "no lease: the read needs a quorum, which is cut off");
    assert!(
        ready.messages.iter().any(|message| matches!(message.body, MessageBody::Heartbeat { .. })),
        "it falls back to a ReadIndex round"
    );
}

/// Clocks drifting the worst way within the bound: the isolated leader's runs slow (its lease
/// lasts longer in real time), the others' fast (they give up on it sooner). At no point may the
/// old leader hold a lease while a new leader exists.
#[test]
fn an_isolated_leader_loses_its_lease_before_anyone_else_can_lead_despite_drift() {
    for seed in 0..20 {
        let (mut network, leader) = leased_group(100 + seed);
        let drift = network.node(leader).config().clock_drift_ppm_max as f64 / 1e6;
        for id in network.ids.clone() {
            let rate = if id == leader { 1.0 - drift } else { 1.0 + drift };
            network.tick_rates.insert(id, rate);
        }
        network.isolate(leader);
        let mut new_leader_at = None;
        for step in 0..200 {
            for id in network.ids.clone() {
                network.tick_drifting(id);
            }
            network.deliver_all();
            let others_lead = network.leaders().iter().any(|&id| id != leader);
            if others_lead && new_leader_at.is_none() {
                new_leader_at = Some(step);
            }
            if others_lead {
                assert!(
                    !network.node(leader).has_lease(),
                    "seed {seed} step {step}: the old leader holds a lease next to a new leader"
                );
            }
        }
        assert!(new_leader_at.is_some(), "seed {seed}: the majority elected a leader");
    }
}

#[test]
fn a_leader_that_started_a_transfer_gives_up_its_lease_for_the_term() {
    let (mut network, leader) = leased_group(3);
    let target = network.ids.iter().copied().find(|&id| id != leader).expect("a peer");
    // Hold TimeoutNow back: the transfer stays under way, then is abandoned.
    network.rewrite = Some(|message: Message| {
        (!matches!(message.body, MessageBody::TimeoutNow)).then_some(message)
    });
    network.node_mut(leader).transfer_leader(target).expect("leading");
    network.process_ready(leader);
    assert!(!network.node(leader).has_lease());
    run(&mut network, 30);
    assert_eq!(network.node(leader).role(), Role::Leader, "the transfer was abandoned");
    assert!(!network.node(leader).has_lease(), "no lease for the rest of the term");
}

#[test]
fn a_restarted_replica_honours_a_lease_it_may_have_acknowledged() {
    let (mut network, leader) = leased_group(4);
    let follower = network.ids.iter().copied().find(|&id| id != leader).expect("a peer");
    let other = network.ids.iter().copied().find(|&id| id != leader && id != follower).unwrap();
    network.crash(follower);
    network.restart(follower);
    let term = network.node(follower).term();
    let last_log_index = network.node(follower).last_index();
    let last_log_term = network.node(follower).last_term();
    let request = |pre_vote| Message {
        from: other,
        to: follower,
        term: term + 1,
        body: MessageBody::RequestVote {
            pre_vote,
            leader_transfer: false,
            last_log_index,
            last_log_term,
        },
    };
    for pre_vote in [true, false] {
        let node = network.node_mut(follower);
        node.step(request(pre_vote)).expect("in the group");
        let ready = node.ready();
        node.advance();
        let granted = ready.messages.iter().chain(&ready.persisted_messages).any(|message| {
            matches!(message.body, MessageBody::RequestVoteResponse { granted: true, .. })
        });
        assert!(!granted, "a vote (pre-vote {pre_vote}) granted right after a restart");
        assert_eq!(network.node(follower).term(), term, "and the term kept");
    }
}

// ----- randomized -----

const CHAOS_TICKS: u64 = 1500;
const LIVENESS_TICKS_MAX: u64 = 1000;

fn run_seed(seed: u64) -> (u64, u64) {
    let count = if seed.is_multiple_of(2) { 3 } else { 5 };
    let mut network = Network::new(count, seed, leases);
    // The sim's worst drift, 5%, within the configured 10% bound.
    network.bound_drift(0.05);
    network.faults = Faults::draw(&mut network.rng, &[0.0, 0.02, 0.1, 0.25], 6);
    for _ in 0..CHAOS_TICKS {
        network.step_chaos();
    }
    network.heal_and_check_liveness(LIVENESS_TICKS_MAX);
    (network.committed.len() as u64, network.reads_confirmed)
}

fn run_seeds(seeds: std::ops::Range<u64>) {
    let seed_count = seeds.end - seeds.start;
    let (committed, reads) = common::sweep("lease", seeds, run_seed);
    eprintln!("{seed_count} seeds: {committed} entries committed, {reads} reads confirmed");
    assert!(committed >= seed_count * 50, "too little committed: {committed}");
    assert!(reads >= seed_count * 10, "too few reads confirmed: {reads}");
}

#[test]
fn lease_seeds() {
    run_seeds(0..200);
}

#[test]
#[ignore = "long sweep; see the module documentation"]
fn lease_many_seeds() {
    run_seeds(common::long_sweep_seeds(2000));
}
