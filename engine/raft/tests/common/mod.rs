//! A deterministic in-memory cluster: `RawNode`s exchanging encoded messages over a seeded
//! network that drops, duplicates, delays (so reorders) and partitions, with crashes that lose
//! everything but what a `Ready` persisted. Invariants are checked after every ready:
//!
//! - election safety: at most one leader per term;
//! - leader completeness: a new leader holds every entry committed so far;
//! - committed entries never change: every replica's committed prefix equals one global log;
//! - state machine safety: every replica applies exactly that log, in order;
//! - ReadIndex linearizability: a confirmed read's index covers every entry committed before
//!   the read was requested;
//! - snapshots: an installed snapshot's bytes are exactly the register after the committed log
//!   up to its index.
//!
//! The state machine is a [`Register`] whose snapshot is its bytes. With `compact_every` set,
//! replicas compact their logs as they apply, leaders stream snapshots in chunks of a few bytes
//! (so every transfer takes several chunks and exercises resumption), and followers stage and
//! install them.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use strata_raft::{
    Config, Entry, EntryKind, HardState, Message, RawNode, Role, SnapshotChunk, SnapshotMeta,
    SnapshotRequest,
};
use strata_rt::{NodeId, Rng};

/// Bytes of a register's state (and so of every snapshot).
pub const REGISTER_BYTES: usize = 40;
/// Snapshot chunk size in the tests: a snapshot takes six chunks.
pub const CHUNK_BYTES: u64 = 7;

/// The replicated state machine: the last index applied, the last value written, a hash of every
/// value applied, and filler derived from it. Its snapshot is its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Register {
    pub bytes: Vec<u8>,
}

impl Default for Register {
    fn default() -> Register {
        Register { bytes: vec![0; REGISTER_BYTES] }
    }
}

impl Register {
    pub fn index(&self) -> u64 {
        u64::from_le_bytes(self.bytes[0..8].try_into().expect("8 bytes"))
    }

