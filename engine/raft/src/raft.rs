//! The Raft state machine of one replica: roles, terms, votes, replication and ReadIndex.
//!
//! Invariants asserted here, in release builds too: the term never decreases; a replica votes for
//! at most one candidate per term; a leader never meets another leader of its own term; commit
//! never decreases and never passes an entry this replica does not hold; a leader only commits
//! by counting replicas an entry of its own term (Raft §5.4.2, Figure 8).

use crate::log::RaftLog;
use crate::membership::{ConfChange, Membership, MembershipHistory, VoteResult};
use crate::progress::{Progress, ProgressState};
use crate::wire::{Entry, EntryKind, HardState, Message, MessageBody, SnapshotMeta};
use crate::{Config, Error, ReadState, Role, SnapshotChunk, SnapshotRequest};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use strata_rt::{NodeId, Rng};

/// A follower's side of the snapshot transfer under way.
#[derive(Debug)]
struct Receiving {
    meta: SnapshotMeta,
    /// Bytes `0..received` were handed to the application.
    received: u64,
    /// The last chunk was handed over: the application is installing the snapshot.
    done: bool,
}

/// A ReadIndex request waiting for a quorum to confirm the leadership.
#[derive(Debug)]
struct PendingRead {
    round: u64,
    context: u64,
    index: u64,
}

#[derive(Debug)]
pub(crate) struct Raft {
    pub(crate) config: Config,
    pub(crate) memberships: MembershipHistory,
    pub(crate) term: u64,
    pub(crate) vote: Option<NodeId>,
    pub(crate) leader: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) log: RaftLog,
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    election_timeout_randomized: u32,
    rng: Rng,
    pub(crate) messages: Vec<Message>,
    /// Proposals or a commit advance wait to be sent (batched until the next `ready`).
    pub(crate) broadcast_pending: bool,
    commit_broadcast: u64,
    transfer_target: Option<NodeId>,
    transfer_elapsed: u32,
    read_round: u64,
    reads_pending: VecDeque<PendingRead>,
    /// ReadIndex requests that wait for the leader's first commit in its term.
    reads_waiting_commit: Vec<u64>,
    pub(crate) read_states: Vec<ReadState>,
    /// Ticks since this replica started: the clock of leases.
    ticks: u64,
    /// Leader: the tick each recent heartbeat round started at (the first round of each tick),
    /// oldest first; rounds older than a lease are dropped, so at most `lease_ticks + 1`.
    round_ticks: VecDeque<(u64, u64)>,
    /// Leader: the start tick of the latest round a quorum acknowledged.
    lease_start: Option<u64>,
    /// Leader: a transfer was started in this term; no lease until the term ends.
    transfer_started: bool,
    /// Leader: chunks to ask the application for (at most one per follower).
    pub(crate) snapshot_requests: Vec<SnapshotRequest>,
    /// Follower: received chunks to hand to the application (bounded by
    /// `snapshot_chunks_inflight_max`).
    pub(crate) snapshot_chunks: Vec<SnapshotChunk>,
    receiving: Option<Receiving>,
}

impl Raft {
    /// `snapshot.index == 0`: no snapshot, the configuration starts from the bootstrap one.
    pub(crate) fn new(
        config: Config,
        snapshot: SnapshotMeta,
        hard_state: HardState,
        entries: Vec<Entry>,
        applied: u64,
    ) -> Raft {
        let mut memberships = if snapshot.index == 0 {
            let bootstrap = Membership {
                voters: config.voters.iter().copied().collect(),
                voters_outgoing: BTreeSet::new(),
                learners: config.learners.iter().copied().collect(),
            };
            MembershipHistory::new(0, bootstrap)
        } else {
            MembershipHistory::new(snapshot.index, snapshot.membership)
        };
        for entry in &entries {
            memberships.append(entry);
        }
        // The log may hold entries of a term above the hard state's if a crash fell between
        // persisting the two; that is safe since nothing was acknowledged for them yet.
        let log =
            RaftLog::restore(snapshot.index, snapshot.term, entries, hard_state.commit, applied);
        let rng = Rng::with_seed(config.seed);
        let mut raft = Raft {
            memberships,
            term: hard_state.term,
            vote: hard_state.vote,
            leader: None,
            role: Role::Follower,
            log,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout_randomized: 0,
            rng,
            messages: Vec::new(),
            broadcast_pending: false,
            commit_broadcast: 0,
            transfer_target: None,
            transfer_elapsed: 0,
            read_round: 0,
            reads_pending: VecDeque::new(),
            reads_waiting_commit: Vec::new(),
            read_states: Vec::new(),
            ticks: 0,
            round_ticks: VecDeque::new(),
            lease_start: None,
            transfer_started: false,
            snapshot_requests: Vec::new(),
            snapshot_chunks: Vec::new(),
            receiving: None,
            config,
        };
        raft.reset(hard_state.term);
        raft
    }

