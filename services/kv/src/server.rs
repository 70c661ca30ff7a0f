//! The RESP server: accepts client connections, decodes pipelined requests, routes each command
//! to its shard (a write is replicated as a log entry through [`Cluster::write`]; a read waits
//! for [`Cluster::read_barrier`] and then reads the local machine), and writes replies in order.
//!
//! - Any node accepts any key: `shard = shard_of(key)`; multi-key commands must stay in one
//!   shard (`CROSSSLOT` otherwise), except DEL/UNLINK/EXISTS/TOUCH/MGET, which fan out per shard
//!   (each shard's part atomic, the whole not), and KEYS/SCAN/DBSIZE/RANDOMKEY/FLUSHDB/FLUSHALL,
//!   which visit every shard.
//! - MULTI/EXEC: the queued commands go as one `Entry::Transaction` to one shard, with the
//!   versions of the WATCHed keys read at WATCH time; across shards EXEC answers `EXECABORT`.
//! - PUBLISH is replicated through the channel's shard, so every node's subscribers get it when
//!   their replica applies it; its reply counts the receivers on the node that answered.
//! - Blocking pops (of lists and sorted sets) register a waiter on the node's `Shared` before
//!   trying a normal replicated pop; when an apply gives one of their keys elements they try
//!   again, until their timeout.
//! - Pipelining: the requests already in the query buffer (at most `BATCH_COMMANDS_MAX`) run as
//!   a batch, with replies and effects in request order. Consecutive plain writes to one shard
//!   go as one log entry per `PIPELINE_ENTRY_COMMANDS_MAX` (a transaction without watched keys,
//!   each command in it as if alone), proposed together in request order
//!   (`Cluster::write_many`: a follower forwards them to the leader as one unit, so they append
//!   in that order); consecutive plain reads share one read barrier per shard, taken after
//!   they arrived, and one snapshot per shard, taken after it (`Machine::reader`); a run starts
//!   only when the one before it completed. Anything else (transactions, WATCH, blocking,
//!   pub/sub, fan-out, connection commands, errors) runs alone, as it would unpipelined. Replies of a batch go out together.
//! - Bounds: connections (`connections_max`), query buffer (`query_buffer_bytes_max`), argument
//!   count and size (the RESP decoder), queued transaction commands, subscriptions, blocked
//!   clients, pushes pending per subscriber.

use crate::command::{self, CommandSpec};
use crate::entry::{self, Entry, TRANSACTION_COMMANDS_MAX, WATCHED_KEYS_MAX};
use crate::machine::{Machine, Reader, Shared, Subscriber, SUBSCRIPTIONS_MAX};
use crate::resp::{self, Decoded, Protocol, Reply};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use strata_rt::{Duration, Instant, JoinHandle, Runtime};
use strata_rt::{Listener, Stream};

pub use crate::local::LocalCluster;

/// What the server needs from the node: the shards, replication and the local machines.
pub trait Cluster: 'static {
    fn shard_count(&self) -> u32;

    /// Replicates `entry` through the shard's Raft group; resolves to the reply the local
    /// replica's apply produced. `Err`: not known to be committed (timeout, no leader reachable,
    /// stopped); for a write the outcome is unknown.
    fn write(
        &self,
        shard: u32,
        entry: Vec<u8>,
    ) -> impl Future<Output = Result<Reply, ClusterError>>;

    /// Replicates `entries` in the shard in this order (one client's pipelined writes), each
    /// as [`Cluster::write`] does; resolves to their replies in order. By default they are
    /// started together in order (which a local log keeps); a cluster whose writes may travel
    /// apart (forwarded by a follower) sends them as one unit.
    fn write_many(
        &self,
        shard: u32,
        entries: Vec<Vec<u8>>,
    ) -> impl Future<Output = Vec<Result<Reply, ClusterError>>> {
        async move {
            let writes = entries.into_iter().map(|entry| self.write(shard, entry)).collect();
            let mut replies = Vec::new();
            for write in start_in_order(writes).await {
                replies.push(write.finish().await);
            }
            replies
        }
    }

    /// Resolves once the local machine has applied everything committed before the call.
    fn read_barrier(&self, shard: u32) -> impl Future<Output = Result<(), ClusterError>>;

    fn machine(&self, shard: u32) -> Rc<Machine>;

    /// Whether this node should propose housekeeping (active expiry) for `shard`: its leader,
    /// ideally. Proposing from several nodes is harmless, only wasteful.
    fn is_leader(&self, _shard: u32) -> bool {
        true
    }
}

/// Replication did not confirm an operation; the text goes to the client after `ERR `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterError(pub String);

impl std::fmt::Display for ClusterError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

/// The shard of `key`: `slot = crc16(hashtag) % 16384`, slots split in contiguous ranges.
pub fn shard_of(key: &[u8], shard_count: u32) -> u32 {
    command::shard_of_key(key, shard_count)
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// For INFO and CLIENT LIST; the listener is bound by the caller.
    pub listen: SocketAddr,
    pub connections_max: usize,
    /// `requirepass`: clients must AUTH (user `default`) first.
    pub password: Option<String>,
    pub query_buffer_bytes_max: usize,
    /// How often each shard looks for expired keys to remove (0: never).
    pub expire_interval_ms: u64,
    /// Most expired keys removed by one entry.
    pub expire_batch_keys: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6379)),
            connections_max: 10_000,
            password: None,
            query_buffer_bytes_max: resp::QUERY_BYTES_MAX,
            expire_interval_ms: 100,
            expire_batch_keys: 200,
        }
    }
}

/// A connection as CLIENT LIST shows it.
struct ClientInfo {
    id: u64,
    address: SocketAddr,
    local_address: SocketAddr,
    created: Instant,
    last_command: Cell<Instant>,
    name: RefCell<Vec<u8>>,
    library_name: RefCell<Vec<u8>>,
    library_version: RefCell<Vec<u8>>,
    protocol: Cell<u8>,
    channels: Cell<usize>,
    patterns: Cell<usize>,
    multi: Cell<i64>,
    watched: Cell<usize>,
    command: RefCell<String>,
}

impl ClientInfo {
    fn line(&self, now: Instant) -> String {
        let age = now.saturating_duration_since(self.created).as_secs();
        let idle = now.saturating_duration_since(self.last_command.get()).as_secs();
        let flags = if self.multi.get() >= 0 {
            "x"
        } else if self.channels.get() + self.patterns.get() > 0 {
            "P"
        } else {
            "N"
        };
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={age} idle={idle} flags={flags} db=0 \
             sub={} psub={} ssub=0 multi={} watch={} qbuf=0 qbuf-free=0 argv-mem=0 \
             multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} \
             user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.address,
            self.local_address,
            String::from_utf8_lossy(&self.name.borrow()),
            self.channels.get(),
            self.patterns.get(),
            self.multi.get(),
            self.watched.get(),
            self.command.borrow(),
            self.protocol.get(),
            String::from_utf8_lossy(&self.library_name.borrow()),
            String::from_utf8_lossy(&self.library_version.borrow()),
        )
    }
}

/// State of the whole server (one per node).
struct ServerState {
    config: RefCell<ServerConfig>,
    started: Instant,
    clients: RefCell<BTreeMap<u64, Rc<ClientInfo>>>,
    connections_total: Cell<u64>,
    commands_total: Cell<u64>,
    rejected_total: Cell<u64>,
}

/// Aborts the connection tasks when `serve` ends or is dropped.
struct Tasks(RefCell<BTreeMap<u64, JoinHandle<()>>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self.0.borrow().values() {
            task.abort();
        }
    }
}

