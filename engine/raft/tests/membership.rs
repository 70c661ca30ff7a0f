//! Membership change by joint consensus (Raft thesis §4.3), with learners, driven through the
//! public API on the in-memory network of `common` (its safety checks run after every step):
//! fixed scenarios for each rule, then randomized runs that add, promote, remove and replace
//! replicas under load and faults.
//!
//! The long sweep: `STRATA_RAFT_SEEDS=5000 cargo nextest run -p strata-raft --run-ignored only
//! membership_many_seeds` (`STRATA_RAFT_SEED_START` shifts the range).

mod common;

use common::{no_changes, Faults, Network};
use strata_raft::{
    ConfChange, ConfChangeError, ConfChangeStep, Config, EntryKind, Error, Membership, NodeId, Role,
};

fn n(id: u32) -> NodeId {
    NodeId(id)
}

fn change(steps: &[ConfChangeStep]) -> ConfChange {
    ConfChange { steps: steps.to_vec() }
}

fn run(network: &mut Network, rounds: u32) {
    for _ in 0..rounds {
        network.tick_all();
        network.deliver_all();
    }
}

/// Three bootstrap voters led by 1, and `joiners` replicas outside the group.
fn group(joiners: u32) -> Network {
    let mut network = Network::with_joiners(3, joiners, 7, no_changes);
    network.node_mut(n(1)).campaign();
    network.deliver_all();
    assert_eq!(network.node(n(1)).role(), Role::Leader);
    network
}

fn voters(ids: &[u32]) -> Membership {
    Membership::with_voters(ids.iter().map(|&id| n(id)))
}

#[test]
fn a_replica_outside_the_configuration_never_campaigns() {
    let mut network = Network::with_joiners(3, 1, 3, no_changes);
    for _ in 0..200 {
        network.tick(n(4));
        network.deliver_all();
    }
    assert_eq!(network.node(n(4)).role(), Role::Follower);
    assert_eq!(network.node(n(4)).term(), 0);
    network.node_mut(n(4)).campaign();
    assert_eq!(network.node(n(4)).role(), Role::Follower, "campaign() is a no-op too");
}

#[test]
fn a_learner_replicates_but_never_counts() {
    let mut network = group(1);
    let index = network
        .conf_change(n(1), change(&[ConfChangeStep::AddLearner(n(4))]))
        .expect("the leader takes it");
    network.deliver_all();
    assert!(network.node(n(1)).commit_index() >= index);
    assert!(!network.node(n(1)).membership().is_joint(), "learners need no joint phase");
    for id in 1..=4 {
        assert!(network.node(n(id)).membership().is_learner(n(4)), "{id} knows the learner");
    }
    assert_eq!(network.node(n(4)).last_index(), network.node(n(1)).last_index());
    // With both other voters cut off, the learner's acknowledgements commit nothing.
    network.isolate(n(2));
    network.isolate(n(3));
    let commit = network.node(n(1)).commit_index();
    let (proposed, _) = network.propose(n(1)).expect("still leading");
    network.deliver_all();
    assert_eq!(network.node(n(4)).last_index(), proposed, "the learner stores the entry");
    assert_eq!(network.node(n(1)).commit_index(), commit, "but does not count");
    // A learner never campaigns, and cannot be handed the leadership.
    assert_eq!(network.node_mut(n(1)).transfer_leader(n(4)), Err(Error::NotVoter { id: n(4) }));
    network.heal();
    for _ in 0..100 {
        network.tick(n(4));
    }
    assert_eq!(network.node(n(4)).role(), Role::Follower);
}

