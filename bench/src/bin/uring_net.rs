//! Network: a TCP echo (request-response) benchmark on loopback. The same client, on the io_uring
//! runtime, drives two servers in turn: Strata's echo server on io_uring and the same server
//! written on tokio (current-thread runtime, one core each). Prints round trips per second and
//! the ratio Strata / tokio for 64 B and 64 KiB messages over 1 and 64 connections.
//!
//! `cargo run --release -p strata-bench --bin uring_net [-- SECONDS_PER_ROW]`

use std::net::SocketAddr;
use std::sync::mpsc;
use strata_rt::uring::{block_on, UringOptions};
use strata_rt::{Duration, NodeId, Runtime};

/// Rounds per row; the median round is printed.
const ROUNDS: usize = 5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Strata,
    Tokio,
}

fn scratch(name: &str) -> UringOptions {
    let data_dir =
        std::env::temp_dir().join(format!("strata-bench-net-{}-{name}", std::process::id()));
    UringOptions { node_id: NodeId(0), data_dir, peers: None }
}

/// Serves `connections` echo connections on io_uring, returning once all have closed.
fn strata_server(connections: usize, ready: mpsc::Sender<SocketAddr>) {
    block_on(&scratch("server"), |rt| async move {
        let listener = rt.net().listen("127.0.0.1:0".parse().expect("address")).expect("listen");
        ready.send(listener.local_address()).expect("client waits");
        let mut handles = Vec::new();
        for _ in 0..connections {
            let (stream, _) = listener.accept().await.expect("accept");
            handles.push(rt.spawn(async move {
                let mut buf = vec![0; 64 << 10];
                loop {
                    let (read, returned) = stream.read(buf).await;
                    buf = returned;
                    let count = match read {
                        Ok(0) | Err(_) => return,
                        Ok(count) => count,
                    };
                    // What was read goes straight back out: no copy, no allocation.
                    let (written, returned) = stream.write_prefix(buf, count).await;
                    buf = returned;
                    if written.is_err() {
                        return;
                    }
                }
            }));
        }
        for handle in handles {
            handle.await;
        }
    })
    .expect("io_uring server");
}

fn tokio_server(connections: usize, ready: mpsc::Sender<SocketAddr>) {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        ready.send(listener.local_addr().expect("address")).expect("client waits");
        let mut handles = Vec::new();
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            handles.push(tokio::spawn(async move {
                let mut buf = vec![0; 64 << 10];
                loop {
                    let count = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(count) => count,
                    };
                    if stream.write_all(&buf[..count]).await.is_err() {
                        return;
                    }
                }
            }));
        }
        for handle in handles {
            let _ = handle.await;
        }
    });
}

/// Round trips per second of `connections` clients sending `size`-byte messages for `seconds`.
async fn drive(
    rt: Runtime,
    server: SocketAddr,
    connections: usize,
    size: usize,
    seconds: f64,
) -> f64 {
    let deadline = rt.now() + Duration::from_secs_f64(seconds);
    let mut handles = Vec::new();
    for _ in 0..connections {
        let client = rt.clone();
        handles.push(rt.spawn(async move {
            let stream = client.net().connect(server).await.expect("connect");
            let mut message = vec![0x5a; size];
            let mut reply = vec![0; size];
            let mut round_trips = 0u64;
            while client.now() < deadline {
                let (written, returned) = stream.write(message).await;
                written.expect("write");
                message = returned;
                let mut received = 0;
                while received < size {
                    let (read, returned) = stream.read(reply).await;
                    let count = read.expect("echo");
                    assert!(count > 0, "server closed early");
                    received += count;
                    reply = returned;
                    reply.resize(size - received.min(size), 0);
                    if received == size {
                        reply.resize(size, 0);
                    }
                }
                round_trips += 1;
            }
            round_trips
        }));
    }
    let start = rt.now();
    let mut total = 0;
    for handle in handles {
        total += handle.await.expect("client finished");
    }
    total as f64 / (rt.now() - start).as_secs_f64()
}

fn measure(server: Server, connections: usize, size: usize, seconds: f64) -> f64 {
    let (ready, address) = mpsc::channel();
    std::thread::scope(|scope| {
        let server_thread = scope.spawn(move || match server {
            Server::Strata => strata_server(connections, ready),
            Server::Tokio => tokio_server(connections, ready),
        });
        let address = address.recv().expect("server address");
        let rate =
            block_on(&scratch("client"), |rt| drive(rt, address, connections, size, seconds))
                .expect("client");
        server_thread.join().expect("server thread");
        rate
    })
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(1.0);
    println!("TCP echo on loopback, {ROUNDS} rounds of {seconds} s per row (median shown); server and client on one core each");
    println!(
        "{:<10} {:>12} {:>16} {:>16} {:>14}",
        "message", "connections", "strata rt/s", "tokio rt/s", "strata/tokio"
    );
    for (size, label) in [(64, "64 B"), (64 << 10, "64 KiB")] {
        for connections in [1, 64] {
            // Alternate which server goes first and print the median round: the machine is
            // shared, and its load drifts for both sides of one round alike.
            let mut rounds = Vec::new();
            for round in 0..ROUNDS {
                let (strata, tokio) = if round % 2 == 0 {
                    let strata = measure(Server::Strata, connections, size, seconds);
                    (strata, measure(Server::Tokio, connections, size, seconds))
                } else {
                    let tokio = measure(Server::Tokio, connections, size, seconds);
                    (measure(Server::Strata, connections, size, seconds), tokio)
                };
                rounds.push((strata / tokio, strata, tokio));
            }
            rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (ratio, strata, tokio) = rounds[rounds.len() / 2];
            println!("{label:<10} {connections:>12} {strata:>16.0} {tokio:>16.0} {ratio:>13.2}x");
        }
    }
}