/// Accepts RESP connections on `listener` (bound by the caller, so it knows the port) until
/// accepting fails; dropping the future stops the server and its connections. Also proposes the
/// removal of expired keys every `expire_interval_ms`.
pub async fn serve<C: Cluster>(
    rt: Runtime,
    cluster: Rc<C>,
    listener: Listener,
    config: ServerConfig,
) -> std::io::Result<()> {
    let state = Rc::new(ServerState {
        config: RefCell::new(config.clone()),
        started: rt.now(),
        clients: RefCell::new(BTreeMap::new()),
        connections_total: Cell::new(0),
        commands_total: Cell::new(0),
        rejected_total: Cell::new(0),
    });
    let tasks = Rc::new(Tasks(RefCell::new(BTreeMap::new())));
    if config.expire_interval_ms > 0 {
        let expiry = rt.spawn(expire_loop(rt.clone(), cluster.clone(), config.clone()));
        tasks.0.borrow_mut().insert(0, expiry);
    }
    let shared = cluster.machine(0).shared().clone();
    loop {
        let (stream, peer) = listener.accept().await?;
        let connected = state.clients.borrow().len();
        if connected >= state.config.borrow().connections_max {
            state.rejected_total.set(state.rejected_total.get() + 1);
            drop(rt.spawn(async move {
                let _ = stream.write_all(b"-ERR max number of clients reached\r\n".to_vec()).await;
                let _ = stream.shutdown().await;
            }));
            continue;
        }
        state.connections_total.set(state.connections_total.get() + 1);
        let id = shared.next_id();
        let info = Rc::new(ClientInfo {
            id,
            address: peer,
            local_address: listener.local_address(),
            created: rt.now(),
            last_command: Cell::new(rt.now()),
            name: RefCell::new(Vec::new()),
            library_name: RefCell::new(Vec::new()),
            library_version: RefCell::new(Vec::new()),
            protocol: Cell::new(2),
            channels: Cell::new(0),
            patterns: Cell::new(0),
            multi: Cell::new(-1),
            watched: Cell::new(0),
            command: RefCell::new("NULL".into()),
        });
        state.clients.borrow_mut().insert(id, info.clone());
        let connection = Connection::new(rt.clone(), cluster.clone(), state.clone(), info, stream);
        let weak_tasks = Rc::downgrade(&tasks);
        let state_for_task = state.clone();
        let task = rt.spawn(async move {
            connection.run().await;
            state_for_task.clients.borrow_mut().remove(&id);
            if let Some(tasks) = weak_tasks.upgrade() {
                tasks.0.borrow_mut().remove(&id);
            }
        });
        if !task.is_finished() {
            tasks.0.borrow_mut().insert(id, task);
        }
    }
}

async fn expire_loop<C: Cluster>(rt: Runtime, cluster: Rc<C>, config: ServerConfig) {
    loop {
        rt.sleep(Duration::from_millis(config.expire_interval_ms)).await;
        for shard in 0..cluster.shard_count() {
            if !cluster.is_leader(shard) {
                continue;
            }
            let now_ms = now_ms(&rt);
            let keys = cluster.machine(shard).expired_keys(now_ms, config.expire_batch_keys).await;
            if keys.is_empty() {
                continue;
            }
            let entry = Entry::Expire { now_ms, keys }.encode();
            let _ = cluster.write(shard, entry).await;
        }
    }
}

fn now_ms(rt: &Runtime) -> u64 {
    u64::try_from(rt.now_unix().as_millis()).unwrap_or(u64::MAX)
}

/// Most requests taken from the query buffer and executed as one batch.
const BATCH_COMMANDS_MAX: usize = 1024;
/// A run of pipelined writes goes as one log entry of at most this many commands and bytes of
/// arguments (a command larger goes alone): bounded far below what one entry and one store
/// batch take, so a run's entry is refused only when its largest command would be.
const PIPELINE_ENTRY_COMMANDS_MAX: usize = 64;
const PIPELINE_ENTRY_BYTES_MAX: usize = 1 << 20;

/// How many of `run`'s first writes go in one entry: those whose effect their arguments bound,
/// up to the entry's bounds; any other write goes alone.
fn first_entry_len(run: &[(Vec<Vec<u8>>, &str)]) -> usize {
    let groupable =
        |(arguments, name): &(Vec<Vec<u8>>, &str)| writes_bounded_by_arguments(name, arguments);
    if !groupable(&run[0]) {
        return 1;
    }
    let mut bytes = entry::command_len(&run[0].0);
    let mut count = 1;
    for next in &run[1..] {
        bytes += entry::command_len(&next.0);
        let full = count == PIPELINE_ENTRY_COMMANDS_MAX || bytes > PIPELINE_ENTRY_BYTES_MAX;
        if full || !groupable(next) {
            break;
        }
        count += 1;
    }
    count
}

/// Whether what a write stages is bounded by its arguments, so that a run of such writes fits
/// one entry and one store batch whenever each alone would. The others (COPY, the *STORE
/// commands, LTRIM, a pop with a count, ...) stage as much as the collections they read: each
/// goes in an entry of its own.
fn writes_bounded_by_arguments(name: &str, arguments: &[Vec<u8>]) -> bool {
    match name {
        "set" | "setnx" | "setex" | "psetex" | "getset" | "getdel" | "getex" | "mset"
        | "msetnx" | "append" | "incr" | "decr" | "incrby" | "decrby" | "incrbyfloat" | "del"
        | "unlink" | "expire" | "pexpire" | "expireat" | "pexpireat" | "persist" | "hset"
        | "hsetnx" | "hmset" | "hdel" | "hincrby" | "hincrbyfloat" | "lpush" | "rpush"
        | "lpushx" | "rpushx" | "lset" | "sadd" | "srem" | "smove" | "zadd" | "zincrby"
        | "zrem" => true,
        // Without a count they pop one element.
        "lpop" | "rpop" | "spop" | "zpopmin" | "zpopmax" => arguments.len() == 2,
        _ => false,
    }
}
/// Bytes of a short reply (`+OK`, a small integer or bulk string), to size a reply buffer.
const REPLY_BYTES_TYPICAL: usize = 16;

/// How a request runs in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// A write of one shard and nothing else (no transaction, blocking, pub/sub, fan-out):
    /// proposed together with the plain writes to the same shard right after it.
    Write { shard: u32, name: &'static str },
    /// A read of one shard and nothing else: shares one read barrier per shard with the plain
    /// reads around it.
    Read { shard: u32, spec: &'static CommandSpec },
    /// Everything else, and anything while authenticating, subscribed or in MULTI: runs alone.
    Alone,
}

/// A future [`start_in_order`] polled once.
enum Started<F: Future> {
    Running(Pin<Box<F>>),
    Done(F::Output),
}

impl<F: Future> Started<F> {
    async fn finish(self) -> F::Output {
        match self {
            Started::Running(future) => future.await,
            Started::Done(output) => output,
        }
    }
}

/// Polls each future once, in order, so each queues its work (a proposal, a read barrier) in
/// that order and before any of them is awaited; the caller then awaits them in order.
/// ([`Cluster::write`] of the multi-Raft host queues its proposal on the first poll.)
async fn start_in_order<F: Future>(futures: Vec<F>) -> Vec<Started<F>> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(move |context| {
        let started = std::mem::take(&mut pending)
            .into_iter()
            .map(|mut future| match future.as_mut().poll(context) {
                Poll::Ready(output) => Started::Done(output),
                Poll::Pending => Started::Running(future),
            })
            .collect();
        Poll::Ready(started)
    })
    .await
}

const SUBSCRIBED_ONLY: &str = "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are \
                               allowed in this context";
const NOAUTH: &str = "NOAUTH Authentication required.";
const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

struct Connection<C: Cluster> {
    rt: Runtime,
    cluster: Rc<C>,
    state: Rc<ServerState>,
    info: Rc<ClientInfo>,
    stream: Stream,
    shared: Rc<Shared>,
    subscriber: Option<Rc<Subscriber>>,
    protocol: Protocol,
    authenticated: bool,
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
    /// Queued commands while in MULTI.
    multi: Option<Vec<Vec<Vec<u8>>>>,
    /// A command failed to queue: EXEC aborts.
    multi_failed: bool,
    watched: Vec<(Vec<u8>, u64)>,
    closing: bool,
    /// Argument buffers of requests done with, for the next requests to decode into.
    spare_requests: Vec<Vec<Vec<u8>>>,
}

