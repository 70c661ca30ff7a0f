//! The cases of the Raft paper (Ongaro and Ousterhout, 2014) and of the thesis's extensions
//! (pre-vote, check-quorum, ReadIndex, leader transfer), each driven through the public API on
//! a fault-free network whose invariant checks (see `common`) run after every step.

mod common;

use common::{no_changes, Network};
use strata_raft::{
    Config, Entry, EntryKind, HardState, Message, MessageBody, NodeId, RawNode, Ready, Role,
};

fn n(id: u32) -> NodeId {
    NodeId(id)
}

fn log(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(position, &term)| Entry {
            term,
            index: position as u64 + 1,
            kind: EntryKind::Normal,
            data: vec![position as u8],
        })
        .collect()
}

fn plain(config: &mut Config) {
    config.pre_vote = false;
    config.check_quorum = false;
}

/// A replica of a `count`-voter group restored with `term`, `vote` and a log of `terms`.
fn replica(id: u32, count: u32, term: u64, vote: Option<u32>, terms: &[u64]) -> RawNode {
    let mut config = Config::new(n(id), (1..=count).map(n).collect(), u64::from(id));
    plain(&mut config);
    let hard_state = HardState { term, vote: vote.map(n), commit: 0 };
    RawNode::new(config, hard_state, log(terms), 0).expect("valid state")
}

fn take_ready(node: &mut RawNode) -> Ready {
    let ready = node.ready();
    node.advance();
    ready
}

fn request_vote(from: u32, to: u32, term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message {
        from: n(from),
        to: n(to),
        term,
        body: MessageBody::RequestVote {
            pre_vote: false,
            leader_transfer: false,
            last_log_index,
            last_log_term,
        },
    }
}

fn vote_granted(ready: &Ready, to: u32) -> Option<bool> {
    assert!(ready.messages.is_empty(), "a vote answer waits for persistence: {:?}", ready.messages);
    ready.persisted_messages.iter().find(|message| message.to == n(to)).map(|message| match message
        .body
    {
        MessageBody::RequestVoteResponse { granted, .. } => granted,
        ref body => panic!("unexpected {body:?}"),
    })
}

fn append(from: u32, term: u64, prev: (u64, u64), entries: &[(u64, u64)], commit: u64) -> Message {
    Message {
        from: n(from),
        to: n(1),
        term,
        body: MessageBody::Append {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            commit,
            entries: entries
                .iter()
                .map(|&(index, term)| Entry { term, index, kind: EntryKind::Normal, data: vec![] })
                .collect(),
        },
    }
}

fn append_response(ready: &Ready) -> (bool, u64, u64, u64) {
    assert_eq!(ready.persisted_messages.len(), 1, "{:?}", ready.persisted_messages);
    match ready.persisted_messages[0].body {
        MessageBody::AppendResponse { rejected, index, hint_index, hint_term } => {
            (rejected, index, hint_index, hint_term)
        }
        ref body => panic!("unexpected {body:?}"),
    }
}

fn terms_of(node: &RawNode) -> Vec<u64> {
    node.entries(1, node.last_index()).iter().map(|entry| entry.term).collect()
}

/// Runs `rounds` of one tick everywhere followed by full delivery.
fn run(network: &mut Network, rounds: u32) {
    for _ in 0..rounds {
        network.tick_all();
        network.deliver_all();
    }
}

fn elect(network: &mut Network, id: u32) {
    network.node_mut(n(id)).campaign();
    network.deliver_all();
    assert_eq!(network.node(n(id)).role(), Role::Leader);
}

// ----- §5.2 leader election -----

#[test]
fn election_elects_one_leader_that_all_follow() {
    let mut network = Network::new(3, 1, no_changes);
    elect(&mut network, 1);
    assert_eq!(network.stable_leader(), Some(n(1)));
    assert_eq!(network.node(n(1)).term(), 1);
    for id in [2, 3] {
        assert_eq!(network.node(n(id)).role(), Role::Follower);
    }
    // The new leader's empty entry commits everywhere.
    run(&mut network, 3);
    assert!(network.ids.iter().all(|&id| network.node(id).commit_index() == 1));
}

