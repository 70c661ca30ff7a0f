//! The network, two faces: unreliable peer messages between node ids, and byte streams for
//! client protocols.

use crate::backend::{Backend, BufResult, ListenerBackend, StreamBackend};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

/// A node of the cluster, as numbered in its configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "n{}", self.0)
    }
}

/// The largest peer message a backend carries; larger ones are a bug of the sender.
pub const MESSAGE_SIZE_MAX: usize = 16 << 20;

#[derive(Clone)]
pub struct Net {
    backend: Rc<dyn Backend>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Net")
    }
}

impl Net {
    pub(crate) fn new(backend: Rc<dyn Backend>) -> Net {
        Net { backend }
    }

    /// Sends one message to `to`; it may be lost, delayed, duplicated or reordered.
    pub fn send(&self, to: NodeId, message: Vec<u8>) {
        assert!(message.len() <= MESSAGE_SIZE_MAX, "peer message of {} bytes", message.len());
        self.backend.send(to, message);
    }

    /// The next message from any peer.
    pub async fn receive(&self) -> (NodeId, Vec<u8>) {
        self.backend.receive().await
    }

    pub fn listen(&self, address: SocketAddr) -> io::Result<Listener> {
        Ok(Listener { inner: self.backend.listen(address)? })
    }

    pub async fn connect(&self, address: SocketAddr) -> io::Result<Stream> {
        Ok(Stream { inner: self.backend.connect(address).await? })
    }
}

pub struct Listener {
    inner: Rc<dyn ListenerBackend>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Listener").field("address", &self.local_address()).finish()
    }
}

impl Listener {
    pub async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        let (inner, peer) = self.inner.accept().await?;
        Ok((Stream { inner }, peer))
    }

    pub fn local_address(&self) -> SocketAddr {
        self.inner.local_address()
    }
}

/// A connected byte stream; clones share it (one task may read while another writes).
#[derive(Clone)]
pub struct Stream {
    inner: Rc<dyn StreamBackend>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Stream").field("peer", &self.peer_address()).finish()
    }
}

impl Stream {
    /// Reads at most `buf.len()` bytes; `Ok(0)` means the peer closed its side.
    pub async fn read(&self, buf: Vec<u8>) -> BufResult<usize> {
        self.inner.read(buf).await
    }

    /// Reads exactly `len` bytes; `UnexpectedEof` if the stream ends first.
    pub async fn read_exact(&self, len: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        let mut buf = vec![0; len.min(64 << 10)];
        while out.len() < len {
            let want = (len - out.len()).min(buf.len());
            buf.resize(want, 0);
            let (result, returned) = self.inner.read(buf).await;
            buf = returned;
            let count = result?;
            if count == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream closed"));
            }
            out.extend_from_slice(&buf[..count]);
        }
        Ok(out)
    }

    pub async fn write(&self, buf: Vec<u8>) -> BufResult<()> {
        self.inner.write(buf).await
    }

    /// Writes `buf[..len]`; the whole buffer comes back (for sending what was just read into it).
    pub async fn write_prefix(&self, buf: Vec<u8>, len: usize) -> BufResult<()> {
        assert!(len <= buf.len(), "prefix of {len} bytes of a {}-byte buffer", buf.len());
        self.inner.write_prefix(buf, len).await
    }

    pub async fn write_all(&self, buf: Vec<u8>) -> io::Result<()> {
        self.inner.write(buf).await.0
    }

    /// Closes the writing direction; the peer reads end-of-stream after the data written.
    pub async fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown().await
    }

    pub fn peer_address(&self) -> SocketAddr {
        self.inner.peer_address()
    }
}
