//! Stable-toolchain smoke run of the fuzz target bodies (`strata_lsm::fuzz`, `strata_wal::fuzz`):
//! random bytes, and valid encodings with random damage, must never panic. The real fuzzers are
//! in `fuzz/` (cargo-fuzz); `FUZZ_SMOKE_CASES=100000` runs this longer.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use proptest::prelude::*;
use strata_lsm::fuzz;
use strata_lsm::WriteBatch;

fn cases() -> u32 {
    std::env::var("FUZZ_SMOKE_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000)
}

/// A valid input of each kind, to damage.
fn seeds() -> Vec<Vec<u8>> {
    let mut batch = WriteBatch::new();
    batch
        .put(b"key".to_vec(), b"value".to_vec())
        .delete(b"gone".to_vec())
        .delete_range(b"a".to_vec(), b"b".to_vec());
    let mut block = strata_lsm::block::DataBlockBuilder::default();
    for i in 0u8..5 {
        block.add(&[b'k', i], 9, strata_lsm::memtable::Kind::Put, &[i; 7]);
    }
    let payload = block.finish();
    let mut builder = strata_lsm::table::TableBuilder::new(strata_lsm::table::BuildOptions {
        block_bytes: 64,
        bloom_bits_per_key: 10,
        compress: false,
    });
    for i in 0u8..20 {
        builder.add(&[b'k', i], 9, strata_lsm::memtable::Kind::Put, &[i; 9]);
    }
    let (table, _) = builder.finish(&[]);
    let manifest =
        strata_lsm::manifest::Manifest { next_table_id: 3, wal_replay_from: 5, tables: vec![] };
    vec![
        batch.encode(),
        strata_lsm::block::seal(&payload, false),
        strata_lsm::block::seal(&payload, true),
        payload,
        table,
        manifest.encode(),
    ]
}

fn run_all(data: &[u8]) {
    fuzz::write_batch(data);
    fuzz::sstable_block(data);
    fuzz::sstable_tail(data);
    fuzz::manifest(data);
    strata_wal::fuzz::record_decoding(data);
    strata_wal::fuzz::segment_recovery(data);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        run_all(&data);
    }

    #[test]
    fn damaged_valid_inputs_never_panic(
        which in 0usize..6,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = seeds()[which].clone();
        run_all(&data);
        for (at, xor) in flips {
            let position = at.index(data.len());
            data[position] ^= xor;
        }
        run_all(&data);
        let keep = cut.index(data.len() + 1);
        run_all(&data[..keep]);
    }
}
