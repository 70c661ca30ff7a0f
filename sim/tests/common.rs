//! Helpers shared by the simulator's scenario tests.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]
#![allow(dead_code, reason = "each test file uses part of it")]

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{FaultConfig, NodeOptions, Sim};

/// A simulation of `nodes` idle nodes (their boot does nothing) with `config`, faults on.
pub fn idle_cluster(seed: u64, nodes: u32, config: FaultConfig, options: NodeOptions) -> Sim {
    let mut sim = Sim::new(seed, config);
    for _ in 0..nodes {
        sim.add_node(options, |_| Box::pin(async {}));
    }
    sim.set_faults_active(true);
    sim
}

/// Runs `body` as a task of `node` until it finishes (at most `timeout` of virtual time).
pub fn run_on<T: 'static, F>(
    sim: &mut Sim,
    node: NodeId,
    timeout: Duration,
    body: impl FnOnce(Runtime) -> F,
) -> T
where
    F: Future<Output = T> + 'static,
{
    let rt = sim.runtime(node);
    let slot: Rc<RefCell<Option<T>>> = Rc::default();
    let output = slot.clone();
    let future = body(rt.clone());
    let _task = rt.spawn(async move {
        *output.borrow_mut() = Some(future.await);
    });
    let finished = sim.run_until(timeout, || slot.borrow().is_some());
    assert!(finished, "task on {node} did not finish within {timeout:?}");
    let value = slot.borrow_mut().take().expect("finished");
    value
}
