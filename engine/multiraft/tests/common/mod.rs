//! What the small host tests share: an in-memory counter machine.

use std::cell::Cell;
use std::future::Future;
use strata_multiraft::{NoSnapshot, SnapshotSource, StateMachine};

/// Counts the entries applied; keeps nothing on disk, so it takes no snapshots.
#[derive(Default)]
pub struct Counter(Cell<u64>);

impl StateMachine for Counter {
    type Output = u64;
    type Snapshot = NoSnapshot;

    async fn apply(&self, _index: u64, _command: &[u8]) -> u64 {
        self.0.set(self.0.get() + 1);
        self.0.get()
    }

    fn durable_index(&self) -> u64 {
        0
    }

    fn snapshot(&self) -> impl Future<Output = Result<NoSnapshot, String>> + 'static {
        std::future::ready(Err("in memory".to_owned()))
    }

    async fn install(&self, _index: u64, _source: &mut SnapshotSource) -> Result<(), String> {
        Err("in memory".to_owned())
    }
}
