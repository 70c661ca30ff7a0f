//! A register replicated by strata-raft, driven over the simulator's real fault model: lossy,
//! duplicating, reordering, partitioned network; crashes that lose unsynced writes, torn
//! writes, I/O and sync errors; pauses and clock drift.
//!
//! Each replica keeps its Raft log and hard state in one append-only file of checksummed
//! records (`len u32 | crc32c u32 | kind u8 | payload`, kind 1 a hard state, kind 2 an entry that
//! replaces everything from its index on). A `Ready` is written and synced before its
//! `persisted_messages` go out and before its entries are applied. Recovery reads records up to
//! the first invalid one (a torn or lost tail), cuts the file there and writes and syncs the
//! rest again (after a failed sync the page cache may show what the media lacks). Any I/O error
//! latches the replica: it drops its Raft state and reopens from the file.
//!
//! Clients write unique values through the leader (acknowledged once applied) and read through
//! ReadIndex (answered once the replica applied up to the read index). Writes carry the client
//! and a per-client request number so a retried write applies once.
//!
//! Checks: at most one leader per term, every replica applies the same entry at each index (so
//! committed entries never change), the client history is linearizable (strata-jepsen), and
//! after the faults stop a final read completes.
//!
//! Silent corruption (bit rot, misdirected writes, latent sector errors) is not handled yet:
//! replicas are not corruptible in this scenario.

use crate::scenario::register::{
    check_history, check_linearizable, run_client, Event, History, Operation, Outcome,
    RegisterClient,
};
use crate::{FaultConfig, NodeOptions, Sim};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;
use strata_raft::{
    Config, Entry, EntryKind, HardState, Message as RaftMessage, RawNode, Ready, Role,
};
use strata_rt::{Duration, NodeId, Runtime};

const LOG_DIR: &str = "raft";
const LOG_PATH: &str = "raft/log";
/// One Raft tick; elections time out after 10-20 ticks, heartbeats every 2.
const TICK: Duration = Duration::from_millis(10);
const RESEND_INTERVAL: Duration = Duration::from_millis(50);

const RECORD_HARD_STATE: u8 = 1;
const RECORD_ENTRY: u8 = 2;

// ----- durable storage -----

struct Storage {
    file: strata_rt::File,
    end: u64,
}

fn record(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(1 + payload.len());
    body.push(kind);
    body.extend_from_slice(payload);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

/// Replays records; returns the state and the length of the valid prefix.
fn replay(bytes: &[u8]) -> (HardState, Vec<Entry>, u64) {
    let (mut hard_state, mut entries) = (HardState::default(), Vec::<Entry>::new());
    let mut offset = 0usize;
    while bytes.len() - offset >= 8 {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"));
        let len = len as usize;
        if len == 0 || bytes.len() - offset - 8 < len {
            break;
        }
        let body = &bytes[offset + 8..offset + 8 + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        match body[0] {
            RECORD_HARD_STATE => match HardState::decode(&body[1..]) {
                Ok(state) => hard_state = state,
                Err(_) => break,
            },
            RECORD_ENTRY => match Entry::decode(&body[1..]) {
                Ok(entry) if entry.index >= 1 && entry.index <= entries.len() as u64 + 1 => {
                    entries.truncate(entry.index as usize - 1);
                    entries.push(entry);
                }
                _ => break,
            },
            _ => break,
        }
        offset += 8 + len;
    }
    (hard_state, entries, offset as u64)
}

impl Storage {
    async fn open(rt: &Runtime) -> io::Result<(Storage, HardState, Vec<Entry>)> {
        let disk = rt.disk();
        disk.create_dir_all(LOG_DIR).await?;
        let file = match disk.open(LOG_PATH).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => disk.create(LOG_PATH).await?,
            Err(error) => return Err(error),
        };
        // Also when the name was found: an earlier attempt may have created it and failed
        // before syncing the directory, leaving a name a crash would take away (seed 99).
        disk.sync_dir(LOG_DIR).await?;
        let len = file.len().await?;
        let bytes = file.read_exact_at(len as usize, 0).await?;
        let (hard_state, entries, end) = replay(&bytes);
        // Cut a torn or lost tail, and make what was read durable: it may be pages a failed
        // sync never wrote.
        file.truncate(end).await?;
        if end > 0 {
            file.write_at(bytes[..end as usize].to_vec(), 0).await.0?;
        }
        file.sync().await?;
        // The entries-then-hard-state order keeps the commit index within the log; a commit
        // beyond it would mean the file lost a synced record.
        if hard_state.commit > entries.len() as u64 {
            return Err(io::Error::other("stored commit index beyond the stored log"));
        }
        Ok((Storage { file, end }, hard_state, entries))
    }

    async fn persist(&mut self, ready: &Ready) -> io::Result<()> {
        let mut buffer = Vec::new();
        for entry in &ready.entries {
            let mut payload = Vec::new();
            entry.encode(&mut payload);
            record(RECORD_ENTRY, &payload, &mut buffer);
        }
        if let Some(hard_state) = ready.hard_state {
            let mut payload = Vec::new();
            hard_state.encode(&mut payload);
            record(RECORD_HARD_STATE, &payload, &mut buffer);
        }
        if buffer.is_empty() {
            return Ok(());
        }
        let len = buffer.len() as u64;
        self.file.write_at(buffer, self.end).await.0?;
        self.file.sync().await?;
        self.end += len;
        Ok(())
    }
}

// ----- messages between nodes -----

const TAG_RAFT: u8 = 1;
const TAG_REQUEST: u8 = 2;
const TAG_REPLY: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Write { request: u64, value: u64 },
    Read { request: u64 },
}