/// Most requests' argument buffers a connection keeps for reuse, and the most bytes each
/// may hold: what a pipeline of short commands needs, a few KiB per connection at most.
const SPARE_REQUESTS_MAX: usize = 32;
const SPARE_REQUEST_BYTES_MAX: usize = 512;

impl<C: Cluster> Connection<C> {
    fn new(
        rt: Runtime,
        cluster: Rc<C>,
        state: Rc<ServerState>,
        info: Rc<ClientInfo>,
        stream: Stream,
    ) -> Connection<C> {
        let authenticated = state.config.borrow().password.is_none();
        let shared = cluster.machine(0).shared().clone();
        Connection {
            rt,
            cluster,
            state,
            info,
            stream,
            shared,
            subscriber: None,
            protocol: Protocol::Resp2,
            authenticated,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            multi: None,
            multi_failed: false,
            watched: Vec::new(),
            closing: false,
            spare_requests: Vec::new(),
        }
    }

    /// Keeps the argument buffers of requests done with, as far as the bounds allow.
    fn recycle(&mut self, spent: impl IntoIterator<Item = Vec<Vec<u8>>>) {
        for arguments in spent {
            if self.spare_requests.len() >= SPARE_REQUESTS_MAX {
                return;
            }
            if resp::buffers_bytes(&arguments) <= SPARE_REQUEST_BYTES_MAX {
                self.spare_requests.push(arguments);
            }
        }
    }

    async fn run(mut self) {
        let (subscriber, mut outgoing) = Subscriber::new(self.info.id, self.protocol);
        self.subscriber = Some(subscriber.clone());
        let stream = self.stream.clone();
        let overflowed = subscriber.overflowed.clone();
        let writer = self.rt.spawn(async move {
            while let Some(mut bytes) = outgoing.receive().await {
                while bytes.len() < 1 << 20 {
                    match outgoing.try_receive() {
                        Some(more) => bytes.extend_from_slice(&more),
                        None => break,
                    }
                }
                if stream.write_all(bytes).await.is_err() || overflowed.get() {
                    break;
                }
            }
            let _ = stream.shutdown().await;
        });
        self.read_loop(&subscriber).await;
        self.unsubscribe_all();
        self.subscriber = None;
        drop(subscriber);
        // The writer ends once every sender is gone and what was queued is written.
        let _ = writer.await;
    }