#[test]
fn election_needs_a_majority() {
    let mut network = Network::new(5, 2, plain);
    network.partition(&[n(1), n(2)]);
    network.node_mut(n(1)).campaign();
    network.deliver_all();
    assert_eq!(network.node(n(1)).role(), Role::Candidate);
    assert!(network.leaders().is_empty());
}

#[test]
fn elections_eventually_settle_by_timeouts_alone() {
    for seed in 0..20 {
        let mut network = Network::new(5, seed, no_changes);
        run(&mut network, 60);
        assert!(network.stable_leader().is_some(), "seed {seed}");
    }
}

// ----- §5.2, §5.4.1 vote rules -----

#[test]
fn vote_requires_a_log_at_least_as_up_to_date() {
    // The voter's log ends with term 2 at index 2.
    let mut voter = replica(1, 5, 2, None, &[1, 2]);
    // A longer log with an older last term loses.
    voter.step(request_vote(2, 1, 3, 5, 1)).unwrap();
    assert_eq!(vote_granted(&take_ready(&mut voter), 2), Some(false));
    // A shorter log with the same last term loses.
    voter.step(request_vote(3, 1, 3, 1, 2)).unwrap();
    assert_eq!(vote_granted(&take_ready(&mut voter), 3), Some(false));
    // An equal log wins.
    voter.step(request_vote(4, 1, 3, 2, 2)).unwrap();
    let ready = take_ready(&mut voter);
    assert_eq!(vote_granted(&ready, 4), Some(true));
    assert_eq!(ready.hard_state.map(|state| state.vote), Some(Some(n(4))), "vote persisted");

    let mut voter = replica(1, 5, 2, None, &[1, 2]);
    // A newer last term wins even with a shorter log.
    voter.step(request_vote(2, 1, 3, 1, 3)).unwrap();
    assert_eq!(vote_granted(&take_ready(&mut voter), 2), Some(true));
}

#[test]
fn one_vote_per_term_and_it_survives_a_restart() {
    let mut voter = replica(1, 3, 1, None, &[1]);
    voter.step(request_vote(2, 1, 2, 1, 1)).unwrap();
    assert_eq!(vote_granted(&take_ready(&mut voter), 2), Some(true));
    voter.step(request_vote(3, 1, 2, 1, 1)).unwrap();
    assert_eq!(vote_granted(&take_ready(&mut voter), 3), Some(false));
    // A duplicate request from the same candidate is granted again.
    voter.step(request_vote(2, 1, 2, 1, 1)).unwrap();
    assert_eq!(vote_granted(&take_ready(&mut voter), 2), Some(true));

    // Restarted from its hard state, it still refuses the other candidate in that term.
    let mut voter = replica(1, 3, voter.term(), voter.vote().map(|vote| vote.0), &[1]);
    voter.step(request_vote(3, 1, 2, 1, 1)).unwrap();
    assert_eq!(vote_granted(&take_ready(&mut voter), 3), Some(false));
    // A higher term frees the vote.
    voter.step(request_vote(3, 1, 3, 1, 1)).unwrap();
    assert_eq!(vote_granted(&take_ready(&mut voter), 3), Some(true));
}

#[test]
fn stale_term_vote_requests_are_ignored() {
    let mut voter = replica(1, 3, 5, None, &[1]);
    voter.step(request_vote(2, 1, 4, 9, 4)).unwrap();
    assert!(!voter.has_ready() || take_ready(&mut voter).persisted_messages.is_empty());
    assert_eq!(voter.term(), 5);
}

// ----- §5.3 log replication: log matching and conflicts -----

