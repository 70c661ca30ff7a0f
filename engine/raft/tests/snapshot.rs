//! Log compaction and chunked, resumable snapshot install, driven through the public API on the
//! in-memory network of `common` (whose state machine, a register, snapshots to its bytes in
//! chunks of `CHUNK_BYTES`): a follower that needs compacted entries catches up through a
//! snapshot; a lost chunk or acknowledgement resumes from what the follower holds, and so does a
//! transfer a new leader takes over; restarts come back from the snapshot; randomized runs
//! compact all the time under drops, duplicates, delays, partitions and crashes.
//!
//! The long sweep: `STRATA_RAFT_SEEDS=5000 cargo nextest run -p strata-raft --run-ignored only
//! snapshot_many_seeds` (`STRATA_RAFT_SEED_START` shifts the range).

mod common;

use common::{no_changes, Faults, Network, CHUNK_BYTES, REGISTER_BYTES};
use std::sync::atomic::{AtomicU32, Ordering};
use strata_raft::{
    ConfChange, ConfChangeStep, Error, Message, MessageBody, NodeId, ProgressState, Role,
};

fn n(id: u32) -> NodeId {
    NodeId(id)
}

fn run(network: &mut Network, rounds: u32) {
    for _ in 0..rounds {
        network.tick_all();
        network.deliver_all();
    }
}

/// Three voters led by 1; 3 is cut off while 1 commits `count` entries and compacts its log.
fn lagging_follower(count: u32) -> Network {
    let mut network = Network::new(3, 11, no_changes);
    network.node_mut(n(1)).campaign();
    network.deliver_all();
    network.isolate(n(3));
    for _ in 0..count {
        network.propose(n(1)).expect("leading");
    }
    network.deliver_all();
    let applied = network.node(n(1)).applied_index();
    let meta = network.node_mut(n(1)).compact(applied).expect("applied");
    network.replicas.get_mut(&n(1)).expect("known").snapshot = meta.clone();
    let register = network.replicas[&n(1)].register.bytes.clone();
    network.replicas.get_mut(&n(1)).expect("known").snapshot_bytes = register;
    network.replicas.get_mut(&n(1)).expect("known").log.clear();
    assert_eq!(network.node(n(1)).first_index(), applied + 1);
    network
}

fn chunks_from(network: &Network, to: u32) -> Vec<(NodeId, u64)> {
    network
        .chunks_received
        .iter()
        .filter(|(replica, _, _)| *replica == n(to))
        .map(|&(_, from, offset)| (from, offset))
        .collect()
}

#[test]
fn compaction_stops_at_the_applied_index_and_keeps_what_follows() {
    let mut network = lagging_follower(5);
    let node = network.node_mut(n(1));
    let applied = node.applied_index();
    assert_eq!(
        node.compact(applied + 1),
        Err(Error::CompactBeyondApplied { index: applied + 1, applied })
    );
    let meta = node.compact(applied - 2).expect("below an earlier compaction: no change");
    assert_eq!(meta.index, applied, "the current snapshot");
    assert_eq!(node.term_at(applied), Some(meta.term));
    assert_eq!(node.term_at(applied - 1), None, "compacted");
    assert!(node.entries(1, applied).is_empty());
    assert_eq!(meta.membership.voters.len(), 3);
}

#[test]
fn a_follower_behind_the_compaction_catches_up_through_a_chunked_snapshot() {
    let mut network = lagging_follower(20);
    let snapshot_index = network.node(n(1)).snapshot_meta().index;
    network.heal();
    run(&mut network, 4);
    let follower = network.node(n(3));
    assert_eq!(follower.snapshot_meta().index, snapshot_index);
    assert!(follower.applied_index() >= snapshot_index);
    assert_eq!(network.replicas[&n(3)].register, network.replicas[&n(1)].register);
    let chunks = chunks_from(&network, 3);
    let expected = (REGISTER_BYTES as u64).div_ceil(CHUNK_BYTES) as usize;
    assert_eq!(chunks.len(), expected, "every chunk exactly once: {chunks:?}");
    assert_eq!(network.node(n(1)).progress(n(3)).expect("tracked").state, ProgressState::Replicate);
    // And replication resumes after the snapshot.
    let (index, _) = network.propose(n(1)).expect("leading");
    network.deliver_all();
    assert!(network.node(n(3)).commit_index() >= index);
}

static SNAPSHOTS_SEEN: AtomicU32 = AtomicU32::new(0);

/// Drops the third snapshot chunk once.
fn lose_third_chunk(message: Message) -> Option<Message> {
    if matches!(message.body, MessageBody::Snapshot { .. })
        && SNAPSHOTS_SEEN.fetch_add(1, Ordering::Relaxed) == 2
    {
        return None;
    }
    Some(message)
}

#[test]
fn a_lost_chunk_resumes_from_what_the_follower_holds() {
    let mut network = lagging_follower(20);
    network.rewrite = Some(lose_third_chunk);
    network.heal();
    run(&mut network, 15);
    assert_eq!(network.replicas[&n(3)].register, network.replicas[&n(1)].register);
    let offsets: Vec<u64> =
        chunks_from(&network, 3).into_iter().map(|(_, offset)| offset).collect();
    // Chunk 2 was lost: the follower refused chunk 3, and the leader resent from chunk 2, never
    // from the start.
    let expected: Vec<u64> = (0..REGISTER_BYTES as u64).step_by(CHUNK_BYTES as usize).collect();
    assert_eq!(offsets, expected, "each offset handed to the application once, in order");
    assert_eq!(network.snapshots_installed, 1);
}

