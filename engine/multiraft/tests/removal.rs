//! A node removed from a group is told so by the group's leader (Raft itself never tells it: the
//! leader just stops replicating to it), and forgets it once it is added back.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use common::Counter;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use strata_multiraft::{GroupId, Host, HostConfig};
use strata_raft::{ConfChange, ConfChangeStep, Role};
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

const GROUP: GroupId = 1;
const NODES: u32 = 4;

/// Which node the first leader removes, what that node reports, and whether to add it back.
#[derive(Default)]
struct Shared {
    removed: Cell<Option<NodeId>>,
    removed_at: Cell<Option<u64>>,
    add_back: Cell<bool>,
    added_back: Cell<bool>,
}

async fn node(rt: Runtime, shared: Rc<Shared>) {
    let voters = (0..NODES).map(NodeId).collect();
    let config = HostConfig::new(rt.node_id(), voters);
    let machines = BTreeMap::from([(GROUP, Rc::new(Counter::default()))]);
    let host = Host::open(&rt, config, machines).await.unwrap();
    loop {
        rt.sleep(Duration::from_millis(20)).await;
        let status = host.status(GROUP).unwrap();
        if shared.removed.get() == Some(rt.node_id()) {
            shared.removed_at.set(status.removed_at);
            continue;
        }
        if status.role != Role::Leader {
            continue;
        }
        // The first leader picks another node to remove.
        let removed = match shared.removed.get() {
            Some(removed) => removed,
            None => {
                let other = NodeId((rt.node_id().0 + 1) % NODES);
                shared.removed.set(Some(other));
                other
            }
        };
        let membership = host.membership(GROUP).unwrap();
        let step = if membership.contains(removed) && !shared.add_back.get() {
            ConfChangeStep::Remove(removed)
        } else if !membership.contains(removed) && shared.add_back.get() {
            ConfChangeStep::AddLearner(removed)
        } else {
            shared.added_back.set(membership.contains(removed) && shared.add_back.get());
            continue;
        };
        let _ = host.change_membership(GROUP, ConfChange { steps: vec![step] }).await;
    }
}

#[test]
fn a_removed_node_is_told_and_forgets_it_when_added_back() {
    for seed in 0..3 {
        let mut sim = Sim::new(seed, FaultConfig::none());
        let shared = Rc::new(Shared::default());
        for _ in 0..NODES {
            let shared = shared.clone();
            sim.add_node(NodeOptions::SERVER, move |rt| Box::pin(node(rt, shared.clone())));
        }
        let told = sim.run_until(Duration::from_secs(10), || shared.removed_at.get().is_some());
        assert!(told, "seed {seed}: the removed node was never told");
        shared.add_back.set(true);
        let forgotten = sim.run_until(Duration::from_secs(10), || {
            shared.added_back.get() && shared.removed_at.get().is_none()
        });
        assert!(forgotten, "seed {seed}: added back, it still reports {:?}", shared.removed_at);
    }
}
