//! The simulator's faults and the linearizability checker together catch real replication bugs:
//! a replica that acknowledges before its state is durable fails within a few hundred seeds.
//! (`sim --bug trust-cache-after-failed-sync` and `--bug skip-repair` need a few thousand seeds;
//! see README.md for the command.)
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use strata_sim::scenario::register::{self, Bug, Options};

#[test]
fn acknowledging_before_durable_is_caught() {
    let options = Options { bug: Some(Bug::AckBeforeDurable), ..Options::default() };
    let failing = (0..3000).find(|&seed| register::run(seed, &options).verdict.is_err());
    let seed = failing.expect("some seed in 0..3000 exposes the planted bug");
    let healthy = register::run(seed, &Options::default());
    assert!(healthy.verdict.is_ok(), "the same seed passes without the bug: {:?}", healthy.verdict);
}
