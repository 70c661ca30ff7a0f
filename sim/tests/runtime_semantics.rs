//! The simulated backend keeps the runtime layer's contract for files and streams: the semantics
//! the io_uring backend must match (issue 3 runs the same bodies against it).
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

mod common;

use common::{idle_cluster, run_on};
use std::io::ErrorKind;
use std::net::SocketAddr;
use strata_rt::{Duration, NodeId};
use strata_sim::{node_ip, FaultConfig, NodeOptions};

const A: NodeId = NodeId(0);
const B: NodeId = NodeId(1);
const SECOND: Duration = Duration::from_secs(1);

#[test]
fn files_read_write_rename_list_remove() {
    let mut sim = idle_cluster(1, 1, FaultConfig::none(), NodeOptions::SERVER);
    run_on(&mut sim, A, SECOND, |rt| async move {
        let disk = rt.disk();
        assert_eq!(disk.open("missing").await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(disk.create("no/such/dir").await.unwrap_err().kind(), ErrorKind::NotFound);
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
        file.truncate(5).await.unwrap();
        assert_eq!(file.len().await.unwrap(), 5);
        disk.rename("a/b/f", "a/g").await.unwrap();
        assert_eq!(disk.list("a").await.unwrap(), vec!["b".to_string(), "g".to_string()]);
        assert_eq!(disk.list("a/b").await.unwrap(), Vec::<String>::new());
        assert_eq!(file.read_exact_at(5, 0).await.unwrap(), b"hello", "a handle survives a rename");
        disk.remove("a/g").await.unwrap();
        assert_eq!(disk.remove("a/g").await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(disk.list("").await.unwrap(), vec!["a".to_string()]);
        assert_eq!(disk.create("../escape").await.unwrap_err().kind(), ErrorKind::InvalidInput);
    });
}

fn address(node: NodeId, port: u16) -> SocketAddr {
    SocketAddr::new(node_ip(node), port)
}

/// B echoes every connection on port 7 until the client shuts down, then closes.
fn start_echo(sim: &mut strata_sim::Sim) {
    let rt = sim.runtime(B);
    let listener = rt.net().listen(address(B, 7)).unwrap();
    let spawner = rt.clone();
    let _server = rt.spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _connection = spawner.spawn(async move {
                loop {
                    let (read, buf) = stream.read(vec![0; 4096]).await;
                    let Ok(count) = read else { return };
                    if count == 0 {
                        stream.shutdown().await.unwrap();
                        return;
                    }
                    if stream.write_all(buf[..count].to_vec()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

#[test]
fn streams_echo_large_transfers_and_half_close() {
    let mut sim = idle_cluster(2, 2, FaultConfig::none(), NodeOptions::SERVER);
    start_echo(&mut sim);
    let echoed = run_on(&mut sim, A, Duration::from_secs(10), |rt| async move {
        let stream = rt.net().connect(address(B, 7)).await.unwrap();
        assert_eq!(stream.peer_address(), address(B, 7));
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let writer = stream.clone();
        let sent = payload.clone();
        let _writer = rt.spawn(async move {
            for chunk in sent.chunks(65_536) {
                writer.write_all(chunk.to_vec()).await.unwrap();
            }
            writer.shutdown().await.unwrap();
        });
        let echoed = stream.read_exact(payload.len()).await.unwrap();
        let (end, _) = stream.read(vec![0; 16]).await;
        assert_eq!(end.unwrap(), 0, "end of stream after the half-close");
        (echoed == payload, echoed.len())
    });
    assert_eq!(echoed, (true, 1_000_000));
}

#[test]
fn many_concurrent_connections() {
    let mut sim = idle_cluster(3, 2, FaultConfig::none(), NodeOptions::SERVER);
    start_echo(&mut sim);
    let total = run_on(&mut sim, A, Duration::from_secs(10), |rt| async move {
        let mut handles = Vec::new();
        for index in 0..100u32 {
            let rt_client = rt.clone();
            handles.push(rt.spawn(async move {
                let stream = rt_client.net().connect(address(B, 7)).await.unwrap();
                stream.write_all(index.to_le_bytes().to_vec()).await.unwrap();
                let back = stream.read_exact(4).await.unwrap();
                u32::from_le_bytes(back.try_into().unwrap())
            }));
        }
        let mut total = 0;
        for handle in handles {
            total += handle.await.unwrap();
        }
        total
    });
    assert_eq!(total, (0..100).sum::<u32>());
}

#[test]
fn connection_refused_and_address_in_use() {
    let mut sim = idle_cluster(4, 2, FaultConfig::none(), NodeOptions::SERVER);
    start_echo(&mut sim);
    let (refused, in_use) = run_on(&mut sim, A, SECOND, |rt| async move {
        let refused = rt.net().connect(address(B, 8)).await.unwrap_err().kind();
        let _first = rt.net().listen(address(A, 9)).unwrap();
        let in_use = rt.net().listen(address(A, 9)).unwrap_err().kind();
        (refused, in_use)
    });
    assert_eq!((refused, in_use), (ErrorKind::ConnectionRefused, ErrorKind::AddrInUse));
}

#[test]
fn a_partition_stalls_a_stream_and_healing_resumes_it() {
    let mut sim = idle_cluster(5, 2, FaultConfig::none(), NodeOptions::SERVER);
    start_echo(&mut sim);
    let stream =
        run_on(
            &mut sim,
            A,
            SECOND,
            |rt| async move { rt.net().connect(address(B, 7)).await.unwrap() },
        );
    sim.partition(&[A], &[B]);
    let rt = sim.runtime(A);
    let reply = rt.spawn(async move {
        stream.write_all(b"ping".to_vec()).await.unwrap();
        stream.read_exact(4).await.unwrap()
    });
    sim.run_for(Duration::from_secs(5));
    assert!(!reply.is_finished(), "nothing crosses the partition");
    sim.heal();
    assert!(sim.run_until(SECOND, || reply.is_finished()), "retransmission after healing");
}

#[test]
fn a_crash_resets_the_peers_connections() {
    let mut sim = idle_cluster(6, 2, FaultConfig::none(), NodeOptions::SERVER);
    start_echo(&mut sim);
    let stream =
        run_on(
            &mut sim,
            A,
            SECOND,
            |rt| async move { rt.net().connect(address(B, 7)).await.unwrap() },
        );
    let rt = sim.runtime(A);
    let outcome = std::rc::Rc::new(std::cell::Cell::new(None));
    let slot = outcome.clone();
    let _read = rt.spawn(async move {
        slot.set(Some(stream.read(vec![0; 4]).await.0.map_err(|error| error.kind())))
    });
    sim.run_for(Duration::from_millis(10));
    sim.crash(B);
    assert!(sim.run_until(SECOND, || outcome.get().is_some()));
    assert_eq!(outcome.get(), Some(Err(ErrorKind::ConnectionReset)));
    let connect = run_on(&mut sim, A, SECOND, |rt| async move {
        rt.net().connect(address(B, 7)).await.map(|_| ())
    });
    assert_eq!(connect.unwrap_err().kind(), ErrorKind::ConnectionRefused, "its listener is gone");
}