    pub fn apply(&mut self, entry: &Entry) {
        assert_eq!(entry.index, self.index() + 1, "register applies out of order");
        self.bytes[0..8].copy_from_slice(&entry.index.to_le_bytes());
        if entry.kind == EntryKind::Normal {
            let mut value = [0u8; 8];
            let length = entry.data.len().min(8);
            value[..length].copy_from_slice(&entry.data[..length]);
            self.bytes[8..16].copy_from_slice(&value);
            let mut hash = u64::from_le_bytes(self.bytes[16..24].try_into().expect("8 bytes"));
            for &byte in &entry.data {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
            self.bytes[16..24].copy_from_slice(&hash.to_le_bytes());
            for (position, byte) in self.bytes[24..].iter_mut().enumerate() {
                *byte = (hash >> ((position % 8) * 8)) as u8 ^ position as u8;
            }
        }
    }
}

pub struct Replica {
    pub node: Option<RawNode>,
    /// What survives a crash: hard state, the snapshot (meta and bytes) and the log after it.
    pub hard_state: HardState,
    pub snapshot: SnapshotMeta,
    pub snapshot_bytes: Vec<u8>,
    pub log: Vec<Entry>,
    /// Received snapshot chunks by (index, term); lost in a crash (the node forgets the transfer
    /// too, so it starts over).
    staging: BTreeMap<(u64, u64), Vec<u8>>,
    /// The state machine, rebuilt from the snapshot and the log after a crash.
    pub register: Register,
    pub applied_index: u64,
    commit_checked: u64,
    pub restarts: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub drop_rate: f64,
    pub duplicate_rate: f64,
    pub delay_ticks_max: u64,
    /// Chance that a replica crashes while performing a `Ready`, before it is durable.
    pub crash_in_ready_rate: f64,
}

impl Faults {
    /// A seed's message faults, drawn from `rates` (crashes at a twentieth of the rate drawn,
    /// duplicates at half) and delays below `delay_ticks_bound`: swarm style, every mix tried.
    pub fn draw(rng: &mut Rng, rates: &[f64], delay_ticks_bound: u64) -> Faults {
        Faults {
            drop_rate: rates[rng.index(rates.len())],
            duplicate_rate: rates[rng.index(rates.len())] / 2.0,
            delay_ticks_max: rng.below(delay_ticks_bound),
            crash_in_ready_rate: rates[rng.index(rates.len())] / 20.0,
        }
    }
}

/// Runs `run_seed` on every seed, naming the seed that fails; returns the sums of the two counts
/// each run reports (what the caller then requires a minimum of: runs that do no work prove
/// nothing).
pub fn sweep(
    label: &str,
    seeds: std::ops::Range<u64>,
    run_seed: impl Fn(u64) -> (u64, u64) + std::panic::RefUnwindSafe,
) -> (u64, u64) {
    let (mut first, mut second) = (0, 0);
    for seed in seeds {
        match std::panic::catch_unwind(|| run_seed(seed)) {
            Ok((seed_first, seed_second)) => {
                first += seed_first;
                second += seed_second;
            }
            Err(panic) => {
                eprintln!("raft {label} seed {seed} failed");
                std::panic::resume_unwind(panic);
            }
        }
    }
    (first, second)
}

/// The seeds of a long sweep: `STRATA_RAFT_SEED_START` (default 0) on, `STRATA_RAFT_SEEDS` of
/// them (default `count`).
pub fn long_sweep_seeds(count: u64) -> std::ops::Range<u64> {
    let start =
        std::env::var("STRATA_RAFT_SEED_START").map_or(0, |value| value.parse().expect("a seed"));
    let count =
        std::env::var("STRATA_RAFT_SEEDS").map_or(count, |value| value.parse().expect("a count"));
    start..start + count
}

pub struct Network {
    pub rng: Rng,
    /// Every replica, members or not.
    pub ids: Vec<NodeId>,
    /// The group's bootstrap voters; the other replicas join through membership changes.
    pub bootstrap_voters: Vec<NodeId>,
    pub replicas: BTreeMap<NodeId, Replica>,
    in_flight: Vec<(u64, Vec<u8>)>,
    pub now: u64,
    pub faults: Faults,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    configure: fn(&mut Config),
    seed: u64,
    leaders: BTreeMap<u64, NodeId>,
    /// The one committed log every replica must agree with.
    pub committed: Vec<Entry>,
    /// Open reads: context -> (replica asked, entries committed when asked).
    reads: BTreeMap<u64, (NodeId, u64)>,
    next_context: u64,
    next_value: u64,
    pub reads_confirmed: u64,
    pub messages_sent: u64,
    /// A test's hand on the wire: rewrites or (with `None`) drops a message being delivered.
    pub rewrite: Option<fn(Message) -> Option<Message>>,
    /// Compact a replica's log once it applied this many entries past its snapshot (0: never).
    pub compact_every: u64,
    pub snapshots_installed: u64,
    /// Every snapshot chunk a replica took: (replica, from, offset).
    pub chunks_received: Vec<(NodeId, NodeId, u64)>,
    /// Bounded clock drift: each replica ticks at its own fixed rate per step (ticks per
    /// nominal tick), instead of skipping ticks at random (unbounded drift).
    pub tick_rates: BTreeMap<NodeId, f64>,
    tick_credit: BTreeMap<NodeId, f64>,
}

pub fn no_changes(_: &mut Config) {}

impl Network {
    pub fn new(count: u32, seed: u64, configure: fn(&mut Config)) -> Network {
        Network::with_joiners(count, 0, seed, configure)
    }

    /// `voters` bootstrap voters and `joiners` more replicas outside the configuration.
    pub fn with_joiners(
        voters: u32,
        joiners: u32,
        seed: u64,
        configure: fn(&mut Config),
    ) -> Network {
        let ids: Vec<NodeId> = (1..=voters + joiners).map(NodeId).collect();
        let mut network = Network {
            rng: Rng::with_seed(seed),
            ids: ids.clone(),
            bootstrap_voters: (1..=voters).map(NodeId).collect(),
            replicas: BTreeMap::new(),
            in_flight: Vec::new(),
            now: 0,
            faults: Faults::default(),
            cut: BTreeSet::new(),
            configure,
            seed,
            leaders: BTreeMap::new(),
            committed: Vec::new(),
            reads: BTreeMap::new(),
            next_context: 1,
            next_value: 1,
            reads_confirmed: 0,
            messages_sent: 0,
            rewrite: None,
            compact_every: 0,
            snapshots_installed: 0,
            chunks_received: Vec::new(),
            tick_rates: BTreeMap::new(),
            tick_credit: BTreeMap::new(),
        };
        for &id in &ids {
            let replica = Replica {
                node: None,
                hard_state: HardState::default(),
                snapshot: SnapshotMeta::default(),
                snapshot_bytes: Register::default().bytes,
                log: Vec::new(),
                staging: BTreeMap::new(),
                register: Register::default(),
                applied_index: 0,
                commit_checked: 0,
                restarts: 0,
            };
            network.replicas.insert(id, replica);
            network.restart(id);
        }
        network
    }

