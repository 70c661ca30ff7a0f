//! Proposals that cannot commit: a batch times out together, and every proposal of it is
//! forgotten, so the bound on waiting proposals is free again.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use common::Counter;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use strata_multiraft::{GroupId, Host, HostConfig, HostError};
use strata_rt::{Duration, NodeId};
use strata_sim::{FaultConfig, NodeOptions, Sim};

const GROUP: GroupId = 1;

#[test]
fn a_batch_that_cannot_commit_times_out_whole_and_is_forgotten() {
    let mut sim = Sim::new(3, FaultConfig::none());
    let done = Rc::new(Cell::new(false));
    let finished = done.clone();
    sim.add_node(NodeOptions::SERVER, move |rt| {
        let finished = finished.clone();
        Box::pin(async move {
            // Its two peers never start: no quorum, nothing commits.
            let voters = vec![NodeId(0), NodeId(1), NodeId(2)];
            let mut config = HostConfig::new(NodeId(0), voters);
            config.request_timeout = Duration::from_secs(1);
            config.proposals_waiting_max = 4;
            let machines = BTreeMap::from([(GROUP, Rc::new(Counter::default()))]);
            let host = Host::open(&rt, config, machines).await.unwrap();
            for _ in 0..3 {
                let started = rt.now();
                let outputs = host.propose_many(GROUP, &[b"a", b"b", b"c"]).await;
                assert_eq!(outputs.len(), 3);
                for output in outputs {
                    assert!(matches!(output, Err(HostError::Timeout)), "{output:?}");
                }
                let waited = rt.now().saturating_duration_since(started);
                assert!(waited <= Duration::from_millis(1100), "one timeout for all: {waited:?}");
            }
            finished.set(true);
        })
    });
    assert!(sim.run_until(Duration::from_secs(60), || done.get()), "the test body finished");
}
