//! The live snapshots: which sequences are still read, so that writes and compactions keep the
//! versions they see.

/// Live snapshot sequences, ascending, each with how many handles hold it.
///
/// A sorted vector, not a tree: every read takes a snapshot and drops it, nearly always at the
/// newest sequence, so taking one is a push or a count at the end, and a vector kept from read
/// to read allocates nothing (a tree allocated its root each time it went from empty to one).
#[derive(Debug, Default)]
pub struct LiveSnapshots {
    held: Vec<(u64, usize)>,
}

impl LiveSnapshots {
    /// One more handle on `sequence`.
    pub fn hold(&mut self, sequence: u64) {
        match self.held.last_mut() {
            Some((last, count)) if *last == sequence => *count += 1,
            Some((last, _)) if *last > sequence => match self.position(sequence) {
                Ok(position) => self.held[position].1 += 1,
                Err(position) => self.held.insert(position, (sequence, 1)),
            },
            _ => self.held.push((sequence, 1)),
        }
    }

    /// One handle on `sequence` fewer; the last one gone, the sequence is no longer live.
    pub fn release(&mut self, sequence: u64) {
        let position = self.position(sequence).expect("a released snapshot was held");
        let count = &mut self.held[position].1;
        *count -= 1;
        if *count == 0 {
            self.held.remove(position);
        }
    }

    /// Whether a live snapshot's sequence is in `low..high`.
    pub fn any_in(&self, low: u64, high: u64) -> bool {
        let first_at_or_above = self.held.partition_point(|&(sequence, _)| sequence < low);
        self.held.get(first_at_or_above).is_some_and(|&(sequence, _)| sequence < high)
    }

    /// The live sequences, ascending.
    pub fn sequences(&self) -> Vec<u64> {
        self.held.iter().map(|&(sequence, _)| sequence).collect()
    }

    fn position(&self, sequence: u64) -> Result<usize, usize> {
        self.held.binary_search_by_key(&sequence, |&(held, _)| held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Holds and releases in any order answer as a map of counts does.
        #[test]
        fn live_snapshots_answer_as_a_map_of_counts(
            steps in proptest::collection::vec((any::<bool>(), 0u64..12), 0..200),
            ranges in proptest::collection::vec((0u64..14, 0u64..14), 1..20),
        ) {
            let mut live = LiveSnapshots::default();
            let mut model: BTreeMap<u64, usize> = BTreeMap::new();
            for (hold, sequence) in steps {
                if hold {
                    live.hold(sequence);
                    *model.entry(sequence).or_insert(0) += 1;
                } else if let Some(count) = model.get_mut(&sequence) {
                    live.release(sequence);
                    *count -= 1;
                    if *count == 0 {
                        model.remove(&sequence);
                    }
                }
                prop_assert_eq!(live.sequences(), model.keys().copied().collect::<Vec<u64>>());
                for &(low, high) in &ranges {
                    prop_assert_eq!(live.any_in(low, high), model.range(low..high.max(low)).next().is_some());
                }
            }
        }
    }
}
