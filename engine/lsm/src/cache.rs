//! A bounded block cache shared by every table of a store: least recently used blocks go first.

use crate::block::DataBlock;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// (table id, block offset).
type BlockKey = (u64, u64);

struct CacheState {
    blocks: BTreeMap<BlockKey, (u64, Rc<DataBlock>)>,
    /// Last use → block, oldest first.
    recency: BTreeMap<u64, BlockKey>,
    size_bytes: usize,
    tick: u64,
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
                recency: BTreeMap::new(),
                size_bytes: 0,
                tick: 0,
            }),
        }
    }

    pub fn get(&self, table: u64, offset: u64) -> Option<Rc<DataBlock>> {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        state.tick += 1;
        let tick = state.tick;
        let (used, block) = state.blocks.get_mut(&(table, offset))?;
        state.recency.remove(used);
        *used = tick;
        state.recency.insert(tick, (table, offset));
        Some(block.clone())
    }

    pub fn insert(&self, table: u64, offset: u64, block: Rc<DataBlock>) {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        state.tick += 1;
        let tick = state.tick;
        state.size_bytes += block.size_bytes();
        if let Some((used, old)) = state.blocks.insert((table, offset), (tick, block)) {
            state.recency.remove(&used);
            state.size_bytes -= old.size_bytes();
        }
        state.recency.insert(tick, (table, offset));
        while state.size_bytes > self.capacity_bytes {
            let Some((_, key)) = state.recency.pop_first() else { break };
            if let Some((_, evicted)) = state.blocks.remove(&key) {
                state.size_bytes -= evicted.size_bytes();
            }
        }
    }

    pub fn size_bytes(&self) -> usize {
        self.state.borrow().size_bytes
    }
}
