//! `strata-node`: one Strata node, as the `node` binary runs it and as simulation tests boot
//! it. [`run`] opens one LSM store per shard (the key-value state machine) and the multi-Raft
//! host over them (one shared WAL), then serves the Redis protocol and an HTTP endpoint for
//! `/health` and `/metrics` until asked to stop (graceful: stop accepting, let the host finish
//! its round, close) or until storage fails (an error: the process must restart to recover).

pub mod allocator;
pub mod cluster;
pub mod config;
pub mod http;

use config::Config;
use std::net::SocketAddr;
use std::rc::Rc;
use strata_rt::{Duration, Runtime};

/// Where a running node listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub redis: SocketAddr,
    pub http: SocketAddr,
}

/// Runs a node until `stop_requested()` (polled every 50 ms) or a storage failure. `ready` is
/// called once it listens.
pub async fn run(
    rt: Runtime,
    config: Config,
    stop_requested: impl Fn() -> bool,
    ready: impl FnOnce(Endpoints),
) -> Result<(), String> {
    let cluster = Rc::new(cluster::RaftCluster::open(&rt, &config).await?);
    let net = rt.net();
    let listen =
        |address| net.listen(address).map_err(|error| format!("listen on {address}: {error}"));
    let redis = listen(config.redis_listen)?;
    let http = listen(config.http_listen)?;
    let server_config = strata_kv::server::ServerConfig {
        listen: redis.local_address(),
        connections_max: config.connections_max,
        password: config.requirepass.clone(),
        ..strata_kv::server::ServerConfig::default()
    };
    ready(Endpoints { redis: redis.local_address(), http: http.local_address() });
    let server =
        rt.spawn(strata_kv::server::serve(rt.clone(), cluster.clone(), redis, server_config));
    let pages =
        rt.spawn(http::serve(rt.clone(), http, cluster.clone(), config.requirepass.clone()));
    let outcome = loop {
        rt.sleep(Duration::from_millis(50)).await;
        if stop_requested() {
            tracing::info!("shutting down");
            break Ok(());
        }
        if let Some(failure) = cluster.failure() {
            break Err(format!("stopping: {failure}"));
        }
    };
    server.abort();
    pages.abort();
    cluster.close().await;
    tracing::info!("stopped");
    outcome
}
