//! Peer messages over byte streams, for backends whose network is real (io_uring).
//!
//! Each node listens on its peer address; for every peer it keeps one outgoing connection, opened
//! on demand and reopened with backoff after a failure. A connection starts with a hello frame
//! naming the sender; then every frame is `[len u32][crc32c u32][payload]`, little-endian. Frames
//! queued for a peer are written in batches (one write for many small messages).
//!
//! Delivery is what `Net::send` promises and no more: a message may be lost (queue full, peer
//! down, connection broken) but never corrupted (checksummed), and messages from one sender
//! arrive in order while its connection lasts. Queues are bounded in messages and bytes.

use crate::net::MESSAGE_SIZE_MAX;
use crate::{Duration, NodeId, Runtime, Stream};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Messages waiting for one peer; beyond this, new ones are dropped.
pub const OUTBOX_MESSAGES_MAX: usize = 8192;
pub const OUTBOX_BYTES_MAX: usize = 64 << 20;
/// Messages received and not yet taken by `receive`; beyond this, arrivals are dropped.
pub const INBOX_MESSAGES_MAX: usize = 65_536;
/// Bytes gathered into one write.
const BATCH_BYTES_MAX: usize = 1 << 20;
const FRAME_HEADER_SIZE: usize = 8;
const HELLO_MAGIC: &[u8; 8] = b"STRATA\x00\x01";
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(10);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(1);

