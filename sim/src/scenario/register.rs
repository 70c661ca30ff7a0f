//! A replicated register on majority quorums (Attiya, Bar-Noy and Dolev's algorithm), the
//! simulator's standing regression scenario: small, but it needs the disk (durable state before
//! every acknowledgement), the network (quorums over lossy messages) and crash recovery to be
//! right, so a simulator that stops injecting faults faithfully or stops being deterministic
//! shows up here.
//!
//! Replicas keep a timestamped value `(counter, writer) -> value` in two checksummed 512-byte
//! slots of one file, written alternately, synced, and read back (a misdirected write shows as a
//! mismatch). A replica acknowledges a store only once its state is durable. On (re)start it
//! recovers the newest valid slot and persists it again (a failed fsync may have left pages that
//! the cache shows but the media lacks); if it found any corruption it first repairs from a
//! majority of the *other* replicas, since the lost slot may have held an acknowledged write.
//!
//! Clients write unique values and read; each operation queries a majority for the newest
//! timestamp and then stores (a new timestamp for a write, the newest value for a read: the
//! write-back that makes reads linearizable) to a majority.

use crate::{FaultConfig, NodeOptions, Sim};
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use strata_rt::{Duration, NodeId, Runtime};

const STATE_PATH: &str = "register/state";
const SLOT_SIZE: usize = 512;
const RECORD_SIZE: usize = 36;
const MESSAGE_SIZE: usize = 29;
/// How often a quorum phase resends to the replicas that have not answered.
const RESEND_INTERVAL: Duration = Duration::from_millis(50);
/// A client gives up on an operation after this long; its outcome is then unknown.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);