    async fn read_loop(&mut self, subscriber: &Rc<Subscriber>) {
        let mut buffer: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let mut consumed = 0;
            let mut out = Vec::new();
            loop {
                let mut batch = Vec::new();
                let mut protocol_error = None;
                while batch.len() < BATCH_COMMANDS_MAX {
                    let spare = self.spare_requests.pop().unwrap_or_default();
                    match resp::decode_request_reusing(&buffer[consumed..], spare) {
                        Ok(Decoded::Request(arguments, used)) => {
                            consumed += used;
                            if !arguments.is_empty() {
                                batch.push(arguments);
                            }
                        }
                        Ok(Decoded::Incomplete) => break,
                        Err(error) => {
                            protocol_error = Some(error);
                            break;
                        }
                    }
                }
                if batch.is_empty() && protocol_error.is_none() {
                    break;
                }
                // Room for the batch's replies if they are short, as most are (grown from
                // empty, the buffer was reallocated five times for sixteen); sized by the
                // requests, so a queue of unread replies holds little slack.
                out.reserve(batch.len() * REPLY_BYTES_TYPICAL);
                if !self.run_batch(batch, &mut out, subscriber).await {
                    return;
                }
                if let Some(error) = protocol_error {
                    resp::encode(&Reply::Error(error.0), self.protocol, &mut out);
                    let _ = subscriber.send(out).await;
                    return;
                }
            }
            buffer.drain(..consumed);
            if !out.is_empty() && !subscriber.send(out).await {
                return;
            }
            if subscriber.overflowed.get() {
                return;
            }
            if buffer.len() > self.state.config.borrow().query_buffer_bytes_max {
                let error = Reply::error("ERR Protocol error: query buffer limit exceeded");
                let _ = subscriber.send(resp::encode_to_vec(&error, self.protocol)).await;
                return;
            }
            let (result, returned) = self.stream.read(chunk).await;
            chunk = returned;
            match result {
                Ok(0) | Err(_) => return,
                Ok(count) => buffer.extend_from_slice(&chunk[..count]),
            }
        }
    }

    /// Executes the requests of `batch` in order, appending their replies to `out`; `false` once
    /// the connection is to end. Runs of plain writes to one shard are proposed together and runs
    /// of plain reads share one read barrier per shard (see [`Plan`]); anything else runs alone.
    /// A run starts only after the one before it completed, so a read sees every earlier write.
    async fn run_batch(
        &mut self,
        batch: Vec<Vec<Vec<u8>>>,
        out: &mut Vec<u8>,
        subscriber: &Rc<Subscriber>,
    ) -> bool {
        let mut requests = batch.into_iter().peekable();
        while let Some(arguments) = requests.next() {
            match self.plan(&arguments) {
                Plan::Write { shard, name } => {
                    let mut run = vec![(arguments, name)];
                    while let Some(next) = requests.peek() {
                        let Plan::Write { shard: next_shard, name } = self.plan(next) else {
                            break;
                        };
                        if next_shard != shard {
                            break;
                        }
                        run.push((requests.next().expect("peeked"), name));
                    }
                    let spent = self.write_run(shard, run, out).await;
                    self.recycle(spent);
                }
                Plan::Read { shard, spec } => {
                    let mut run = vec![(arguments, shard, spec)];
                    while let Some(next) = requests.peek() {
                        let Plan::Read { shard, spec } = self.plan(next) else { break };
                        run.push((requests.next().expect("peeked"), shard, spec));
                    }
                    let spent = self.read_run(run, out).await;
                    self.recycle(spent);
                }
                Plan::Alone => {
                    if self.is_blocking(&arguments)
                        && !out.is_empty()
                        && !subscriber.send(std::mem::take(out)).await
                    {
                        // Replies before a blocking command go out before it blocks.
                        return false;
                    }
                    for reply in self.handle(arguments).await {
                        resp::encode(&reply, self.protocol, out);
                    }
                    if self.closing {
                        let _ = subscriber.send(std::mem::take(out)).await;
                        return false;
                    }
                }
            }
            if out.len() >= 1 << 20 && !subscriber.send(std::mem::take(out)).await {
                return false;
            }
        }
        true
    }

    /// How `arguments` may run in a batch, given the connection's state now. Only commands that
    /// change nothing of the connection are ever part of a run, so the plan of a later request
    /// of the run does not depend on the earlier ones having run.
    fn plan(&self, arguments: &[Vec<u8>]) -> Plan {
        if self.multi.is_some() || !self.authenticated || self.subscribed() {
            return Plan::Alone;
        }
        let Some(spec) = command::lookup(&arguments[0]) else { return Plan::Alone };
        let special = command::BLOCKING
            | command::PUBSUB
            | command::CONNECTION
            | command::ADMIN
            | command::FANOUT;
        if !spec.arity_ok(arguments.len()) || spec.flags & special != 0 {
            return Plan::Alone;
        }
        // Over one shard, DEL/UNLINK/EXISTS/TOUCH/MGET are one request to it, as `per_shard`
        // would make; over several they run alone, as does a request with an oversized key.
        // One pass over the keys for both (planning is a tenth of a pipelined GET's work).
        let mut keys = spec.key_iter(arguments);
        let oversized = |key: &[u8]| key.len() > crate::commands::KEY_BYTES_MAX;
        let shard_count = self.shard_count();
        let shard = match keys.next() {
            None => 0,
            Some(key) if oversized(key) => return Plan::Alone,
            Some(key) => shard_of(key, shard_count),
        };
        if keys.any(|key| oversized(key) || shard_of(key, shard_count) != shard) {
            return Plan::Alone;
        }
        let name = spec.name;
        if spec.has(command::WRITE) {
            Plan::Write { shard, name }
        } else if spec.has(command::READONLY) {
            Plan::Read { shard, spec }
        } else {
            Plan::Alone
        }
    }

    /// What is noted of every request (`name`: of a known command).
    fn count_command(&self, name: Option<&str>) {
        self.count_command_at(name, self.rt.now());
    }

    /// [`Self::count_command`] for a request of a run, which reads the clock once.
    fn count_command_at(&self, name: Option<&str>, now: strata_rt::Instant) {
        self.state.commands_total.set(self.state.commands_total.get() + 1);
        self.info.last_command.set(now);
        if let Some(name) = name {
            let mut command = self.info.command.borrow_mut();
            command.clear();
            command.push_str(name);
        }
    }

    /// Plain writes to `shard`, in request order: runs of them go as one entry each (a
    /// transaction without watched keys, in which each command runs as if alone), every entry
    /// proposed before any is awaited, so the shard's log keeps their order and a pipeline of
    /// writes costs one log entry, not one per command. Returns the requests' arguments, spent.
    async fn write_run(
        &self,
        shard: u32,
        run: Vec<(Vec<Vec<u8>>, &str)>,
        out: &mut Vec<u8>,
    ) -> Vec<Vec<Vec<u8>>> {
        let (now, now_ms) = (self.rt.now(), self.now_ms());
        let mut entries = Vec::new();
        // Commands in each entry.
        let mut sizes = Vec::new();
        let mut rest = run.as_slice();
        while !rest.is_empty() {
            let count = first_entry_len(rest);
            let (taken, left) = rest.split_at(count);
            for (_, name) in taken {
                self.count_command_at(Some(name), now);
            }
            entries.push(match taken {
                [(arguments, _)] => entry::encode_command(now_ms, arguments),
                _ => {
                    let commands: Vec<&[Vec<u8>]> =
                        taken.iter().map(|(arguments, _)| arguments.as_slice()).collect();
                    entry::encode_commands(now_ms, &commands)
                }
            });
            sizes.push(count);
            rest = left;
        }
        let results = self.cluster.write_many(shard, entries).await;
        assert_eq!(results.len(), sizes.len(), "a result for each entry proposed");
        for (reply, count) in results.into_iter().zip(sizes) {
            match reply {
                Ok(reply) if count == 1 => resp::encode(&reply, self.protocol, out),
                Ok(Reply::Array(replies)) if replies.len() == count => {
                    for reply in &replies {
                        resp::encode(reply, self.protocol, out);
                    }
                }
                // The entry failed whole (the shard's storage, a write the store refused).
                Ok(reply) => (0..count).for_each(|_| resp::encode(&reply, self.protocol, out)),
                Err(error) => {
                    let reply = Reply::error(format!("ERR {error}"));
                    (0..count).for_each(|_| resp::encode(&reply, self.protocol, out));
                }
            }
        }
        run.into_iter().map(|(arguments, _)| arguments).collect()
    }

    /// Plain reads: one barrier per shard, all started after the reads arrived (so each covers
    /// every write completed before its read was sent), then each read in request order.
    /// Returns the requests' arguments, spent.
    async fn read_run(
        &self,
        run: Vec<(Vec<Vec<u8>>, u32, &'static CommandSpec)>,
        out: &mut Vec<u8>,
    ) -> Vec<Vec<Vec<u8>>> {
        let shards: BTreeSet<u32> = run.iter().map(|&(_, shard, _)| shard).collect();
        let barriers: Vec<_> =
            shards.iter().map(|&shard| self.cluster.read_barrier(shard)).collect();
        let mut passed: BTreeMap<u32, Result<Rc<Machine>, ClusterError>> = BTreeMap::new();
        for (shard, barrier) in shards.into_iter().zip(start_in_order(barriers).await) {
            let machine = barrier.finish().await.map(|()| self.cluster.machine(shard));
            passed.insert(shard, machine);
        }
        // One clock reading for the run: its reads see one instant, a key that expires
        // during the run alive (or gone) for all of them. Those on one shard share a snapshot.
        let (now, now_ms) = (self.rt.now(), self.now_ms());
        let mut readers: BTreeMap<u32, Result<Reader<'_>, &ClusterError>> = passed
            .iter()
            .map(|(&shard, machine)| {
                (shard, machine.as_ref().map(|machine| machine.reader(now_ms)))
            })
            .collect();
        let mut spent = Vec::with_capacity(run.len());
        for (arguments, shard, spec) in run {
            self.count_command_at(Some(spec.name), now);
            let reply = match readers.get_mut(&shard).expect("every shard of the run has a barrier")
            {
                Ok(reader) => reader.read(spec, &arguments).await,
                Err(error) => Reply::error(format!("ERR {error}")),
            };
            resp::encode(&reply, self.protocol, out);
            spent.push(arguments);
        }
        spent
    }

    fn is_blocking(&self, arguments: &[Vec<u8>]) -> bool {
        self.multi.is_none()
            && command::lookup(&arguments[0]).is_some_and(|spec| spec.has(command::BLOCKING))
    }

    fn now_ms(&self) -> u64 {
        now_ms(&self.rt)
    }

    fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
        self.info.protocol.set(if protocol == Protocol::Resp3 { 3 } else { 2 });
        if let Some(subscriber) = &self.subscriber {
            subscriber.protocol.set(protocol);
        }
    }

    fn subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    /// Executes one request; usually one reply (SUBSCRIBE and friends: one per channel).
    async fn handle(&mut self, arguments: Vec<Vec<u8>>) -> Vec<Reply> {
        let spec = command::lookup(&arguments[0]);
        self.count_command(spec.map(|spec| spec.name));
        let Some(spec) = spec else {
            let mut text = format!(
                "ERR unknown command '{}', with args beginning with: ",
                String::from_utf8_lossy(&arguments[0]).chars().take(128).collect::<String>()
            );
            for argument in arguments.iter().skip(1).take(8) {
                let shown: String = String::from_utf8_lossy(argument).chars().take(64).collect();
                text.push_str(&format!("'{shown}' "));
            }
            if self.multi.is_some() {
                self.multi_failed = true;
            }
            return vec![Reply::Error(text)];
        };
        if !spec.arity_ok(arguments.len()) {
            if self.multi.is_some() {
                self.multi_failed = true;
            }
            return vec![Reply::error(format!(
                "ERR wrong number of arguments for '{}' command",
                spec.name
            ))];
        }
        if !self.authenticated && !spec.has(command::NO_AUTH) {
            return vec![Reply::error(NOAUTH)];
        }
        if self.subscribed()
            && self.protocol == Protocol::Resp2
            && !spec.has(command::SUBSCRIBED_OK)
        {
            return vec![Reply::error(format!(
                "ERR Can't execute '{}': {SUBSCRIBED_ONLY}",
                spec.name
            ))];
        }
        if let Some(queue) = &mut self.multi {
            if !matches!(spec.name, "exec" | "discard" | "multi" | "watch" | "quit" | "reset") {
                let queueable = spec.has(command::WRITE) || spec.has(command::READONLY);
                // Collection scans keep their cursors on the node serving reads, which a
                // transaction (applied on every replica) cannot reach alike.
                if !queueable
                    || spec.has(command::NO_MULTI)
                    || spec.has(command::FANOUT)
                    || spec.has(command::PUBSUB) && spec.name != "publish"
                {
                    self.multi_failed = true;
                    return vec![Reply::error(format!(
                        "ERR Command '{}' not allowed inside a transaction",
                        spec.name
                    ))];
                }
                if queue.len() >= TRANSACTION_COMMANDS_MAX {
                    self.multi_failed = true;
                    return vec![Reply::error("ERR too many commands in the transaction")];
                }
                queue.push(arguments);
                return vec![Reply::Simple("QUEUED".into())];
            }
        }
        if spec.has(command::CONNECTION) || spec.has(command::PUBSUB) && spec.name != "publish" {
            return self.connection_command(spec, &arguments).await;
        }
        vec![self.keyspace_command(spec, arguments).await]
    }

    fn shard_count(&self) -> u32 {
        self.cluster.shard_count()
    }

    /// The one shard of `keys`, or CROSSSLOT.
    fn one_shard(&self, keys: &[&[u8]]) -> Result<u32, Reply> {
        self.single_shard(keys.iter().copied()).ok_or_else(|| Reply::error(CROSSSLOT))
    }

    /// The one shard of `keys` (0 for none); `None` if they span several.
    fn single_shard<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) -> Option<u32> {
        let shard_count = self.shard_count();
        let mut shards = keys.into_iter().map(|key| shard_of(key, shard_count));
        let first = shards.next().unwrap_or(0);
        shards.all(|shard| shard == first).then_some(first)
    }

    async fn write(&self, shard: u32, entry: Entry) -> Reply {
        match self.cluster.write(shard, entry.encode()).await {
            Ok(reply) => reply,
            Err(error) => Reply::error(format!("ERR {error}")),
        }
    }

    async fn read(&self, shard: u32, arguments: &[Vec<u8>]) -> Reply {
        if let Err(error) = self.cluster.read_barrier(shard).await {
            return Reply::error(format!("ERR {error}"));
        }
        self.cluster.machine(shard).read(arguments, self.now_ms()).await
    }

    async fn keyspace_command(
        &mut self,
        spec: &'static CommandSpec,
        arguments: Vec<Vec<u8>>,
    ) -> Reply {
        let keys = spec.keys(&arguments);
        if keys.iter().any(|key| key.len() > crate::commands::KEY_BYTES_MAX) {
            return Reply::error("ERR key too long");
        }
        if spec.has(command::FANOUT) {
            return self.fan_out(spec, &arguments).await;
        }
        if matches!(spec.name, "del" | "unlink" | "exists" | "touch" | "mget") {
            return self.per_shard(spec, &arguments).await;
        }
        let shard = match self.one_shard(&keys) {
            Ok(shard) => shard,
            Err(reply) => return reply,
        };
        if spec.has(command::BLOCKING) {
            return self.blocking(spec, shard, arguments).await;
        }
        if spec.has(command::WRITE) {
            let entry = Entry::Command { now_ms: self.now_ms(), arguments };
            return self.write(shard, entry).await;
        }
        self.read(shard, &arguments).await
    }

    /// DEL/UNLINK/EXISTS/TOUCH/MGET over keys of several shards: one request per shard.
    async fn per_shard(&self, spec: &CommandSpec, arguments: &[Vec<u8>]) -> Reply {
        let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (position, key) in arguments.iter().enumerate().skip(1) {
            groups.entry(shard_of(key, self.shard_count())).or_default().push(position);
        }
        let mut total = 0;
        let mut values = vec![Reply::Null; arguments.len() - 1];
        for (shard, positions) in groups {
            let mut part = vec![arguments[0].clone()];
            part.extend(positions.iter().map(|&position| arguments[position].clone()));
            let reply = if spec.has(command::WRITE) {
                self.write(shard, Entry::Command { now_ms: self.now_ms(), arguments: part }).await
            } else {
                self.read(shard, &part).await
            };
            match reply {
                Reply::Integer(count) => total += count,
                Reply::Array(items) if items.len() == positions.len() => {
                    for (position, item) in positions.iter().zip(items) {
                        values[position - 1] = item;
                    }
                }
                other => return other,
            }
        }
        if spec.name == "mget" {
            Reply::Array(values)
        } else {
            Reply::Integer(total)
        }
    }

    async fn fan_out(&self, spec: &CommandSpec, arguments: &[Vec<u8>]) -> Reply {
        let shards = self.shard_count();
        match spec.name {
            "flushdb" | "flushall" => {
                for option in &arguments[1..] {
                    if !matches!(option.to_ascii_uppercase().as_slice(), b"ASYNC" | b"SYNC") {
                        return Reply::error(crate::commands::SYNTAX);
                    }
                }
                for shard in 0..shards {
                    let reply = self.write(shard, Entry::Flush { now_ms: self.now_ms() }).await;
                    if reply.is_error() {
                        return reply;
                    }
                }
                Reply::ok()
            }
            "dbsize" => {
                let mut total = 0;
                for shard in 0..shards {
                    match self.read(shard, arguments).await {
                        Reply::Integer(count) => total += count,
                        other => return other,
                    }
                }
                Reply::Integer(total)
            }
            "keys" => {
                let mut keys = Vec::new();
                for shard in 0..shards {
                    match self.read(shard, arguments).await {
                        Reply::Array(items) => keys.extend(items),
                        other => return other,
                    }
                }
                Reply::Array(keys)
            }
            "randomkey" => {
                let start = self.rt.rng().below(u64::from(shards)) as u32;
                for offset in 0..shards {
                    let shard = (start + offset) % shards;
                    match self.read(shard, arguments).await {
                        Reply::Null => continue,
                        other => return other,
                    }
                }
                Reply::Null
            }
            "scan" => self.scan(arguments).await,
            _ => Reply::error(format!("ERR '{}' cannot fan out", spec.name)),
        }
    }

    /// SCAN: the cursor is `shard << 54 | position in the shard`.
    async fn scan(&self, arguments: &[Vec<u8>]) -> Reply {
        let bits = crate::layout::POSITION_BITS;
        let Some(cursor) =
            std::str::from_utf8(&arguments[1]).ok().and_then(|text| text.parse::<u64>().ok())
        else {
            return Reply::error("ERR invalid cursor");
        };
        let mut shard = (cursor >> bits) as u32;
        let mut position = cursor & ((1 << bits) - 1);
        if shard >= self.shard_count() {
            return Reply::Array(vec![Reply::bulk("0"), Reply::Array(Vec::new())]);
        }
        let mut part = arguments.to_vec();
        loop {
            part[1] = position.to_string().into_bytes();
            let reply = self.read(shard, &part).await;
            let Reply::Array(mut items) = reply else { return reply };
            let (Some(Reply::Array(keys)), Some(Reply::Bulk(next))) = (items.pop(), items.pop())
            else {
                return Reply::error("ERR bad shard scan reply");
            };
            let next: u64 = String::from_utf8_lossy(&next).parse().unwrap_or(0);
            if next != 0 {
                let cursor = (u64::from(shard) << bits) | next;
                return Reply::Array(vec![Reply::bulk(cursor.to_string()), Reply::Array(keys)]);
            }
            shard += 1;
            position = 0;
            if shard >= self.shard_count() {
                return Reply::Array(vec![Reply::bulk("0"), Reply::Array(keys)]);
            }
            if !keys.is_empty() {
                let cursor = u64::from(shard) << bits;
                return Reply::Array(vec![Reply::bulk(cursor.to_string()), Reply::Array(keys)]);
            }
        }
    }

    /// BLPOP/BRPOP/BLMOVE/BLMPOP/BZPOPMIN/BZPOPMAX/BZMPOP: try a replicated pop; if nothing,
    /// wait until one of the keys gains elements (or the timeout) and try again.
    async fn blocking(&self, spec: &CommandSpec, shard: u32, arguments: Vec<Vec<u8>>) -> Reply {
        // BLMPOP and BZMPOP name their timeout first (their keys are counted), the others last.
        let timeout_position = if spec.key_count_position > 0 { 1 } else { arguments.len() - 1 };
        let Some(timeout) = crate::commands::parse_float(&arguments[timeout_position]) else {
            return Reply::error("ERR timeout is not a float or out of range");
        };
        // Redis 7.2 keeps timeouts in i64 milliseconds.
        if timeout * 1000.0 > i64::MAX as f64 {
            return Reply::error("ERR timeout is out of range");
        }
        if timeout < 0.0 {
            return Reply::error("ERR timeout is negative");
        }
        // A deadline past what the clock can hold (centuries) is no deadline: wait until woken.
        let deadline = Duration::try_from_secs_f64(timeout)
            .ok()
            .filter(|_| timeout > 0.0)
            .and_then(|timeout| self.rt.now().checked_add(timeout));
        let keys: Vec<Vec<u8>> = spec.keys(&arguments).into_iter().map(<[u8]>::to_vec).collect();
        let timed_out = if spec.name == "blmove" { Reply::Null } else { Reply::NullArray };
        loop {
            let Some(mut waiter) = self.shared.block_on(&keys) else {
                return Reply::error("ERR too many blocked clients");
            };
            let entry = Entry::Command { now_ms: self.now_ms(), arguments: arguments.clone() };
            let reply = self.write(shard, entry).await;
            if !matches!(reply, Reply::Null | Reply::NullArray) {
                return reply;
            }
            match deadline {
                None => waiter.woken().await,
                Some(deadline) => {
                    if self.rt.now() >= deadline {
                        return timed_out;
                    }
                    let woken = waiter.woken();
                    let sleep = self.rt.sleep_until(deadline);
                    if let strata_rt::sync::Either::Right(()) =
                        strata_rt::sync::select(woken, sleep).await
                    {
                        return timed_out;
                    }
                }
            }
        }
    }

    fn unsubscribe_all(&mut self) {
        for channel in std::mem::take(&mut self.channels) {
            self.shared.unsubscribe(false, &channel, self.info.id);
        }
        for pattern in std::mem::take(&mut self.patterns) {
            self.shared.unsubscribe(true, &pattern, self.info.id);
        }
        self.info.channels.set(0);
        self.info.patterns.set(0);
    }

    async fn connection_command(&mut self, spec: &CommandSpec, a: &[Vec<u8>]) -> Vec<Reply> {
        let reply = match spec.name {
            "ping" => {
                if self.subscribed() && self.protocol == Protocol::Resp2 {
                    let message = a.get(1).cloned().unwrap_or_default();
                    Reply::Array(vec![Reply::bulk("pong"), Reply::Bulk(message)])
                } else {
                    match a.len() {
                        1 => Reply::Simple("PONG".into()),
                        2 => Reply::Bulk(a[1].clone()),
                        _ => Reply::error("ERR wrong number of arguments for 'ping' command"),
                    }
                }
            }
            "echo" => Reply::Bulk(a[1].clone()),
            "quit" => {
                self.closing = true;
                Reply::ok()
            }
            "hello" => self.hello(a),
            "auth" => self.auth(a),
            "select" => match crate::commands::parse_integer(&a[1]) {
                Some(0) => Reply::ok(),
                Some(_) => Reply::error("ERR DB index is out of range"),
                None => Reply::error(crate::commands::NOT_INTEGER),
            },
            "reset" => {
                self.multi = None;
                self.multi_failed = false;
                self.watched.clear();
                self.unsubscribe_all();
                self.set_protocol(Protocol::Resp2);
                self.info.name.borrow_mut().clear();
                self.info.multi.set(-1);
                self.info.watched.set(0);
                self.authenticated = self.state.config.borrow().password.is_none();
                Reply::Simple("RESET".into())
            }
            "client" => self.client(a),
            "info" => self.info_command(a).await,
            "command" => command_command(a),
            "config" => self.config(a),
            "time" => {
                let now = self.rt.now_unix();
                Reply::Array(vec![
                    Reply::bulk(now.as_secs().to_string()),
                    Reply::bulk(now.subsec_micros().to_string()),
                ])
            }
            "function" => match a[1].to_ascii_uppercase().as_slice() {
                b"FLUSH" if a.len() <= 3 => Reply::ok(),
                b"LIST" => Reply::Array(Vec::new()),
                _ => Reply::error(
                    "ERR unknown subcommand or wrong number of arguments for 'function'",
                ),
            },
            "multi" => {
                if self.multi.is_some() {
                    Reply::error("ERR MULTI calls can not be nested")
                } else {
                    self.multi = Some(Vec::new());
                    self.multi_failed = false;
                    self.info.multi.set(0);
                    Reply::ok()
                }
            }
            "discard" => {
                if self.multi.take().is_none() {
                    Reply::error("ERR DISCARD without MULTI")
                } else {
                    self.watched.clear();
                    self.info.multi.set(-1);
                    self.info.watched.set(0);
                    Reply::ok()
                }
            }
            "exec" => self.exec().await,
            "watch" => self.watch(a).await,
            "unwatch" => {
                self.watched.clear();
                self.info.watched.set(0);
                Reply::ok()
            }
            "subscribe" | "psubscribe" => return self.subscribe(spec.name == "psubscribe", a),
            "unsubscribe" | "punsubscribe" => {
                return self.unsubscribe(spec.name == "punsubscribe", a)
            }
            "pubsub" => self.pubsub(a),
            "wait" => wait(a),
            "swapdb" => swapdb(a),
            _ => Reply::error(format!("ERR '{}' is not supported", spec.name)),
        };
        vec![reply]
    }

    fn hello(&mut self, a: &[Vec<u8>]) -> Reply {
        let mut protocol = self.protocol;
        if let Some(version) = a.get(1) {
            match crate::commands::parse_integer(version) {
                Some(2) => protocol = Protocol::Resp2,
                Some(3) => protocol = Protocol::Resp3,
                Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
                None => {
                    return Reply::error("ERR Protocol version is not an integer or out of range")
                }
            }
        }
        let mut position = 2;
        let mut name = None;
        while position < a.len() {
            match a[position].to_ascii_uppercase().as_slice() {
                b"AUTH" if position + 2 < a.len() => {
                    let reply = self.auth(&[
                        b"AUTH".to_vec(),
                        a[position + 1].clone(),
                        a[position + 2].clone(),
                    ]);
                    if reply.is_error() {
                        return reply;
                    }
                    position += 3;
                }
                b"SETNAME" if position + 1 < a.len() => {
                    if !valid_client_name(&a[position + 1]) {
                        return Reply::error(CLIENT_NAME_ERROR);
                    }
                    name = Some(a[position + 1].clone());
                    position += 2;
                }
                _ => {
                    return Reply::error(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(&a[position])
                    ))
                }
            }
        }
        if !self.authenticated {
            return Reply::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time",
            );
        }
        if let Some(name) = name {
            *self.info.name.borrow_mut() = name;
        }
        self.set_protocol(protocol);
        let version = if protocol == Protocol::Resp3 { 3 } else { 2 };
        Reply::Map(vec![
            (Reply::bulk("server"), Reply::bulk("redis")),
            (Reply::bulk("version"), Reply::bulk(REDIS_VERSION)),
            (Reply::bulk("proto"), Reply::Integer(version)),
            (Reply::bulk("id"), Reply::Integer(self.info.id as i64)),
            (Reply::bulk("mode"), Reply::bulk("standalone")),
            (Reply::bulk("role"), Reply::bulk("master")),
            (Reply::bulk("modules"), Reply::Array(Vec::new())),
        ])
    }

    fn auth(&mut self, a: &[Vec<u8>]) -> Reply {
        let password = self.state.config.borrow().password.clone();
        let (user, given) = match a.len() {
            2 => (None, &a[1]),
            3 => (Some(&a[1]), &a[2]),
            _ => return Reply::error(crate::commands::SYNTAX),
        };
        let Some(password) = password else {
            if user.is_none() {
                return Reply::error(
                    "ERR AUTH <password> called without any password configured for the \
                     default user. Are you sure your configuration is correct?",
                );
            }
            // The default user has no password: any password is accepted, as in Redis.
            return if user.is_some_and(|user| user.as_slice() == b"default") {
                self.authenticated = true;
                Reply::ok()
            } else {
                Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
            };
        };
        let user_ok = user.is_none_or(|user| user.as_slice() == b"default");
        if user_ok && given.as_slice() == password.as_bytes() {
            self.authenticated = true;
            Reply::ok()
        } else {
            Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
        }
    }

    fn client(&mut self, a: &[Vec<u8>]) -> Reply {
        let subcommand = a[1].to_ascii_uppercase();
        match (subcommand.as_slice(), a.len()) {
            (b"SETNAME", 3) => {
                if !valid_client_name(&a[2]) {
                    return Reply::error(CLIENT_NAME_ERROR);
                }
                *self.info.name.borrow_mut() = a[2].clone();
                Reply::ok()
            }
            (b"GETNAME", 2) => {
                let name = self.info.name.borrow().clone();
                if name.is_empty() {
                    Reply::Null
                } else {
                    Reply::Bulk(name)
                }
            }
            (b"ID", 2) => Reply::Integer(self.info.id as i64),
            (b"INFO", 2) => Reply::Verbatim {
                format: *b"txt",
                text: format!("{}\n", self.info.line(self.rt.now())).into_bytes(),
            },
            (b"LIST", _) => {
                let now = self.rt.now();
                let mut text = String::new();
                for client in self.state.clients.borrow().values() {
                    text.push_str(&client.line(now));
                    text.push('\n');
                }
                Reply::Verbatim { format: *b"txt", text: text.into_bytes() }
            }
            (b"SETINFO", 4) => {
                match a[2].to_ascii_uppercase().as_slice() {
                    b"LIB-NAME" => *self.info.library_name.borrow_mut() = a[3].clone(),
                    b"LIB-VER" => *self.info.library_version.borrow_mut() = a[3].clone(),
                    _ => {
                        return Reply::error(format!(
                            "ERR Unrecognized option '{}'",
                            String::from_utf8_lossy(&a[2])
                        ))
                    }
                }
                Reply::ok()
            }
            (b"NO-EVICT" | b"NO-TOUCH", 3) => Reply::ok(),
            _ => Reply::error(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&a[1])
            )),
        }
    }

    async fn info_command(&self, a: &[Vec<u8>]) -> Reply {
        let sections: Vec<String> =
            a[1..].iter().map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()).collect();
        let wants = |name: &str| {
            sections.is_empty()
                || sections
                    .iter()
                    .any(|s| s == name || s == "all" || s == "everything" || s == "default")
        };
        let mut text = String::new();
        let uptime = self.rt.now().saturating_duration_since(self.state.started).as_secs();
        let config = self.state.config.borrow().clone();
        if wants("server") {
            text.push_str(&format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\n\
                 strata_version:{}\r\nos:Linux\r\narch_bits:64\r\ntcp_port:{}\r\n\
                 uptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nexecutable:strata\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                config.listen.port(),
                uptime / 86400,
            ));
        }
        if wants("clients") {
            text.push_str(&format!(
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\r\n",
                self.state.clients.borrow().len(),
                config.connections_max,
                self.shared.blocked_clients(),
            ));
        }
        if wants("stats") {
            text.push_str(&format!(
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 rejected_connections:{}\r\n\r\n",
                self.state.connections_total.get(),
                self.state.commands_total.get(),
                self.state.rejected_total.get(),
            ));
        }
        if wants("replication") {
            text.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
        }
        if wants("keyspace") {
            text.push_str("# Keyspace\r\n");
            let mut keys = 0;
            for shard in 0..self.shard_count() {
                if let Reply::Integer(count) =
                    self.cluster.machine(shard).read(&[b"DBSIZE".to_vec()], self.now_ms()).await
                {
                    keys += count;
                }
            }
            if keys > 0 {
                text.push_str(&format!("db0:keys={keys},expires=0,avg_ttl=0\r\n"));
            }
            text.push_str("\r\n");
        }
        Reply::Verbatim { format: *b"txt", text: text.into_bytes() }
    }

    fn config(&mut self, a: &[Vec<u8>]) -> Reply {
        let subcommand = a[1].to_ascii_uppercase();
        match subcommand.as_slice() {
            b"GET" if a.len() >= 3 => {
                let config = self.state.config.borrow().clone();
                let settings: Vec<(&str, String)> = vec![
                    ("maxclients", config.connections_max.to_string()),
                    ("requirepass", config.password.clone().unwrap_or_default()),
                    ("databases", "1".into()),
                    ("appendonly", "yes".into()),
                    ("appendfsync", "always".into()),
                    ("save", String::new()),
                    ("timeout", "0".into()),
                    ("port", config.listen.port().to_string()),
                    ("bind", config.listen.ip().to_string()),
                    ("maxmemory", "0".into()),
                    ("maxmemory-policy", "noeviction".into()),
                    ("proto-max-bulk-len", resp::BULK_BYTES_MAX.to_string()),
                    ("client-query-buffer-limit", config.query_buffer_bytes_max.to_string()),
                    ("cluster-enabled", "no".into()),
                ];
                let mut pairs = Vec::new();
                for pattern in &a[2..] {
                    let pattern = pattern.to_ascii_lowercase();
                    for (name, value) in &settings {
                        if crate::glob::matches(&pattern, name.as_bytes())
                            && !pairs.iter().any(|(n, _): &(Reply, Reply)| *n == Reply::bulk(*name))
                        {
                            pairs.push((Reply::bulk(*name), Reply::bulk(value.as_str())));
                        }
                    }
                }
                Reply::Map(pairs)
            }
            b"SET" if a.len() >= 4 && a.len() & 1 == 0 => {
                let mut config = self.state.config.borrow().clone();
                for pair in a[2..].chunks(2) {
                    let value = String::from_utf8_lossy(&pair[1]).to_string();
                    match pair[0].to_ascii_lowercase().as_slice() {
                        b"maxclients" => match value.parse::<usize>() {
                            Ok(max) if max > 0 => config.connections_max = max,
                            _ => return Reply::error("ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer"),
                        },
                        b"requirepass" => {
                            config.password = (!value.is_empty()).then_some(value);
                        }
                        b"appendonly" | b"appendfsync" | b"save" | b"timeout" | b"maxmemory"
                        | b"maxmemory-policy" => {}
                        other => {
                            return Reply::error(format!(
                                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                                String::from_utf8_lossy(other)
                            ))
                        }
                    }
                }
                *self.state.config.borrow_mut() = config;
                Reply::ok()
            }
            b"RESETSTAT" if a.len() == 2 => Reply::ok(),
            _ => Reply::error(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
                String::from_utf8_lossy(&a[1])
            )),
        }
    }

    async fn watch(&mut self, a: &[Vec<u8>]) -> Reply {
        if self.multi.is_some() {
            return Reply::error("ERR WATCH inside MULTI is not allowed");
        }
        if self.watched.len() + a.len() - 1 > WATCHED_KEYS_MAX {
            return Reply::error("ERR too many watched keys");
        }
        for key in &a[1..] {
            let shard = shard_of(key, self.shard_count());
            if let Err(error) = self.cluster.read_barrier(shard).await {
                return Reply::error(format!("ERR {error}"));
            }
            match self.cluster.machine(shard).watch_version(key, self.now_ms()).await {
                Ok(version) => self.watched.push((key.clone(), version)),
                Err(reply) => return reply,
            }
        }
        self.info.watched.set(self.watched.len());
        Reply::ok()
    }

    async fn exec(&mut self) -> Reply {
        let Some(queued) = self.multi.take() else {
            return Reply::error("ERR EXEC without MULTI");
        };
        let watched = std::mem::take(&mut self.watched);
        self.info.multi.set(-1);
        self.info.watched.set(0);
        if self.multi_failed {
            self.multi_failed = false;
            return Reply::error("EXECABORT Transaction discarded because of previous errors.");
        }
        let mut keys: Vec<&[u8]> = watched.iter().map(|(key, _)| key.as_slice()).collect();
        for arguments in &queued {
            if let Some(spec) = command::lookup(&arguments[0]) {
                keys.extend(spec.keys(arguments));
            }
        }
        let shard = match self.one_shard(&keys) {
            Ok(shard) => shard,
            Err(_) => {
                return Reply::error(
                    "EXECABORT Transaction discarded because of: CROSSSLOT the keys of a \
                     transaction (queued and watched) must hash to one shard (use {hashtags})",
                )
            }
        };
        if queued.is_empty() && watched.is_empty() {
            return Reply::Array(Vec::new());
        }
        let entry = Entry::Transaction { now_ms: self.now_ms(), watched, commands: queued };
        self.write(shard, entry).await
    }

    fn subscribe(&mut self, pattern: bool, a: &[Vec<u8>]) -> Vec<Reply> {
        let kind = if pattern { "psubscribe" } else { "subscribe" };
        let subscriber = self.subscriber.clone().expect("a running connection has a subscriber");
        let mut replies = Vec::new();
        for name in &a[1..] {
            let set = if pattern { &mut self.patterns } else { &mut self.channels };
            if set.len() >= SUBSCRIPTIONS_MAX && !set.contains(name) {
                replies.push(Reply::error("ERR too many subscriptions"));
                continue;
            }
            set.insert(name.clone());
            self.shared.subscribe(pattern, name, &subscriber);
            replies.push(self.subscription_reply(kind, Some(name)));
        }
        self.info.channels.set(self.channels.len());
        self.info.patterns.set(self.patterns.len());
        replies
    }

    fn unsubscribe(&mut self, pattern: bool, a: &[Vec<u8>]) -> Vec<Reply> {
        let kind = if pattern { "punsubscribe" } else { "unsubscribe" };
        let names: Vec<Vec<u8>> = if a.len() > 1 {
            a[1..].to_vec()
        } else if pattern {
            self.patterns.iter().cloned().collect()
        } else {
            self.channels.iter().cloned().collect()
        };
        let mut replies = Vec::new();
        if names.is_empty() {
            replies.push(self.subscription_reply(kind, None));
        }
        for name in names {
            let set = if pattern { &mut self.patterns } else { &mut self.channels };
            set.remove(&name);
            self.shared.unsubscribe(pattern, &name, self.info.id);
            replies.push(self.subscription_reply(kind, Some(&name)));
        }
        self.info.channels.set(self.channels.len());
        self.info.patterns.set(self.patterns.len());
        replies
    }

    fn subscription_reply(&self, kind: &str, name: Option<&[u8]>) -> Reply {
        let count = (self.channels.len() + self.patterns.len()) as i64;
        let name = name.map_or(Reply::Null, Reply::bulk);
        Reply::Push(vec![Reply::bulk(kind), name, Reply::Integer(count)])
    }

    fn pubsub(&self, a: &[Vec<u8>]) -> Reply {
        match a[1].to_ascii_uppercase().as_slice() {
            b"CHANNELS" => Reply::bulks(self.shared.channels(a.get(2).map(Vec::as_slice))),
            b"NUMSUB" => {
                let all = self.shared.channels(None);
                let mut items = Vec::new();
                for channel in &a[2..] {
                    items.push(Reply::Bulk(channel.clone()));
                    items.push(Reply::Integer(i64::from(all.contains(channel))));
                }
                Reply::Array(items)
            }
            b"NUMPAT" => Reply::Integer(0),
            _ => Reply::error("ERR unknown subcommand for 'pubsub'"),
        }
    }
}

