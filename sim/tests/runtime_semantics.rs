//! Stream behaviour only the simulator can stage: partitions and crashes. The contract both
//! backends share (files, echo, half-close, many connections, errors) is in `conformance.rs`.
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
