//! The workloads and the clients that run them over RESP, recording every operation.
//!
//! - **register**: `GET`, `SET` and compare-and-set on string keys holding `u64`s, checked per key
//!   for linearizability with the [`KeyedModel`] of [`RegisterModel`]s. Written values are unique
//!   over the run, so a stale or lost value cannot hide behind an equal one. Keys rotate: after
//!   [`REGISTER_OPERATIONS_PER_KEY_MAX`] operations a key is retired for a fresh one, which keeps
//!   each key's history small enough to check exhaustively.
//! - **set**: `SADD` of unique elements and some `SMEMBERS`, checked by [`check_sets`].
//! - **counter**: `INCRBY` of small positive amounts and some `GET`s, checked by
//!   [`check_counters`].
//!
//! Outcomes: a reply that says what happened is `ok` (or `fail` where the semantics say the
//! operation certainly had no effect: a CAS answered nil is `ok` with "did not swap"); an error
//! reply, a timeout or a broken connection leaves a write unknown (`info`, and the client goes on
//! as a new process, as in Jepsen) and a read `fail` (a read has no effect, so dropping it is
//! always sound).
//!
//! [`RegisterModel`]: crate::model::RegisterModel
//! [`KeyedModel`]: crate::model::KeyedModel

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::resp::{Client, ClientError, Reply};
use crate::generate::Rng;
use crate::history::{History, OpId, Outcome};
use crate::model::{
    CounterInput, CounterOutput, KeyedInput, RegisterInput, RegisterOutput, SetInput, SetOutput,
};

/// Operations on one register key before it is retired.
pub const REGISTER_OPERATIONS_PER_KEY_MAX: u32 = 150;
/// Operations on one set key before it is retired (bounds `SMEMBERS` replies).
pub const SET_OPERATIONS_PER_KEY_MAX: u32 = 1000;
/// Operations on one counter key before it is retired.
pub const COUNTER_OPERATIONS_PER_KEY_MAX: u32 = 1000;
/// The most client threads.
pub const CLIENTS_COUNT_MAX: usize = 64;
/// The most keys of each workload used at once.
pub const KEYS_COUNT_MAX: usize = 1024;
/// Anomalous reads reported per counter key (the rest are counted).
const COUNTER_ANOMALIES_PER_KEY_MAX: usize = 3;
/// Process ids of the final reads start here (clients never reach it).
pub const FINAL_PROCESS: u64 = 1 << 40;

/// A register history over many keys.
pub type RegisterHistory = History<KeyedInput<RegisterInput>, RegisterOutput>;
/// A set history over many keys.
pub type SetHistory = History<KeyedInput<SetInput>, SetOutput>;
/// A counter history over many keys.
pub type CounterHistory = History<KeyedInput<CounterInput>, CounterOutput>;

/// Which workloads run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Registers with read, write and compare-and-set.
    Register,
    /// Sets with add and read.
    Set,
    /// Counters with increment and read.
    Counter,
    /// All three, each operation picking one at random.
    All,
}

impl Workload {
    /// Whether this selection includes `other` (one of the three).
    pub fn includes(self, other: Workload) -> bool {
        self == Workload::All || self == other
    }
}

/// The three histories and the bound on their total size.
#[derive(Default)]
pub struct Histories {
    /// Register operations.
    pub register: RegisterHistory,
    /// Set operations.
    pub set: SetHistory,
    /// Counter operations.
    pub counter: CounterHistory,
}