#[test]
fn append_truncates_a_conflicting_uncommitted_suffix() {
    let mut follower = replica(1, 3, 2, None, &[1, 1, 2, 2]);
    follower.step(append(2, 3, (2, 1), &[(3, 3)], 0)).unwrap();
    let ready = take_ready(&mut follower);
    assert_eq!(append_response(&ready), (false, 3, 0, 0));
    assert_eq!(terms_of(&follower), vec![1, 1, 3]);
    assert_eq!(ready.entries.first().map(|entry| entry.index), Some(3), "rewrite from 3");
    assert_eq!(follower.leader(), Some(n(2)));
}

#[test]
fn append_with_a_gap_or_mismatch_is_rejected_with_a_hint() {
    let mut follower = replica(1, 3, 1, None, &[1, 1, 1]);
    // Beyond the end: the hint points at the last entry.
    follower.step(append(2, 3, (5, 3), &[(6, 3)], 0)).unwrap();
    assert_eq!(append_response(&take_ready(&mut follower)), (true, 5, 3, 1));
    // A term mismatch at index 3: the follower's term 1 <= 2, so the hint is (3, 1).
    follower.step(append(2, 3, (3, 2), &[(4, 3)], 0)).unwrap();
    assert_eq!(append_response(&take_ready(&mut follower)), (true, 3, 3, 1));
    assert_eq!(terms_of(&follower), vec![1, 1, 1], "a rejected append changes nothing");
}

#[test]
fn a_stale_append_never_truncates_matching_entries() {
    let mut follower = replica(1, 3, 1, None, &[1, 1, 1]);
    follower.step(append(2, 1, (0, 0), &[(1, 1)], 0)).unwrap();
    assert_eq!(append_response(&take_ready(&mut follower)), (false, 1, 0, 0));
    assert_eq!(terms_of(&follower), vec![1, 1, 1]);
}

#[test]
fn follower_commit_is_bounded_by_what_the_append_proved() {
    let mut follower = replica(1, 3, 1, None, &[1, 1, 1, 1]);
    // The leader committed 4, but this append only proves the logs match up to index 2.
    follower.step(append(2, 2, (1, 1), &[(2, 1)], 4)).unwrap();
    assert_eq!(follower.commit_index(), 2);
    assert_eq!(take_ready(&mut follower).committed_entries.len(), 2);
}

#[test]
fn committed_entries_are_applied_only_once_durable() {
    let mut follower = replica(1, 3, 1, None, &[1]);
    follower.step(append(2, 1, (1, 1), &[(2, 1), (3, 1)], 3)).unwrap();
    assert_eq!(follower.commit_index(), 3);
    let ready = take_ready(&mut follower);
    assert_eq!(ready.entries.len(), 2);
    let applied: Vec<u64> = ready.committed_entries.iter().map(|entry| entry.index).collect();
    assert_eq!(applied, vec![1], "2 and 3 are not durable yet");
    let applied: Vec<u64> =
        take_ready(&mut follower).committed_entries.iter().map(|entry| entry.index).collect();
    assert_eq!(applied, vec![2, 3]);
}

// ----- §5.4 safety: commitment rules and Figure 8 -----

#[test]
fn leader_commits_once_a_majority_stores_an_entry() {
    let mut network = Network::new(5, 3, no_changes);
    elect(&mut network, 1);
    network.partition(&[n(1), n(2), n(3)]);
    let (index, _) = network.propose(n(1)).expect("leader");
    network.deliver_all();
    assert_eq!(network.node(n(1)).commit_index(), index, "3 of 5 suffice");
    network.partition(&[n(1), n(2)]);
    let (index, _) = network.propose(n(1)).expect("leader");
    network.deliver_all();
    assert!(network.node(n(1)).commit_index() < index, "2 of 5 do not");
}