/// Drops every chunk from replica 1 past the third.
fn cut_after_three_chunks(message: Message) -> Option<Message> {
    if let MessageBody::Snapshot { offset, .. } = message.body {
        if message.from == NodeId(1) && offset >= 3 * CHUNK_BYTES {
            return None;
        }
    }
    Some(message)
}

#[test]
fn a_new_leader_with_the_same_snapshot_resumes_the_transfer() {
    let mut network = lagging_follower(20);
    // 2 compacts at the same index, so it holds the same snapshot.
    let meta = network.node(n(1)).snapshot_meta();
    let bytes = network.replicas[&n(1)].snapshot_bytes.clone();
    let replica = network.replicas.get_mut(&n(2)).expect("known");
    let node = replica.node.as_mut().expect("up");
    assert!(node.applied_index() >= meta.index);
    assert_eq!(node.compact(meta.index), Ok(meta.clone()));
    replica.snapshot = meta;
    replica.snapshot_bytes = bytes;
    replica.log.retain(|entry| entry.index > replica.snapshot.index);
    network.rewrite = Some(cut_after_three_chunks);
    network.heal();
    run(&mut network, 2);
    let held = chunks_from(&network, 3).len();
    assert_eq!(held, 3, "three chunks reached 3 before 1's were cut");
    assert!(network.replicas[&n(3)].applied_index < network.node(n(1)).snapshot_meta().index);
    // 1 goes; 2 takes over.
    network.crash(n(1));
    run(&mut network, 60);
    assert_eq!(network.node(n(2)).role(), Role::Leader, "3 lacks entries: 2 wins");
    let chunks = chunks_from(&network, 3);
    let from_new_leader: Vec<u64> =
        chunks.iter().filter(|(from, _)| *from == n(2)).map(|&(_, offset)| offset).collect();
    assert_eq!(
        from_new_leader.first(),
        Some(&(3 * CHUNK_BYTES)),
        "2 resumed where 1 stopped: {chunks:?}"
    );
    assert_eq!(network.replicas[&n(3)].register, network.replicas[&n(2)].register);
}

#[test]
fn a_restart_comes_back_from_the_snapshot_with_its_membership() {
    let mut network = Network::with_joiners(3, 1, 5, no_changes);
    network.node_mut(n(1)).campaign();
    network.deliver_all();
    let change = ConfChange { steps: vec![ConfChangeStep::AddLearner(n(4))] };
    network.conf_change(n(1), change).expect("leading");
    for _ in 0..10 {
        network.propose(n(1));
    }
    network.deliver_all();
    network.compact_every = 1;
    for _ in 0..10 {
        network.propose(n(1));
        network.deliver_all();
    }
    for id in 1..=4 {
        let snapshot = network.replicas[&n(id)].snapshot.clone();
        assert!(snapshot.index > 10, "{id} compacted past the change");
        assert!(snapshot.membership.is_learner(n(4)), "the snapshot keeps the membership");
        network.crash(n(id));
        network.restart(n(id));
        assert!(network.node(n(id)).membership().is_learner(n(4)), "{id} after a restart");
        assert_eq!(network.node(n(id)).first_index(), snapshot.index + 1);
    }
    network.node_mut(n(2)).campaign();
    network.deliver_all();
    run(&mut network, 3);
    let leader = network.stable_leader().expect("a leader");
    let (index, _) = network.propose(leader).expect("leading");
    network.deliver_all();
    for id in 1..=4 {
        assert!(network.replicas[&n(id)].applied_index >= index, "{id} applied");
    }
}

#[test]
fn snapshot_installed_refuses_a_snapshot_behind_the_state_machine() {
    let mut network = lagging_follower(5);
    let meta = network.node(n(1)).snapshot_meta();
    let result = network.node_mut(n(2)).snapshot_installed(meta.clone());
    assert_eq!(result, Err(Error::SnapshotStale { index: meta.index, applied: meta.index }));
}

// ----- randomized -----

const CHAOS_TICKS: u64 = 1500;
const LIVENESS_TICKS_MAX: u64 = 1500;

fn run_seed(seed: u64) -> (u64, u64) {
    let count = if seed.is_multiple_of(2) { 3 } else { 5 };
    let mut network = Network::new(count, seed, no_changes);
    network.faults = Faults::draw(&mut network.rng, &[0.0, 0.02, 0.1, 0.25], 6);
    network.compact_every = 3 + network.rng.below(20);
    for _ in 0..CHAOS_TICKS {
        network.step_chaos();
    }
    network.heal_and_check_liveness(LIVENESS_TICKS_MAX);
    (network.committed.len() as u64, network.snapshots_installed)
}

fn run_seeds(seeds: std::ops::Range<u64>) {
    let seed_count = seeds.end - seeds.start;
    let (committed, installed) = common::sweep("snapshot", seeds, run_seed);
    eprintln!("{seed_count} seeds: {committed} entries committed, {installed} snapshots installed");
    assert!(committed >= seed_count * 50, "too little committed: {committed}");
    assert!(installed >= seed_count, "too few snapshots installed: {installed}");
}

#[test]
fn snapshot_seeds() {
    run_seeds(0..200);
}

#[test]
#[ignore = "long sweep; see the module documentation"]
fn snapshot_many_seeds() {
    run_seeds(common::long_sweep_seeds(2000));
}
