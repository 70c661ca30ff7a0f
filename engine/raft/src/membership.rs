//! Group membership: voters, the outgoing voters of a joint configuration, and learners; the
//! changes that move between them; and the quorum rules every decision is made by.
//!
//! A configuration is either simple (`voters_outgoing` empty: decisions need a majority of
//! `voters`) or joint (C_old,new of the Raft thesis §4.3: decisions need a majority of `voters`
//! **and** a majority of `voters_outgoing`). Learners receive the log but never vote and never
//! count toward a quorum.
//!
//! Invariants (checked by [`Membership::validate`], and kept by [`Membership::apply`]): no node
//! is both a learner and a voter (incoming or outgoing); a configuration has at least one voter;
//! at most [`MEMBERS_MAX`] nodes.
//!
//! Changes: a [`ConfChange`] lists steps applied together to a simple configuration. If the set
//! of voters changes, the result is joint (outgoing = the old voters) and the leader leaves it on
//! its own once it committed (an [`crate::EntryKind::ConfChangeLeave`] entry). A change of
//! learners only needs no joint phase: learners do not take part in any quorum. A voter cannot
//! become a learner in one change (remove it, then add it as a learner).

use std::collections::{BTreeMap, BTreeSet};
use strata_rt::NodeId;

/// The most nodes a configuration holds, and the most steps one change takes.
pub const MEMBERS_MAX: usize = 256;

/// Who votes and who learns, at one point of the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters (C_new while joint).
    pub voters: BTreeSet<NodeId>,
    /// While joint, the voters of the configuration being left (C_old); empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

/// One step of a membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChangeStep {
    /// Adds a voter, or promotes a learner.
    AddVoter(NodeId),
    AddLearner(NodeId),
    /// Removes a voter or a learner.
    Remove(NodeId),
}

/// Steps applied together; a replacement is `[AddVoter(new), Remove(old)]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfChange {
    pub steps: Vec<ConfChangeStep>,
}

/// Why a membership change cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfChangeError {
    /// Changes start from a simple configuration; leave the joint one first.
    InJointConfig,
    /// An earlier change is not committed yet.
    ChangePending,
    NoSteps,
    /// A step names a node another step of the same change also names.
    NodeNamedTwice {
        id: NodeId,
    },
    AlreadyVoter {
        id: NodeId,
    },
    AlreadyLearner {
        id: NodeId,
    },
    /// Demoting a voter to a learner needs two changes: remove, then add as a learner.
    VoterToLearner {
        id: NodeId,
    },
    NotMember {
        id: NodeId,
    },
    /// The change would leave no voter.
    NoVoters,
    TooManyMembers,
}

impl std::fmt::Display for ConfChangeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfChangeError::InJointConfig => write!(formatter, "in a joint configuration"),
            ConfChangeError::ChangePending => write!(formatter, "a change is pending"),
            ConfChangeError::NoSteps => write!(formatter, "a change without steps"),
            ConfChangeError::NodeNamedTwice { id } => write!(formatter, "{id} named twice"),
            ConfChangeError::AlreadyVoter { id } => write!(formatter, "{id} already votes"),
            ConfChangeError::AlreadyLearner { id } => write!(formatter, "{id} already learns"),
            ConfChangeError::VoterToLearner { id } => {
                write!(formatter, "{id} votes: remove it before adding it as a learner")
            }
            ConfChangeError::NotMember { id } => write!(formatter, "{id} is not a member"),
            ConfChangeError::NoVoters => write!(formatter, "no voter would remain"),
            ConfChangeError::TooManyMembers => {
                write!(formatter, "more than {MEMBERS_MAX} members")
            }
        }
    }
}

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