/// Strips entries of term 4 from appends: the leader of term 4's own entries never arrive.
fn lose_term_4_entries(mut message: Message) -> Option<Message> {
    if let MessageBody::Append { entries, .. } = &mut message.body {
        entries.retain(|entry| entry.term != 4);
    }
    Some(message)
}

#[test]
fn figure_8_old_term_entries_never_commit_by_counting() {
    let mut network = Network::new(5, 4, plain);
    let empty = |term, index| Entry { term, index, kind: EntryKind::Empty, data: vec![] };
    let log_12 = vec![empty(1, 1), empty(2, 2)];
    let state = |term, vote: u32| HardState { term, vote: Some(n(vote)), commit: 1 };
    // (b): S1 led term 2 and reached S2 with entry 2; S5 led term 3 with its own entry 2, then
    // crashed before it reached anyone.
    // S1 and S2 have since heard of term 3.
    let unvoted = HardState { term: 3, vote: None, commit: 1 };
    network.set_persisted(n(1), unvoted, log_12.clone());
    network.set_persisted(n(2), unvoted, log_12.clone());
    network.set_persisted(n(3), state(3, 5), vec![empty(1, 1)]);
    network.set_persisted(n(4), state(3, 5), vec![empty(1, 1)]);
    network.set_persisted(n(5), state(3, 5), vec![empty(1, 1), empty(3, 2)]);
    network.isolate(n(5));
    // (c): S1 leads term 4 and replicates entry 2 to a majority, but its term-4 entry is lost.
    network.rewrite = Some(lose_term_4_entries);
    network.node_mut(n(1)).campaign();
    network.deliver_all();
    assert_eq!(network.node(n(1)).role(), Role::Leader);
    assert_eq!(network.node(n(1)).term(), 4);
    run(&mut network, 3);
    for id in [1, 2, 3] {
        assert_eq!(network.node(n(id)).term_at(2), Some(2), "S{id} stores entry 2 of term 2");
    }
    assert_eq!(network.node(n(1)).commit_index(), 1, "entry 2 is on a majority, yet uncommitted");
    // (d): S1 crashes; S5 wins term 5 with its newer last term and overwrites entry 2.
    network.crash(n(1));
    network.rewrite = None;
    network.heal();
    network.node_mut(n(5)).campaign();
    network.deliver_all();
    if network.node(n(5)).role() != Role::Leader {
        network.node_mut(n(5)).campaign();
        network.deliver_all();
    }
    assert_eq!(network.node(n(5)).role(), Role::Leader);
    run(&mut network, 3);
    for id in [2, 3, 4, 5] {
        assert_eq!(network.node(n(id)).term_at(2), Some(3), "S{id} holds S5's entry 2");
        assert!(network.node(n(id)).commit_index() >= 3);
    }
    // The harness checked all along that no replica ever saw entry 2 of term 2 committed.
    assert_eq!(network.committed[1].term, 3);
}