impl Histories {
    /// Operations recorded over the three histories.
    pub fn len(&self) -> usize {
        self.register.len() + self.set.len() + self.counter.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keys of one workload: `slots` keys in use at once, each retired after `per_key_max` operations.
struct KeySpace {
    prefix: &'static str,
    per_key_max: u32,
    /// (key number, operations so far) per slot.
    slots: Vec<(u64, u32)>,
    next: u64,
}

impl KeySpace {
    fn new(prefix: &'static str, slots_count: usize, per_key_max: u32) -> KeySpace {
        let slots = (0..slots_count as u64).map(|number| (number, 0)).collect();
        KeySpace { prefix, per_key_max, slots, next: slots_count as u64 }
    }

    fn pick(&mut self, rng: &mut Rng) -> String {
        let slot = rng.below(self.slots.len() as u64) as usize;
        let (number, count) = &mut self.slots[slot];
        let key = format!("{}{}", self.prefix, number);
        *count += 1;
        if *count >= self.per_key_max {
            *number = self.next;
            *count = 0;
            self.next += 1;
        }
        key
    }

    /// Every key used so far (possibly a few never touched).
    fn all(&self) -> Vec<String> {
        (0..self.next).map(|number| format!("{}{}", self.prefix, number)).collect()
    }
}

/// What the clients share.
pub struct Shared {
    /// The recorded histories.
    pub histories: Mutex<Histories>,
    operations_max: usize,
    register_keys: Mutex<KeySpace>,
    set_keys: Mutex<KeySpace>,
    counter_keys: Mutex<KeySpace>,
    /// Source of unique written values and set elements.
    next_value: AtomicU64,
    /// Tells clients to stop.
    pub stop: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Shared state for clients using `keys_count` keys of each workload at once, recording at
    /// most `operations_max` operations.
    pub fn new(keys_count: usize, operations_max: usize) -> Shared {
        assert!((1..=KEYS_COUNT_MAX).contains(&keys_count), "keys: 1..={KEYS_COUNT_MAX}");
        Shared {
            histories: Mutex::new(Histories::default()),
            operations_max,
            register_keys: Mutex::new(KeySpace::new(
                "r",
                keys_count,
                REGISTER_OPERATIONS_PER_KEY_MAX,
            )),
            set_keys: Mutex::new(KeySpace::new("s", keys_count, SET_OPERATIONS_PER_KEY_MAX)),
            counter_keys: Mutex::new(KeySpace::new(
                "c",
                keys_count,
                COUNTER_OPERATIONS_PER_KEY_MAX,
            )),
            next_value: AtomicU64::new(1),
            stop: AtomicBool::new(false),
        }
    }

    /// Every key of each workload used so far: (register, set, counter).
    pub fn keys(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            lock(&self.register_keys).all(),
            lock(&self.set_keys).all(),
            lock(&self.counter_keys).all(),
        )
    }

    /// Whether the operation bound is reached.
    pub fn full(&self) -> bool {
        lock(&self.histories).len() >= self.operations_max
    }

    fn unique_value(&self) -> u64 {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }
}

/// How a client talks to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `SET key new IFEQ old` (Strata, Valkey).
    Ifeq,
    /// A Lua script (`redis-server`).
    Lua,
}

/// The compare-and-set script for servers without IFEQ.
const CAS_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end";

/// One client's settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Client number (0-based): its first process id and its seed.
    pub index: usize,
    /// Client threads in all (process ids advance by this).
    pub clients_count: usize,
    /// The nodes' RESP addresses; the client starts on `index % len` and moves on when it
    /// cannot connect.
    pub nodes: Vec<SocketAddr>,
    /// The run's seed.
    pub seed: u64,
    /// What to run.
    pub workload: Workload,
    /// How to compare-and-set.
    pub dialect: Dialect,
    /// Deadline of each command.
    pub timeout: Duration,
    /// Mean pause between two operations of this client.
    pub interval: Duration,
    /// When to stop.
    pub deadline: Instant,
}

/// One decoded outcome, before recording.
enum Result3<O> {
    Ok(O),
    Fail,
    Info,
}

impl<O> Result3<O> {
    fn into_outcome(self) -> Outcome<O> {
        match self {
            Result3::Ok(output) => Outcome::Ok(output),
            Result3::Fail => Outcome::Fail,
            Result3::Info => Outcome::Info,
        }
    }
}