pub const REDIS_VERSION: &str = "7.2.0";
const CLIENT_NAME_ERROR: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&byte| (b'!'..=b'~').contains(&byte))
}

/// WAIT numreplicas timeout: answers at once with `numreplicas`. A write is acknowledged only once
/// a majority of its shard's voters hold it in their synced logs, so what WAIT waits for (the
/// writes before it surviving the loss of the node that took them) has happened before their
/// replies were sent. The server does not know how many voters a shard has (the `Cluster` does
/// not say), so it cannot count replicas as Redis does; it answers the number asked for, which
/// lets the usual `WAIT n t >= n` check go on, rather than 0, which would report every write as
/// unreplicated. On a single node that overstates: there, durability is the node's own fsync.
fn wait(a: &[Vec<u8>]) -> Reply {
    let Some(replicas) = crate::commands::parse_integer(&a[1]) else {
        return Reply::error(crate::commands::NOT_INTEGER);
    };
    let Some(timeout_ms) = crate::commands::parse_integer(&a[2]) else {
        return Reply::error("ERR timeout is not an integer or out of range");
    };
    if timeout_ms < 0 {
        return Reply::error("ERR timeout is negative");
    }
    Reply::Integer(replicas.max(0))
}

/// SWAPDB index index: only database 0 exists, so only swapping it with itself succeeds.
fn swapdb(a: &[Vec<u8>]) -> Reply {
    let index = |text: &[u8]| {
        crate::commands::parse_integer(text).and_then(|index| i32::try_from(index).ok())
    };
    let Some(first) = index(&a[1]) else { return Reply::error("ERR invalid first DB index") };
    let Some(second) = index(&a[2]) else { return Reply::error("ERR invalid second DB index") };
    if first != 0 || second != 0 {
        return Reply::error("ERR DB index is out of range");
    }
    Reply::ok()
}