/// Figure 7: a leader of term 8 meets followers whose logs miss entries (a, b), hold extra
/// uncommitted entries (c, d), or both (e, f). Only the first three entries (terms 1) are
/// committed. The leader wins with the votes of a, b, e and f (c and d have logs more up to
/// date), then forces every log to equal its own: missing entries filled in, conflicting ones
/// (d's term 7, e's term 4 tail, f's terms 2 and 3) overwritten.
#[test]
fn figure_7_the_leader_brings_every_divergent_log_into_agreement() {
    let mut network = Network::new(7, 8, plain);
    let leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [&[u64]; 6] = [
        &[1, 1, 1, 4, 4, 5, 5, 6, 6],
        &[1, 1, 1, 4],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        &[1, 1, 1, 4, 4, 4, 4],
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    // Every entry's data names its index and term, so a log's content shows which leader wrote
    // it. The first three entries (term 1) are committed everywhere.
    let entries = |terms: &[u64]| -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(position, &term)| Entry {
                term,
                index: position as u64 + 1,
                kind: EntryKind::Normal,
                data: vec![position as u8, term as u8],
            })
            .collect()
    };
    let state = HardState { term: 7, vote: None, commit: 3 };
    network.set_persisted(n(1), state, entries(&leader_log));
    for (position, terms) in followers.iter().enumerate() {
        network.set_persisted(n(position as u32 + 2), state, entries(terms));
    }
    network.node_mut(n(1)).campaign();
    network.deliver_all();
    assert_eq!(network.node(n(1)).role(), Role::Leader);
    assert_eq!(network.node(n(1)).term(), 8);
    run(&mut network, 5);
    let expected = terms_of(network.node(n(1)));
    let mut with_new_entry = leader_log.to_vec();
    with_new_entry.push(8);
    assert_eq!(expected, with_new_entry, "the leader's log plus its term-8 entry");
    for id in 2..=7 {
        let node = network.node(n(id));
        assert_eq!(terms_of(node), expected, "follower {} agrees", (b'a' + id as u8 - 2) as char);
        assert_eq!(node.entries(1, 11), network.node(n(1)).entries(1, 11));
        assert_eq!(node.commit_index(), 11);
    }
}

#[test]
fn new_leader_commits_old_entries_through_its_own() {
    let mut network = Network::new(3, 5, no_changes);
    let state = HardState { term: 2, vote: None, commit: 0 };
    for id in [1, 2, 3] {
        network.set_persisted(n(id), state, log(&[1, 2, 2]));
    }
    elect(&mut network, 2);
    run(&mut network, 3);
    for id in [1, 2, 3] {
        assert_eq!(network.node(n(id)).commit_index(), 4, "the leader's empty entry is 4");
        assert_eq!(network.replicas[&n(id)].applied_index, 4);
    }
}

// ----- pre-vote and check-quorum (thesis §9.6, §6.2) -----

fn rejoin_after_isolation(configure: fn(&mut Config)) -> (u64, u64, NodeId) {
    let mut network = Network::new(3, 6, configure);
    elect(&mut network, 1);
    run(&mut network, 3);
    let term = network.node(n(1)).term();
    network.isolate(n(3));
    run(&mut network, 100);
    network.heal();
    run(&mut network, 50);
    let leader = network.stable_leader().expect("settled");
    (term, network.node(leader).term(), leader)
}

#[test]
fn pre_vote_keeps_a_rejoining_replica_from_disrupting_the_leader() {
    let (term_before, term_after, leader) = rejoin_after_isolation(no_changes);
    assert_eq!(term_after, term_before, "no term inflation");
    assert_eq!(leader, n(1));
    // Without pre-vote the isolated replica inflates its term and deposes the leader on rejoin.
    let (term_before, term_after, _) = rejoin_after_isolation(plain);
    assert!(term_after > term_before);
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut network = Network::new(3, 7, no_changes);
    elect(&mut network, 1);
    network.isolate(n(1));
    run(&mut network, 25);
    assert_eq!(network.node(n(1)).role(), Role::Follower);
    // Without check-quorum it would lead its minority forever.
    let mut network = Network::new(3, 7, plain);
    elect(&mut network, 1);
    network.isolate(n(1));
    run(&mut network, 25);
    assert_eq!(network.node(n(1)).role(), Role::Leader);
}

#[test]
fn check_quorum_followers_ignore_votes_while_the_leader_is_alive() {
    let mut network = Network::new(3, 8, |config| config.pre_vote = false);
    elect(&mut network, 1);
    run(&mut network, 2);
    let term = network.node(n(1)).term();
    network.node_mut(n(3)).campaign();
    network.deliver_all();
    assert_eq!(network.node(n(2)).term(), term, "the vote request was ignored");
    assert_eq!(network.node(n(1)).role(), Role::Leader);
}

// ----- ReadIndex (thesis §6.4) -----