/// Orders writes: a higher counter wins, the writer id breaks ties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    pub counter: u64,
    pub writer: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct State {
    timestamp: Timestamp,
    value: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Message {
    Query { request: u64 },
    Reply { request: u64, state: State },
    Store { request: u64, state: State },
    Ack { request: u64 },
}

impl Message {
    fn encode(self) -> Vec<u8> {
        let (kind, request, state) = match self {
            Message::Query { request } => (1u8, request, State::default()),
            Message::Reply { request, state } => (2, request, state),
            Message::Store { request, state } => (3, request, state),
            Message::Ack { request } => (4, request, State::default()),
        };
        let mut bytes = Vec::with_capacity(MESSAGE_SIZE);
        bytes.push(kind);
        bytes.extend_from_slice(&request.to_le_bytes());
        bytes.extend_from_slice(&state.timestamp.counter.to_le_bytes());
        bytes.extend_from_slice(&state.timestamp.writer.to_le_bytes());
        bytes.extend_from_slice(&state.value.to_le_bytes());
        bytes
    }

    /// `None` for anything that is not a well-formed message: peers' bytes are input, not trust.
    fn decode(bytes: &[u8]) -> Option<Message> {
        if bytes.len() != MESSAGE_SIZE {
            return None;
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let request = word(1);
        let writer = u32::from_le_bytes(bytes[17..21].try_into().expect("4 bytes"));
        let state = State { timestamp: Timestamp { counter: word(9), writer }, value: word(21) };
        match bytes[0] {
            1 => Some(Message::Query { request }),
            2 => Some(Message::Reply { request, state }),
            3 => Some(Message::Store { request, state }),
            4 => Some(Message::Ack { request }),
            _ => None,
        }
    }
}

/// A slot: `[len u32 = 28][crc32c u32 of the payload][sequence u64][counter u64][writer u32]
/// [value u64]`, zero-padded to 512 bytes. An all-zero slot is empty.
fn encode_slot(sequence: u64, state: State) -> Vec<u8> {
    let mut payload = Vec::with_capacity(RECORD_SIZE - 8);
    payload.extend_from_slice(&sequence.to_le_bytes());
    payload.extend_from_slice(&state.timestamp.counter.to_le_bytes());
    payload.extend_from_slice(&state.timestamp.writer.to_le_bytes());
    payload.extend_from_slice(&state.value.to_le_bytes());
    let mut slot = Vec::with_capacity(SLOT_SIZE);
    slot.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    slot.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    slot.extend_from_slice(&payload);
    slot.resize(SLOT_SIZE, 0);
    slot
}

enum Slot {
    Empty,
    Valid { sequence: u64, state: State },
    Corrupt,
}

fn decode_slot(slot: &[u8]) -> Slot {
    if slot.iter().all(|&byte| byte == 0) {
        return Slot::Empty;
    }
    let len = u32::from_le_bytes(slot[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(slot[4..8].try_into().expect("4 bytes"));
    if len != RECORD_SIZE - 8 || crc32c::crc32c(&slot[8..8 + len]) != crc {
        return Slot::Corrupt;
    }
    let word = |at: usize| u64::from_le_bytes(slot[at..at + 8].try_into().expect("8 bytes"));
    let writer = u32::from_le_bytes(slot[24..28].try_into().expect("4 bytes"));
    let state = State { timestamp: Timestamp { counter: word(16), writer }, value: word(28) };
    Slot::Valid { sequence: word(8), state }
}

/// A replica's durable state file.
struct Store {
    file: strata_rt::File,
    sequence: u64,
}

impl Store {
    /// Opens (or creates) the state file; returns the newest valid state and whether anything
    /// was found corrupt or unreadable.
    async fn open(rt: &Runtime) -> io::Result<(Store, State, bool)> {
        let disk = rt.disk();
        disk.create_dir_all("register").await?;
        let file = match disk.open(STATE_PATH).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let file = disk.create(STATE_PATH).await?;
                file.write_at(vec![0; 2 * SLOT_SIZE], 0).await.0?;
                file.sync().await?;
                disk.sync_dir("register").await?;
                file
            }
            Err(error) => return Err(error),
        };
        let mut suspect = false;
        let mut newest: Option<(u64, State)> = None;
        match file.read_exact_at(2 * SLOT_SIZE, 0).await {
            Ok(bytes) => {
                for slot in bytes.chunks(SLOT_SIZE) {
                    match decode_slot(slot) {
                        Slot::Empty => {}
                        Slot::Corrupt => suspect = true,
                        Slot::Valid { sequence, state } => {
                            if newest.is_none_or(|(best, _)| sequence > best) {
                                newest = Some((sequence, state));
                            }
                        }
                    }
                }
            }
            Err(_) => suspect = true,
        }
        let (sequence, state) = newest.unwrap_or_default();
        Ok((Store { file, sequence }, state, suspect))
    }

    /// Writes `state` to the next slot, syncs, and reads it back. Any failure latches the replica
    /// (the caller reopens), because a failed sync may have silently dropped the write.
    async fn persist(&mut self, state: State) -> io::Result<()> {
        let sequence = self.sequence + 1;
        let slot = encode_slot(sequence, state);
        let offset = (sequence % 2) * SLOT_SIZE as u64;
        self.file.write_at(slot.clone(), offset).await.0?;
        self.file.sync().await?;
        let read_back = self.file.read_exact_at(SLOT_SIZE, offset).await?;
        if read_back != slot {
            return Err(io::Error::other(format!(
                "slot at {offset} did not read back: misdirected"
            )));
        }
        self.sequence = sequence;
        Ok(())
    }
}

fn majority(replicas: usize) -> usize {
    replicas / 2 + 1
}

/// A deliberate bug, switched on to prove that the simulator and the checker catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Acknowledge a store before its state is durable.
    AckBeforeDurable,
    /// After reopening, trust what the page cache shows instead of persisting it again (a failed
    /// fsync may have dropped those pages from the media: the fsyncgate lesson).
    TrustCacheAfterFailedSync,
    /// After finding corruption, serve the surviving state without repairing from peers.
    SkipRepair,
}

/// A replica: serves until an I/O error latches it, then reopens its state and serves again.
pub async fn replica(rt: Runtime, replicas: Vec<NodeId>, bug: Option<Bug>) {
    loop {
        if let Err(_latched) = serve(&rt, &replicas, bug).await {
            rt.sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn serve(rt: &Runtime, replicas: &[NodeId], bug: Option<Bug>) -> io::Result<()> {
    let (mut store, mut state, suspect) = Store::open(rt).await?;
    if suspect && bug != Some(Bug::SkipRepair) {
        let others: Vec<NodeId> =
            replicas.iter().copied().filter(|&id| id != rt.node_id()).collect();
        let newest = repair(rt, &others, majority(replicas.len())).await;
        if newest.timestamp > state.timestamp {
            state = newest;
        }
        store.persist(state).await?; // Both slots: a bad sector in either is rewritten.
    }
    if bug != Some(Bug::TrustCacheAfterFailedSync) {
        store.persist(state).await?;
    }
    let net = rt.net();
    loop {
        let (from, bytes) = net.receive().await;
        match Message::decode(&bytes) {
            Some(Message::Query { request }) => {
                net.send(from, Message::Reply { request, state }.encode())
            }
            Some(Message::Store { request, state: offered }) => {
                if bug == Some(Bug::AckBeforeDurable) {
                    net.send(from, Message::Ack { request }.encode());
                }
                if offered.timestamp > state.timestamp {
                    store.persist(offered).await?;
                    state = offered;
                }
                net.send(from, Message::Ack { request }.encode());
            }
            Some(Message::Reply { .. } | Message::Ack { .. }) | None => {}
        }
    }
}

/// Learns the newest state from `needed` of `others`, answering nobody meanwhile.
async fn repair(rt: &Runtime, others: &[NodeId], needed: usize) -> State {
    let request = rt.rng().next_u64();
    let mut phase = Phase::new(others, needed);
    loop {
        phase.send_missing(rt, Message::Query { request });
        let deadline = rt.now() + RESEND_INTERVAL;
        while let Ok((from, bytes)) = rt.timeout(deadline - rt.now(), rt.net().receive()).await {
            if let Some(Message::Reply { request: answered, state }) = Message::decode(&bytes) {
                if answered == request && phase.record(from, state) {
                    return phase.newest;
                }
            }
        }
    }
}

/// One quorum round: who answered, and the newest state among the answers.
struct Phase {
    pending: Vec<NodeId>,
    answered: usize,
    needed: usize,
    newest: State,
}

impl Phase {
    fn new(targets: &[NodeId], needed: usize) -> Phase {
        Phase { pending: targets.to_vec(), answered: 0, needed, newest: State::default() }
    }

    fn send_missing(&self, rt: &Runtime, message: Message) {
        let bytes = message.encode();
        for &target in &self.pending {
            rt.net().send(target, bytes.clone());
        }
    }

    /// Counts an answer from `from`; true once enough have answered.
    fn record(&mut self, from: NodeId, state: State) -> bool {
        if let Some(index) = self.pending.iter().position(|&id| id == from) {
            self.pending.swap_remove(index);
            self.answered += 1;
            if state.timestamp > self.newest.timestamp {
                self.newest = state;
            }
        }
        self.answered >= self.needed
    }
}

/// A client's view of the cluster.
struct Client {
    rt: Runtime,
    replicas: Vec<NodeId>,
    next_request: u64,
}

impl Client {
    async fn round(&mut self, message: impl Fn(u64) -> Message) -> State {
        self.next_request += 1;
        let request = (u64::from(self.rt.node_id().0) << 40) | self.next_request;
        let mut phase = Phase::new(&self.replicas, majority(self.replicas.len()));
        loop {
            phase.send_missing(&self.rt, message(request));
            let deadline = self.rt.now() + RESEND_INTERVAL;
            let net = self.rt.net();
            while let Ok((from, bytes)) =
                self.rt.timeout(deadline - self.rt.now(), net.receive()).await
            {
                let answer = match Message::decode(&bytes) {
                    Some(Message::Reply { request: answered, state }) => Some((answered, state)),
                    Some(Message::Ack { request: answered }) => Some((answered, State::default())),
                    _ => None,
                };
                if let Some((answered, state)) = answer {
                    if answered == request && phase.record(from, state) {
                        return phase.newest;
                    }
                }
            }
        }
    }

    async fn write(&mut self, value: u64) {
        let newest = self.round(|request| Message::Query { request }).await;
        let timestamp =
            Timestamp { counter: newest.timestamp.counter + 1, writer: self.rt.node_id().0 };
        let state = State { timestamp, value };
        self.round(|request| Message::Store { request, state }).await;
    }

    async fn read(&mut self) -> u64 {
        let newest = self.round(|request| Message::Query { request }).await;
        self.round(|request| Message::Store { request, state: newest }).await;
        newest.value
    }
}

/// What a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write(u64),
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A read's value, or a write's acknowledgement (`None`).
    Ok(Option<u64>),
    /// Timed out: it may or may not have taken effect, at any time after its invocation.
    Unknown,
}

/// One entry of a client history, in the simulation's real-time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Invoke { process: u64, operation: Operation },
    Complete { process: u64, outcome: Outcome },
}

/// The history all clients append to; the simulation's event order is real-time order.
pub type History = Rc<RefCell<Vec<Event>>>;

/// A client of some replicated register: what the shared workload loop drives.
pub(crate) trait RegisterClient {
    async fn read(&mut self) -> u64;
    async fn write(&mut self, value: u64);
}

impl RegisterClient for Client {
    async fn read(&mut self) -> u64 {
        Client::read(self).await
    }
    async fn write(&mut self, value: u64) {
        Client::write(self, value).await
    }
}

/// The workload of one client node until `stop`: random reads and writes of unique values, each
/// recorded in `history` with its outcome (unknown after `OPERATION_TIMEOUT`).
pub(crate) async fn run_client(
    rt: Runtime,
    mut client: impl RegisterClient,
    history: History,
    stop: Rc<Cell<bool>>,
) {
    let mut rng = rt.rng();
    let mut generation = 0u64;
    let mut sequence = 0u64;
    while !stop.get() {
        // A process id per generation: after an unknown outcome the process never returns
        // (Jepsen's convention), so the client continues as a new one.
        let process = (u64::from(rt.node_id().0) << 32) | generation;
        let operation = if rng.chance(0.5) {
            sequence += 1;
            Operation::Write((u64::from(rt.node_id().0) << 32) | sequence)
        } else {
            Operation::Read
        };
        history.borrow_mut().push(Event::Invoke { process, operation });
        let performed = async {
            match operation {
                Operation::Read => Some(client.read().await),
                Operation::Write(value) => {
                    client.write(value).await;
                    None
                }
            }
        };
        let outcome = match rt.timeout(OPERATION_TIMEOUT, performed).await {
            Ok(value) => Outcome::Ok(value),
            Err(_) => {
                generation += 1;
                Outcome::Unknown
            }
        };
        history.borrow_mut().push(Event::Complete { process, outcome });
        rt.sleep(Duration::from_millis(rng.range_inclusive(0, 20))).await;
    }
}

async fn client(rt: Runtime, replicas: Vec<NodeId>, history: History, stop: Rc<Cell<bool>>) {
    let client = Client { rt: rt.clone(), replicas, next_request: 0 };
    run_client(rt, client, history, stop).await
}

/// How to run the scenario.
#[derive(Clone, Debug)]
pub struct Options {
    pub replicas: u32,
    pub clients: u32,
    /// How long the nemesis and the probabilistic faults act.
    pub fault_duration: Duration,
    /// Swarm-drawn faults (true), or none at all (false).
    pub faults: bool,
    /// A deliberate bug in the replicas (only to test the tests).
    pub bug: Option<Bug>,
    /// Judge the history with the linearizability checker (off only to time the simulator).
    pub check_linearizability: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            replicas: 5,
            clients: 3,
            fault_duration: Duration::from_secs(10),
            faults: true,
            bug: None,
            check_linearizability: true,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub config: FaultConfig,
    pub history: Vec<Event>,
    pub stats: crate::Stats,
    pub trace_hash: u64,
    pub virtual_time: Duration,
    /// `Err` names the first check that failed.
    pub verdict: Result<(), String>,
}

/// Runs the scenario for `seed`: faults for a while, then healing, then a final read that must
/// complete and must not have lost an acknowledged write.
pub fn run(seed: u64, options: &Options) -> Report {
    let mut draw = strata_rt::Rng::with_seed(seed ^ 0x5eed_f00d);
    let config = if options.faults { FaultConfig::swarm(&mut draw) } else { FaultConfig::none() };
    let mut sim = Sim::new(seed, config.clone());
    let replicas: Vec<NodeId> = (0..options.replicas).map(NodeId).collect();
    // Silent corruption may hit a minority of replicas, chosen by the seed.
    let corruptible_count = draw.below(u64::from((options.replicas - 1) / 2) + 1) as u32;
    for index in 0..options.replicas {
        let node_options = NodeOptions { crashable: true, corruptible: index < corruptible_count };
        let (replicas, bug) = (replicas.clone(), options.bug);
        sim.add_node(node_options, move |rt| Box::pin(replica(rt, replicas.clone(), bug)));
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
    let verdict = finish(&mut sim, &history, options);
    let history = history.borrow().clone();
    Report {
        seed,
        config,
        history,
        stats: sim.stats(),
        trace_hash: sim.trace_hash(),
        virtual_time: sim.now(),
        verdict,
    }
}

/// Liveness, then safety: every client's last operation ends, one more read completes within a
/// bound, and that read returns a value no acknowledged write has overwritten.
fn finish(sim: &mut Sim, history: &History, options: &Options) -> Result<(), String> {
    let open_operations = || {
        let history = history.borrow();
        let invoked = history.iter().filter(|event| matches!(event, Event::Invoke { .. })).count();
        invoked - (history.len() - invoked)
    };
    if !sim.run_until(Duration::from_secs(5), || open_operations() == 0) {
        return Err(format!(
            "liveness: {} operations still open 5 s after healing",
            open_operations()
        ));
    }
    let final_read: Rc<RefCell<Option<u64>>> = Rc::default();
    let reader = NodeId(options.replicas);
    let rt = sim.runtime(reader);
    let replicas: Vec<NodeId> = (0..options.replicas).map(NodeId).collect();
    let slot = final_read.clone();
    let client_rt = rt.clone();
    let handle = rt.spawn(async move {
        let mut client = Client { rt: client_rt, replicas, next_request: 1 << 30 };
        *slot.borrow_mut() = Some(client.read().await);
    });
    let done = sim.run_until(Duration::from_secs(10), || handle.is_finished());
    let value = final_read.borrow().ok_or_else(|| {
        format!("liveness: the final read did not complete within 10 s after healing (done={done})")
    })?;
    check_history(&history.borrow(), value)?;
    let mut complete = history.borrow().clone();
    complete.push(Event::Invoke { process: u64::MAX, operation: Operation::Read });
    complete.push(Event::Complete { process: u64::MAX, outcome: Outcome::Ok(Some(value)) });
    if !options.check_linearizability {
        return Ok(());
    }
    check_linearizable(&complete)
}

/// Search steps the checker may take on one history: deterministic, unlike a time limit, and far
/// above what a linearizable history of this scenario needs.
const CHECKER_STEPS_MAX: u64 = 20_000_000;

/// The register's history in the checker's terms.
pub type RegisterHistory = strata_jepsen::History<
    strata_jepsen::model::RegisterInput,
    strata_jepsen::model::RegisterOutput,
>;

/// Converts a client history for the checker. With `prune`, drops the operations of unknown
/// outcome that cannot change the verdict but make the search blow up (they may be linearized
/// anywhere after their invocation): reads (they change nothing) and writes whose value no read
/// returned (every value is written once, so such a write is indistinguishable from one that
/// never took effect).
pub fn to_checker_history(history: &[Event], prune: bool) -> Result<RegisterHistory, String> {
    use strata_jepsen::model::{RegisterInput, RegisterOutput};
    let observed: std::collections::BTreeSet<u64> = history
        .iter()
        .filter_map(|event| match event {
            Event::Complete { outcome: Outcome::Ok(Some(value)), .. } => Some(*value),
            _ => None,
        })
        .collect();
    // Pair each invocation with its completion (a process runs one operation at a time).
    let mut outcome_of_invocation = vec![None; history.len()];
    let mut open_invocation = std::collections::BTreeMap::new();
    for (position, event) in history.iter().enumerate() {
        match *event {
            Event::Invoke { process, .. } => {
                open_invocation.insert(process, position);
            }
            Event::Complete { process, outcome } => {
                let invoked =
                    open_invocation.remove(&process).ok_or("completion without invocation")?;
                outcome_of_invocation[invoked] = Some(outcome);
            }
        }
    }
    let mut recorded = strata_jepsen::History::new();
    let mut open = std::collections::BTreeMap::new();
    for (position, event) in history.iter().enumerate() {
        match *event {
            Event::Invoke { process, operation } => {
                let unknown =
                    matches!(outcome_of_invocation[position], Some(Outcome::Unknown) | None);
                let droppable = prune
                    && unknown
                    && match operation {
                        Operation::Read => true,
                        Operation::Write(value) => !observed.contains(&value),
                    };
                if droppable {
                    continue;
                }
                let input = match operation {
                    Operation::Read => RegisterInput::Read,
                    Operation::Write(value) => RegisterInput::Write(value),
                };
                open.insert(process, recorded.invoke(process, input));
            }
            Event::Complete { process, outcome } => {
                let Some(id) = open.remove(&process) else { continue }; // Dropped above.
                let outcome = match outcome {
                    // The register starts at 0 meaning "never written": the checker's absent value.
                    Outcome::Ok(Some(value)) => strata_jepsen::Outcome::Ok(RegisterOutput::Value(
                        (value != 0).then_some(value),
                    )),
                    Outcome::Ok(None) => strata_jepsen::Outcome::Ok(RegisterOutput::Done),
                    Outcome::Unknown => strata_jepsen::Outcome::Info,
                };
                recorded.complete(id, outcome);
            }
        }
    }
    Ok(recorded)
}

/// The whole history against a sequential register: the real judge of a run.
pub fn check_linearizable(history: &[Event]) -> Result<(), String> {
    let recorded = to_checker_history(history, true)?;
    let budget = strata_jepsen::Budget {
        steps_max: Some(CHECKER_STEPS_MAX),
        threads: 1,
        ..Default::default()
    };
    let model = strata_jepsen::model::RegisterModel { initial: None };
    match strata_jepsen::check(&recorded, &model, &budget) {
        strata_jepsen::Verdict::Linearizable => Ok(()),
        strata_jepsen::Verdict::NotLinearizable(counterexample) => {
            Err(format!("not linearizable:\n{counterexample}"))
        }
        strata_jepsen::Verdict::Unknown(reason) => {
            Err(format!("linearizability unknown: {reason}"))
        }
    }
}

/// The checks that need no search: every read returns a value some write wrote (or the initial
/// 0), and the final, quiescent read returns a write that no acknowledged write followed in real
/// time (no acknowledged write lost). The linearizability checker judges the whole history.
pub fn check_history(history: &[Event], final_value: u64) -> Result<(), String> {
    // For each write: its position of invocation and, if acknowledged, of completion.
    let mut writes: Vec<(u64, usize, Option<usize>)> = Vec::new();
    let mut open: std::collections::BTreeMap<u64, (Operation, usize)> = Default::default();
    for (position, event) in history.iter().enumerate() {
        match *event {
            Event::Invoke { process, operation } => {
                open.insert(process, (operation, position));
            }
            Event::Complete { process, outcome } => {
                let (operation, invoked) =
                    open.remove(&process).ok_or("completion without invocation")?;
                match (operation, outcome) {
                    (Operation::Write(value), Outcome::Ok(_)) => {
                        writes.push((value, invoked, Some(position)))
                    }
                    (Operation::Write(value), Outcome::Unknown) => {
                        writes.push((value, invoked, None))
                    }
                    (Operation::Read, Outcome::Ok(Some(value))) => {
                        let written_before = value == 0
                            || history[..position].iter().any(|event| {
                                matches!(event, Event::Invoke { operation: Operation::Write(written), .. } if *written == value)
                            });
                        if !written_before {
                            return Err(format!(
                                "read returned {value:#x}, which no write had written"
                            ));
                        }
                    }
                    (Operation::Read, _) => {}
                }
            }
        }
    }
    let latest_acknowledged_invocation = writes
        .iter()
        .filter(|(_, _, completed)| completed.is_some())
        .map(|&(_, invoked, _)| invoked)
        .max();
    let Some(latest_invocation) = latest_acknowledged_invocation else { return Ok(()) };
    // The final value must come from a write that did not complete before some acknowledged
    // write began: otherwise that later write was lost.
    let candidate = writes.iter().find(|(value, _, _)| *value == final_value);
    match candidate {
        Some(&(_, _, Some(completed))) if completed < latest_invocation => {
            let overwritten_by = writes
                .iter()
                .find(|&&(_, invoked, completed_at)| completed_at.is_some() && invoked > completed);
            Err(format!(
                "lost write: final read returned {final_value:#x}, but acknowledged write {:#x} began after it completed",
                overwritten_by.map_or(0, |write| write.0)
            ))
        }
        Some(_) => Ok(()),
        None => Err(format!(
            "lost write: final read returned {final_value:#x} though writes were acknowledged"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let state = State { timestamp: Timestamp { counter: 7, writer: 3 }, value: 99 };
        for message in [
            Message::Query { request: 1 },
            Message::Reply { request: 2, state },
            Message::Store { request: 3, state },
            Message::Ack { request: 4 },
        ] {
            assert_eq!(Message::decode(&message.encode()), Some(message));
        }
        assert_eq!(Message::decode(&[9; MESSAGE_SIZE]), None);
        assert_eq!(Message::decode(&[1; 3]), None);
    }

    #[test]
    fn slots_detect_every_flipped_bit() {
        let state = State { timestamp: Timestamp { counter: 5, writer: 1 }, value: 42 };
        let slot = encode_slot(9, state);
        assert!(matches!(decode_slot(&slot), Slot::Valid { sequence: 9, state: s } if s == state));
        for bit in 0..RECORD_SIZE * 8 {
            let mut damaged = slot.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(decode_slot(&damaged), Slot::Corrupt | Slot::Empty), "bit {bit}");
        }
    }

    #[test]
    fn history_check_catches_a_lost_write_and_a_value_from_nowhere() {
        let invoke = |process, operation| Event::Invoke { process, operation };
        let complete = |process, outcome| Event::Complete { process, outcome };
        let history = vec![
            invoke(1, Operation::Write(10)),
            complete(1, Outcome::Ok(None)),
            invoke(1, Operation::Write(20)),
            complete(1, Outcome::Ok(None)),
        ];
        assert!(check_history(&history, 20).is_ok());
        assert!(check_history(&history, 10).unwrap_err().contains("lost write"));
        let mut from_nowhere = history.clone();
        from_nowhere.push(invoke(2, Operation::Read));
        from_nowhere.push(complete(2, Outcome::Ok(Some(30))));
        assert!(check_history(&from_nowhere, 20).unwrap_err().contains("no write"));
    }
}