fn command_command(a: &[Vec<u8>]) -> Reply {
    let Some(subcommand) = a.get(1) else {
        return Reply::Array(command::COMMANDS.iter().map(CommandSpec::info_reply).collect());
    };
    match subcommand.to_ascii_uppercase().as_slice() {
        b"COUNT" => Reply::Integer(command::COMMANDS.len() as i64),
        b"INFO" => {
            if a.len() == 2 {
                return Reply::Array(
                    command::COMMANDS.iter().map(CommandSpec::info_reply).collect(),
                );
            }
            Reply::Array(
                a[2..]
                    .iter()
                    .map(|name| command::lookup(name).map_or(Reply::Null, CommandSpec::info_reply))
                    .collect(),
            )
        }
        b"DOCS" => {
            let specs: Vec<&CommandSpec> = if a.len() == 2 {
                command::COMMANDS.iter().collect()
            } else {
                a[2..].iter().filter_map(|name| command::lookup(name)).collect()
            };
            Reply::Map(specs.into_iter().map(CommandSpec::docs_reply).collect())
        }
        b"LIST" => {
            Reply::Array(command::COMMANDS.iter().map(|spec| Reply::bulk(spec.name)).collect())
        }
        _ => Reply::error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(subcommand)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (Vec<Vec<u8>>, &'static str) {
        let arguments: Vec<Vec<u8>> =
            text.split(' ').map(|part| part.as_bytes().to_vec()).collect();
        let spec = command::lookup(&arguments[0]).expect("a known command");
        (arguments, spec.name)
    }

    /// Entries end at 64 commands, at 1 MiB of arguments, and around writes whose effect their
    /// arguments do not bound.
    #[test]
    fn a_runs_entries_keep_their_bounds() {
        let incrs: Vec<_> = (0..100).map(|_| write("INCR n")).collect();
        assert_eq!(first_entry_len(&incrs), PIPELINE_ENTRY_COMMANDS_MAX);
        let big = format!("SET k {}", "v".repeat(600 << 10));
        let sets = [write(&big), write(&big), write("SET k v")];
        assert_eq!(first_entry_len(&sets), 1, "two would pass 1 MiB");
        assert_eq!(first_entry_len(&sets[1..]), 2);
        let mixed = [write("SET a 1"), write("LPOP l"), write("LPOP l 5"), write("SET b 2")];
        assert_eq!(first_entry_len(&mixed), 2, "a pop with a count ends the entry");
        assert_eq!(first_entry_len(&mixed[2..]), 1, "and goes alone");
        assert_eq!(first_entry_len(&[write("COPY a b"), write("SET c 1")]), 1);
    }
}
