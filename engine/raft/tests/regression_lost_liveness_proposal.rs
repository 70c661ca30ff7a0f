//! Regression: cluster seed 267 (5 replicas, tight flow control) failed its liveness check with
//! every replica idle and in sync. The liveness proposal had gone to a leader that lost office;
//! its entry was truncated and, the cluster being idle, nothing ever refilled that index, so the
//! harness waited for an entry that could no longer commit. The harness now proposes again when
//! the current leader's log no longer holds the proposal. Raft itself was correct.

mod common;

use common::{Faults, Network};

#[test]
fn seed_267_reproposes_a_truncated_liveness_proposal() {
    let seed = 267;
    let mut network = Network::new(5, seed, |config| {
        config.append_entries_max = 2;
        config.append_bytes_max = 40;
        config.inflight_appends_max = 2;
        config.inflight_bytes_max = 64;
    });
    network.faults = Faults::draw(&mut network.rng, &[0.0, 0.02, 0.1, 0.25], 6);
    for _ in 0..1500 {
        network.step_chaos();
    }
    network.heal_and_check_liveness(1000);
}
