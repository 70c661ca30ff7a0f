//! The simulated network: unreliable peer messages, and ordered byte streams that stall across a
//! partition (as TCP retransmits) and reset when a node crashes.
//!
//! Links are directed: `blocked` holds cut directions (counted, so overlapping partitions heal
//! independently), `clogged` slow ones.

use crate::world::{NodeState, Tag, World};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::task::Waker;
use strata_rt::sync::Completer;
use strata_rt::{BufResult, NodeId};

/// Messages waiting in a node's inbox beyond this are dropped, as a full socket buffer would.
pub const INBOX_LENGTH_MAX: usize = 65_536;
/// Connections waiting to be accepted on one listener (the production backend's listen backlog).
pub const BACKLOG_LENGTH_MAX: usize = 1024;
/// How long a connect across a partition waits before `TimedOut`.
pub const CONNECT_TIMEOUT_NANOS: u64 = 3_000_000_000;
/// How often a stalled stream retries a cut link (TCP retransmission).
const RETRANSMIT_NANOS: u64 = 100_000_000;
/// Extra per-message delay on a clogged link.
const CLOG_DELAY_NANOS: (u64, u64) = (100_000_000, 1_000_000_000);

/// The address a simulated node's sockets live at: a label, no real traffic ever leaves.
pub fn node_ip(node: NodeId) -> IpAddr {
    let host = node.0 + 1;
    IpAddr::V4(Ipv4Addr::new(127, 0, (host >> 8) as u8, (host & 0xff) as u8))
}

pub(crate) enum ChunkBody {
    Data { bytes: Vec<u8>, writer: Completer<BufResult<()>> },
    Fin,
}

pub(crate) struct Chunk {
    deliver_at: u64,
    body: ChunkBody,
}

/// One end of a connection: what it can read, and what it sent that is still in flight.
pub(crate) struct End {
    pub node: u32,
    pub readable: VecDeque<u8>,
    /// The peer's FIN arrived: reads return 0 once `readable` is drained.
    pub peer_closed: bool,
    pub reader: Option<Waker>,
    pub in_flight: VecDeque<Chunk>,
    /// This end sent its FIN (shutdown or drop).
    pub shut: bool,
    /// This end's handle was dropped: data arriving here is discarded.
    pub closed: bool,
}

pub(crate) struct Connection {
    pub ends: [End; 2],
}

pub(crate) struct ListenerState {
    pub node: u32,
    pub backlog: VecDeque<(u64, SocketAddr)>,
    pub waker: Option<Waker>,
}

#[derive(Default)]
pub(crate) struct NetState {
    pub blocked: BTreeMap<(u32, u32), u32>,
    pub clogged: BTreeMap<(u32, u32), u64>,
    pub listeners: BTreeMap<SocketAddr, ListenerState>,
    pub connections: BTreeMap<u64, Connection>,
    pub next_connection: u64,
    pub next_port: u16,
}

impl NetState {
    pub fn is_blocked(&self, from: u32, to: u32) -> bool {
        self.blocked.get(&(from, to)).is_some_and(|&count| count > 0)
    }

    pub fn block(&mut self, from: u32, to: u32) {
        *self.blocked.entry((from, to)).or_default() += 1;
    }

    pub fn unblock(&mut self, from: u32, to: u32) {
        if let Some(count) = self.blocked.get_mut(&(from, to)) {
            *count -= 1;
            if *count == 0 {
                self.blocked.remove(&(from, to));
            }
        }
    }

    pub fn heal_all(&mut self) {
        self.blocked.clear();
        self.clogged.clear();
    }
}

pub(crate) fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer")
}

impl World {
    /// Extra delay a message or chunk from `from` to `to` suffers now.
    fn link_delay(&mut self, from: u32, to: u32) -> u64 {
        let mut delay = self.network_latency();
        if self.net.clogged.get(&(from, to)).is_some_and(|&until| until > self.now) {
            self.stats.messages_clogged += 1;
            delay += self.rng.range_inclusive(CLOG_DELAY_NANOS.0, CLOG_DELAY_NANOS.1);
        }
        delay
    }

