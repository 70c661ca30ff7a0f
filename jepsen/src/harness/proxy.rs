//! TCP proxies on the directed peer links of a cluster, to partition it without root.
//!
//! Node `i` sends its peer messages to node `j` only over connections it opens to the address it
//! was given for `j`; the harness gives it the address of a [`LinkProxy`] that forwards to `j`'s
//! real peer listener. Cutting the link closes its open connections (both sides) and blackholes
//! new ones: they are accepted and held open without forwarding a byte, as a dropped route would,
//! until the link heals and they are closed, so the node reconnects.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long the proxy waits to connect to the link's target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most connections held while cut; a node that keeps reconnecting has its oldest closed.
const HELD_COUNT_MAX: usize = 64;

/// A proxy for the directed link `source` → `target` (node indexes).
pub struct LinkProxy {
    /// The node that sends.
    pub source: usize,
    /// The node that receives.
    pub target: usize,
    listen_address: SocketAddr,
    state: Arc<LinkState>,
}

#[derive(Default)]
struct LinkState {
    cut: AtomicBool,
    stopped: AtomicBool,
    /// Both sockets of every open forwarding connection (clones), by connection number, to close
    /// them on a cut; a connection that ends by itself removes its entry.
    forwarding: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
    /// Connections forwarded so far (numbers the entries of `forwarding`).
    forwarded_count: AtomicU64,
    /// Connections accepted while cut, held open and never read.
    held: Mutex<Vec<TcpStream>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LinkProxy {
    /// Listens on a free loopback port and forwards every connection to `target_address`.
    pub fn start(
        source: usize,
        target: usize,
        target_address: SocketAddr,
    ) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let listen_address = listener.local_addr()?;
        let state = Arc::new(LinkState::default());
        let accepting = Arc::clone(&state);
        std::thread::Builder::new()
            .name(format!("proxy-{source}-{target}"))
            .spawn(move || accept_loop(&listener, target_address, &accepting))?;
        Ok(LinkProxy { source, target, listen_address, state })
    }

    /// Where the source node must send to reach the target.
    pub fn listen_address(&self) -> SocketAddr {
        self.listen_address
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::SeqCst)
    }

    /// Cuts the link: open connections close, new ones are blackholed.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for (_, inbound, outbound) in lock(&self.state.forwarding).drain(..) {
            let _ = inbound.shutdown(Shutdown::Both);
            let _ = outbound.shutdown(Shutdown::Both);
        }
    }

    /// Heals the link: blackholed connections close, so the source reconnects through.
    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
        for held in lock(&self.state.held).drain(..) {
            let _ = held.shutdown(Shutdown::Both);
        }
    }

    /// The number of connections currently forwarded (for tests and summaries).
    pub fn forwarding_count(&self) -> usize {
        lock(&self.state.forwarding).len()
    }

    /// The number of connections accepted while cut and held (for tests).
    pub fn held_count(&self) -> usize {
        lock(&self.state.held).len()
    }

    /// Closes everything and stops accepting.
    pub fn stop(&self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.cut();
        self.heal();
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.listen_address, CONNECT_TIMEOUT);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, target_address: SocketAddr, state: &Arc<LinkState>) {
    for inbound in listener.incoming() {
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = inbound else { continue };
        if state.cut.load(Ordering::SeqCst) {
            hold(state, inbound);
            continue;
        }
        // A refused or slow target closes the inbound connection, as the real target would.
        let Ok(outbound) = TcpStream::connect_timeout(&target_address, CONNECT_TIMEOUT) else {
            continue;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let clones = (inbound.try_clone(), outbound.try_clone(), inbound.try_clone());
        let (Ok(inbound_read), Ok(outbound_read), Ok(inbound_kept)) = clones else { continue };
        let Ok(outbound_kept) = outbound.try_clone() else { continue };
        let number = state.forwarded_count.fetch_add(1, Ordering::SeqCst);
        {
            // Checked under the lock that `cut` drains: a cut never misses a new connection.
            let mut forwarding = lock(&state.forwarding);
            if state.cut.load(Ordering::SeqCst) {
                drop(forwarding);
                hold(state, inbound);
                continue;
            }
            forwarding.push((number, inbound_kept, outbound_kept));
        }
        let forward_state = Arc::clone(state);
        let backward_state = Arc::clone(state);
        let _ = std::thread::Builder::new()
            .name("proxy-forward".to_string())
            .spawn(move || pump(inbound_read, outbound, &forward_state, number));
        let _ = std::thread::Builder::new()
            .name("proxy-backward".to_string())
            .spawn(move || pump(outbound_read, inbound, &backward_state, number));
    }
}

/// Keeps a connection accepted while cut open, unread, closing the oldest beyond the bound.
fn hold(state: &LinkState, inbound: TcpStream) {
    let mut held = lock(&state.held);
    if held.len() >= HELD_COUNT_MAX {
        let oldest = held.remove(0);
        let _ = oldest.shutdown(Shutdown::Both);
    }
    held.push(inbound);
}

/// Copies bytes from `from` to `to` until either side fails, then closes both and forgets the
/// connection.
fn pump(mut from: TcpStream, mut to: TcpStream, state: &LinkState, number: u64) {
    let mut buffer = [0_u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(count) => {
                if to.write_all(&buffer[..count]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    lock(&state.forwarding).retain(|(entry, _, _)| *entry != number);
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buffer = [0_u8; 1024];
                    while let Ok(count) = stream.read(&mut buffer) {
                        if count == 0 || stream.write_all(&buffer[..count]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    fn round_trip(address: SocketAddr) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) else {
            return false;
        };
        stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut reply = [0_u8; 5];
        stream.write_all(b"hello").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"hello"
    }

    #[test]
    fn a_cut_link_blackholes_and_a_healed_one_forwards() {
        let proxy = LinkProxy::start(0, 1, echo_server()).unwrap();
        assert!(round_trip(proxy.listen_address()));

        let mut open = TcpStream::connect(proxy.listen_address()).unwrap();
        open.write_all(b"x").unwrap();
        let mut byte = [0_u8; 1];
        open.read_exact(&mut byte).unwrap();
        proxy.cut();
        open.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let started = Instant::now();
        // The open connection is closed by the cut.
        assert!(matches!(open.read(&mut byte), Ok(0) | Err(_)));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!round_trip(proxy.listen_address()), "a cut link must not forward");

        proxy.heal();
        assert!(round_trip(proxy.listen_address()));
    }
}