#[test]
fn read_index_is_confirmed_by_a_quorum_only() {
    let mut network = Network::new(3, 9, no_changes);
    elect(&mut network, 1);
    run(&mut network, 2);
    assert!(network.read(n(1)));
    network.deliver_all();
    assert_eq!(network.reads_confirmed, 1);
    assert!(!network.read(n(2)), "followers refuse");
    // A leader cut off from its quorum cannot confirm reads.
    network.isolate(n(1));
    assert!(network.read(n(1)));
    network.deliver_all();
    assert_eq!(network.reads_confirmed, 1);
}

fn lose_append_responses(message: Message) -> Option<Message> {
    match message.body {
        MessageBody::AppendResponse { .. } => None,
        _ => Some(message),
    }
}

#[test]
fn read_index_waits_for_the_leaders_first_commit() {
    let mut network = Network::new(3, 10, no_changes);
    network.rewrite = Some(lose_append_responses);
    elect(&mut network, 1);
    run(&mut network, 3);
    assert_eq!(network.node(n(1)).commit_index(), 0, "its empty entry cannot commit");
    assert!(network.read(n(1)));
    run(&mut network, 3);
    assert_eq!(network.reads_confirmed, 0, "held although heartbeats are answered");
    network.rewrite = None;
    run(&mut network, 3);
    assert_eq!(network.reads_confirmed, 1);
}

// ----- leader transfer (thesis §3.10) -----

#[test]
fn leader_transfer_hands_over_after_catching_up() {
    let mut network = Network::new(3, 11, no_changes);
    elect(&mut network, 1);
    network.partition(&[n(1), n(2)]);
    for _ in 0..5 {
        network.propose(n(1));
    }
    network.deliver_all();
    network.heal();
    network.node_mut(n(1)).transfer_leader(n(3)).unwrap();
    assert_eq!(
        network.node_mut(n(1)).propose(vec![1]),
        Err(strata_raft::Error::TransferInProgress)
    );
    network.process_ready(n(1));
    network.deliver_all();
    assert_eq!(network.node(n(3)).role(), Role::Leader);
    run(&mut network, 3);
    assert_eq!(network.stable_leader(), Some(n(3)));
}

// ----- batching and flow control -----

fn appends_to(ready: &Ready, to: u32) -> Vec<usize> {
    ready
        .messages
        .iter()
        .filter(|message| message.to == n(to))
        .filter_map(|message| match &message.body {
            MessageBody::Append { entries, .. } if !entries.is_empty() => Some(entries.len()),
            _ => None,
        })
        .collect()
}

#[test]
fn proposals_between_readies_go_out_batched() {
    let mut network = Network::new(3, 12, no_changes);
    elect(&mut network, 1);
    run(&mut network, 2);
    let leader = network.node_mut(n(1));
    for value in 0..10u8 {
        leader.propose(vec![value]).unwrap();
    }
    let ready = take_ready(leader);
    assert_eq!(appends_to(&ready, 2), vec![10], "one append carries all ten");
}

#[test]
fn appends_respect_batch_and_in_flight_limits() {
    let mut network = Network::new(3, 13, |config| {
        config.append_entries_max = 3;
        config.inflight_appends_max = 2;
    });
    elect(&mut network, 1);
    run(&mut network, 2);
    let leader = network.node_mut(n(1));
    for value in 0..20u8 {
        leader.propose(vec![value]).unwrap();
    }
    let ready = take_ready(leader);
    assert_eq!(appends_to(&ready, 2), vec![3, 3], "two batches of three in flight, no more");
    // Nothing more until an acknowledgement arrives.
    leader.propose(vec![99]).unwrap();
    let ready = take_ready(leader);
    assert_eq!(appends_to(&ready, 2), Vec::<usize>::new());
    // Everything still arrives in the end.
    network.deliver_all();
    run(&mut network, 5);
    assert_eq!(network.node(n(2)).commit_index(), network.node(n(1)).last_index());
}
