//! A bounded block cache shared by every table of a store, with CLOCK eviction: a hit only sets
//! the block's reference bit; the eviction hand sweeps the blocks in key order, clearing bits and
//! evicting the first block whose bit is already clear (second chance).

use crate::block::DataBlock;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

/// (table id, block offset).
type BlockKey = (u64, u64);

struct Slot {
    block: Rc<DataBlock>,
    referenced: Cell<bool>,
}

struct CacheState {
    blocks: BTreeMap<BlockKey, Slot>,
    size_bytes: usize,
    /// The eviction hand: the key after which the sweep resumes.
    hand: BlockKey,
}

pub struct BlockCache {
    capacity_bytes: usize,
    state: RefCell<CacheState>,
}

impl BlockCache {
    pub fn new(capacity_bytes: usize) -> BlockCache {
        BlockCache {
            capacity_bytes,
            state: RefCell::new(CacheState {
                blocks: BTreeMap::new(),
                size_bytes: 0,
                hand: (0, 0),
            }),
        }
    }

    pub fn get(&self, table: u64, offset: u64) -> Option<Rc<DataBlock>> {
        let state = self.state.borrow();
        let slot = state.blocks.get(&(table, offset))?;
        slot.referenced.set(true);
        Some(slot.block.clone())
    }

    pub fn insert(&self, table: u64, offset: u64, block: Rc<DataBlock>) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        state.size_bytes += block.size_bytes();
        let slot = Slot { block, referenced: Cell::new(false) };
        if let Some(old) = state.blocks.insert((table, offset), slot) {
            state.size_bytes -= old.block.size_bytes();
        }
        while state.size_bytes > self.capacity_bytes && !state.blocks.is_empty() {
            let next = state
                .blocks
                .range((Bound::Excluded(state.hand), Bound::Unbounded))
                .next()
                .or_else(|| state.blocks.iter().next())
                .map(|(key, slot)| (*key, slot.referenced.replace(false)));
            let Some((key, referenced)) = next else { break };
            state.hand = key;
            if !referenced {
                let evicted = state.blocks.remove(&key).expect("the hand points at a block");
                state.size_bytes -= evicted.block.size_bytes();
            }
        }
    }

    pub fn size_bytes(&self) -> usize {
        self.state.borrow().size_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::DataBlockBuilder;
    use crate::memtable::Kind;

    fn block() -> Rc<DataBlock> {
        let mut builder = DataBlockBuilder::default();
        builder.add(b"key", 1, Kind::Put, &[0; 100]);
        Rc::new(DataBlock::parse(builder.finish()).unwrap())
    }

    #[test]
    fn stays_within_capacity_and_gives_used_blocks_a_second_chance() {
        let size = block().size_bytes();
        let cache = BlockCache::new(size * 4);
        for offset in 0..4 {
            cache.insert(1, offset, block());
        }
        assert!(cache.get(1, 0).is_some());
        cache.insert(1, 4, block());
        assert!(cache.size_bytes() <= size * 4);
        assert!(cache.get(1, 0).is_some(), "the referenced block survived");
        assert!(cache.get(1, 1).is_none(), "an unreferenced one went");
        for offset in 5..100 {
            cache.insert(2, offset, block());
        }
        assert!(cache.size_bytes() <= size * 4);
    }
}