    pub fn config(&self, id: NodeId, restarts: u64) -> Config {
        let seed = self.seed ^ (u64::from(id.0) << 32) ^ restarts.wrapping_mul(0x9e37_79b9);
        let mut config = Config::new(id, self.bootstrap_voters.clone(), seed);
        config.snapshot_chunk_bytes_max = CHUNK_BYTES;
        config.snapshot_chunks_inflight_max = 2;
        (self.configure)(&mut config);
        config
    }

    /// Rebuilds a replica from what it persisted; its state machine restarts from the snapshot
    /// and replays the log.
    pub fn restart(&mut self, id: NodeId) {
        let restarts = self.replicas[&id].restarts;
        let config = self.config(id, restarts);
        let replica = self.replicas.get_mut(&id).expect("known replica");
        assert!(replica.node.is_none(), "{id} is running");
        let snapshot = replica.snapshot.clone();
        let node = RawNode::new_with_snapshot(
            config,
            snapshot.clone(),
            replica.hard_state,
            replica.log.clone(),
            snapshot.index,
        )
        .unwrap_or_else(|error| {
            panic!(
                "{id} restores from {snapshot:?} and log {:?}: {error}",
                replica.log.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>()
            )
        });
        replica.node = Some(node);
        replica.register = Register { bytes: replica.snapshot_bytes.clone() };
        assert_eq!(replica.register.index(), snapshot.index, "snapshot bytes match their meta");
        replica.applied_index = snapshot.index;
        replica.commit_checked = snapshot.index;
        replica.restarts += 1;
    }

    /// Replaces what `id` persisted (as if it had crashed with this on disk) and restarts it.
    pub fn set_persisted(&mut self, id: NodeId, hard_state: HardState, log: Vec<Entry>) {
        self.crash(id);
        let replica = self.replicas.get_mut(&id).expect("known replica");
        replica.hard_state = hard_state;
        replica.log = log;
        self.restart(id);
    }

    pub fn crash(&mut self, id: NodeId) {
        let replica = self.replicas.get_mut(&id).expect("known replica");
        replica.node = None;
        replica.staging.clear();
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.replicas[&id].node.is_some()
    }

