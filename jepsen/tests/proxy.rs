//! The link proxies cut and heal real TCP traffic: a cut of `a → b` stops what `a` sends to `b`
//! (open connections close, new ones hang), leaves `b → a` alone, and a heal lets `a` reconnect.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use strata_jepsen::harness::proxy::LinkProxy;

/// An echo server standing for a node's peer listener.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let address = listener.local_addr().expect("a bound address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buffer = [0_u8; 4096];
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

/// Sends a message through a new connection and waits for its echo.
fn echoes(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    stream.set_read_timeout(Some(Duration::from_millis(300))).expect("set a read timeout");
    let mut reply = [0_u8; 4];
    stream.write_all(b"ping").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"ping"
}

#[test]
fn a_cut_is_one_way_and_a_heal_restores_the_link() {
    let (node_a, node_b) = (echo_server(), echo_server());
    let a_to_b = LinkProxy::start(0, 1, node_b).unwrap();
    let b_to_a = LinkProxy::start(1, 0, node_a).unwrap();
    assert!(echoes(a_to_b.listen_address()));
    assert!(echoes(b_to_a.listen_address()));

    // A long-lived connection carries traffic until the cut closes it.
    let mut open = TcpStream::connect(a_to_b.listen_address()).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut reply = [0_u8; 5];
    open.write_all(b"hello").unwrap();
    open.read_exact(&mut reply).unwrap();
    assert!(a_to_b.forwarding_count() >= 1);

    a_to_b.cut();
    assert!(a_to_b.is_cut());
    assert!(matches!(open.read(&mut reply), Ok(0) | Err(_)), "a cut closes open connections");
    assert_eq!(a_to_b.forwarding_count(), 0);
    for _ in 0..3 {
        assert!(!echoes(a_to_b.listen_address()), "a cut link must not carry a byte");
    }
    assert!(echoes(b_to_a.listen_address()), "the other direction is untouched");

    // A connection made while cut is held open, then closed by the heal so its owner reconnects.
    let held_before = a_to_b.held_count();
    let mut held = TcpStream::connect(a_to_b.listen_address()).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    held.write_all(b"lost").unwrap();
    // The connect returns once the kernel queued it; wait until the proxy has taken it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while a_to_b.held_count() == held_before {
        assert!(std::time::Instant::now() < deadline, "the proxy never held the connection");
        std::thread::sleep(Duration::from_millis(5));
    }
    a_to_b.heal();
    assert!(matches!(held.read(&mut reply), Ok(0) | Err(_)), "a heal closes held connections");
    assert!(echoes(a_to_b.listen_address()));
}

#[test]
fn connections_that_end_by_themselves_are_forgotten() {
    let proxy = LinkProxy::start(0, 1, echo_server()).unwrap();
    for _ in 0..20 {
        assert!(echoes(proxy.listen_address()));
    }
    // Both pump threads of each closed connection remove its entry.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while proxy.forwarding_count() > 0 {
        assert!(std::time::Instant::now() < deadline, "{} left", proxy.forwarding_count());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_link_to_a_dead_target_refuses_by_closing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let proxy = LinkProxy::start(0, 1, dead).unwrap();
    let mut stream = TcpStream::connect(proxy.listen_address()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut byte = [0_u8; 1];
    assert!(matches!(stream.read(&mut byte), Ok(0) | Err(_)));
}