    pub fn send_message(&mut self, from: u32, to: NodeId, message: Vec<u8>) {
        self.stats.messages_sent += 1;
        self.trace
            .fold((u64::from(Tag::Send as u8) << 56) | (u64::from(from) << 32) | u64::from(to.0));
        self.trace.fold_bytes(&message);
        if to.0 as usize >= self.nodes.len() {
            return; // No such node: lost, as a packet to a dead address.
        }
        if self.net.is_blocked(from, to.0) {
            self.stats.messages_blocked += 1;
            return;
        }
        if self.fault(self.config.network.drop_probability) {
            self.stats.messages_dropped += 1;
            return;
        }
        let mut bodies = Vec::with_capacity(2);
        if self.fault(self.config.network.duplicate_probability) {
            self.stats.messages_duplicated += 1;
            bodies.push(message.clone());
        }
        bodies.push(message);
        for body in bodies {
            let mut delay = self.link_delay(from, to.0);
            if self.fault(self.config.network.reorder_probability) {
                self.stats.messages_reordered += 1;
                delay += self.rng.below(10 * self.config.network.latency_max_us.max(1) * 1_000);
            }
            self.schedule(
                delay,
                Tag::Message,
                to.0,
                Box::new(move |world: &mut World| world.deliver_message(from, to.0, body)),
            );
        }
    }

    fn deliver_message(&mut self, from: u32, to: u32, message: Vec<u8>) {
        if self.net.is_blocked(from, to) {
            self.stats.messages_blocked += 1;
            return;
        }
        let node = self.node_mut(to);
        if node.state == NodeState::Crashed || node.inbox.len() >= INBOX_LENGTH_MAX {
            self.stats.messages_undeliverable += 1;
            return;
        }
        node.inbox.push_back((NodeId(from), message));
        if let Some(waker) = node.inbox_waker.take() {
            waker.wake();
        }
        self.stats.messages_delivered += 1;
    }

    pub fn allocate_port(&mut self) -> u16 {
        self.net.next_port =
            if self.net.next_port < 40_000 { 40_000 } else { self.net.next_port + 1 };
        if self.net.next_port == u16::MAX {
            self.net.next_port = 40_000;
        }
        self.net.next_port
    }

    /// Queues `body` on the `side` end of `connection` toward its peer, in order.
    pub fn stream_send(&mut self, connection: u64, side: usize, body: ChunkBody) {
        let Some(link) = self.net.connections.get(&connection) else {
            if let ChunkBody::Data { bytes, writer } = body {
                writer.complete((Err(reset_error()), bytes));
            }
            return;
        };
        let (from, to) = (link.ends[side].node, link.ends[1 - side].node);
        if let ChunkBody::Data { bytes, .. } = &body {
            self.stats.stream_bytes += bytes.len() as u64;
            self.trace.fold((u64::from(Tag::Write as u8) << 56) | connection);
            self.trace.fold_bytes(bytes);
        }
        let delay = self.link_delay(from, to);
        let end = &mut self.net.connections.get_mut(&connection).expect("checked above").ends[side];
        let earliest = end.in_flight.back().map_or(0, |chunk| chunk.deliver_at);
        let deliver_at = (self.now + delay).max(earliest);
        end.in_flight.push_back(Chunk { deliver_at, body });
        self.schedule_at(
            deliver_at,
            Tag::Stream,
            to,
            Box::new(move |world: &mut World| world.stream_flush(connection, side)),
        );
    }

