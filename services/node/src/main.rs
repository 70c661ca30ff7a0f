//! `node`: one Strata node. With no arguments, a single-node cluster on loopback with its data
//! in `./strata-data/node-0`; with `--peer` flags (or a TOML file), one node of a static cluster
//! in which every node is a voter of every shard. See `node --help` and the crate docs of
//! `strata-node`. SIGINT or SIGTERM stop it gracefully; a storage failure exits with 1.

use clap::Parser;
use std::process::ExitCode;
use strata_node::config::{Config, Flags};
use strata_node::Endpoints;
use strata_rt::transport::PeerConfig;
use strata_rt::uring::{self, UringOptions};

/// mimalloc (see `strata_node::allocator`).
#[global_allocator]
static ALLOCATOR: strata_node::allocator::Allocator = strata_node::allocator::Allocator;

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match Config::load(flags, |path| {
        uring::read_startup_file(path).map_err(|error| format!("{}: {error}", path.display()))
    }) {
        Ok(config) => config,
        Err(reason) => {
            eprintln!("node: {reason}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_level);
    if let Err(error) = uring::catch_shutdown_signals() {
        tracing::warn!(%error, "cannot catch SIGINT/SIGTERM; they will kill the node");
    }
    let options = UringOptions {
        node_id: config.id,
        data_dir: config.data_dir.clone(),
        peers: config.peer_listen.map(|listen| PeerConfig {
            node: config.id,
            listen,
            peers: config.peers.clone(),
        }),
    };
    let printed = config.clone();
    let run = |rt| {
        strata_node::run(rt, config, uring::shutdown_requested, move |endpoints| {
            print_endpoints(&printed, endpoints)
        })
    };
    match uring::block_on(&options, run) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(reason)) => {
            tracing::error!("{reason}");
            ExitCode::FAILURE
        }
        Err(error) => {
            tracing::error!(%error, "cannot start the io_uring runtime");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let level = level.parse().unwrap_or(tracing::Level::INFO);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

/// Prints where the node listens. A closed stdout (`node | head -1`) is not worth dying for.
fn print_endpoints(config: &Config, endpoints: Endpoints) {
    use std::io::Write;
    let data_dir = std::env::current_dir()
        .map(|current| current.join(&config.data_dir))
        .unwrap_or_else(|_| config.data_dir.clone());
    let Endpoints { redis, http } = endpoints;
    let members = config.voters().len();
    let text = format!(
        "strata node {} ready ({members} node(s), {} shard(s))\n  redis    {redis}   (redis-cli -h {} -p {})\n  health   http://{http}/health\n  metrics  http://{http}/metrics\n  data     {}\n",
        config.id.0,
        config.shards,
        redis.ip(),
        redis.port(),
        data_dir.display()
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}
