//! A single-node, non-replicated KV server on the io_uring backend, for real-client tests:
//! `kv_server <data dir> <port> [shards] [password]`. Prints `ready <port>` once it listens
//! (port 0 picks a free one). Stops on SIGINT/SIGTERM after flushing its stores.

use std::net::SocketAddr;
use std::rc::Rc;
use strata_kv::{serve, LocalCluster, ServerConfig};
use strata_rt::uring::{block_on, UringOptions};
use strata_rt::{Duration, NodeId};

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.len() < 3 {
        eprintln!("usage: kv_server <data dir> <port> [shards] [password]");
        std::process::exit(2);
    }
    let data_dir = std::path::PathBuf::from(&arguments[1]);
    let port: u16 = arguments[2].parse().expect("port is a number");
    let shards: u32 = arguments.get(3).map_or(4, |text| text.parse().expect("shards is a number"));
    let password = arguments.get(4).cloned();
    strata_rt::uring::catch_shutdown_signals().expect("signal handlers install");
    let options = UringOptions { node_id: NodeId(0), data_dir, peers: None };
    let result = block_on(&options, move |rt| async move {
        let cluster = Rc::new(LocalCluster::open(&rt, "kv", shards).await.expect("stores open"));
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = rt.net().listen(address).expect("listen");
        let bound = listener.local_address();
        println!("ready {}", bound.port());
        let config = ServerConfig { listen: bound, password, ..ServerConfig::default() };
        let server = rt.spawn(serve(rt.clone(), cluster.clone(), listener, config));
        while !strata_rt::uring::shutdown_requested() && !server.is_finished() {
            rt.sleep(Duration::from_millis(50)).await;
        }
        server.abort();
        cluster.flush().await.expect("flush at shutdown");
    });
    if let Err(error) = result {
        eprintln!("kv_server: {error}");
        std::process::exit(1);
    }
}