#[test]
fn a_replacement_passes_through_a_joint_configuration_that_needs_both_majorities() {
    let mut network = group(1);
    // Promote 4 through a learner first, so it is caught up when it starts to count.
    network.conf_change(n(1), change(&[ConfChangeStep::AddLearner(n(4))])).expect("taken");
    network.deliver_all();
    // Cut 2 and 3 off: the joint configuration {1,2,4} & {1,2,3} has no majority of the
    // outgoing half (only 1), so neither the joint entry nor anything after it commits.
    network.isolate(n(2));
    network.isolate(n(3));
    let commit = network.node(n(1)).commit_index();
    let index = network
        .conf_change(n(1), change(&[ConfChangeStep::AddVoter(n(4)), ConfChangeStep::Remove(n(3))]))
        .expect("taken");
    let joint = network.node(n(1)).membership().clone();
    assert_eq!(joint.voters, voters(&[1, 2, 4]).voters);
    assert_eq!(joint.voters_outgoing, voters(&[1, 2, 3]).voters);
    network.deliver_all();
    assert_eq!(network.node(n(4)).membership(), &joint, "in effect once appended");
    assert_eq!(network.node(n(1)).commit_index(), commit, "1 and 4 are no outgoing majority");
    assert_eq!(
        network.node_mut(n(1)).propose_conf_change(change(&[ConfChangeStep::Remove(n(4))])),
        Err(Error::ConfChange(ConfChangeError::ChangePending)),
        "one change at a time"
    );
    // With 2 back, both halves have a majority: the joint entry commits and the leader leaves
    // the joint configuration by itself.
    network.heal();
    network.isolate(n(3));
    run(&mut network, 3);
    let leader = network.node(n(1));
    assert!(leader.commit_index() > index);
    assert_eq!(leader.membership(), &voters(&[1, 2, 4]));
    let leave = leader.membership_index();
    assert_eq!(leader.entries(leave, leave)[0].kind, EntryKind::ConfChangeLeave);
    assert!(leader.commit_index() >= leave, "C_new committed");
    assert_eq!(network.node(n(4)).membership(), &voters(&[1, 2, 4]));
    // 3 is out: new entries commit on {1,2,4} without it.
    let (proposed, _) = network.propose(n(1)).expect("leading");
    network.deliver_all();
    assert!(network.node(n(4)).commit_index() >= proposed);
    assert!(network.node(n(1)).progress(n(3)).is_none(), "the leader stopped tracking 3");
}

#[test]
fn a_removed_leader_steps_down_once_c_new_commits_and_a_successor_takes_over() {
    let mut network = group(0);
    network.conf_change(n(1), change(&[ConfChangeStep::Remove(n(1))])).expect("taken");
    // Still leads through the joint configuration and C_new, counting itself only where it
    // votes, then steps down and hands over at once.
    network.deliver_all();
    assert_ne!(network.node(n(1)).role(), Role::Leader);
    assert_eq!(network.node(n(1)).membership(), &voters(&[2, 3]));
    run(&mut network, 2);
    let leader = network.stable_leader().expect("a successor leads");
    assert_ne!(leader, n(1));
    let (index, _) = network.propose(leader).expect("leading");
    network.deliver_all();
    assert!(
        network.node(n(2)).commit_index() >= index && network.node(n(3)).commit_index() >= index
    );
    for _ in 0..100 {
        network.tick(n(1));
    }
    assert_eq!(network.node(n(1)).role(), Role::Follower, "a removed replica never campaigns");
}

#[test]
fn the_configuration_is_restored_from_the_log_on_restart() {
    let mut network = group(2);
    network.conf_change(n(1), change(&[ConfChangeStep::AddLearner(n(5))])).expect("taken");
    network.deliver_all();
    network
        .conf_change(n(1), change(&[ConfChangeStep::AddVoter(n(4)), ConfChangeStep::Remove(n(2))]))
        .expect("taken");
    network.deliver_all();
    let expected = network.node(n(1)).membership().clone();
    assert_eq!(expected.voters, voters(&[1, 3, 4]).voters);
    assert!(!expected.is_joint());
    for id in [3, 4, 5] {
        network.crash(n(id));
        network.restart(n(id));
        assert_eq!(network.node(n(id)).membership(), &expected, "{id} after a restart");
    }
    // An uncommitted change truncated from a follower's log takes its configuration with it.
    network.isolate(n(1));
    network.conf_change(n(1), change(&[ConfChangeStep::Remove(n(5))])).expect("taken");
    assert!(!network.node(n(1)).membership().contains(n(5)), "in effect on the leader");
    run(&mut network, 60);
    let leaders = network.leaders();
    assert!(leaders.iter().all(|&id| id == n(3) || id == n(4)), "{leaders:?}");
    assert_eq!(leaders.len(), 1);
    network.heal();
    run(&mut network, 10);
    assert_eq!(network.node(n(1)).membership(), &expected, "the stale leader's change is gone");
}