impl Membership {
    /// A simple configuration of `voters`.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect(), ..Membership::default() }
    }

    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// A voter of either half (it may campaign, and its vote and acknowledgements count).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every member: voters of both halves and learners.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut members = self.voters.clone();
        members.extend(self.voters_outgoing.iter().copied());
        members.extend(self.learners.iter().copied());
        members
    }

    /// Checks the invariants of the module documentation.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.voters.is_empty() {
            return Err("a configuration needs a voter");
        }
        if self.members().len() > MEMBERS_MAX {
            return Err("too many members");
        }
        if self.learners.iter().any(|&id| self.is_voter(id)) {
            return Err("a learner is also a voter");
        }
        Ok(())
    }

    /// The configuration after `change`, which must start from a simple configuration.
    pub fn apply(&self, change: &ConfChange) -> Result<Membership, ConfChangeError> {
        if self.is_joint() {
            return Err(ConfChangeError::InJointConfig);
        }
        if change.steps.is_empty() {
            return Err(ConfChangeError::NoSteps);
        }
        if change.steps.len() > MEMBERS_MAX {
            return Err(ConfChangeError::TooManyMembers);
        }
        let mut named = BTreeSet::new();
        let (mut voters, mut learners) = (self.voters.clone(), self.learners.clone());
        for &step in &change.steps {
            let id = match step {
                ConfChangeStep::AddVoter(id)
                | ConfChangeStep::AddLearner(id)
                | ConfChangeStep::Remove(id) => id,
            };
            if !named.insert(id) {
                return Err(ConfChangeError::NodeNamedTwice { id });
            }
            match step {
                ConfChangeStep::AddVoter(id) => {
                    if voters.contains(&id) {
                        return Err(ConfChangeError::AlreadyVoter { id });
                    }
                    learners.remove(&id);
                    voters.insert(id);
                }
                ConfChangeStep::AddLearner(id) => {
                    if voters.contains(&id) {
                        return Err(ConfChangeError::VoterToLearner { id });
                    }
                    if !learners.insert(id) {
                        return Err(ConfChangeError::AlreadyLearner { id });
                    }
                }
                ConfChangeStep::Remove(id) => {
                    if !voters.remove(&id) && !learners.remove(&id) {
                        return Err(ConfChangeError::NotMember { id });
                    }
                }
            }
        }
        if voters.is_empty() {
            return Err(ConfChangeError::NoVoters);
        }
        let voters_outgoing =
            if voters == self.voters { BTreeSet::new() } else { self.voters.clone() };
        let next = Membership { voters, voters_outgoing, learners };
        if next.members().len() > MEMBERS_MAX {
            return Err(ConfChangeError::TooManyMembers);
        }
        assert!(next.validate().is_ok(), "a valid change keeps the invariants: {next:?}");
        Ok(next)
    }

    /// The simple configuration a joint one leaves to (C_new); itself if not joint.
    pub fn leave_joint(&self) -> Membership {
        Membership {
            voters: self.voters.clone(),
            voters_outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
        }
    }

    /// The highest index acknowledged by a quorum, given each voter's acknowledged index
    /// (`None`: nothing heard). Joint: the lower of the two majorities.
    pub fn committed_index(&self, acknowledged: impl Fn(NodeId) -> Option<u64>) -> u64 {
        let incoming = majority_index(&self.voters, &acknowledged);
        if self.is_joint() {
            incoming.min(majority_index(&self.voters_outgoing, &acknowledged))
        } else {
            incoming
        }
    }

    /// The election outcome given the votes received (`true`: granted). Joint: won only if both
    /// halves grant a majority, lost if either half refuses one.
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        let incoming = majority_vote(&self.voters, votes);
        if !self.is_joint() {
            return incoming;
        }
        match (incoming, majority_vote(&self.voters_outgoing, votes)) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

/// The largest index a majority of `voters` acknowledged; `u64::MAX` for no voters (an empty
/// half never holds the other back).
fn majority_index(voters: &BTreeSet<NodeId>, acknowledged: &impl Fn(NodeId) -> Option<u64>) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut indexes: Vec<u64> = voters.iter().map(|&id| acknowledged(id).unwrap_or(0)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[voters.len() / 2]
}

