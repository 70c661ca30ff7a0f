//! Golden tests for quorum and membership decisions, raft-rs datadriven style: each case in
//! `tests/golden/quorum.txt` is a command, a `----` separator and the expected output, cases
//! separated by a blank line. `STRATA_GOLDEN_UPDATE=1 cargo nextest run -p strata-raft
//! --no-capture golden_quorum` prints the file with every expected output replaced by the actual
//! one (review it, then paste it over `tests/golden/quorum.txt`); tests write no files.
//!
//! Commands (a membership is `voters=1,2,3 [outgoing=1,2,4] [learners=5]`):
//!
//! - `committed <membership> acked=1:5,2:4`: the index a quorum acknowledged (joint: both halves);
//! - `vote <membership> votes=1:y,2:n`: the election outcome so far;
//! - `change <membership> steps=add-voter:4,add-learner:5,remove:1`: the configuration a change
//!   leads to, or why it is refused;
//! - `leave <membership>`: the simple configuration a joint one leaves to.

use std::collections::{BTreeMap, BTreeSet};
use strata_raft::membership::{ConfChange, ConfChangeStep, Membership};
use strata_raft::NodeId;

fn ids(list: &str) -> BTreeSet<NodeId> {
    list.split(',')
        .filter(|id| !id.is_empty())
        .map(|id| NodeId(id.parse().expect("an id")))
        .collect()
}

fn pairs(list: &str) -> Vec<(NodeId, &str)> {
    list.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (id, value) = pair.split_once(':').expect("id:value");
            (NodeId(id.parse().expect("an id")), value)
        })
        .collect()
}

fn show_ids(set: &BTreeSet<NodeId>) -> String {
    set.iter().map(|id| id.0.to_string()).collect::<Vec<_>>().join(",")
}

fn show(membership: &Membership) -> String {
    let mut out = format!("voters={}", show_ids(&membership.voters));
    if membership.is_joint() {
        out += &format!(" outgoing={}", show_ids(&membership.voters_outgoing));
    }
    if !membership.learners.is_empty() {
        out += &format!(" learners={}", show_ids(&membership.learners));
    }
    out
}

fn run(command: &str) -> String {
    let mut words = command.split_whitespace();
    let verb = words.next().expect("a command");
    let mut membership = Membership::default();
    let mut arguments = BTreeMap::new();
    for word in words {
        let (key, value) = word.split_once('=').expect("key=value");
        match key {
            "voters" => membership.voters = ids(value),
            "outgoing" => membership.voters_outgoing = ids(value),
            "learners" => membership.learners = ids(value),
            _ => {
                arguments.insert(key, value);
            }
        }
    }
    assert!(membership.validate().is_ok(), "invalid membership in `{command}`");
    match verb {
        "committed" => {
            let acked: BTreeMap<NodeId, u64> = pairs(arguments["acked"])
                .into_iter()
                .map(|(id, index)| (id, index.parse().expect("an index")))
                .collect();
            membership.committed_index(|id| acked.get(&id).copied()).to_string()
        }
        "vote" => {
            let votes: BTreeMap<NodeId, bool> =
                pairs(arguments["votes"]).into_iter().map(|(id, vote)| (id, vote == "y")).collect();
            format!("{:?}", membership.vote_result(&votes))
        }
        "change" => {
            let steps = arguments["steps"]
                .split(',')
                .map(|step| {
                    let (kind, id) = step.split_once(':').expect("kind:id");
                    let id = NodeId(id.parse().expect("an id"));
                    match kind {
                        "add-voter" => ConfChangeStep::AddVoter(id),
                        "add-learner" => ConfChangeStep::AddLearner(id),
                        "remove" => ConfChangeStep::Remove(id),
                        _ => panic!("unknown step {kind}"),
                    }
                })
                .collect();
            match membership.apply(&ConfChange { steps }) {
                Ok(next) => show(&next),
                Err(error) => format!("error: {error:?}"),
            }
        }
        "leave" => show(&membership.leave_joint()),
        _ => panic!("unknown command {verb}"),
    }
}

#[test]
fn golden_quorum_decisions() {
    let text = include_str!("golden/quorum.txt");
    let update = std::env::var_os("STRATA_GOLDEN_UPDATE").is_some();
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    for case in text.split("\n\n") {
        let case = case.trim_matches('\n');
        if case.is_empty() {
            continue;
        }
        let (head, expected) = case.split_once("\n----\n").unwrap_or((case, ""));
        // Comment lines lead a case; the command is its last line before the separator.
        let command = head.lines().last().expect("a command");
        let actual = run(command);
        if actual != expected.trim_end() {
            failures.push(format!("{command}\n  expected: {expected}\n  actual:   {actual}"));
        }
        rewritten += &format!("{head}\n----\n{actual}\n\n");
    }
    if update {
        println!("----- tests/golden/quorum.txt -----\n{}", rewritten.trim_end());
        println!("----- end -----");
        return;
    }
    assert!(failures.is_empty(), "golden mismatches:\n{}", failures.join("\n"));
}
