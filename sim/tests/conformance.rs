//! One body, two backends: every test here runs the same async body on the simulator and on the
//! production io_uring backend, so their semantics cannot drift apart.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use std::future::Future;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use strata_rt::uring::{block_on, UringOptions};
use strata_rt::{Duration, NodeId, Runtime};
use strata_sim::{node_ip, FaultConfig, NodeOptions};

/// Where a body may listen, and an address nothing listens on.
#[derive(Clone, Copy)]
struct Addresses {
    listen: SocketAddr,
    closed: SocketAddr,
}

fn on_sim<F: Future<Output = ()> + 'static>(body: impl FnOnce(Runtime, Addresses) -> F) {
    let mut sim = common::idle_cluster(1, 1, FaultConfig::none(), NodeOptions::SERVER);
    let ip = node_ip(NodeId(0));
    let addresses = Addresses { listen: SocketAddr::new(ip, 0), closed: SocketAddr::new(ip, 1) };
    common::run_on(&mut sim, NodeId(0), Duration::from_secs(600), |rt| body(rt, addresses));
}

fn on_uring<F: Future<Output = ()> + 'static>(body: impl FnOnce(Runtime, Addresses) -> F) {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "strata-conformance-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let options = UringOptions { node_id: NodeId(0), data_dir: dir.clone(), peers: None };
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let addresses =
        Addresses { listen: SocketAddr::new(loopback, 0), closed: SocketAddr::new(loopback, 1) };
    block_on(&options, |rt| body(rt, addresses))
        .expect("io_uring backend runs (is io_uring allowed here?)");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Declares a test module running `$body` on both backends.
macro_rules! conformance {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn simulated() {
                on_sim($body);
            }
            #[test]
            fn io_uring() {
                on_uring($body);
            }
        }
    };
}