impl Request {
    fn id(self) -> u64 {
        match self {
            Request::Write { request, .. } | Request::Read { request } => request,
        }
    }

    fn encode(self) -> Vec<u8> {
        let (kind, request, value) = match self {
            Request::Write { request, value } => (1u8, request, value),
            Request::Read { request } => (2, request, 0),
        };
        let mut bytes = vec![TAG_REQUEST, kind];
        bytes.extend_from_slice(&request.to_le_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Request> {
        if bytes.len() != 18 || bytes[0] != TAG_REQUEST {
            return None;
        }
        let request = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
        let value = u64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes"));
        match bytes[1] {
            1 => Some(Request::Write { request, value }),
            2 => Some(Request::Read { request }),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Written { request: u64 },
    Value { request: u64, value: u64 },
    NotLeader { request: u64, leader: Option<NodeId> },
}

impl Reply {
    fn encode(self) -> Vec<u8> {
        let (kind, request, value, leader) = match self {
            Reply::Written { request } => (1u8, request, 0, None),
            Reply::Value { request, value } => (2, request, value, None),
            Reply::NotLeader { request, leader } => (3, request, 0, leader),
        };
        let mut bytes = vec![TAG_REPLY, kind];
        bytes.extend_from_slice(&request.to_le_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
        bytes.push(u8::from(leader.is_some()));
        bytes.extend_from_slice(&leader.map_or(0, |leader| leader.0).to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Reply> {
        if bytes.len() != 23 || bytes[0] != TAG_REPLY {
            return None;
        }
        let request = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
        let value = u64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes"));
        let leader = u32::from_le_bytes(bytes[19..23].try_into().expect("4 bytes"));
        let leader = (bytes[18] == 1).then_some(NodeId(leader));
        match bytes[1] {
            1 => Some(Reply::Written { request }),
            2 => Some(Reply::Value { request, value }),
            3 => Some(Reply::NotLeader { request, leader }),
            _ => None,
        }
    }
}

/// A write as a log entry: `client u32 | request u64 | value u64`.
fn encode_write(client: NodeId, request: u64, value: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(20);
    data.extend_from_slice(&client.0.to_le_bytes());
    data.extend_from_slice(&request.to_le_bytes());
    data.extend_from_slice(&value.to_le_bytes());
    data
}

fn decode_write(data: &[u8]) -> Option<(NodeId, u64, u64)> {
    if data.len() != 20 {
        return None;
    }
    let client = NodeId(u32::from_le_bytes(data[0..4].try_into().expect("4 bytes")));
    let request = u64::from_le_bytes(data[4..12].try_into().expect("8 bytes"));
    let value = u64::from_le_bytes(data[12..20].try_into().expect("8 bytes"));
    Some((client, request, value))
}

// ----- cluster-wide checks -----

/// What every replica reports, checked as it happens.
#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<u64, NodeId>,
    /// The applied log: at each index the one entry every replica must apply.
    applied: Vec<(u64, Vec<u8>)>,
    pub violations: Vec<String>,
    pub entries_applied: u64,
}

impl Checker {
    fn leader(&mut self, node: NodeId, term: u64) {
        let leader = *self.leaders.entry(term).or_insert(node);
        if leader != node {
            self.violations.push(format!("two leaders in term {term}: {leader} and {node}"));
        }
    }

    fn apply(&mut self, node: NodeId, entry: &Entry) {
        self.entries_applied += 1;
        let position = entry.index as usize - 1;
        match self.applied.get(position) {
            Some((term, data)) => {
                if *term != entry.term || *data != entry.data {
                    self.violations.push(format!(
                        "{node} applied a different entry at {}: term {} vs {term}",
                        entry.index, entry.term
                    ));
                }
            }
            None if position == self.applied.len() => {
                self.applied.push((entry.term, entry.data.clone()));
            }
            None => self.violations.push(format!("{node} applied {} out of order", entry.index)),
        }
    }
}

// ----- replicas -----

/// The replicated register with per-client deduplication.
#[derive(Default)]
struct Machine {
    value: u64,
    last_request: BTreeMap<NodeId, u64>,
}

pub async fn replica(
    rt: Runtime,
    replicas: Vec<NodeId>,
    checker: Rc<RefCell<Checker>>,
    bug: Option<Bug>,
) {
    loop {
        if let Err(_latched) = serve(&rt, &replicas, &checker, bug).await {
            rt.sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn serve(
    rt: &Runtime,
    replicas: &[NodeId],
    checker: &RefCell<Checker>,
    bug: Option<Bug>,
) -> io::Result<()> {
    let (mut storage, hard_state, entries) = Storage::open(rt).await?;
    let id = rt.node_id();
    let config = Config::new(id, replicas.to_vec(), rt.rng().next_u64());
    let mut node = RawNode::new(config, hard_state, entries, 0).map_err(io::Error::other)?;
    let mut machine = Machine::default();
    // Index -> (client, request, term) of writes this replica proposed.
    let mut writes_pending: BTreeMap<u64, (NodeId, u64, u64)> = BTreeMap::new();
    // ReadIndex context -> (client, request); then (read index, client, request).
    let mut reads_pending: BTreeMap<u64, (NodeId, u64)> = BTreeMap::new();
    let mut reads_confirmed: Vec<(u64, NodeId, u64)> = Vec::new();
    let mut next_context = 0u64;
    let net = rt.net();
    let mut next_tick = rt.now() + TICK;
    loop {
        if rt.now() >= next_tick {
            node.tick();
            next_tick = rt.now() + TICK;
        } else if let Ok((from, bytes)) =
            rt.timeout(next_tick.saturating_duration_since(rt.now()), net.receive()).await
        {
            match bytes.first() {
                Some(&TAG_RAFT) => {
                    if let Ok(message) = RaftMessage::decode(&bytes[1..]) {
                        if message.from == from {
                            let _ = node.step(message);
                        }
                    }
                }
                Some(&TAG_REQUEST) => {
                    let Some(request) = Request::decode(&bytes) else { continue };
                    let refused = match request {
                        Request::Write { request, value } => {
                            match node.propose(encode_write(from, request, value)) {
                                Ok(index) => {
                                    writes_pending.insert(index, (from, request, node.term()));
                                    false
                                }
                                Err(_) => true,
                            }
                        }
                        Request::Read { request }
                            if bug == Some(Bug::ReadWithoutReadIndex)
                                && node.role() == Role::Leader =>
                        {
                            net.send(from, Reply::Value { request, value: machine.value }.encode());
                            false
                        }
                        Request::Read { request } => {
                            next_context += 1;
                            match node.read_index(next_context) {
                                Ok(()) => {
                                    reads_pending.insert(next_context, (from, request));
                                    false
                                }
                                Err(_) => true,
                            }
                        }
                    };
                    if refused {
                        let reply =
                            Reply::NotLeader { request: request.id(), leader: node.leader() };
                        net.send(from, reply.encode());
                    }
                }
                _ => {}
            }
        }
        while node.has_ready() {
            let ready = node.ready();
            for message in &ready.messages {
                send_raft(&net, message);
            }
            if bug == Some(Bug::AcknowledgeBeforeDurable) {
                for message in &ready.persisted_messages {
                    send_raft(&net, message);
                }
            }
            storage.persist(&ready).await?;
            if bug != Some(Bug::AcknowledgeBeforeDurable) {
                for message in &ready.persisted_messages {
                    send_raft(&net, message);
                }
            }
            for entry in &ready.committed_entries {
                checker.borrow_mut().apply(id, entry);
                if entry.kind == EntryKind::Normal {
                    if let Some((client, request, value)) = decode_write(&entry.data) {
                        let last = machine.last_request.entry(client).or_insert(0);
                        if request > *last {
                            *last = request;
                            machine.value = value;
                        }
                    }
                }
                if let Some((client, request, term)) = writes_pending.remove(&entry.index) {
                    if term == entry.term {
                        net.send(client, Reply::Written { request }.encode());
                    }
                }
            }
            for read in &ready.read_states {
                if let Some((client, request)) = reads_pending.remove(&read.context) {
                    reads_confirmed.push((read.index, client, request));
                }
            }
            node.advance();
            let applied = node.applied_index();
            reads_confirmed.retain(|&(index, client, request)| {
                if index > applied {
                    return true;
                }
                net.send(client, Reply::Value { request, value: machine.value }.encode());
                false
            });
        }
        if node.role() == Role::Leader {
            checker.borrow_mut().leader(id, node.term());
        }
    }
}

fn send_raft(net: &strata_rt::Net, message: &RaftMessage) {
    let mut bytes = vec![TAG_RAFT];
    message.encode(&mut bytes);
    net.send(message.to, bytes);
}

// ----- clients -----

struct Client {
    rt: Runtime,
    replicas: Vec<NodeId>,
    guess: usize,
    next_request: u64,
}

impl Client {
    async fn call(&mut self, request: Request) -> Reply {
        loop {
            let current = self.guess % self.replicas.len();
            self.rt.net().send(self.replicas[current], request.encode());
            let deadline = self.rt.now() + RESEND_INTERVAL;
            let net = self.rt.net();
            let mut redirect = None;
            while let Ok((_, bytes)) = self
                .rt
                .timeout(deadline.saturating_duration_since(self.rt.now()), net.receive())
                .await
            {
                let Some(reply) = Reply::decode(&bytes) else { continue };
                match reply {
                    Reply::Written { request: answered }
                    | Reply::Value { request: answered, .. }
                        if answered == request.id() =>
                    {
                        return reply;
                    }
                    Reply::NotLeader { request: answered, leader } if answered == request.id() => {
                        redirect = leader
                            .and_then(|leader| self.replicas.iter().position(|&id| id == leader))
                            .filter(|&position| position != current);
                        break;
                    }
                    _ => {}
                }
            }
            match redirect {
                Some(position) => self.guess = position,
                None => {
                    // No answer, or no leader known: give an election time before the next try.
                    self.rt.sleep(deadline.saturating_duration_since(self.rt.now())).await;
                    self.guess += 1;
                }
            }
        }
    }

    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        (u64::from(self.rt.node_id().0) << 40) | self.next_request
    }

    async fn write(&mut self, value: u64) {
        let request = self.request_id();
        self.call(Request::Write { request, value }).await;
    }

    async fn read(&mut self) -> u64 {
        let request = self.request_id();
        match self.call(Request::Read { request }).await {
            Reply::Value { value, .. } => value,
            reply => unreachable!("a read is answered with a value, not {reply:?}"),
        }
    }
}

impl RegisterClient for Client {
    async fn read(&mut self) -> u64 {
        Client::read(self).await
    }
    async fn write(&mut self, value: u64) {
        Client::write(self, value).await
    }
}

async fn client(rt: Runtime, replicas: Vec<NodeId>, history: History, stop: Rc<Cell<bool>>) {
    let guess = rt.rng().index(replicas.len());
    let client = Client { rt: rt.clone(), replicas, guess, next_request: 0 };
    run_client(rt, client, history, stop).await
}

// ----- the run -----

/// A deliberate bug in the replica driver, switched on to prove the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Send votes and acknowledgements before the `Ready` is durable.
    AcknowledgeBeforeDurable,
    /// Answer reads from the leader's state machine without a ReadIndex round.
    ReadWithoutReadIndex,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub replicas: u32,
    pub clients: u32,
    pub fault_duration: Duration,
    pub faults: bool,
    pub bug: Option<Bug>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            replicas: 5,
            clients: 3,
            fault_duration: Duration::from_secs(10),
            faults: true,
            bug: None,
        }
    }
}

#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub config: FaultConfig,
    pub history: Vec<Event>,
    pub entries_applied: u64,
    pub trace_hash: u64,
    pub verdict: Result<(), String>,
}

/// Runs the scenario for `seed`: faults for a while, then healing, then a final read that must
/// complete; then the Raft invariants and the client history are judged.
pub fn run(seed: u64, options: &Options) -> Report {
    let mut draw = strata_rt::Rng::with_seed(seed ^ 0x000a_110f_7a57);
    let config = if options.faults { FaultConfig::swarm(&mut draw) } else { FaultConfig::none() };
    let mut sim = Sim::new(seed, config.clone());
    let replicas: Vec<NodeId> = (0..options.replicas).map(NodeId).collect();
    let checker: Rc<RefCell<Checker>> = Rc::default();
    for _ in 0..options.replicas {
        let (replicas, checker, bug) = (replicas.clone(), checker.clone(), options.bug);
        sim.add_node(NodeOptions::SERVER, move |rt| {
            Box::pin(replica(rt, replicas.clone(), checker.clone(), bug))
        });
    }
    let history: History = Rc::default();
    let stop = Rc::new(Cell::new(false));
    for _ in 0..options.clients {
        let (replicas, history, stop) = (replicas.clone(), history.clone(), stop.clone());
        sim.add_node(NodeOptions::CLIENT, move |rt| {
            Box::pin(client(rt, replicas.clone(), history.clone(), stop.clone()))
        });
    }
    sim.start_faults(options.fault_duration);
    sim.run_for(options.fault_duration + Duration::from_secs(1));
    stop.set(true);
    let verdict = finish(&mut sim, &history, &checker, options);
    let history = history.borrow().clone();
    let entries_applied = checker.borrow().entries_applied;
    Report { seed, config, history, entries_applied, trace_hash: sim.trace_hash(), verdict }
}

fn finish(
    sim: &mut Sim,
    history: &History,
    checker: &RefCell<Checker>,
    options: &Options,
) -> Result<(), String> {
    let open_operations = || {
        let history = history.borrow();
        let invoked = history.iter().filter(|event| matches!(event, Event::Invoke { .. })).count();
        invoked - (history.len() - invoked)
    };
    if !sim.run_until(Duration::from_secs(5), || open_operations() == 0) {
        return Err(format!("liveness: {} operations open 5 s after healing", open_operations()));
    }
    let final_read: Rc<RefCell<Option<u64>>> = Rc::default();
    let rt = sim.runtime(NodeId(options.replicas));
    let replicas: Vec<NodeId> = (0..options.replicas).map(NodeId).collect();
    let slot = final_read.clone();
    let client_rt = rt.clone();
    let handle = rt.spawn(async move {
        let mut client = Client { rt: client_rt, replicas, guess: 0, next_request: 1 << 30 };
        *slot.borrow_mut() = Some(client.read().await);
    });
    sim.run_until(Duration::from_secs(10), || handle.is_finished());
    if let Some(violation) = checker.borrow().violations.first() {
        return Err(format!("raft: {violation}"));
    }
    let value = final_read
        .borrow()
        .ok_or("liveness: the final read did not complete within 10 s after healing")?;
    check_history(&history.borrow(), value)?;
    let mut complete = history.borrow().clone();
    complete.push(Event::Invoke { process: u64::MAX, operation: Operation::Read });
    complete.push(Event::Complete { process: u64::MAX, outcome: Outcome::Ok(Some(value)) });
    check_linearizable(&complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_replay_and_stop_at_a_torn_tail() {
        let entry = |index, term| Entry { term, index, kind: EntryKind::Normal, data: vec![9; 3] };
        let mut bytes = Vec::new();
        for entry in [entry(1, 1), entry(2, 1), entry(2, 2)] {
            let mut payload = Vec::new();
            entry.encode(&mut payload);
            record(RECORD_ENTRY, &payload, &mut bytes);
        }
        let state = HardState { term: 2, vote: Some(NodeId(1)), commit: 1 };
        let mut payload = Vec::new();
        state.encode(&mut payload);
        record(RECORD_HARD_STATE, &payload, &mut bytes);
        let (hard_state, entries, end) = replay(&bytes);
        assert_eq!(hard_state, state);
        assert_eq!(entries, vec![entry(1, 1), entry(2, 2)]);
        assert_eq!(end, bytes.len() as u64);
        for cut in 0..bytes.len() {
            let (_, _, end) = replay(&bytes[..cut]);
            assert!(end <= cut as u64);
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let (hard_state, _, _) = replay(&flipped);
        assert_eq!(hard_state, HardState::default(), "a bad record is not replayed");
    }

    #[test]
    fn client_messages_round_trip() {
        for request in [Request::Write { request: 3, value: 9 }, Request::Read { request: 4 }] {
            assert_eq!(Request::decode(&request.encode()), Some(request));
        }
        for reply in [
            Reply::Written { request: 1 },
            Reply::Value { request: 2, value: 7 },
            Reply::NotLeader { request: 3, leader: Some(NodeId(2)) },
            Reply::NotLeader { request: 4, leader: None },
        ] {
            assert_eq!(Reply::decode(&reply.encode()), Some(reply));
        }
    }

    fn run_seeds(replicas: u32, seeds: std::ops::Range<u64>) {
        let options = Options {
            replicas,
            clients: 3,
            fault_duration: Duration::from_secs(5),
            faults: true,
            bug: None,
        };
        let (mut applied, mut completed) = (0, 0);
        for seed in seeds {
            let report = run(seed, &options);
            if let Err(error) = &report.verdict {
                panic!("raft scenario seed {seed} ({replicas} replicas) failed: {error}");
            }
            applied += report.entries_applied;
            completed += report
                .history
                .iter()
                .filter(|event| matches!(event, Event::Complete { outcome: Outcome::Ok(_), .. }))
                .count();
        }
        eprintln!(
            "{replicas} replicas: {applied} entries applied, {completed} operations completed"
        );
        assert!(applied > 0, "nothing was ever applied");
        assert!(completed > 0, "no operation ever completed");
    }

    #[test]
    fn three_replicas_under_faults() {
        run_seeds(3, 0..8);
    }

    #[test]
    fn five_replicas_under_faults() {
        run_seeds(5, 100..108);
    }

    #[test]
    fn without_faults_everything_commits() {
        let options =
            Options { faults: false, fault_duration: Duration::from_secs(2), ..Options::default() };
        let report = run(1, &options);
        assert_eq!(report.verdict, Ok(()));
        assert!(report.entries_applied > 100, "applied only {}", report.entries_applied);
    }

    /// Regression: seed 99 lost a replica's whole log. Its first start created the log file,
    /// failed its sync, and retried; the retry found the name and skipped syncing the directory,
    /// so a later crash removed the file and the replica came back empty, after it had voted and
    /// acknowledged entries (a leader then sent it a commit index beyond its log: the core's
    /// assertion fired). Opening now syncs the directory whether or not it created the file.
    #[test]
    fn seed_99_keeps_the_log_file_name_durable() {
        let report = run(99, &Options::default());
        assert_eq!(report.verdict, Ok(()));
    }

    /// Finds a seed among the first `seeds` where `bug` is caught, by a failed verdict or by an
    /// invariant assertion of the Raft core.
    fn caught(bug: Bug, seeds: u64) -> Option<u64> {
        let options = Options {
            bug: Some(bug),
            fault_duration: Duration::from_secs(5),
            ..Options::default()
        };
        (0..seeds).find(|&seed| {
            let run = std::panic::AssertUnwindSafe(|| run(seed, &options));
            std::panic::catch_unwind(run).map_or(true, |report| report.verdict.is_err())
        })
    }

    #[test]
    fn planted_bugs_are_caught() {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let acknowledged = caught(Bug::AcknowledgeBeforeDurable, 200);
        let read = caught(Bug::ReadWithoutReadIndex, 200);
        std::panic::set_hook(previous);
        assert!(acknowledged.is_some(), "acknowledging before durability went unnoticed");
        assert!(read.is_some(), "reads without ReadIndex went unnoticed");
    }

    /// The long sweep: `cargo nextest run -p strata-sim --run-ignored only raft_many_seeds`
    /// (`STRATA_RAFT_SIM_SEEDS`, default 500).
    #[test]
    #[ignore = "long sweep"]
    fn raft_many_seeds() {
        let count: u64 = std::env::var("STRATA_RAFT_SIM_SEEDS")
            .map_or(500, |value| value.parse().expect("a count"));
        for seed in 0..count {
            let replicas = if seed.is_multiple_of(2) { 3 } else { 5 };
            let options = Options { replicas, ..Options::default() };
            let report = match std::panic::catch_unwind(|| run(seed, &options)) {
                Ok(report) => report,
                Err(panic) => {
                    eprintln!("raft scenario seed {seed} ({replicas} replicas) panicked");
                    std::panic::resume_unwind(panic);
                }
            };
            assert!(
                report.verdict.is_ok(),
                "seed {seed} ({replicas} replicas): {:?}",
                report.verdict
            );
        }
    }
}