fn majority_vote(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let quorum = voters.len() / 2 + 1;
    let granted = voters.iter().filter(|id| votes.get(id) == Some(&true)).count();
    let refused = voters.iter().filter(|id| votes.get(id) == Some(&false)).count();
    if granted >= quorum {
        VoteResult::Won
    } else if voters.len() - refused < quorum {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// The configurations along one replica's log: the one in effect at `base_index` (a snapshot's,
/// or the bootstrap configuration at index 0) and one per membership entry after it. A change
/// takes effect as soon as its entry is appended (Raft thesis §4.1), so the current configuration
/// is the last one here, committed or not; a truncated entry takes its configuration with it.
#[derive(Clone, Debug)]
pub(crate) struct MembershipHistory {
    base_index: u64,
    base: Membership,
    /// `(index, configuration from that index on)`, indexes strictly increasing, above
    /// `base_index`. Bounded by the log it mirrors.
    changes: Vec<(u64, Membership)>,
}

impl MembershipHistory {
    pub(crate) fn new(base_index: u64, base: Membership) -> MembershipHistory {
        assert!(base.validate().is_ok(), "base configuration is invalid: {base:?}");
        MembershipHistory { base_index, base, changes: Vec::new() }
    }

    pub(crate) fn current(&self) -> &Membership {
        self.changes.last().map_or(&self.base, |(_, membership)| membership)
    }

    /// The index of the entry that set the current configuration (`base_index` if none did).
    pub(crate) fn current_index(&self) -> u64 {
        self.changes.last().map_or(self.base_index, |&(index, _)| index)
    }

    /// The configuration in effect at `index` (at or above `base_index`).
    pub(crate) fn at(&self, index: u64) -> &Membership {
        assert!(index >= self.base_index, "configuration at {index} below {}", self.base_index);
        self.changes
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .map_or(&self.base, |(_, membership)| membership)
    }

    /// Applies a membership entry just appended to the log; other entries are ignored.
    pub(crate) fn append(&mut self, entry: &crate::Entry) {
        let next = match entry.kind {
            crate::EntryKind::ConfChange => {
                let change = ConfChange::decode(&entry.data)
                    .expect("a logged conf change decodes: the leader encoded it");
                self.current().apply(&change).expect(
                    "a logged conf change applies: the leader checked it against the \
                     configuration at the same point of the log",
                )
            }
            crate::EntryKind::ConfChangeLeave => {
                assert!(
                    self.current().is_joint(),
                    "leave entry {} outside a joint config",
                    entry.index
                );
                self.current().leave_joint()
            }
            _ => return,
        };
        assert!(entry.index > self.current_index(), "membership entries out of order");
        self.changes.push((entry.index, next));
    }

    /// Forgets the configurations of entries at or above `index` (truncated from the log).
    pub(crate) fn truncate_from(&mut self, index: u64) {
        assert!(index > self.base_index, "truncation at {index} into the base");
        while self.changes.last().is_some_and(|&(at, _)| at >= index) {
            self.changes.pop();
        }
    }

    /// Folds configurations at or below `index` into the base (the log was compacted there).
    pub(crate) fn compact_to(&mut self, index: u64) {
        if index <= self.base_index {
            return;
        }
        let base = self.at(index).clone();
        self.changes.retain(|&(at, _)| at > index);
        self.base = base;
        self.base_index = index;
    }
}

impl std::error::Error for ConfChangeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, EntryKind};

    fn set(ids: &[u32]) -> BTreeSet<NodeId> {
        ids.iter().map(|&id| NodeId(id)).collect()
    }

    fn change_entry(index: u64, steps: Vec<ConfChangeStep>) -> Entry {
        let data = ConfChange { steps }.to_bytes();
        Entry { term: 1, index, kind: EntryKind::ConfChange, data }
    }

    fn leave_entry(index: u64) -> Entry {
        Entry { term: 1, index, kind: EntryKind::ConfChangeLeave, data: Vec::new() }
    }

    #[test]
    fn validate_catches_each_broken_invariant() {
        assert!(Membership::with_voters([NodeId(1)]).validate().is_ok());
        assert!(Membership::default().validate().is_err(), "no voter");
        let mut both = Membership::with_voters([NodeId(1), NodeId(2)]);
        both.learners.insert(NodeId(2));
        assert!(both.validate().is_err(), "learner that votes");
        let mut outgoing_learner = Membership::with_voters([NodeId(1)]);
        outgoing_learner.voters_outgoing = set(&[1, 3]);
        outgoing_learner.learners = set(&[3]);
        assert!(outgoing_learner.validate().is_err(), "learner that votes in the outgoing half");
        let huge = Membership::with_voters((0..=MEMBERS_MAX as u32).map(NodeId));
        assert!(huge.validate().is_err(), "too many");
    }

    #[test]
    fn apply_goes_joint_only_when_voters_change() {
        let simple = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
        let learner = ConfChange { steps: vec![ConfChangeStep::AddLearner(NodeId(4))] };
        let with_learner = simple.apply(&learner).expect("valid");
        assert!(!with_learner.is_joint());
        assert_eq!(with_learner.learners, set(&[4]));
        let promote = ConfChange { steps: vec![ConfChangeStep::AddVoter(NodeId(4))] };
        let joint = with_learner.apply(&promote).expect("valid");
        assert!(joint.is_joint());
        assert_eq!(joint.voters, set(&[1, 2, 3, 4]));
        assert_eq!(joint.voters_outgoing, set(&[1, 2, 3]));
        assert!(joint.learners.is_empty(), "a promoted learner stops learning");
        assert_eq!(joint.apply(&learner), Err(ConfChangeError::InJointConfig));
        assert_eq!(joint.leave_joint(), Membership::with_voters((1..=4).map(NodeId)));
        assert_eq!(simple.apply(&ConfChange::default()), Err(ConfChangeError::NoSteps));
    }

    #[test]
    fn an_empty_half_never_holds_the_other_back() {
        let membership = Membership::with_voters([NodeId(1)]);
        assert_eq!(membership.committed_index(|_| Some(7)), 7);
        assert_eq!(majority_index(&BTreeSet::new(), &|_| Some(1)), u64::MAX);
        assert_eq!(majority_vote(&BTreeSet::new(), &BTreeMap::new()), VoteResult::Won);
    }

    #[test]
    fn history_follows_appends_truncations_and_compaction() {
        let mut history = MembershipHistory::new(0, Membership::with_voters(set(&[1, 2, 3])));
        assert_eq!(history.current_index(), 0);
        history.append(&Entry { term: 1, index: 1, kind: EntryKind::Normal, data: vec![] });
        assert_eq!(history.current_index(), 0, "normal entries leave the configuration alone");
        history.append(&change_entry(3, vec![ConfChangeStep::AddVoter(NodeId(4))]));
        history.append(&leave_entry(5));
        history.append(&change_entry(8, vec![ConfChangeStep::AddLearner(NodeId(5))]));
        assert_eq!(history.current_index(), 8);
        assert_eq!(history.current().learners, set(&[5]));
        assert!(history.at(4).is_joint());
        assert_eq!(history.at(2).voters, set(&[1, 2, 3]));
        assert_eq!(history.at(7).voters, set(&[1, 2, 3, 4]));
        history.truncate_from(6);
        assert_eq!(history.current_index(), 5);
        assert!(history.current().learners.is_empty());
        history.compact_to(4);
        assert!(history.at(4).is_joint(), "the base is the configuration at the compaction");
        assert_eq!(history.current_index(), 5);
        history.compact_to(9);
        assert_eq!(history.current_index(), 9);
        assert_eq!(history.current().voters, set(&[1, 2, 3, 4]));
        history.compact_to(2);
        assert_eq!(history.current_index(), 9, "compacting backwards does nothing");
    }

    #[test]
    #[should_panic(expected = "outside a joint config")]
    fn a_leave_entry_outside_a_joint_configuration_is_a_bug() {
        let mut history = MembershipHistory::new(0, Membership::with_voters(set(&[1])));
        history.append(&leave_entry(1));
    }
}