    /// Moves the chunks due by now from `side`'s in-flight queue to its peer.
    fn stream_flush(&mut self, connection: u64, side: usize) {
        let now = self.now;
        let Some(link) = self.net.connections.get(&connection) else { return };
        let (from, to) = (link.ends[side].node, link.ends[1 - side].node);
        if self.net.is_blocked(from, to) {
            if link.ends[side].in_flight.front().is_some_and(|chunk| chunk.deliver_at <= now) {
                self.schedule(
                    RETRANSMIT_NANOS,
                    Tag::Stream,
                    to,
                    Box::new(move |world: &mut World| world.stream_flush(connection, side)),
                );
            }
            return;
        }
        let link = self.net.connections.get_mut(&connection).expect("checked above");
        let [first, second] = &mut link.ends;
        let (sender, receiver) = if side == 0 { (first, second) } else { (second, first) };
        let mut wake = false;
        while sender.in_flight.front().is_some_and(|chunk| chunk.deliver_at <= now) {
            let chunk = sender.in_flight.pop_front().expect("front checked");
            match chunk.body {
                ChunkBody::Data { bytes, writer } => {
                    if receiver.closed {
                        writer.complete((Err(reset_error()), bytes));
                        continue;
                    }
                    receiver.readable.extend(&bytes);
                    writer.complete((Ok(()), bytes));
                }
                ChunkBody::Fin => receiver.peer_closed = true,
            }
            wake = true;
        }
        if wake {
            if let Some(waker) = receiver.reader.take() {
                waker.wake();
            }
        }
    }

    /// Both ends of `connection` fail: readers see a reset, writers in flight get an error.
    pub fn stream_reset(&mut self, connection: u64) {
        let Some(link) = self.net.connections.remove(&connection) else { return };
        for end in link.ends {
            if let Some(waker) = end.reader {
                waker.wake();
            }
            for chunk in end.in_flight {
                if let ChunkBody::Data { bytes, writer } = chunk.body {
                    writer.complete((Err(reset_error()), bytes));
                }
            }
        }
    }

    /// Cuts every connection and listener of a crashed node.
    pub fn net_crash(&mut self, node: u32) {
        self.net.listeners.retain(|_, listener| listener.node != node);
        let doomed: Vec<u64> = self
            .net
            .connections
            .iter()
            .filter(|(_, link)| link.ends.iter().any(|end| end.node == node))
            .map(|(&id, _)| id)
            .collect();
        for connection in doomed {
            self.stream_reset(connection);
        }
    }

    /// Starts a connection from `node` to `address`; completes the connector after a round trip.
    pub fn stream_connect(
        &mut self,
        node: u32,
        address: SocketAddr,
        connector: Completer<io::Result<(u64, SocketAddr)>>,
    ) {
        let target = self.net.listeners.get(&address).map(|listener| listener.node);
        let latency = self.network_latency();
        let Some(target) = target else {
            let refused = io::Error::new(io::ErrorKind::ConnectionRefused, address.to_string());
            self.schedule(
                2 * latency,
                Tag::Stream,
                node,
                Box::new(move |_| connector.complete(Err(refused))),
            );
            return;
        };
        if self.net.is_blocked(node, target) || self.net.is_blocked(target, node) {
            let timed_out =
                io::Error::new(io::ErrorKind::TimedOut, format!("connect to {address}"));
            self.schedule(
                CONNECT_TIMEOUT_NANOS,
                Tag::Stream,
                node,
                Box::new(move |_| connector.complete(Err(timed_out))),
            );
            return;
        }
        let local = SocketAddr::new(node_ip(NodeId(node)), self.allocate_port());
        let end = |node: u32| End {
            node,
            readable: VecDeque::new(),
            peer_closed: false,
            reader: None,
            in_flight: VecDeque::new(),
            shut: false,
            closed: false,
        };
        let connection = self.net.next_connection;
        self.net.next_connection += 1;
        let listener = self.net.listeners.get_mut(&address).expect("listener looked up above");
        if listener.backlog.len() >= BACKLOG_LENGTH_MAX {
            let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "backlog full");
            self.schedule(
                2 * latency,
                Tag::Stream,
                node,
                Box::new(move |_| connector.complete(Err(refused))),
            );
            return;
        }
        listener.backlog.push_back((connection, local));
        if let Some(waker) = listener.waker.take() {
            waker.wake();
        }
        self.net.connections.insert(connection, Connection { ends: [end(node), end(target)] });
        self.schedule(
            2 * latency,
            Tag::Stream,
            node,
            Box::new(move |_| connector.complete(Ok((connection, address)))),
        );
    }
}