/// The outcome of a write (mutation) from its reply: `decode` says what a reply means; any other
/// reply, an error reply or a client error is unknown.
fn write_outcome<O>(
    reply: &Result<Reply, ClientError>,
    decode: impl Fn(&Reply) -> Option<O>,
) -> Result3<O> {
    match reply {
        Ok(reply) => decode(reply).map_or(Result3::Info, Result3::Ok),
        Err(_) => Result3::Info,
    }
}

/// The outcome of a read: unreadable replies and errors fail (a read has no effect).
fn read_outcome<O>(
    reply: &Result<Reply, ClientError>,
    decode: impl Fn(&Reply) -> Option<O>,
) -> Result3<O> {
    match reply {
        Ok(reply) => decode(reply).map_or(Result3::Fail, Result3::Ok),
        Err(_) => Result3::Fail,
    }
}

fn decode_u64(reply: &Reply) -> Option<Option<u64>> {
    match reply {
        Reply::Nil => Some(None),
        Reply::Bulk(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok().map(Some),
        _ => None,
    }
}

fn is_ok(reply: &Reply) -> bool {
    matches!(reply, Reply::Simple(text) if text == "OK")
        || matches!(reply, Reply::Bulk(bytes) if bytes == b"OK")
}

/// Reads a register: `GET key`.
pub fn register_read(client: &mut Client, key: &str) -> (Outcome<RegisterOutput>, bool) {
    let reply = client.command(&["GET", key]);
    let broken = reply.is_err();
    let outcome =
        read_outcome(&reply, |reply| decode_u64(reply).map(RegisterOutput::Value)).into_outcome();
    (outcome, broken)
}

/// Runs one register operation; returns its outcome and whether the connection broke.
pub fn register_operation(
    client: &mut Client,
    dialect: Dialect,
    key: &str,
    input: RegisterInput,
) -> (Outcome<RegisterOutput>, bool) {
    let (reply, outcome) = match input {
        RegisterInput::Read => return register_read(client, key),
        RegisterInput::Write(value) => {
            let reply = client.command(&["SET", key, &value.to_string()]);
            let outcome =
                write_outcome(&reply, |reply| is_ok(reply).then_some(RegisterOutput::Done));
            (reply, outcome)
        }
        RegisterInput::Cas { from: None, to } => {
            let reply = client.command(&["SET", key, &to.to_string(), "NX"]);
            let outcome = write_outcome(&reply, |reply| match reply {
                Reply::Nil => Some(RegisterOutput::Cas(false)),
                reply if is_ok(reply) => Some(RegisterOutput::Cas(true)),
                _ => None,
            });
            (reply, outcome)
        }
        RegisterInput::Cas { from: Some(from), to } => {
            let (from, to) = (from.to_string(), to.to_string());
            let reply = match dialect {
                Dialect::Ifeq => client.command(&["SET", key, &to, "IFEQ", &from]),
                Dialect::Lua => client.command(&["EVAL", CAS_SCRIPT, "1", key, &from, &to]),
            };
            let outcome = write_outcome(&reply, |reply| match reply {
                Reply::Nil | Reply::Integer(0) => Some(RegisterOutput::Cas(false)),
                Reply::Integer(1) => Some(RegisterOutput::Cas(true)),
                reply if is_ok(reply) => Some(RegisterOutput::Cas(true)),
                _ => None,
            });
            (reply, outcome)
        }
    };
    (outcome.into_outcome(), reply.is_err())
}

/// Runs one set operation.
pub fn set_operation(
    client: &mut Client,
    key: &str,
    input: SetInput,
) -> (Outcome<SetOutput>, bool) {
    let (reply, outcome) = match input {
        SetInput::Add(element) => {
            let reply = client.command(&["SADD", key, &element.to_string()]);
            let outcome = write_outcome(&reply, |reply| {
                matches!(reply, Reply::Integer(_)).then_some(SetOutput::Done)
            });
            (reply, outcome)
        }
        SetInput::Remove(element) => {
            let reply = client.command(&["SREM", key, &element.to_string()]);
            let outcome = write_outcome(&reply, |reply| {
                matches!(reply, Reply::Integer(_)).then_some(SetOutput::Done)
            });
            (reply, outcome)
        }
        SetInput::Read => {
            let reply = client.command(&["SMEMBERS", key]);
            let outcome = read_outcome(&reply, |reply| {
                let Reply::Array(items) = reply else { return None };
                let mut values = items
                    .iter()
                    .map(|item| std::str::from_utf8(item.bytes()?).ok()?.parse().ok())
                    .collect::<Option<Vec<u64>>>()?;
                values.sort_unstable();
                Some(SetOutput::Values(values))
            });
            (reply, outcome)
        }
    };
    (outcome.into_outcome(), reply.is_err())
}

/// Runs one counter operation.
pub fn counter_operation(
    client: &mut Client,
    key: &str,
    input: CounterInput,
) -> (Outcome<CounterOutput>, bool) {
    let (reply, outcome) = match input {
        CounterInput::Add(amount) => {
            let reply = client.command(&["INCRBY", key, &amount.to_string()]);
            let outcome = write_outcome(&reply, |reply| {
                matches!(reply, Reply::Integer(_)).then_some(CounterOutput::Done)
            });
            (reply, outcome)
        }
        CounterInput::Read => {
            let reply = client.command(&["GET", key]);
            let outcome = read_outcome(&reply, |reply| match reply {
                Reply::Nil => Some(CounterOutput::Value(0)),
                Reply::Bulk(bytes) => {
                    std::str::from_utf8(bytes).ok()?.parse().ok().map(CounterOutput::Value)
                }
                _ => None,
            });
            (reply, outcome)
        }
    };
    (outcome.into_outcome(), reply.is_err())
}

/// A client thread's body: runs operations until the deadline, the stop flag or the operation
/// bound, one connection at a time.
pub fn run_client(config: &ClientConfig, shared: &Shared) {
    let mut rng =
        Rng::new(config.seed ^ (config.index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut process = config.index as u64;
    let mut node = config.index % config.nodes.len();
    let mut connection: Option<Client> = None;
    // The last value this client saw per register key, to aim its compare-and-sets.
    let mut known: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let interval_ms = config.interval.as_millis() as u64;
    while Instant::now() < config.deadline && !shared.stop.load(Ordering::Relaxed) && !shared.full()
    {
        if interval_ms > 0 {
            sleep_until_stopped(Duration::from_millis(rng.below(2 * interval_ms + 1)), shared);
        }
        let client = match &mut connection {
            Some(client) => client,
            None => match Client::connect(config.nodes[node], config.timeout) {
                Ok(client) => connection.insert(client),
                Err(_) => {
                    node = (node + 1) % config.nodes.len();
                    sleep_until_stopped(Duration::from_millis(100), shared);
                    continue;
                }
            },
        };
        let workload = match config.workload {
            Workload::All => match rng.below(3) {
                0 => Workload::Register,
                1 => Workload::Set,
                _ => Workload::Counter,
            },
            one => one,
        };
        let (unknown, broken) = match workload {
            Workload::Register => {
                let key = lock(&shared.register_keys).pick(&mut rng);
                let input = match rng.below(10) {
                    0..=3 => RegisterInput::Read,
                    4..=6 => RegisterInput::Write(shared.unique_value()),
                    _ => RegisterInput::Cas {
                        from: known.get(&key).copied().flatten(),
                        to: shared.unique_value(),
                    },
                };
                let id = record(shared, |h| &mut h.register, process, &key, input);
                let (outcome, broken) = register_operation(client, config.dialect, &key, input);
                match (&input, &outcome) {
                    (_, Outcome::Ok(RegisterOutput::Value(value))) => {
                        known.insert(key.clone(), *value);
                    }
                    (RegisterInput::Write(to), Outcome::Ok(_))
                    | (RegisterInput::Cas { to, .. }, Outcome::Ok(RegisterOutput::Cas(true))) => {
                        known.insert(key.clone(), Some(*to));
                    }
                    _ => {}
                }
                if known.len() > KEYS_COUNT_MAX * 4 {
                    known.clear();
                }
                let unknown = matches!(outcome, Outcome::Info);
                lock(&shared.histories).register.complete(id, outcome);
                (unknown, broken)
            }
            Workload::Set => {
                let key = lock(&shared.set_keys).pick(&mut rng);
                let input = if rng.below(10) == 0 {
                    SetInput::Read
                } else {
                    SetInput::Add(shared.unique_value())
                };
                let id = record(shared, |h| &mut h.set, process, &key, input);
                let (outcome, broken) = set_operation(client, &key, input);
                let unknown = matches!(outcome, Outcome::Info);
                lock(&shared.histories).set.complete(id, outcome);
                (unknown, broken)
            }
            Workload::Counter | Workload::All => {
                let key = lock(&shared.counter_keys).pick(&mut rng);
                let input = if rng.below(5) == 0 {
                    CounterInput::Read
                } else {
                    CounterInput::Add(1 + rng.below(5) as i64)
                };
                let id = record(shared, |h| &mut h.counter, process, &key, input);
                let (outcome, broken) = counter_operation(client, &key, input);
                let unknown = matches!(outcome, Outcome::Info);
                lock(&shared.histories).counter.complete(id, outcome);
                (unknown, broken)
            }
        };
        if unknown {
            // A process with an unknown operation never invokes again: go on as a new one.
            process += config.clients_count as u64;
        }
        if broken {
            connection = None;
        }
    }
}

fn record<I>(
    shared: &Shared,
    history: impl Fn(&mut Histories) -> &mut History<KeyedInput<I>, I::Output>,
    process: u64,
    key: &str,
    input: I,
) -> OpId
where
    I: HasOutput,
{
    let mut histories = lock(&shared.histories);
    history(&mut histories).invoke(process, KeyedInput { key: key.to_string(), input })
}

/// Ties each input type to its output type, for recording keyed operations.
pub trait HasOutput {
    /// The output type.
    type Output;
}

impl HasOutput for RegisterInput {
    type Output = RegisterOutput;
}

impl HasOutput for SetInput {
    type Output = SetOutput;
}

impl HasOutput for CounterInput {
    type Output = CounterOutput;
}

/// Sleeps `duration`, waking early when the clients are told to stop.
pub fn sleep_until_stopped(duration: Duration, shared: &Shared) {
    let deadline = Instant::now() + duration;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Checks the set histories: per key, every read holds every element whose add was acknowledged
/// before the read began, and nothing whose add was not attempted before it ended (or failed).
/// The final reads make the first rule "no acknowledged add lost". Returns the anomalies found.
pub fn check_sets(history: &SetHistory) -> Vec<String> {
    let mut anomalies = Vec::new();
    for (key, part) in crate::model::keyed::split_by_key(history) {
        // Element to (invocation time, acknowledgement time, failed).
        let mut adds: BTreeMap<u64, (u64, Option<u64>, bool)> = BTreeMap::new();
        for operation in part.operations() {
            if let SetInput::Add(element) = operation.input {
                let acknowledged = operation
                    .output()
                    .map(|_| operation.completion_time.expect("a completed operation has a time"));
                adds.insert(element, (operation.call_time, acknowledged, operation.failed()));
            }
        }
        // Per kind of anomaly: (reads affected, first such read's event, elements involved).
        let mut stale: (usize, u64, BTreeSet<u64>) = (0, 0, BTreeSet::new());
        let mut invented: (usize, u64, BTreeSet<u64>) = (0, 0, BTreeSet::new());
        let mut final_lost: Option<(u64, Vec<u64>)> = None;
        for operation in part.operations() {
            let (SetInput::Read, Some(SetOutput::Values(values))) =
                (&operation.input, operation.output())
            else {
                continue;
            };
            let read_end = operation.completion_time.expect("a completed operation has a time");
            let present: BTreeSet<u64> = values.iter().copied().collect();
            let lost: Vec<u64> = adds
                .iter()
                .filter(|(element, (_, acknowledged, _))| {
                    acknowledged.is_some_and(|time| time < operation.call_time)
                        && !present.contains(element)
                })
                .map(|(element, _)| *element)
                .collect();
            let unexpected: Vec<u64> = values
                .iter()
                .copied()
                .filter(|element| match adds.get(element) {
                    Some((invoked, _, failed)) => *failed || *invoked > read_end,
                    None => true,
                })
                .collect();
            if !lost.is_empty() {
                if operation.process >= FINAL_PROCESS {
                    final_lost = Some((operation.call_time, lost));
                } else {
                    note(&mut stale, operation.call_time, &lost);
                }
            }
            if !unexpected.is_empty() {
                note(&mut invented, operation.call_time, &unexpected);
            }
        }
        if let Some((event, lost)) = final_lost {
            anomalies.push(format!(
                "set {key}: the final read (event {event}) misses {} acknowledged element(s): {}",
                lost.len(),
                show_some(&lost)
            ));
        }
        let (reads, first, elements) = stale;
        if reads > 0 {
            let elements: Vec<u64> = elements.into_iter().collect();
            anomalies.push(format!(
                "set {key}: {reads} read(s) during the run (the first at event {first}) miss \
                 {} element(s) acknowledged before they began: {}",
                elements.len(),
                show_some(&elements)
            ));
        }
        let (reads, first, elements) = invented;
        if reads > 0 {
            let elements: Vec<u64> = elements.into_iter().collect();
            anomalies.push(format!(
                "set {key}: {reads} read(s) (the first at event {first}) hold {} element(s) \
                 never added: {}",
                elements.len(),
                show_some(&elements)
            ));
        }
    }
    anomalies
}

/// Counts one more read with an anomaly on `elements`.
fn note(tally: &mut (usize, u64, BTreeSet<u64>), event: u64, elements: &[u64]) {
    if tally.0 == 0 {
        tally.1 = event;
    }
    tally.0 += 1;
    tally.2.extend(elements);
}

fn show_some(values: &[u64]) -> String {
    let shown: Vec<String> = values.iter().take(10).map(u64::to_string).collect();
    let more =
        if values.len() > 10 { format!(" and {} more", values.len() - 10) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Checks the counter histories (increments are positive): per key, every read returns at least
/// the sum of the increments acknowledged before it began and of every read that ended before it
/// began, and at most the sum of the increments attempted (not failed) before it ended. Returns
/// the anomalies found.
pub fn check_counters(history: &CounterHistory) -> Vec<String> {
    let mut anomalies = Vec::new();
    for (key, part) in crate::model::keyed::split_by_key(history) {
        let before = anomalies.len();
        let operations = part.operations();
        let mut acknowledged: i64 = 0;
        let mut attempted: i64 = 0;
        let mut read_max: i64 = 0;
        // Per pending read: (lower bound, read floor) at its invocation.
        let mut bounds: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
        for (_, id, is_invocation) in part.events() {
            let operation = &operations[id.0];
            match (operation.input, is_invocation) {
                (CounterInput::Add(amount), true) => {
                    if !operation.failed() {
                        attempted += amount;
                    }
                }
                (CounterInput::Add(amount), false) => {
                    if operation.output().is_some() {
                        acknowledged += amount;
                    }
                }
                (CounterInput::Read, true) => {
                    bounds.insert(id.0, (acknowledged, read_max));
                }
                (CounterInput::Read, false) => {
                    let (lower, floor) = bounds.remove(&id.0).unwrap_or((0, 0));
                    let Some(CounterOutput::Value(value)) = operation.output() else { continue };
                    let value = *value;
                    let who = if operation.process >= FINAL_PROCESS {
                        "the final read"
                    } else {
                        "a read"
                    };
                    if value < lower {
                        anomalies.push(format!(
                            "counter {key}: {who} (event {}) returned {value}, but {lower} was \
                             acknowledged before it began: acknowledged increments lost",
                            operation.call_time
                        ));
                    } else if value < floor {
                        anomalies.push(format!(
                            "counter {key}: {who} (event {}) returned {value}, but an earlier \
                             read returned {floor}: the counter went back",
                            operation.call_time
                        ));
                    }
                    if value > attempted {
                        anomalies.push(format!(
                            "counter {key}: {who} (event {}) returned {value}, more than the \
                             {attempted} attempted before it ended",
                            operation.call_time
                        ));
                    }
                    read_max = read_max.max(value);
                }
            }
        }
        let found = anomalies.len() - before;
        if found > COUNTER_ANOMALIES_PER_KEY_MAX {
            anomalies.truncate(before + COUNTER_ANOMALIES_PER_KEY_MAX);
            anomalies.push(format!(
                "counter {key}: and {} more anomalous read(s)",
                found - COUNTER_ANOMALIES_PER_KEY_MAX
            ));
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed<I>(key: &str, input: I) -> KeyedInput<I> {
        KeyedInput { key: key.to_string(), input }
    }

    #[test]
    fn a_lost_acknowledged_add_is_found() {
        let mut history = SetHistory::new();
        let add = history.invoke(0, keyed("s0", SetInput::Add(1)));
        history.complete(add, Outcome::Ok(SetOutput::Done));
        let unknown = history.invoke(1, keyed("s0", SetInput::Add(2)));
        history.complete(unknown, Outcome::Info);
        let read = history.invoke(FINAL_PROCESS, keyed("s0", SetInput::Read));
        history.complete(read, Outcome::Ok(SetOutput::Values(vec![2])));
        let anomalies = check_sets(&history);
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert!(anomalies[0].contains("misses 1 acknowledged element(s): 1"), "{anomalies:?}");

        history.operations_mut()[2].outcome = Some(Outcome::Ok(SetOutput::Values(vec![1, 3])));
        let anomalies = check_sets(&history);
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert!(anomalies[0].contains("1 element(s) never added: 3"), "{anomalies:?}");

        history.operations_mut()[2].outcome = Some(Outcome::Ok(SetOutput::Values(vec![1])));
        assert!(check_sets(&history).is_empty());
    }

    #[test]
    fn a_counter_read_out_of_bounds_is_found() {
        let mut history = CounterHistory::new();
        let add = history.invoke(0, keyed("c0", CounterInput::Add(3)));
        history.complete(add, Outcome::Ok(CounterOutput::Done));
        let unknown = history.invoke(1, keyed("c0", CounterInput::Add(2)));
        history.complete(unknown, Outcome::Info);
        let failed = history.invoke(2, keyed("c0", CounterInput::Add(7)));
        history.complete(failed, Outcome::Fail);
        let read = history.invoke(FINAL_PROCESS, keyed("c0", CounterInput::Read));
        history.complete(read, Outcome::Ok(CounterOutput::Value(5)));
        assert!(check_counters(&history).is_empty());
        for (value, expected) in [(2, "acknowledged increments lost"), (6, "more than the 5")] {
            history.operations_mut()[3].outcome = Some(Outcome::Ok(CounterOutput::Value(value)));
            let anomalies = check_counters(&history);
            assert_eq!(anomalies.len(), 1, "{anomalies:?}");
            assert!(anomalies[0].contains(expected), "{anomalies:?}");
        }
    }

    #[test]
    fn keys_rotate_after_their_bound() {
        let mut keys = KeySpace::new("r", 1, 2);
        let mut rng = Rng::new(1);
        let picked: Vec<String> = (0..5).map(|_| keys.pick(&mut rng)).collect();
        assert_eq!(picked, ["r0", "r0", "r1", "r1", "r2"]);
        assert_eq!(keys.all(), ["r0", "r1", "r2"]);
    }
}
