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

/// Interns states: equal states get the same id, so the memo compares `u32`s.
pub(crate) struct Interner<S> {
    ids: FxMap<S, u32>,
    states: Vec<S>,
}

impl<S: Clone + Eq + Hash> Interner<S> {
    pub(crate) fn new() -> Self {
        Self { ids: FxMap::default(), states: Vec::new() }
    }

    pub(crate) fn intern(&mut self, state: S) -> u32 {
        if let Some(&id) = self.ids.get(&state) {
            return id;
        }
        let id = u32::try_from(self.states.len()).expect("fewer than 2^32 distinct states");
        self.states.push(state.clone());
        self.ids.insert(state, id);
        id
    }

    pub(crate) fn get(&self, id: u32) -> &S {
        &self.states[id as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }
}

/// The linearized set of a search, with its incremental hash.
pub(crate) struct Linearized {
    words: Vec<u64>,
    /// Index of the first word that is not all ones.
    low_word: usize,
    /// No word past this one is non-zero.
    high_word: usize,
    hash: u64,
}

impl Linearized {
    pub(crate) fn new(operations_count: usize) -> Self {
        let words_count = operations_count.div_ceil(64).max(1);
        Self { words: vec![0; words_count], low_word: 0, high_word: 0, hash: 0 }
    }

    #[inline]
    pub(crate) fn zobrist(operation: usize) -> u64 {
        splitmix64(operation as u64 ^ 0x05EE_D0F5_747A)
    }

    #[inline]
    pub(crate) fn set(&mut self, operation: usize) {
        let word = operation / 64;
        self.words[word] |= 1 << (operation % 64);
        self.hash ^= Self::zobrist(operation);
        self.high_word = self.high_word.max(word);
        while self.low_word < self.words.len() && self.words[self.low_word] == u64::MAX {
            self.low_word += 1;
        }
    }

    #[inline]
    pub(crate) fn clear(&mut self, operation: usize) {
        let word = operation / 64;
        self.words[word] &= !(1 << (operation % 64));
        self.hash ^= Self::zobrist(operation);
        self.low_word = self.low_word.min(word);
    }

    #[inline]
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// The canonical compact form: (first word not all ones, the words from it to the last
    /// non-zero word).
    #[inline]
    fn window(&mut self) -> (usize, &[u64]) {
        while self.high_word > self.low_word && self.words[self.high_word] == 0 {
            self.high_word -= 1;
        }
        if self.low_word >= self.words.len() {
            return (self.low_word, &[]);
        }
        let end = self.high_word.max(self.low_word) + 1;
        (self.low_word, &self.words[self.low_word..end])
    }
}

#[derive(Clone, Copy)]
struct Entry {
    state: u32,
    low_word: u32,
    words_start: u32,
    words_len: u32,
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
    pub(crate) fn new() -> Self {
        Self { heads: FxMap::default(), entries: Vec::new(), words: Vec::new() }
    }

    /// Inserts the configuration; returns whether it was new.
    pub(crate) fn insert(&mut self, linearized: &mut Linearized, state: u32) -> bool {
        let key = linearized.hash() ^ splitmix64(u64::from(state));
        let (low_word, window) = linearized.window();
        let new_index = u32::try_from(self.entries.len()).expect("fewer than 2^32 memo entries");
        let mut chain = match self.heads.entry(key) {
            std::collections::hash_map::Entry::Occupied(head) => *head.get(),
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(new_index);
                u32::MAX
            }
        };
        let first = chain;
        while chain != u32::MAX {
            let entry = self.entries[chain as usize];
            if entry.state == state
                && entry.low_word as usize == low_word
                && entry.words_len as usize == window.len()
            {
                let start = entry.words_start as usize;
                if &self.words[start..start + window.len()] == window {
                    return false;
                }
            }
            chain = entry.next;
        }
        let words_start = u32::try_from(self.words.len()).expect("memo smaller than 32 GiB");
        self.words.extend_from_slice(window);
        self.entries.push(Entry {
            state,
            low_word: u32::try_from(low_word).expect("fewer than 2^38 operations"),
            words_start,
            words_len: u32::try_from(window.len()).expect("window fits"),
            next: first,
        });
        if first != u32::MAX {
            self.heads.insert(key, new_index);
        }
        true
    }

    /// Approximate bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.heads.capacity() * 16 + self.entries.capacity() * 20 + self.words.capacity() * 8
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