/// Why a peer's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    TooLarge { len: u64 },
    Checksum { expected: u32, actual: u32 },
    BadHello,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len } => {
                write!(formatter, "frame of {len} bytes exceeds {MESSAGE_SIZE_MAX}")
            }
            FrameError::Checksum { expected, actual } => {
                write!(formatter, "frame checksum {actual:#010x}, expected {expected:#010x}")
            }
            FrameError::BadHello => {
                formatter.write_str("connection did not start with a peer hello")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends one frame holding `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    assert!(payload.len() <= MESSAGE_SIZE_MAX, "frame of {} bytes", payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Splits a byte stream into frames: feed bytes in, take whole frames out. Sans-IO.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame's payload, `Ok(None)` if more bytes are needed, or why the stream is
    /// bad (after which the connection must be dropped).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let available = &self.buffer[self.start..];
        if available.len() < FRAME_HEADER_SIZE {
            return Ok(None);
        }
        let len = u32::from_le_bytes(available[0..4].try_into().expect("4 bytes")) as usize;
        if len > MESSAGE_SIZE_MAX {
            return Err(FrameError::TooLarge { len: len as u64 });
        }
        if available.len() < FRAME_HEADER_SIZE + len {
            return Ok(None);
        }
        let expected = u32::from_le_bytes(available[4..8].try_into().expect("4 bytes"));
        let payload = &available[FRAME_HEADER_SIZE..FRAME_HEADER_SIZE + len];
        let actual = crc32c::crc32c(payload);
        if actual != expected {
            return Err(FrameError::Checksum { expected, actual });
        }
        let payload = payload.to_vec();
        self.start += FRAME_HEADER_SIZE + len;
        if self.start > (1 << 20) && self.start * 2 > self.buffer.len() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(payload))
    }
}

fn hello(node: NodeId) -> Vec<u8> {
    let mut payload = HELLO_MAGIC.to_vec();
    payload.extend_from_slice(&node.0.to_le_bytes());
    payload
}

/// The node a hello frame names.
pub fn parse_hello(payload: &[u8]) -> Result<NodeId, FrameError> {
    match payload.strip_prefix(HELLO_MAGIC) {
        Some(id) if id.len() == 4 => {
            Ok(NodeId(u32::from_le_bytes(id.try_into().expect("4 bytes"))))
        }
        _ => Err(FrameError::BadHello),
    }
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
    waker: Option<Waker>,
}

/// The queues between `Net::send`/`receive` and the transport's tasks.
#[derive(Default)]
pub struct PeerQueues {
    outboxes: RefCell<BTreeMap<NodeId, Outbox>>,
    inbox: RefCell<VecDeque<(NodeId, Vec<u8>)>>,
    inbox_waker: RefCell<Option<Waker>>,
    dropped: std::cell::Cell<u64>,
}

impl PeerQueues {
    /// Queues `message` for `to`; drops it if `to` is unknown or its queue is full.
    pub fn send(&self, to: NodeId, message: Vec<u8>) {
        let mut outboxes = self.outboxes.borrow_mut();
        let Some(outbox) = outboxes.get_mut(&to) else {
            self.dropped.set(self.dropped.get() + 1);
            return;
        };
        if outbox.queue.len() >= OUTBOX_MESSAGES_MAX
            || outbox.bytes + message.len() > OUTBOX_BYTES_MAX
        {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        outbox.bytes += message.len();
        outbox.queue.push_back(message);
        if let Some(waker) = outbox.waker.take() {
            waker.wake();
        }
    }

    pub async fn receive(&self) -> (NodeId, Vec<u8>) {
        std::future::poll_fn(|context| match self.inbox.borrow_mut().pop_front() {
            Some(message) => Poll::Ready(message),
            None => {
                *self.inbox_waker.borrow_mut() = Some(context.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Messages dropped so far (unknown peer, full queue, full inbox).
    pub fn dropped_count(&self) -> u64 {
        self.dropped.get()
    }

    fn deliver(&self, from: NodeId, message: Vec<u8>) {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.len() >= INBOX_MESSAGES_MAX {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        inbox.push_back((from, message));
        drop(inbox);
        if let Some(waker) = self.inbox_waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits for messages for `peer` and takes up to a batch of them, framed.
    async fn next_batch(&self, peer: NodeId) -> Vec<u8> {
        std::future::poll_fn(|context| {
            let mut outboxes = self.outboxes.borrow_mut();
            let outbox = outboxes.get_mut(&peer).expect("outbox of a configured peer");
            if outbox.queue.is_empty() {
                outbox.waker = Some(context.waker().clone());
                return Poll::Pending;
            }
            let mut batch = Vec::new();
            while let Some(message) = outbox.queue.front() {
                if !batch.is_empty()
                    && batch.len() + message.len() + FRAME_HEADER_SIZE > BATCH_BYTES_MAX
                {
                    break;
                }
                let message = outbox.queue.pop_front().expect("front exists");
                outbox.bytes -= message.len();
                encode_frame(&message, &mut batch);
            }
            Poll::Ready(batch)
        })
        .await
    }
}

/// Who this node is and where every node listens for peers.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub node: NodeId,
    pub listen: SocketAddr,
    /// Every other node's peer address.
    pub peers: BTreeMap<NodeId, SocketAddr>,
}

/// Starts the transport's tasks on `rt`: a listener for incoming peer connections and one sender
/// per peer.
pub fn start_peer_transport(
    rt: &Runtime,
    queues: Rc<PeerQueues>,
    config: PeerConfig,
) -> io::Result<()> {
    let listener = rt.net().listen(config.listen)?;
    for &peer in config.peers.keys() {
        queues.outboxes.borrow_mut().insert(peer, Outbox::default());
    }
    let accepting = queues.clone();
    let spawner = rt.clone();
    drop(rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(spawner.spawn(receive_from(stream, accepting.clone())));
        }
    }));
    for (&peer, &address) in &config.peers {
        drop(rt.spawn(send_to(rt.clone(), config.node, peer, address, queues.clone())));
    }
    Ok(())
}

async fn receive_from(stream: Stream, queues: Rc<PeerQueues>) {
    let mut decoder = FrameDecoder::default();
    let mut peer: Option<NodeId> = None;
    let mut buf = vec![0; 64 << 10];
    loop {
        let (read, returned) = stream.read(buf).await;
        buf = returned;
        let count = match read {
            Ok(0) | Err(_) => return,
            Ok(count) => count,
        };
        decoder.feed(&buf[..count]);
        loop {
            match decoder.next_frame() {
                Ok(Some(payload)) => match peer {
                    Some(from) => queues.deliver(from, payload),
                    None => match parse_hello(&payload) {
                        Ok(from) => peer = Some(from),
                        Err(_) => return,
                    },
                },
                Ok(None) => break,
                // A peer that sends bad bytes loses its connection, never the node.
                Err(_) => return,
            }
        }
    }
}

async fn send_to(
    rt: Runtime,
    node: NodeId,
    peer: NodeId,
    address: SocketAddr,
    queues: Rc<PeerQueues>,
) {
    let mut delay = RECONNECT_DELAY_MIN;
    loop {
        // Connect only when there is something to say.
        let batch = queues.next_batch(peer).await;
        let Ok(stream) = rt.net().connect(address).await else {
            rt.sleep(delay).await;
            delay = (delay * 2).min(RECONNECT_DELAY_MAX);
            continue; // The batch is lost: messages are unreliable.
        };
        delay = RECONNECT_DELAY_MIN;
        let mut greeting = Vec::new();
        encode_frame(&hello(node), &mut greeting);
        greeting.extend_from_slice(&batch);
        if stream.write_all(greeting).await.is_err() {
            continue;
        }
        loop {
            let batch = queues.next_batch(peer).await;
            if stream.write_all(batch).await.is_err() {
                break;
            }
        }
    }
}

/// Fuzz body: any bytes, split anywhere, must decode to frames or a clean error, never a panic;
/// and the frames decoded must re-encode to the bytes they came from.
pub fn fuzz_peer_frames(data: &[u8]) {
    let Some((&split, stream)) = data.split_first() else { return };
    let split = usize::from(split).max(1);
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    'feeding: for chunk in stream.chunks(split) {
        decoder.feed(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => break 'feeding,
            }
        }
    }
    let mut encoded = Vec::new();
    for frame in &frames {
        encode_frame(frame, &mut encoded);
    }
    assert_eq!(&stream[..encoded.len()], &encoded[..], "decoded frames re-encode to their bytes");
    let _ = parse_hello(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_any_split() {
        let messages: Vec<Vec<u8>> =
            vec![vec![], b"a".to_vec(), vec![7; 100_000], b"last".to_vec()];
        let mut stream = Vec::new();
        for message in &messages {
            encode_frame(message, &mut stream);
        }
        for split in [1, 3, 8, 4096, stream.len()] {
            let mut decoder = FrameDecoder::default();
            let mut decoded = Vec::new();
            for chunk in stream.chunks(split) {
                decoder.feed(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    decoded.push(frame);
                }
            }
            assert_eq!(decoded, messages, "split {split}");
        }
    }

    #[test]
    fn corrupt_and_oversized_frames_are_refused() {
        let mut stream = Vec::new();
        encode_frame(b"payload", &mut stream);
        stream[10] ^= 1;
        let mut decoder = FrameDecoder::default();
        decoder.feed(&stream);
        assert!(matches!(decoder.next_frame(), Err(FrameError::Checksum { .. })));
        let mut decoder = FrameDecoder::default();
        decoder.feed(&u32::MAX.to_le_bytes());
        decoder.feed(&[0; 4]);
        assert!(matches!(decoder.next_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn random_and_damaged_streams_never_panic() {
        let mut rng = crate::Rng::with_seed(11);
        for case in 0..2000 {
            let mut data = vec![0u8; rng.index(300)];
            rng.fill(&mut data);
            if case % 2 == 0 {
                // Mostly valid streams with one damaged byte reach past the checksum.
                let mut stream = vec![1 + rng.below(16) as u8];
                for _ in 0..rng.index(4) {
                    encode_frame(&data[..rng.index(data.len() + 1)], &mut stream);
                }
                if stream.len() > 1 {
                    let at = 1 + rng.index(stream.len() - 1);
                    stream[at] ^= 1 << rng.below(8);
                }
                data = stream;
            }
            fuzz_peer_frames(&data);
        }
    }

    #[test]
    fn hello_names_its_node_and_nothing_else_passes() {
        assert_eq!(parse_hello(&hello(NodeId(42))), Ok(NodeId(42)));
        assert_eq!(parse_hello(b"STRATA\x00\x01\x01"), Err(FrameError::BadHello));
        assert_eq!(parse_hello(b"hello"), Err(FrameError::BadHello));
    }
}
