//! The io_uring backend's own behaviour: what the conformance suite (in `sim/tests`) cannot show
//! because the simulator has no equivalent: threads, cancellation in the kernel, ring limits, and
//! peer messages over real TCP.
#![allow(clippy::unwrap_used, reason = "tests unwrap: a failure is the test failing")]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use strata_rt::sync::cross_channel;
use strata_rt::transport::PeerConfig;
use strata_rt::uring::{block_on, run_cores, UringOptions, OPERATIONS_IN_FLIGHT_MAX};
use strata_rt::{Duration, NodeId};

fn scratch_dir() -> PathBuf {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "strata-uring-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(node: u32) -> UringOptions {
    UringOptions { node_id: NodeId(node), data_dir: scratch_dir(), peers: None }
}

#[test]
fn more_operations_than_the_ring_holds_all_complete() {
    let count = 3 * OPERATIONS_IN_FLIGHT_MAX;
    let finished = block_on(&options(0), |rt| async move {
        let mut handles = Vec::new();
        for index in 0..count {
            let sleeper = rt.clone();
            handles.push(rt.spawn(async move {
                sleeper.sleep(Duration::from_micros((index % 100) as u64)).await;
            }));
        }
        let mut finished = 0;
        for handle in handles {
            handle.await.unwrap();
            finished += 1;
        }
        finished
    })
    .unwrap();
    assert_eq!(finished, count);
}

#[test]
fn sleeps_wake_in_deadline_order_and_never_early() {
    let woken = block_on(&options(0), |rt| async move {
        let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut handles = Vec::new();
        // Registered out of deadline order; a thousand timeouts that never fire ride along.
        for delay_ms in [7u64, 1, 5, 3, 0, 9] {
            let (rt_task, order) = (rt.clone(), order.clone());
            handles.push(rt.spawn(async move {
                let deadline = rt_task.now() + Duration::from_millis(delay_ms);
                rt_task.sleep_until(deadline).await;
                assert!(rt_task.now() >= deadline, "a sleep of {delay_ms} ms woke early");
                order.borrow_mut().push(delay_ms);
            }));
        }
        for _ in 0..1000 {
            assert_eq!(rt.timeout(Duration::from_secs(60), async { 1 }).await, Ok(1));
        }
        let never = std::future::pending::<()>();
        assert!(rt.timeout(Duration::from_millis(2), never).await.is_err());
        for handle in handles {
            handle.await.unwrap();
        }
        let woken = order.borrow().clone();
        woken
    })
    .unwrap();
    assert_eq!(woken, [0, 1, 3, 5, 7, 9]);
}

#[test]
fn a_cancelled_receive_leaves_the_stream_usable() {
    let received = block_on(&options(0), |rt| async move {
        let listener = rt.net().listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_address();
        let client = rt.net().connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // A receive with nothing to read, abandoned: the kernel operation is cancelled.
        assert!(rt.timeout(Duration::from_millis(10), server.read(vec![0; 16])).await.is_err());
        client.write_all(b"after".to_vec()).await.unwrap();
        server.read_exact(5).await.unwrap()
    })
    .unwrap();
    assert_eq!(received, b"after");
}

#[test]
fn cores_run_apart_and_talk_through_cross_channels() {
    let (sender, receiver) = cross_channel::<u64>(1024);
    let receiver = std::sync::Mutex::new(Some(receiver));
    let sender = std::sync::Mutex::new(Some(sender));
    let outputs = run_cores(2, &options(0), |rt, core| {
        let mut receiver = if core == 1 { receiver.lock().unwrap().take() } else { None };
        let sender = if core == 0 { sender.lock().unwrap().take() } else { None };
        async move {
            if let Some(sender) = sender {
                for number in 1..=1000u64 {
                    while sender.try_send(number).is_err() {
                        rt.sleep(Duration::from_micros(50)).await;
                    }
                }
                return 0;
            }
            let receiver = receiver.as_mut().unwrap();
            let mut sum = 0;
            while let Some(number) = receiver.receive().await {
                sum += number;
            }
            sum
        }
    })
    .unwrap();
    assert_eq!(outputs, vec![0, 500_500]);
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn peer_messages_cross_real_tcp_in_order() {
    let addresses = [free_port(), free_port()];
    let config = |node: u32| {
        let peer = 1 - node;
        let peers = BTreeMap::from([(NodeId(peer), addresses[peer as usize])]);
        UringOptions {
            node_id: NodeId(node),
            data_dir: scratch_dir(),
            peers: Some(PeerConfig { node: NodeId(node), listen: addresses[node as usize], peers }),
        }
    };
    let (first, second) = (config(0), config(1));
    std::thread::scope(|scope| {
        let receiver = scope.spawn(move || {
            block_on(&second, |rt| async move {
                let mut numbers = Vec::new();
                while numbers.len() < 10_000 {
                    let Ok((from, message)) =
                        rt.timeout(Duration::from_secs(5), rt.net().receive()).await
                    else {
                        panic!(
                            "stalled after {} numbers, last {:?}",
                            numbers.len(),
                            numbers.last()
                        );
                    };
                    assert_eq!(from, NodeId(0));
                    match message.len() {
                        4 => rt.net().send(NodeId(0), b"ready".to_vec()),
                        _ => numbers.push(u64::from_le_bytes(message[..8].try_into().unwrap())),
                    }
                }
                rt.net().send(NodeId(0), b"done".to_vec());
                // Linger: leaving block_on drops the transport before it writes the answer.
                rt.sleep(Duration::from_millis(200)).await;
                numbers
            })
            .unwrap()
        });
        block_on(&first, |rt| async move {
            // Until the receiver answers, a ping may be lost (it may not listen yet).
            loop {
                rt.net().send(NodeId(1), b"ping".to_vec());
                if let Ok((_, answer)) =
                    rt.timeout(Duration::from_millis(50), rt.net().receive()).await
                {
                    assert_eq!(answer, b"ready");
                    break;
                }
            }
            for number in 0..10_000u64 {
                rt.net().send(NodeId(1), number.to_le_bytes().to_vec());
                if number % 1024 == 0 {
                    rt.sleep(Duration::from_micros(100)).await;
                }
            }
            loop {
                let (_, answer) = rt
                    .timeout(Duration::from_secs(30), rt.net().receive())
                    .await
                    .expect("an answer");
                if answer == b"done" {
                    break;
                }
            }
        })
        .unwrap();
        let numbers = receiver.join().unwrap();
        assert_eq!(numbers, (0..10_000).collect::<Vec<_>>());
    });
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn finished_reactors_leave_no_descriptors_behind() {
    // Warm up lazily opened process-wide descriptors, then compare.
    block_on(&options(0), |_| async {}).unwrap();
    let before = open_descriptors();
    for _ in 0..20 {
        block_on(&options(0), |rt| async move {
            let file = rt.disk().create("f").await.unwrap();
            file.write_at(vec![1; 10], 0).await.0.unwrap();
            let listener = rt.net().listen("127.0.0.1:0".parse().unwrap()).unwrap();
            drop(listener);
        })
        .unwrap();
    }
    let after = open_descriptors();
    assert!(after <= before + 2, "descriptors leaked: {before} before, {after} after 20 reactors");
}