    pub fn node(&self, id: NodeId) -> &RawNode {
        self.replicas[&id].node.as_ref().expect("replica is up")
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut RawNode {
        self.replicas.get_mut(&id).expect("known replica").node.as_mut().expect("replica is up")
    }

    // ----- the network -----

    pub fn isolate(&mut self, id: NodeId) {
        for &other in &self.ids.clone() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    /// Splits the replicas into `side` and the rest.
    pub fn partition(&mut self, side: &[NodeId]) {
        self.cut.clear();
        for &a in &self.ids {
            for &b in &self.ids {
                if side.contains(&a) != side.contains(&b) {
                    self.cut.insert((a, b));
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    fn send(&mut self, message: Message) {
        self.messages_sent += 1;
        let bytes = message.to_bytes();
        if self.rng.chance(self.faults.drop_rate) {
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate_rate) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.rng.below(self.faults.delay_ticks_max + 1);
            self.in_flight.push((self.now + delay, bytes.clone()));
        }
    }

    /// Delivers every message due by now, in random order.
    pub fn deliver_due(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        let mut later = Vec::new();
        for (at, bytes) in std::mem::take(&mut self.in_flight) {
            if at <= now {
                due.push(bytes);
            } else {
                later.push((at, bytes));
            }
        }
        self.in_flight = later;
        self.rng.shuffle(&mut due);
        for bytes in due {
            let message = Message::decode(&bytes).expect("our own encoding decodes");
            if self.cut.contains(&(message.from, message.to)) {
                continue;
            }
            let message = match self.rewrite {
                Some(rewrite) => match rewrite(message) {
                    Some(message) => message,
                    None => continue,
                },
                None => message,
            };
            let to = message.to;
            if let Some(node) = self.replicas.get_mut(&to).and_then(|r| r.node.as_mut()) {
                node.step(message).expect("messages within the group");
                self.process_ready(to);
            }
        }
    }

    /// Without faults: delivers and processes until nothing moves (ticks not included).
    pub fn deliver_all(&mut self) {
        for _ in 0..10_000 {
            for id in self.ids.clone() {
                self.process_ready(id);
            }
            if self.in_flight.is_empty() {
                return;
            }
            for entry in &mut self.in_flight {
                entry.0 = 0;
            }
            self.deliver_due();
        }
        panic!("the cluster did not quiesce");
    }

    /// Drops every message in flight.
    pub fn drop_in_flight(&mut self) {
        self.in_flight.clear();
    }

    // ----- driving replicas -----

    pub fn process_ready(&mut self, id: NodeId) {
        loop {
            let Some(node) = self.replicas.get_mut(&id).and_then(|r| r.node.as_mut()) else {
                return;
            };
            if !node.has_ready() {
                return;
            }
            let ready = node.ready();
            for message in ready.messages {
                self.send(message);
            }
            let crash = self.rng.chance(self.faults.crash_in_ready_rate);
            let entries_only = crash && self.rng.chance(0.5);
            let replica = self.replicas.get_mut(&id).expect("known replica");
            if !crash || entries_only {
                if let Some(first) = ready.entries.first() {
                    let offset = replica.snapshot.index;
                    assert!(
                        first.index > offset,
                        "{id} rewrites entry {} in its snapshot",
                        first.index
                    );
                    replica.log.truncate((first.index - offset - 1) as usize);
                    replica.log.extend(ready.entries.iter().cloned());
                }
            }
            if crash {
                self.crash(id);
                return;
            }
            if let Some(hard_state) = ready.hard_state {
                replica.hard_state = hard_state;
            }
            let mut installs = Vec::new();
            for chunk in ready.snapshot_chunks {
                let SnapshotChunk { from, meta, offset, data, done } = chunk;
                let key = (meta.index, meta.term);
                if offset == 0 {
                    replica.staging.clear();
                    replica.staging.insert(key, Vec::new());
                }
                let staged = replica.staging.get_mut(&key).expect("a transfer starts at offset 0");
                assert_eq!(staged.len() as u64, offset, "{id} got a chunk out of order");
                staged.extend_from_slice(&data);
                self.chunks_received.push((id, from, offset));
                if done {
                    installs.push(meta);
                }
            }
            for message in ready.persisted_messages {
                self.send(message);
            }
            self.check_commit(id);
            let replica = self.replicas.get_mut(&id).expect("known replica");
            for entry in ready.committed_entries {
                if entry.index <= replica.applied_index {
                    // Covered by a snapshot installed after this `Ready` was taken.
                    continue;
                }
                let expected = self.committed.get(entry.index as usize - 1);
                assert_eq!(expected, Some(&entry), "{id} applies an entry not committed");
                assert_eq!(replica.applied_index + 1, entry.index, "{id} applies out of order");
                replica.register.apply(&entry);
                replica.applied_index = entry.index;
            }
            for read in ready.read_states {
                let (asked, required) = self.reads.remove(&read.context).expect("a read we made");
                assert_eq!(asked, id, "read answered by another replica");
                assert!(
                    read.index >= required,
                    "stale read at {id}: index {} but {required} were committed before",
                    read.index
                );
                self.reads_confirmed += 1;
            }
            self.node_mut(id).advance();
            for meta in installs {
                self.install(id, meta);
            }
            self.maybe_compact(id);
            self.serve_snapshot_requests(id, ready.snapshot_requests);
            self.check_node(id);
        }
    }

    /// The register after the committed log up to `index`.
    pub fn expected_register(&self, index: u64) -> Register {
        let mut register = Register::default();
        for entry in &self.committed[..index as usize] {
            register.apply(entry);
        }
        register
    }

    fn install(&mut self, id: NodeId, meta: SnapshotMeta) {
        let replica = self.replicas.get_mut(&id).expect("known replica");
        let bytes = replica.staging.remove(&(meta.index, meta.term)).expect("staged");
        if meta.index <= replica.applied_index {
            return;
        }
        assert!(meta.index as usize <= self.committed.len(), "snapshot past the committed log");
        let expected = self.expected_register(meta.index);
        assert_eq!(bytes, expected.bytes, "{id} received a snapshot unlike the committed log");
        let replica = self.replicas.get_mut(&id).expect("known replica");
        let node = replica.node.as_mut().expect("replica is up");
        match node.snapshot_installed(meta.clone()) {
            Ok(()) => {}
            Err(strata_raft::Error::SnapshotStale { .. }) => return,
            Err(error) => panic!("{id} refused snapshot {meta:?}: {error}"),
        }
        let last_index = node.last_index();
        replica.register = Register { bytes: bytes.clone() };
        replica.applied_index = meta.index;
        replica.log.retain(|entry| entry.index > meta.index && entry.index <= last_index);
        if let Some(first) = replica.log.first() {
            assert_eq!(first.index, meta.index + 1, "kept entries follow the snapshot");
        }
        replica.snapshot = meta;
        replica.snapshot_bytes = bytes;
        replica.commit_checked = replica.commit_checked.max(replica.applied_index);
        self.snapshots_installed += 1;
        self.check_commit(id);
    }

    fn maybe_compact(&mut self, id: NodeId) {
        if self.compact_every == 0 || !self.rng.chance(0.5) {
            return;
        }
        let replica = self.replicas.get_mut(&id).expect("known replica");
        let applied = replica.applied_index;
        if applied < replica.snapshot.index + self.compact_every {
            return;
        }
        let node = replica.node.as_mut().expect("replica is up");
        assert_eq!(node.applied_index(), applied, "the node and the register agree");
        let meta = node.compact(applied).expect("compaction at the applied index");
        assert_eq!(meta.index, applied);
        assert_eq!(replica.register.index(), applied);
        replica.log.retain(|entry| entry.index > applied);
        replica.snapshot = meta;
        replica.snapshot_bytes = replica.register.bytes.clone();
    }

    fn serve_snapshot_requests(&mut self, id: NodeId, requests: Vec<SnapshotRequest>) {
        for request in requests {
            if self.rng.chance(self.faults.drop_rate) {
                continue; // The leader asks again after an election timeout.
            }
            let replica = self.replicas.get_mut(&id).expect("known replica");
            if request.meta != replica.snapshot {
                continue; // No longer held.
            }
            let bytes = &replica.snapshot_bytes;
            let start = (request.offset as usize).min(bytes.len());
            let end = (start + request.length_max as usize).min(bytes.len());
            let data = bytes[start..end].to_vec();
            let done = end == bytes.len();
            let node = replica.node.as_mut().expect("replica is up");
            node.snapshot_chunk(request.to, &request.meta, request.offset, data, done)
                .expect("a chunk as requested");
        }
    }

    fn check_commit(&mut self, id: NodeId) {
        let replica = self.replicas.get_mut(&id).expect("known replica");
        let node = replica.node.as_ref().expect("replica is up");
        let commit = node.commit_index();
        for index in (replica.commit_checked + 1).max(node.first_index())..=commit {
            let entry = &node.entries(index, index)[0];
            match self.committed.get(index as usize - 1) {
                Some(committed) => {
                    assert_eq!(committed, entry, "{id} committed a different entry at {index}")
                }
                None => {
                    assert_eq!(self.committed.len() as u64 + 1, index);
                    self.committed.push(entry.clone());
                }
            }
        }
        replica.commit_checked = replica.commit_checked.max(commit);
    }

    fn check_node(&mut self, id: NodeId) {
        let node = self.node(id);
        if node.role() != Role::Leader {
            return;
        }
        let term = node.term();
        match self.leaders.get(&term) {
            Some(&leader) => assert_eq!(leader, id, "two leaders in term {term}"),
            None => {
                for (position, entry) in self.committed.iter().enumerate() {
                    let index = position as u64 + 1;
                    if index < node.snapshot_meta().index {
                        continue;
                    }
                    assert_eq!(
                        node.term_at(index),
                        Some(entry.term),
                        "new leader {id} of term {term} lacks committed entry {index}"
                    );
                }
                self.leaders.insert(term, id);
            }
        }
    }

    pub fn tick(&mut self, id: NodeId) {
        if let Some(node) = self.replicas.get_mut(&id).and_then(|r| r.node.as_mut()) {
            node.tick();
            self.process_ready(id);
        }
    }

    pub fn tick_all(&mut self) {
        for id in self.ids.clone() {
            self.tick(id);
        }
    }

    /// Proposes a fresh value at `id`; returns its index if `id` leads.
    pub fn propose(&mut self, id: NodeId) -> Option<(u64, Vec<u8>)> {
        let value = self.next_value.to_le_bytes().to_vec();
        let node = self.replicas.get_mut(&id)?.node.as_mut()?;
        let index = node.propose(value.clone()).ok()?;
        self.next_value += 1;
        self.process_ready(id);
        Some((index, value))
    }

    pub fn read(&mut self, id: NodeId) -> bool {
        let context = self.next_context;
        let required = self.committed.len() as u64;
        let Some(node) = self.replicas.get_mut(&id).and_then(|r| r.node.as_mut()) else {
            return false;
        };
        if node.read_index(context).is_err() {
            return false;
        }
        self.next_context += 1;
        self.reads.insert(context, (id, required));
        self.process_ready(id);
        true
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.ids
            .iter()
            .copied()
            .filter(|&id| self.is_up(id) && self.node(id).role() == Role::Leader)
            .collect()
    }

    /// The leader of the highest term, if every running member of its configuration follows it.
    pub fn stable_leader(&self) -> Option<NodeId> {
        let leaders = self.leaders();
        let leader = *leaders.iter().max_by_key(|&&id| self.node(id).term())?;
        let term = self.node(leader).term();
        let membership = self.node(leader).membership();
        let all_follow = self.ids.iter().all(|&id| {
            !self.is_up(id)
                || !membership.contains(id)
                || (self.node(id).term() == term && self.node(id).leader() == Some(leader))
        });
        all_follow.then_some(leader)
    }

    /// Proposes a membership change at `id`; returns its index if `id` leads and took it.
    pub fn conf_change(&mut self, id: NodeId, change: strata_raft::ConfChange) -> Option<u64> {
        let node = self.replicas.get_mut(&id)?.node.as_mut()?;
        let index = node.propose_conf_change(change).ok()?;
        self.process_ready(id);
        Some(index)
    }

    // ----- randomized runs -----

    /// One tick of a chaotic run: faults, ticks (with skew), deliveries, client requests.
    pub fn step_chaos(&mut self) {
        self.now += 1;
        let rng = &mut self.rng;
        let ids = self.ids.clone();
        let roll = rng.unit_f64();
        if roll < 0.003 {
            let id = ids[rng.index(ids.len())];
            self.crash(id);
        } else if roll < 0.013 {
            let id = ids[rng.index(ids.len())];
            if !self.is_up(id) {
                self.restart(id);
            }
        } else if roll < 0.018 {
            let mut side: Vec<NodeId> =
                ids.iter().copied().filter(|_| self.rng.chance(0.5)).collect();
            side.sort();
            self.partition(&side);
        } else if roll < 0.020 {
            if let Some(&leader) = self.leaders().first() {
                self.isolate(leader);
            }
        } else if roll < 0.030 {
            self.heal();
        } else if roll < 0.032 {
            if let Some(&leader) = self.leaders().first() {
                let target = ids[self.rng.index(ids.len())];
                let _ = self.node_mut(leader).transfer_leader(target);
                self.process_ready(leader);
            }
        }
        self.step_common(0.1);
    }

    /// Gives every replica rates of ticking within `1 ± drift` of nominal, fixed for the run.
    pub fn bound_drift(&mut self, drift: f64) {
        for id in self.ids.clone() {
            let rate = 1.0 - drift + 2.0 * drift * self.rng.unit_f64();
            self.tick_rates.insert(id, rate);
        }
    }

    /// Ticks `id` as many times as its drift rate owes it for one nominal tick (0, 1 or 2).
    pub fn tick_drifting(&mut self, id: NodeId) {
        let rate = self.tick_rates[&id];
        let credit = self.tick_credit.entry(id).or_insert(0.0);
        *credit += rate;
        let mut count = 0;
        while *credit >= 1.0 {
            *credit -= 1.0;
            count += 1;
        }
        for _ in 0..count {
            self.tick(id);
        }
    }

    fn step_common(&mut self, skip_tick_rate: f64) {
        for id in self.ids.clone() {
            if !self.tick_rates.is_empty() {
                self.tick_drifting(id);
            } else if !self.rng.chance(skip_tick_rate) {
                self.tick(id);
            }
        }
        self.deliver_due();
        if !self.tick_rates.is_empty() {
            self.check_leases();
        }
        for id in self.ids.clone() {
            if self.rng.chance(0.3) {
                self.propose(id);
            }
            if self.rng.chance(0.03) {
                self.read(id);
            }
        }
    }

    /// With clocks drifting within the bound: while a leader's lease holds, no newer leader
    /// exists (one would need a vote from a replica that acknowledged the lease).
    pub fn check_leases(&self) {
        for &holder in &self.leaders() {
            if !self.node(holder).has_lease() {
                continue;
            }
            let term = self.node(holder).term();
            for &other in &self.leaders() {
                assert!(
                    self.node(other).term() <= term,
                    "{holder} holds a lease in term {term} while {other} leads term {}",
                    self.node(other).term()
                );
            }
        }
    }

    /// Stops every fault, restarts every replica, then requires a leader that everyone follows
    /// and a fresh entry applied everywhere within `ticks_max` ticks. Returns the ticks taken.
    pub fn heal_and_check_liveness(&mut self, ticks_max: u64) -> u64 {
        self.faults =
            Faults { delay_ticks_max: self.faults.delay_ticks_max.min(2), ..Faults::default() };
        self.heal();
        for id in self.ids.clone() {
            if !self.is_up(id) {
                self.restart(id);
            }
        }
        let mut proposed: Option<(u64, Vec<u8>)> = None;
        for tick in 0..ticks_max {
            self.now += 1;
            for id in self.ids.clone() {
                self.tick(id);
            }
            self.deliver_due();
            if proposed.is_none() {
                if let Some(leader) = self.stable_leader() {
                    proposed = self.propose(leader);
                }
            }
            if let Some((index, value)) = &proposed {
                let members = self.stable_leader().map(|leader| self.node(leader).membership());
                let everywhere = members.is_some_and(|members| {
                    self.replicas.iter().filter(|(id, _)| members.contains(**id)).all(
                        |(_, replica)| {
                            replica.applied_index >= *index
                                && self.committed.get(*index as usize - 1).is_some_and(|entry| {
                                    entry.kind == EntryKind::Normal && &entry.data == value
                                })
                        },
                    )
                });
                if everywhere {
                    return tick;
                }
                // Lost to a leader change (overwritten, or truncated and never refilled):
                // propose again.
                let lost = self.stable_leader().is_some_and(|leader| {
                    self.node(leader).entries(*index, *index).first().map(|entry| &entry.data)
                        != Some(value)
                });
                if lost {
                    proposed = None;
                }
            }
        }
        panic!("no progress within {ticks_max} ticks after healing:\n{}", self.describe());
    }

    /// Every replica's state, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for &id in &self.ids {
            let node = self.node(id);
            out += &format!(
                "{id}: {:?} term {} leader {:?} commit {} persisted {} last {} applied {} {:?}\n",
                node.role(),
                node.term(),
                node.leader(),
                node.commit_index(),
                node.persisted_index(),
                node.last_index(),
                node.applied_index(),
                node.membership(),
            );
            for &peer in &self.ids {
                if let Some(progress) = node.progress(peer) {
                    out += &format!("    {peer}: {progress:?}\n");
                }
            }
        }
        out
    }
}