async fn disk_semantics(rt: Runtime, _: Addresses) {
    let disk = rt.disk();
    assert_eq!(disk.open("missing").await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(disk.create("no/such/dir").await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(disk.create("../escape").await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(disk.create("/absolute").await.unwrap_err().kind(), ErrorKind::InvalidInput);
    disk.create_dir_all("a/b").await.unwrap();
    disk.create_dir_all("a/b").await.unwrap();
    let file = disk.create_new("a/b/f").await.unwrap();
    assert_eq!(disk.create_new("a/b/f").await.unwrap_err().kind(), ErrorKind::AlreadyExists);
    file.write_at(b"hello".to_vec(), 0).await.0.unwrap();
    file.write_at(b"world".to_vec(), 10).await.0.unwrap();
    assert_eq!(file.len().await.unwrap(), 15);
    assert_eq!(file.read_exact_at(15, 0).await.unwrap(), b"hello\0\0\0\0\0world");
    let (count, buf) = file.read_at(vec![0; 10], 12).await;
    assert_eq!((count.unwrap(), &buf[..3]), (3, &b"rld"[..]), "short read at the end");
    assert_eq!(file.read_at(vec![0; 4], 100).await.0.unwrap(), 0, "read past the end");
    assert_eq!(file.read_exact_at(20, 0).await.unwrap_err().kind(), ErrorKind::UnexpectedEof);
    file.sync().await.unwrap();
    file.allocate(8).await.unwrap();
    assert_eq!(file.len().await.unwrap(), 15, "allocation never shrinks a file");
    file.allocate(5 << 20).await.unwrap();
    assert_eq!(file.len().await.unwrap(), 5 << 20, "allocation grows the file");
    let tail = file.read_exact_at(5 << 20, 0).await.unwrap();
    assert_eq!(&tail[..15], b"hello\0\0\0\0\0world", "allocation keeps the data");
    assert!(tail[15..].iter().all(|&byte| byte == 0), "an allocated tail reads as zeros");
    file.write_at(b"tail".to_vec(), (5 << 20) - 4).await.0.unwrap();
    assert_eq!(file.len().await.unwrap(), 5 << 20, "a write into the allocation keeps the size");
    file.truncate(5).await.unwrap();
    assert_eq!(file.len().await.unwrap(), 5);
    disk.sync_dir("a/b").await.unwrap();
    disk.sync_dir("").await.unwrap();
    disk.rename("a/b/f", "a/g").await.unwrap();
    assert_eq!(disk.list("a").await.unwrap(), vec!["b".to_string(), "g".to_string()]);
    assert_eq!(disk.list("a/b").await.unwrap(), Vec::<String>::new());
    assert_eq!(disk.list("nope").await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(file.read_exact_at(5, 0).await.unwrap(), b"hello", "a handle survives a rename");
    let reopened = disk.open("a/g").await.unwrap();
    assert_eq!(reopened.read_exact_at(5, 0).await.unwrap(), b"hello");
    disk.remove("a/g").await.unwrap();
    assert_eq!(disk.remove("a/g").await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(disk.list("").await.unwrap(), vec!["a".to_string()]);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let large = disk.create("large").await.unwrap();
    large.write_at(big.clone(), 4096).await.0.unwrap();
    assert_eq!(large.read_exact_at(big.len(), 4096).await.unwrap(), big);
    // Steps of one size, as a spare WAL segment is made, each after data written to the last.
    let stepped = disk.create("stepped").await.unwrap();
    for step in 1..=3u64 {
        stepped.allocate(step << 18).await.unwrap();
        stepped.write_at(vec![7; 4], (step << 18) - 4).await.0.unwrap();
    }
    let stepped = stepped.read_exact_at(3 << 18, 0).await.unwrap();
    for (at, byte) in stepped.iter().enumerate() {
        let marked = (at as u64 + 4) % (1 << 18) < 4;
        assert_eq!(*byte, if marked { 7 } else { 0 }, "byte {at} of the stepped allocation");
    }
}
conformance!(disk, disk_semantics);

/// Echoes each connection until the client half-closes, then half-closes too.
fn serve_echo(rt: &Runtime, address: SocketAddr) -> SocketAddr {
    let listener = rt.net().listen(address).unwrap();
    let local = listener.local_address();
    let spawner = rt.clone();
    let _server = rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _connection = spawner.spawn(async move {
                loop {
                    let (read, buf) = stream.read(vec![0; 65_536]).await;
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(count) => {
                            let (written, back) = stream.write_prefix(buf, count).await;
                            assert_eq!(back.len(), 65_536, "the whole buffer comes back");
                            if written.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    local
}

async fn echo_and_half_close(rt: Runtime, addresses: Addresses) {
    let server = serve_echo(&rt, addresses.listen);
    let stream = rt.net().connect(server).await.unwrap();
    let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let writer = stream.clone();
    let sent = payload.clone();
    let _writer = rt.spawn(async move {
        for chunk in sent.chunks(65_536) {
            writer.write_all(chunk.to_vec()).await.unwrap();
        }
        writer.shutdown().await.unwrap();
    });
    let echoed = stream.read_exact(payload.len()).await.unwrap();
    assert!(echoed == payload, "4 MB echoed intact");
    assert_eq!(stream.read(vec![0; 16]).await.0.unwrap(), 0, "end of stream after the half-close");
}
conformance!(echo, echo_and_half_close);

async fn many_connections(rt: Runtime, addresses: Addresses) {
    let server = serve_echo(&rt, addresses.listen);
    let mut handles = Vec::new();
    for index in 0..200u32 {
        let client = rt.clone();
        handles.push(rt.spawn(async move {
            let stream = client.net().connect(server).await.unwrap();
            stream.write_all(index.to_le_bytes().to_vec()).await.unwrap();
            u32::from_le_bytes(stream.read_exact(4).await.unwrap().try_into().unwrap())
        }));
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await.unwrap();
    }
    assert_eq!(total, (0..200).sum::<u32>());
}
conformance!(concurrent_connections, many_connections);

async fn refused_and_in_use(rt: Runtime, addresses: Addresses) {
    let error = rt.net().connect(addresses.closed).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
    let listener = rt.net().listen(addresses.listen).unwrap();
    let taken = listener.local_address();
    assert_eq!(rt.net().listen(taken).unwrap_err().kind(), ErrorKind::AddrInUse);
}
conformance!(connection_errors, refused_and_in_use);

async fn peer_close_is_end_of_stream(rt: Runtime, addresses: Addresses) {
    let listener = rt.net().listen(addresses.listen).unwrap();
    let server = listener.local_address();
    let _closer = rt.spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"bye".to_vec()).await.unwrap();
        drop(stream);
    });
    let stream = rt.net().connect(server).await.unwrap();
    assert_eq!(stream.read_exact(3).await.unwrap(), b"bye");
    assert_eq!(stream.read(vec![0; 8]).await.0.unwrap(), 0);
}
conformance!(peer_close, peer_close_is_end_of_stream);

async fn timer_order_and_cancel(rt: Runtime, _: Addresses) {
    let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut handles = Vec::new();
    for (label, millis) in [(3u8, 30u64), (1, 10), (2, 20)] {
        let (timer_rt, order) = (rt.clone(), order.clone());
        handles.push(rt.spawn(async move {
            timer_rt.sleep(Duration::from_millis(millis)).await;
            order.borrow_mut().push(label);
        }));
    }
    let start = rt.now();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(*order.borrow(), vec![1, 2, 3]);
    assert!(rt.now() - start >= Duration::from_millis(30));
    let cancelled = rt.timeout(Duration::from_millis(5), rt.sleep(Duration::from_secs(3600))).await;
    assert!(cancelled.is_err());
    assert!(rt.now() - start < Duration::from_secs(10), "the hour-long sleep was cancelled");
    let aborted = rt.spawn(std::future::pending::<()>());
    aborted.abort();
    assert_eq!(aborted.await, None, "an aborted task resolves to None");
}
conformance!(timers, timer_order_and_cancel);

async fn direct_io_and_data_sync(rt: Runtime, _: Addresses) {
    let options = strata_rt::OpenOptions { create: true, direct: true, ..Default::default() };
    let file = rt.disk().open_with("direct", options).await.unwrap();
    let mut block = strata_rt::AlignedBuffer::zeroed(8192);
    block.iter_mut().enumerate().for_each(|(index, byte)| *byte = (index % 199) as u8);
    let expected = block.to_vec();
    let (written, _) = file.write_aligned_at(block, 4096).await;
    written.unwrap();
    file.sync_data().await.unwrap();
    let (read, back) = file.read_aligned_at(strata_rt::AlignedBuffer::zeroed(8192), 4096).await;
    assert_eq!(read.unwrap(), 8192);
    assert_eq!(back.to_vec(), expected);
    assert_eq!(file.len().await.unwrap(), 12_288);
}
conformance!(direct_io, direct_io_and_data_sync);

async fn durable_writes(rt: Runtime, _: Addresses) {
    let file = rt.disk().create("durable").await.unwrap();
    file.allocate(1 << 16).await.unwrap();
    let record: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let (written, back) = file.write_durable_at(record.clone(), 100).await;
    written.unwrap();
    assert_eq!(back, record, "the buffer comes back");
    assert_eq!(file.read_exact_at(record.len(), 100).await.unwrap(), record);
    assert_eq!(file.len().await.unwrap(), 1 << 16, "the write fell inside the allocation");
    // Large enough that io_uring takes its asynchronous path rather than the inline one.
    let large: Vec<u8> = (0..(3 << 20) as u32).map(|i| (i % 249) as u8).collect();
    let (written, back) = file.write_durable_at(large.clone(), 1 << 16).await;
    written.unwrap();
    assert_eq!(back.len(), large.len());
    assert_eq!(file.read_exact_at(large.len(), 1 << 16).await.unwrap(), large);
}
conformance!(durable_write, durable_writes);
