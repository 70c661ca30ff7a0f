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
    NodeNamedTwice { id: NodeId },
    AlreadyVoter { id: NodeId },
    AlreadyLearner { id: NodeId },
    /// Demoting a voter to a learner needs two changes: remove, then add as a learner.
    VoterToLearner { id: NodeId },
    NotMember { id: NodeId },
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