    pub(crate) fn id(&self) -> NodeId {
        self.config.id
    }

    pub(crate) fn membership(&self) -> &Membership {
        self.memberships.current()
    }

    fn is_voter(&self) -> bool {
        self.membership().is_voter(self.id())
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.commit }
    }

    /// Every other member, learners included: whom a leader replicates to.
    fn peers(&self) -> Vec<NodeId> {
        self.membership().members().into_iter().filter(|&peer| peer != self.id()).collect()
    }

    /// Every other voter of either half: whom a candidate asks.
    fn voter_peers(&self) -> Vec<NodeId> {
        let membership = self.membership();
        let mut voters = membership.voters.clone();
        voters.extend(membership.voters_outgoing.iter().copied());
        voters.into_iter().filter(|&peer| peer != self.id()).collect()
    }

    fn send(&mut self, to: NodeId, term: u64, body: MessageBody) {
        assert_ne!(to, self.id(), "a replica never messages itself");
        self.messages.push(Message { from: self.id(), to, term, body });
    }

    // ----- roles -----

    fn reset(&mut self, term: u64) {
        assert!(term >= self.term, "term would go back from {} to {term}", self.term);
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.config.election_ticks;
        self.election_timeout_randomized = base + self.rng.below(u64::from(base)) as u32;
        self.votes.clear();
        self.progress.clear();
        self.broadcast_pending = false;
        self.transfer_target = None;
        self.transfer_elapsed = 0;
        self.read_round = 0;
        self.reads_pending.clear();
        self.reads_waiting_commit.clear();
        self.snapshot_requests.clear();
        self.round_ticks.clear();
        self.lease_start = None;
        self.transfer_started = false;
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader does not pre-campaign");
        // A pre-vote changes neither term nor vote: a partitioned replica does not inflate terms.
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader does not campaign");
        let term = self.term + 1;
        self.reset(term);
        self.vote = Some(self.id());
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "only a candidate becomes leader");
        assert_eq!(self.vote, Some(self.id()), "a leader voted for itself");
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.id());
        let next = self.log.last_index() + 1;
        for peer in self.peers() {
            self.progress.insert(peer, Progress::new(next));
        }
        assert!(self.is_voter(), "a leader votes");
        // Commits the entries of earlier terms by committing one of its own (Raft §5.4.2) and lets
        // ReadIndex learn the commit index.
        self.log.push(Entry { term, index: next, kind: EntryKind::Empty, data: Vec::new() });
        self.broadcast_pending = true;
        self.maybe_commit();
    }

    fn campaign(&mut self, pre_vote: bool, leader_transfer: bool) {
        assert!(self.is_voter(), "only a voter campaigns");
        let term = if pre_vote {
            self.become_pre_candidate();
            self.term + 1
        } else {
            self.become_candidate();
            self.term
        };
        let id = self.id();
        if self.poll(id, true) {
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.voter_peers() {
            let body = MessageBody::RequestVote {
                pre_vote,
                leader_transfer,
                last_log_index,
                last_log_term,
            };
            self.send(peer, term, body);
        }
    }

    /// Records a vote; returns `true` if it decided the election.
    fn poll(&mut self, from: NodeId, granted: bool) -> bool {
        if self.membership().is_voter(from) {
            self.votes.entry(from).or_insert(granted);
        }
        match self.membership().vote_result(&self.votes) {
            VoteResult::Won => {
                match self.role {
                    Role::PreCandidate => self.campaign(false, false),
                    Role::Candidate => self.become_leader(),
                    role => unreachable!("polled as {role:?}"),
                }
                true
            }
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, None);
                true
            }
            VoteResult::Pending => false,
        }
    }

    // ----- input -----

    pub(crate) fn tick(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        self.ticks += 1;
        match self.role {
            Role::Leader => {
                self.heartbeat_elapsed += 1;
                if self.transfer_target.is_some() {
                    self.transfer_elapsed += 1;
                    if self.transfer_elapsed >= self.config.election_ticks {
                        self.transfer_target = None;
                    }
                }
                if self.election_elapsed >= self.config.election_ticks {
                    self.election_elapsed = 0;
                    if self.config.check_quorum && !self.check_quorum_active() {
                        let term = self.term;
                        self.become_follower(term, None);
                        return;
                    }
                }
                if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
                    self.heartbeat_elapsed = 0;
                    // Every heartbeat round is a round of its own: its acknowledgement by a
                    // quorum renews the lease.
                    self.start_round();
                    self.broadcast_heartbeat();
                    self.release_reads();
                }
                self.tick_snapshot_transfers();
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                // A learner, or a replica not (or no longer) in the configuration, never campaigns.
                if self.election_elapsed >= self.election_timeout_randomized && self.is_voter() {
                    let pre_vote = self.config.pre_vote;
                    self.campaign(pre_vote, false);
                }
            }
        }
    }

    /// `true` if a quorum (counting the leader) was heard from since the last round; starts a
    /// new round.
    fn check_quorum_active(&mut self) -> bool {
        let mut active = BTreeMap::new();
        active.insert(self.id(), true);
        for (&peer, progress) in &mut self.progress {
            if progress.recent_active {
                active.insert(peer, true);
            }
            progress.recent_active = false;
        }
        self.membership().vote_result(&active) == VoteResult::Won
    }

    pub(crate) fn step(&mut self, message: Message) -> Result<(), Error> {
        if message.to != self.id() {
            return Err(Error::WrongRecipient { to: message.to });
        }
        // Messages from outside the configuration are taken: a replica may not know yet of the
        // change that added the sender. Only voters' votes and acknowledgements ever count.
        if message.from == self.id() {
            return Err(Error::UnknownPeer { id: message.from });
        }
        if message.term > self.term {
            if let MessageBody::RequestVote { pre_vote, leader_transfer, .. } = message.body {
                let election_ticks = self.config.election_ticks;
                // With leases, a replica that just started may have acknowledged a lease before
                // it crashed: it honours it for an election timeout.
                let in_lease = (self.leader.is_some() && self.election_elapsed < election_ticks)
                    || (self.config.lease_reads && self.ticks < u64::from(election_ticks));
                // A replica that hears from a leader ignores votes that would depose it
                // (check-quorum, Raft thesis §4.2.3), unless the leader itself asked (transfer).
                if in_lease && !leader_transfer && (self.config.check_quorum || pre_vote) {
                    if pre_vote {
                        let body = MessageBody::RequestVoteResponse { pre_vote, granted: false };
                        let term = self.term;
                        self.send(message.from, term, body);
                    }
                    return Ok(());
                }
            }
            match message.body {
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::RequestVoteResponse { pre_vote: true, granted: true } => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::Snapshot { .. } => {
                    self.become_follower(message.term, Some(message.from));
                }
                _ => self.become_follower(message.term, None),
            }
        } else if message.term < self.term {
            match message.body {
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::Snapshot { .. } => {
                    // Tell the stale leader about the newer term so it steps down; without this,
                    // check-quorum and pre-vote could leave it leading a minority forever.
                    let body = MessageBody::AppendResponse {
                        rejected: true,
                        index: 0,
                        hint_index: 0,
                        hint_term: 0,
                    };
                    let term = self.term;
                    self.send(message.from, term, body);
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    let body = MessageBody::RequestVoteResponse { pre_vote: true, granted: false };
                    let term = self.term;
                    self.send(message.from, term, body);
                }
                _ => {}
            }
            return Ok(());
        }

        if let MessageBody::RequestVote { pre_vote, last_log_index, last_log_term, .. } =
            message.body
        {
            self.handle_request_vote(
                message.from,
                message.term,
                pre_vote,
                last_log_index,
                last_log_term,
            );
            return Ok(());
        }
        match self.role {
            Role::Leader => self.step_leader(message),
            Role::PreCandidate | Role::Candidate => self.step_candidate(message),
            Role::Follower => self.step_follower(message),
        }
        Ok(())
    }

    fn handle_request_vote(
        &mut self,
        from: NodeId,
        term: u64,
        pre_vote: bool,
        last_log_index: u64,
        last_log_term: u64,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        if can_vote && self.log.is_up_to_date(last_log_index, last_log_term) {
            if !pre_vote {
                assert_eq!(term, self.term, "a vote is cast in the current term");
                assert!(
                    self.vote.is_none() || self.vote == Some(from),
                    "second vote in term {term}"
                );
                self.vote = Some(from);
                self.election_elapsed = 0;
            }
            self.send(from, term, MessageBody::RequestVoteResponse { pre_vote, granted: true });
        } else {
            let own_term = self.term;
            self.send(
                from,
                own_term,
                MessageBody::RequestVoteResponse { pre_vote, granted: false },
            );
        }
    }

    fn step_follower(&mut self, message: Message) {
        match message.body {
            MessageBody::Append { prev_log_index, prev_log_term, commit, entries } => {
                self.heard_from_leader(message.from);
                self.handle_append(message.from, prev_log_index, prev_log_term, commit, entries);
            }
            MessageBody::Heartbeat { commit, context } => {
                self.heard_from_leader(message.from);
                self.handle_heartbeat(message.from, commit, context);
            }
            MessageBody::Snapshot { meta, offset, done, data } => {
                self.heard_from_leader(message.from);
                self.handle_snapshot(message.from, meta, offset, done, data);
            }
            MessageBody::TimeoutNow if self.leader == Some(message.from) && self.is_voter() => {
                self.campaign(false, true);
            }
            _ => {}
        }
    }

    fn heard_from_leader(&mut self, from: NodeId) {
        self.election_elapsed = 0;
        match self.leader {
            Some(leader) => assert_eq!(leader, from, "two leaders in term {}", self.term),
            None => self.leader = Some(from),
        }
    }

    fn step_candidate(&mut self, message: Message) {
        match message.body {
            MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::Snapshot { .. } => {
                // A leader of this term exists: this campaign lost.
                let term = message.term;
                self.become_follower(term, Some(message.from));
                self.step_follower(message);
            }
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                let current = match self.role {
                    Role::PreCandidate => pre_vote && (!granted || message.term == self.term + 1),
                    Role::Candidate => !pre_vote && message.term == self.term,
                    _ => false,
                };
                if current {
                    self.poll(message.from, granted);
                }
            }
            _ => {}
        }
    }

    fn step_leader(&mut self, message: Message) {
        let from = message.from;
        match message.body {
            MessageBody::AppendResponse { rejected, index, hint_index, hint_term } => {
                self.handle_append_response(from, rejected, index, hint_index, hint_term);
            }
            MessageBody::HeartbeatResponse { context } => {
                let last_index = self.log.last_index();
                let Some(progress) = self.progress.get_mut(&from) else { return };
                progress.recent_active = true;
                progress.probe_sent = false;
                progress.read_acknowledged = progress.read_acknowledged.max(context);
                if progress.match_index < last_index {
                    // The follower is alive but behind: appends or their answers may have been
                    // lost, so open one slot of a full window to make progress (raft-rs does the
                    // same); an empty append then finds where the logs diverge.
                    progress.free_first_inflight();
                    self.send_append(from, true);
                }
                self.release_reads();
            }
            MessageBody::SnapshotResponse { index, term, rejected, offset } => {
                self.handle_snapshot_response(from, index, term, rejected, offset);
            }
            MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::Snapshot { .. } => {
                panic!("two leaders in term {}: {} and {from}", self.term, self.id());
            }
            _ => {}
        }
    }

    // ----- replication -----

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: u64,
        prev_log_term: u64,
        commit: u64,
        entries: Vec<Entry>,
    ) {
        let term = self.term;
        let (mut prev_index, mut prev_term, mut entries) = (prev_log_index, prev_log_term, entries);
        let committed = self.log.commit;
        if prev_index < committed {
            // Entries at or below our commit are the leader's too (Leader Completeness).
            entries.retain(|entry| entry.index > committed);
            prev_index = committed;
            prev_term = self.log.term(committed).expect("committed entries are held");
            if let Some(first) = entries.first() {
                assert_eq!(first.index, committed + 1, "append has a gap after our commit");
            }
        }
        if self.log.matches(prev_index, prev_term) {
            let (last_new, first_written) = self.log.append_matching(prev_index, &entries);
            if let Some(first_written) = first_written {
                self.memberships.truncate_from(first_written);
                for entry in self.log.slice(first_written, last_new) {
                    self.memberships.append(entry);
                }
            }
            self.log.commit_to(commit.min(last_new));
            let body = MessageBody::AppendResponse {
                rejected: false,
                index: last_new,
                hint_index: 0,
                hint_term: 0,
            };
            self.send(from, term, body);
        } else {
            let (hint_index, hint_term) = self.log.find_conflict_by_term(prev_index, prev_term);
            let body = MessageBody::AppendResponse {
                rejected: true,
                index: prev_index,
                hint_index,
                hint_term,
            };
            self.send(from, term, body);
        }
    }

    fn handle_heartbeat(&mut self, from: NodeId, commit: u64, context: u64) {
        // The leader sends at most what this replica acknowledged as matching.
        self.log.commit_to(commit);
        let term = self.term;
        self.send(from, term, MessageBody::HeartbeatResponse { context });
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        rejected: bool,
        index: u64,
        hint_index: u64,
        hint_term: u64,
    ) {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        if rejected {
            let stale = match progress.state {
                ProgressState::Replicate => index <= progress.match_index,
                ProgressState::Probe => index + 1 != progress.next_index,
                ProgressState::Snapshot => true,
            };
            if stale {
                return;
            }
            let (conflict, _) = self.log.find_conflict_by_term(hint_index, hint_term);
            let progress = self.progress.get_mut(&from).expect("checked above");
            let next = (conflict + 1).min(index).max(progress.match_index + 1);
            progress.become_probe(next);
            self.send_append(from, true);
            return;
        }
        if !progress.update(index) {
            // Stale, but it may have freed room in the window.
            while self.send_append(from, false) {}
            return;
        }
        assert!(index <= last_index, "follower acknowledged beyond the leader's log");
        match progress.state {
            ProgressState::Probe => progress.become_replicate(),
            ProgressState::Snapshot => {
                let snapshot_index =
                    progress.transfer.as_ref().expect("a transfer in Snapshot state").meta.index;
                if progress.match_index >= snapshot_index {
                    // Installed (or not needed after all): back to appends.
                    progress.become_replicate();
                }
            }
            ProgressState::Replicate => {}
        }
        let match_index = progress.match_index;
        if self.maybe_commit() {
            self.broadcast_pending = true;
        }
        if self.role != Role::Leader {
            return;
        }
        if self.transfer_target == Some(from) && match_index == self.log.last_index() {
            let term = self.term;
            self.send(from, term, MessageBody::TimeoutNow);
        }
        while self.send_append(from, false) {}
    }

    /// Sends the next batch to `to` if the flow-control window allows; `allow_empty` sends an
    /// append without entries (a probe or a commit update). Returns `true` if entries went out.
    fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let config = &self.config;
        let Some(progress) = self.progress.get(&to) else { return false };
        if progress.is_paused(config.inflight_appends_max, config.inflight_bytes_max) {
            return false;
        }
        let prev_log_index = progress.next_index - 1;
        let Some(prev_log_term) = self.log.term(prev_log_index) else {
            // The follower needs compacted entries: stream the snapshot instead.
            assert!(prev_log_index < self.log.offset(), "next_index beyond the log");
            let meta = self.snapshot_meta();
            self.progress.get_mut(&to).expect("checked above").become_snapshot(meta);
            self.request_chunk(to);
            return false;
        };
        let entries =
            self.log.batch(progress.next_index, config.append_entries_max, config.append_bytes_max);
        if entries.is_empty() && !allow_empty {
            return false;
        }
        let last = entries.last().map(|entry| entry.index);
        let size_bytes = entries.iter().map(Entry::size_bytes).sum();
        let progress = self.progress.get_mut(&to).expect("checked above");
        progress.sent(last, size_bytes);
        let commit = self.log.commit;
        let term = self.term;
        let body = MessageBody::Append { prev_log_index, prev_log_term, commit, entries };
        self.send(to, term, body);
        last.is_some()
    }

    /// Sends what proposals and commit advances left pending, batched since the last call.
    pub(crate) fn flush_broadcast(&mut self) {
        if self.role != Role::Leader || !self.broadcast_pending {
            return;
        }
        self.broadcast_pending = false;
        let commit_advanced = self.log.commit > self.commit_broadcast;
        self.commit_broadcast = self.log.commit;
        for peer in self.peers() {
            let mut sent = self.send_append(peer, commit_advanced);
            while sent {
                sent = self.send_append(peer, false);
            }
        }
    }

    fn broadcast_heartbeat(&mut self) {
        let (term, context) = (self.term, self.read_round);
        for peer in self.progress.keys().copied().collect::<Vec<_>>() {
            let match_index = self.progress[&peer].match_index;
            let commit = self.log.commit.min(match_index);
            self.send(peer, term, MessageBody::Heartbeat { commit, context });
        }
    }

    /// Advances the leader's commit index to the highest index stored on a quorum, if that entry
    /// is of the current term (Raft §5.4.2: never by counting an older term's replicas).
    pub(crate) fn maybe_commit(&mut self) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let (id, persisted) = (self.id(), self.log.persisted);
        let progress = &self.progress;
        let quorum_index = self.membership().committed_index(|voter| {
            if voter == id {
                Some(persisted)
            } else {
                progress.get(&voter).map(|progress| progress.match_index)
            }
        });
        if quorum_index <= self.log.commit || self.log.term(quorum_index) != Some(self.term) {
            return false;
        }
        self.log.commit_to(quorum_index);
        self.broadcast_pending = true;
        if !self.reads_waiting_commit.is_empty() {
            let contexts = std::mem::take(&mut self.reads_waiting_commit);
            self.start_reads(contexts);
        }
        self.after_membership_commit();
        true
    }

    /// Once the current configuration's entry commits: a joint configuration is left (C_new is
    /// appended, thesis §4.3), and a leader that C_new no longer lists steps down (§4.2.2).
    fn after_membership_commit(&mut self) {
        if self.role != Role::Leader || self.log.commit < self.memberships.current_index() {
            return;
        }
        if self.membership().is_joint() {
            let index = self.log.last_index() + 1;
            let entry = Entry {
                term: self.term,
                index,
                kind: EntryKind::ConfChangeLeave,
                data: Vec::new(),
            };
            self.append_own(entry);
        } else if !self.is_voter() {
            // Hand over to the most caught-up voter at once rather than wait for a timeout.
            let last_index = self.log.last_index();
            let successor =
                self.membership().voters.iter().copied().find(|peer| {
                    self.progress.get(peer).is_some_and(|p| p.match_index == last_index)
                });
            let term = self.term;
            self.become_follower(term, None);
            if let Some(successor) = successor {
                self.send(successor, term, MessageBody::TimeoutNow);
            }
        }
    }

    /// Appends an entry this leader created; a membership entry takes effect at once.
    fn append_own(&mut self, entry: Entry) {
        assert_eq!(self.role, Role::Leader, "only a leader appends its own entries");
        self.memberships.append(&entry);
        let changes_membership =
            matches!(entry.kind, EntryKind::ConfChange | EntryKind::ConfChangeLeave);
        self.log.push(entry);
        self.broadcast_pending = true;
        if changes_membership {
            self.sync_progress();
        }
    }

    /// Tracks exactly the current configuration's members.
    fn sync_progress(&mut self) {
        let peers = self.peers();
        self.progress.retain(|peer, _| peers.contains(peer));
        // A new member is probed at the membership entry itself, so the first append carries it.
        let next = self.log.last_index();
        for peer in peers {
            self.progress.entry(peer).or_insert_with(|| Progress::new(next));
        }
        if self.transfer_target.is_some_and(|target| !self.membership().is_voter(target)) {
            self.transfer_target = None;
        }
    }

    // ----- client requests -----

    pub(crate) fn propose(&mut self, data: Vec<u8>) -> Result<u64, Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader: self.leader });
        }
        if self.transfer_target.is_some() {
            return Err(Error::TransferInProgress);
        }
        let index = self.log.last_index() + 1;
        self.append_own(Entry { term: self.term, index, kind: EntryKind::Normal, data });
        Ok(index)
    }

    /// Appends a membership change; it takes effect at once. One change at a time: the previous
    /// one (and, for a joint one, the automatic leave) must have committed.
    pub(crate) fn propose_conf_change(&mut self, change: ConfChange) -> Result<u64, Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader: self.leader });
        }
        if self.transfer_target.is_some() {
            return Err(Error::TransferInProgress);
        }
        if self.memberships.current_index() > self.log.commit {
            return Err(Error::ConfChange(crate::ConfChangeError::ChangePending));
        }
        let next = self.membership().apply(&change).map_err(Error::ConfChange)?;
        let index = self.log.last_index() + 1;
        let data = change.to_bytes();
        self.append_own(Entry { term: self.term, index, kind: EntryKind::ConfChange, data });
        assert_eq!(self.membership(), &next, "the logged change gives the checked configuration");
        Ok(index)
    }

    pub(crate) fn read_index(&mut self, context: u64) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader: self.leader });
        }
        if self.log.term(self.log.commit) != Some(self.term) {
            // The commit index is only known once an entry of this term committed.
            self.reads_waiting_commit.push(context);
            return Ok(());
        }
        if self.lease_valid() {
            // No other leader can exist yet: the commit index is current.
            let index = self.log.commit;
            self.read_states.push(ReadState { context, index });
            return Ok(());
        }
        self.start_reads(vec![context]);
        Ok(())
    }

    /// Starts a new round of heartbeats (the next `read_round`), noting its start tick.
    fn start_round(&mut self) {
        self.read_round += 1;
        let (round, now) = (self.read_round, self.ticks);
        if self.round_ticks.back().is_none_or(|&(_, tick)| tick != now) {
            self.round_ticks.push_back((round, now));
        }
        let lease_ticks = self.config.lease_ticks();
        while self.round_ticks.front().is_some_and(|&(_, tick)| tick + lease_ticks < now) {
            self.round_ticks.pop_front();
        }
    }

    /// A lease read may be answered now.
    pub(crate) fn lease_valid(&self) -> bool {
        self.config.lease_reads
            && self.role == Role::Leader
            && !self.transfer_started
            && self.lease_start.is_some_and(|start| self.ticks < start + self.config.lease_ticks())
    }

    fn start_reads(&mut self, contexts: Vec<u64>) {
        self.start_round();
        let (round, index) = (self.read_round, self.log.commit);
        for context in contexts {
            self.reads_pending.push_back(PendingRead { round, context, index });
        }
        self.release_reads();
        if !self.reads_pending.is_empty() {
            self.broadcast_heartbeat();
        }
    }

    /// Answers the reads whose round a quorum acknowledged: this replica was still the leader
    /// after they arrived, so their read index covers every write acknowledged before them.
    fn release_reads(&mut self) {
        let (id, own_round) = (self.id(), self.read_round);
        let progress = &self.progress;
        let quorum_round = self.membership().committed_index(|voter| {
            if voter == id {
                Some(own_round)
            } else {
                progress.get(&voter).map(|progress| progress.read_acknowledged)
            }
        });
        while let Some(&(round, tick)) = self.round_ticks.front() {
            if round > quorum_round {
                break;
            }
            self.lease_start = Some(self.lease_start.map_or(tick, |start| start.max(tick)));
            self.round_ticks.pop_front();
        }
        while self.reads_pending.front().is_some_and(|read| read.round <= quorum_round) {
            let read = self.reads_pending.pop_front().expect("front exists");
            self.read_states.push(ReadState { context: read.context, index: read.index });
        }
    }

    pub(crate) fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader: self.leader });
        }
        if target == self.id() {
            return Ok(());
        }
        if !self.membership().is_voter(target) {
            return Err(Error::NotVoter { id: target });
        }
        self.transfer_target = Some(target);
        self.transfer_elapsed = 0;
        self.transfer_started = true;
        if self.progress[&target].match_index == self.log.last_index() {
            let term = self.term;
            self.send(target, term, MessageBody::TimeoutNow);
        } else {
            self.send_append(target, true);
        }
        Ok(())
    }

    pub(crate) fn peer_progress(&self, peer: NodeId) -> Option<crate::PeerProgress> {
        let progress = self.progress.get(&peer)?;
        Some(crate::PeerProgress {
            match_index: progress.match_index,
            next_index: progress.next_index,
            state: progress.state,
            paused: progress
                .is_paused(self.config.inflight_appends_max, self.config.inflight_bytes_max),
        })
    }

    // ----- snapshots -----

    /// The snapshot the log starts after: what a follower that needs compacted entries gets.
    pub(crate) fn snapshot_meta(&self) -> SnapshotMeta {
        let index = self.log.offset();
        let membership = self.memberships.at(index).clone();
        SnapshotMeta { index, term: self.log.offset_term(), membership }
    }

    /// Drops the log up to `index`, which the application's snapshot covers.
    pub(crate) fn compact(&mut self, index: u64) -> Result<SnapshotMeta, Error> {
        if index > self.log.applied {
            return Err(Error::CompactBeyondApplied { index, applied: self.log.applied });
        }
        if index > self.log.offset() {
            self.log.compact(index);
            self.memberships.compact_to(index);
        }
        Ok(self.snapshot_meta())
    }

    /// Asks the application for the next chunk of `to`'s transfer, if its window allows.
    fn request_chunk(&mut self, to: NodeId) {
        let inflight_max = self.config.snapshot_chunks_inflight_max;
        let length_max = self.config.snapshot_chunk_bytes_max;
        let Some(transfer) = self.progress.get_mut(&to).and_then(|p| p.transfer.as_mut()) else {
            return;
        };
        if !transfer.wants_chunk(inflight_max) {
            return;
        }
        transfer.requested = true;
        let request = SnapshotRequest {
            to,
            meta: transfer.meta.clone(),
            offset: transfer.next_offset,
            length_max,
        };
        // At most one request per follower waits for the application.
        self.snapshot_requests.retain(|queued| queued.to != to);
        self.snapshot_requests.push(request);
    }

    /// The application's answer to a `SnapshotRequest`: sends it on if it is still wanted.
    pub(crate) fn snapshot_chunk(
        &mut self,
        to: NodeId,
        meta: &SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) -> Result<(), Error> {
        if data.len() as u64 > self.config.snapshot_chunk_bytes_max {
            return Err(Error::InvalidSnapshotChunk {
                reason: "longer than snapshot_chunk_bytes_max",
            });
        }
        if data.is_empty() && !done {
            return Err(Error::InvalidSnapshotChunk { reason: "empty chunk before the end" });
        }
        if self.role != Role::Leader {
            return Ok(());
        }
        let Some(transfer) = self.progress.get_mut(&to).and_then(|p| p.transfer.as_mut()) else {
            return Ok(());
        };
        if !transfer.requested || transfer.next_offset != offset || transfer.meta != *meta {
            // The answer to a request overtaken by a rewind or a newer snapshot.
            return Ok(());
        }
        transfer.requested = false;
        transfer.next_offset += data.len() as u64;
        transfer.inflight.push_back(transfer.next_offset);
        transfer.done_sent = done;
        let meta = transfer.meta.clone();
        let term = self.term;
        self.send(to, term, MessageBody::Snapshot { meta, offset, done, data });
        self.request_chunk(to);
        Ok(())
    }

    fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        index: u64,
        term: u64,
        rejected: bool,
        offset: u64,
    ) {
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        let Some(transfer) = progress.transfer.as_mut() else { return };
        if transfer.meta.index != index || transfer.meta.term != term {
            return;
        }
        if rejected {
            // The follower holds `offset` bytes of this snapshot (after a loss, a crash, or from
            // an earlier leader's transfer): resume there.
            transfer.rewind(offset);
        } else {
            transfer.acknowledge(offset);
        }
        self.request_chunk(from);
    }

    /// Restarts transfers that made no progress for an election timeout (lost chunks or acks,
    /// an ignored request), from what the follower acknowledged, or from the start of a newer
    /// snapshot if the log was compacted further meanwhile.
    fn tick_snapshot_transfers(&mut self) {
        let election_ticks = self.config.election_ticks;
        let mut stalled = Vec::new();
        for (&peer, progress) in &mut self.progress {
            if let Some(transfer) = progress.transfer.as_mut() {
                transfer.idle_ticks = transfer.idle_ticks.saturating_add(1);
                if transfer.idle_ticks >= election_ticks {
                    stalled.push(peer);
                }
            }
        }
        for peer in stalled {
            let meta = self.snapshot_meta();
            let progress = self.progress.get_mut(&peer).expect("collected above");
            let transfer = progress.transfer.as_mut().expect("collected above");
            if transfer.meta == meta {
                let acknowledged = transfer.acknowledged;
                transfer.rewind(acknowledged);
            } else {
                progress.become_snapshot(meta);
            }
            self.request_chunk(peer);
        }
    }

    /// Follower side of a snapshot chunk.
    fn handle_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        done: bool,
        data: Vec<u8>,
    ) {
        let term = self.term;
        if meta.index <= self.log.commit || self.log.matches(meta.index, meta.term) {
            // Nothing to install: the log holds the snapshot's last entry, or committed past it
            // (committed entries are the leader's). Its end is committed: the leader only
            // snapshots applied entries.
            if self.log.matches(meta.index, meta.term) {
                self.log.commit_to(meta.index);
            }
            if self.receiving.as_ref().is_some_and(|r| r.meta.index <= self.log.commit) {
                self.receiving = None;
            }
            let body = MessageBody::AppendResponse {
                rejected: false,
                index: self.log.commit,
                hint_index: 0,
                hint_term: 0,
            };
            self.send(from, term, body);
            return;
        }
        let (index, snapshot_term) = (meta.index, meta.term);
        let respond = |raft: &mut Raft, rejected: bool, offset: u64| {
            let body =
                MessageBody::SnapshotResponse { index, term: snapshot_term, rejected, offset };
            raft.send(from, term, body);
        };
        let held = self.receiving.as_ref().filter(|receiving| receiving.meta == meta);
        if let Some(receiving) = held {
            if receiving.done || offset != receiving.received {
                // Installing already, or a chunk out of order: say what is held.
                let (rejected, received) = (!receiving.done, receiving.received);
                respond(self, rejected, received);
                return;
            }
        } else if offset != 0 {
            respond(self, true, 0);
            return;
        }
        if self.snapshot_chunks.len() as u64 >= self.config.snapshot_chunks_inflight_max {
            // The application is behind: drop the chunk; the leader resends it.
            return;
        }
        if offset == 0 {
            // A new transfer (or this one from the start): any other one is abandoned.
            self.receiving = Some(Receiving { meta: meta.clone(), received: 0, done: false });
        }
        let receiving = self.receiving.as_mut().expect("set or matched above");
        receiving.received += data.len() as u64;
        receiving.done = done;
        let received = receiving.received;
        self.snapshot_chunks.push(SnapshotChunk { from, meta, offset, data, done });
        respond(self, false, received);
    }

    /// The application installed snapshot `meta` into its state machine.
    pub(crate) fn snapshot_installed(&mut self, meta: SnapshotMeta) -> Result<(), Error> {
        let applied = self.log.applied;
        if meta.index <= applied {
            return Err(Error::SnapshotStale { index: meta.index, applied });
        }
        if meta.membership.validate().is_err() {
            return Err(Error::InvalidState { reason: "snapshot membership is invalid" });
        }
        let kept = self.log.install(meta.index, meta.term);
        assert!(kept || self.role != Role::Leader, "a leader holds every committed entry");
        self.memberships = MembershipHistory::new(meta.index, meta.membership.clone());
        if kept {
            for entry in self.log.slice(meta.index + 1, self.log.last_index()) {
                self.memberships.append(entry);
            }
        }
        if self.receiving.as_ref().is_some_and(|r| r.meta.index <= meta.index) {
            self.receiving = None;
        }
        if let (Role::Follower, Some(leader)) = (self.role, self.leader) {
            let body = MessageBody::AppendResponse {
                rejected: false,
                index: meta.index,
                hint_index: 0,
                hint_term: 0,
            };
            let term = self.term;
            self.send(leader, term, body);
        }
        Ok(())
    }

    /// Campaigns now, as if the election timer fired (tests, or an operator's nudge).
    pub(crate) fn campaign_now(&mut self) {
        if self.role != Role::Leader && self.is_voter() {
            let pre_vote = self.config.pre_vote;
            self.campaign(pre_vote, false);
        }
    }
}
