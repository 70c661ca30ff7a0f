//! The search's memory: interned model states and the set of visited (linearized set, state)
//! configurations.
//!
//! The linearized set is a bitset over a partition's operations (in invocation order). Its hash is
//! kept incrementally (Zobrist: XOR of a fixed random word per set operation), so marking an
//! operation costs O(1). A visited configuration is stored compactly: the index of the first word
//! that is not all ones (everything before it is linearized) and the words from there to the last
//! non-zero one. During a search only operations concurrent with the earliest pending one can be
//! linearized, so that window is short and the memo stays small. Equality is exact: a hash match is
//! confirmed by comparing the state id and the stored words.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// The FxHash function (rustc's): fast, fixed, not randomly seeded.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("chunk of 8")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }
    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }
    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }
    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits depending only on the low bits of the input, and the
        // table picks buckets by the low bits: bring the well-mixed high bits down (rustc-hash 2).
        self.hash.rotate_left(26)
    }
}

/// A map with the fixed FxHash; iteration order is never used for output.
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The splitmix64 mixing function: a fixed pseudo-random word per input.
pub(crate) fn splitmix64(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// Interns states: equal states get the same id, so the memo compares `u32`s. Each state is
/// stored once; the table maps its hash to the first id with that hash, and ids with equal hashes
/// are chained.
pub(crate) struct Interner<S> {
    ids: FxMap<u64, u32>,
    states: Vec<S>,
    /// Per id: the next id with the same hash, or `u32::MAX`.
    chain: Vec<u32>,
}

impl<S: Clone + Eq + Hash> Interner<S> {
    pub(crate) fn new() -> Self {
        Self { ids: FxMap::default(), states: Vec::new(), chain: Vec::new() }
    }

    pub(crate) fn intern(&mut self, state: S) -> u32 {
        let mut hasher = FxHasher::default();
        state.hash(&mut hasher);
        let hash = hasher.finish();
        let new_id = u32::try_from(self.states.len()).expect("fewer than 2^32 distinct states");
        let first = *self.ids.entry(hash).or_insert(new_id);
        let mut id = first;
        if first != new_id {
            while id != u32::MAX {
                if self.states[id as usize] == state {
                    return id;
                }
                id = self.chain[id as usize];
            }
            self.ids.insert(hash, new_id);
        }
        self.states.push(state);
        self.chain.push(if first == new_id { u32::MAX } else { first });
        new_id
    }

    pub(crate) fn get(&self, id: u32) -> &S {
        &self.states[id as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }
}

/// A bitset stored as a window: everything before `low_word` is all ones, nothing after
/// `high_word` is set.
struct Region {
    words: Vec<u64>,
    /// Index of the first word that is not all ones.
    low_word: usize,
    /// No word past this one is non-zero.
    high_word: usize,
}

impl Region {
    fn new(bits: usize) -> Self {
        Self { words: vec![0; bits.div_ceil(64).max(1)], low_word: 0, high_word: 0 }
    }

    #[inline]
    fn set(&mut self, bit: usize) {
        let word = bit / 64;
        self.words[word] |= 1 << (bit % 64);
        self.high_word = self.high_word.max(word);
        while self.low_word < self.words.len() && self.words[self.low_word] == u64::MAX {
            self.low_word += 1;
        }
    }

    #[inline]
    fn clear(&mut self, bit: usize) {
        let word = bit / 64;
        self.words[word] &= !(1 << (bit % 64));
        self.low_word = self.low_word.min(word);
    }

    /// Appends the canonical form: the low word index, the window's length, the window.
    #[inline]
    fn encode(&mut self, out: &mut Vec<u64>) {
        while self.high_word > self.low_word && self.words[self.high_word] == 0 {
            self.high_word -= 1;
        }
        out.push(self.low_word as u64);
        if self.low_word >= self.words.len() {
            out.push(0);
            return;
        }
        let end = self.high_word.max(self.low_word) + 1;
        out.push((end - self.low_word) as u64);
        out.extend_from_slice(&self.words[self.low_word..end]);
    }
}

/// The linearized set of a search, with its incremental hash. Operations with a known outcome
/// and operations with an unknown one live in two regions, each in call order: the first region's
/// window stays short (operations are linearized roughly in order) even while some unknown
/// outcomes stay pending forever.
pub(crate) struct Linearized {
    /// Per operation: its bit, with `UNKNOWN_REGION` set for the second region.
    slots: Vec<u32>,
    regions: [Region; 2],
    hash: u64,
    encoded: Vec<u64>,
}

const UNKNOWN_REGION: u32 = 1 << 31;

impl Linearized {
    /// `unknown[op]` says which region an operation belongs to.
    pub(crate) fn new(unknown: &[bool]) -> Self {
        let mut counts = [0u32; 2];
        let slots = unknown
            .iter()
            .map(|&unknown| {
                let region = usize::from(unknown);
                let bit = counts[region];
                counts[region] += 1;
                if unknown {
                    bit | UNKNOWN_REGION
                } else {
                    bit
                }
            })
            .collect();
        Self {
            slots,
            regions: [Region::new(counts[0] as usize), Region::new(counts[1] as usize)],
            hash: 0,
            encoded: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn zobrist(operation: usize) -> u64 {
        splitmix64(operation as u64 ^ 0x05EE_D0F5_747A)
    }

    #[inline]
    fn locate(&self, operation: usize) -> (usize, usize) {
        let slot = self.slots[operation];
        (usize::from(slot & UNKNOWN_REGION != 0), (slot & !UNKNOWN_REGION) as usize)
    }

    #[inline]
    pub(crate) fn set(&mut self, operation: usize) {
        let (region, bit) = self.locate(operation);
        self.regions[region].set(bit);
        self.hash ^= Self::zobrist(operation);
    }

    #[inline]
    pub(crate) fn clear(&mut self, operation: usize) {
        let (region, bit) = self.locate(operation);
        self.regions[region].clear(bit);
        self.hash ^= Self::zobrist(operation);
    }

    #[inline]
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// The canonical compact form of the set.
    #[inline]
    fn encode(&mut self) -> &[u64] {
        self.encoded.clear();
        let [known, unknown] = &mut self.regions;
        known.encode(&mut self.encoded);
        unknown.encode(&mut self.encoded);
        &self.encoded
    }
}

#[derive(Clone, Copy)]
struct Entry {
    state: u32,
    words_len: u32,
    words_start: u64,
    /// Next entry with the same hash, or `u32::MAX`.
    next: u32,
}

/// The set of visited (linearized set, state) configurations.
pub(crate) struct Visited {
    heads: FxMap<u64, u32>,
    entries: Vec<Entry>,
    words: Vec<u64>,
}

impl Visited {
    pub(crate) fn with_capacity(configurations: usize) -> Self {
        Self {
            heads: FxMap::with_capacity_and_hasher(configurations, Default::default()),
            entries: Vec::with_capacity(configurations),
            words: Vec::with_capacity(configurations * 4),
        }
    }

    /// Inserts the configuration; returns whether it was new.
    pub(crate) fn insert(&mut self, linearized: &mut Linearized, state: u32) -> bool {
        let key = Self::key(linearized, state);
        let encoded = linearized.encode();
        let new_index = u32::try_from(self.entries.len()).expect("fewer than 2^32 memo entries");
        let first = match self.heads.entry(key) {
            std::collections::hash_map::Entry::Occupied(head) => *head.get(),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(new_index);
                u32::MAX
            }
        };
        if self.chain_holds(first, encoded, state) {
            return false;
        }
        self.entries.push(Entry {
            state,
            words_len: u32::try_from(encoded.len()).expect("window fits"),
            words_start: self.words.len() as u64,
            next: first,
        });
        self.words.extend_from_slice(encoded);
        if first != u32::MAX {
            self.heads.insert(key, new_index);
        }
        true
    }

    /// Whether the configuration was visited, without inserting it.
    pub(crate) fn contains(&self, linearized: &mut Linearized, state: u32) -> bool {
        let Some(&first) = self.heads.get(&Self::key(linearized, state)) else { return false };
        self.chain_holds(first, linearized.encode(), state)
    }

    #[inline]
    fn key(linearized: &Linearized, state: u32) -> u64 {
        linearized.hash() ^ splitmix64(u64::from(state))
    }

    /// Whether the chain of entries from `first` holds (`encoded`, `state`).
    #[inline]
    fn chain_holds(&self, first: u32, encoded: &[u64], state: u32) -> bool {
        let mut chain = first;
        while chain != u32::MAX {
            let entry = self.entries[chain as usize];
            if entry.state == state && entry.words_len as usize == encoded.len() {
                let start = entry.words_start as usize;
                if &self.words[start..start + encoded.len()] == encoded {
                    return true;
                }
            }
            chain = entry.next;
        }
        false
    }

    /// Approximate bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.heads.capacity() * 16
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.words.capacity() * 8
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