// ----- randomized -----

const CHAOS_TICKS: u64 = 1500;
const LIVENESS_TICKS_MAX: u64 = 1500;

fn tight_flow_control(config: &mut Config) {
    config.append_entries_max = 2;
    config.append_bytes_max = 40;
    config.inflight_appends_max = 2;
    config.inflight_bytes_max = 64;
}

/// A random change the leader's configuration allows (it may still refuse it: pending).
fn random_change(network: &mut Network, membership: &Membership) -> ConfChange {
    let outside: Vec<NodeId> =
        network.ids.iter().copied().filter(|&id| !membership.contains(id)).collect();
    let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
    let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
    let rng = &mut network.rng;
    let pick = |rng: &mut strata_rt::Rng, ids: &[NodeId]| ids[rng.index(ids.len())];
    let roll = rng.index(5);
    let step = if roll == 0 && !outside.is_empty() {
        ConfChangeStep::AddLearner(pick(rng, &outside))
    } else if roll == 1 && !learners.is_empty() {
        ConfChangeStep::AddVoter(pick(rng, &learners))
    } else if roll == 2 && !learners.is_empty() {
        ConfChangeStep::Remove(pick(rng, &learners))
    } else if roll == 3 && voters.len() > 2 {
        ConfChangeStep::Remove(pick(rng, &voters))
    } else if !outside.is_empty() && voters.len() < 5 {
        let added = pick(rng, &outside);
        if voters.len() >= 3 && rng.chance(0.5) {
            // A replacement.
            let removed = pick(rng, &voters);
            return change(&[ConfChangeStep::AddVoter(added), ConfChangeStep::Remove(removed)]);
        }
        ConfChangeStep::AddVoter(added)
    } else {
        ConfChangeStep::Remove(pick(rng, &voters))
    };
    change(&[step])
}

/// Runs one seed; returns the entries committed and the membership changes committed.
fn run_seed(seed: u64) -> (u64, u64) {
    let configure = if seed.is_multiple_of(2) { no_changes } else { tight_flow_control };
    let mut network = Network::with_joiners(3, 3, seed, configure);
    network.faults = Faults::draw(&mut network.rng, &[0.0, 0.02, 0.1], 4);
    if seed % 4 >= 2 {
        // Joiners then catch up through snapshots, which carry the configuration.
        network.compact_every = 5 + network.rng.below(20);
    }
    for _ in 0..CHAOS_TICKS {
        network.step_chaos();
        if network.rng.chance(0.02) {
            if let Some(&leader) = network.leaders().first() {
                let membership = network.node(leader).membership().clone();
                if !membership.is_joint() {
                    let change = random_change(&mut network, &membership);
                    network.conf_change(leader, change);
                }
            }
        }
    }
    network.heal_and_check_liveness(LIVENESS_TICKS_MAX);
    let changes = network
        .committed
        .iter()
        .filter(|entry| matches!(entry.kind, EntryKind::ConfChange | EntryKind::ConfChangeLeave))
        .count() as u64;
    (network.committed.len() as u64, changes)
}

fn run_seeds(seeds: std::ops::Range<u64>) {
    let seed_count = seeds.end - seeds.start;
    let (committed, changes) = common::sweep("membership", seeds, run_seed);
    eprintln!("{seed_count} seeds: {committed} entries committed, {changes} membership entries");
    assert!(committed >= seed_count * 50, "too little committed: {committed}");
    assert!(changes >= seed_count * 2, "too few membership changes committed: {changes}");
}

#[test]
fn membership_seeds() {
    run_seeds(0..100);
}

#[test]
#[ignore = "long sweep; see the module documentation"]
fn membership_many_seeds() {
    run_seeds(common::long_sweep_seeds(2000));
}
