//! The node's configuration: flags, an optional TOML file, and defaults that make a node with no
//! arguments a working single-node cluster on loopback. A flag overrides the file.

use clap::Parser;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use strata_rt::NodeId;

/// Most nodes in one static cluster (every node is a voter of every shard).
pub const NODES_MAX: usize = 9;
/// Most shards (Raft groups) per cluster.
pub const SHARDS_MAX: u32 = 256;

#[derive(Parser, Debug, Default)]
#[command(
    name = "node",
    about = "A Strata node: the Redis protocol over replicated, durable storage"
)]
pub struct Flags {
    /// A TOML file with any of the settings below (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id (unique in the cluster).
    #[arg(long)]
    pub id: Option<u32>,
    /// Where the node keeps its data [default: ./strata-data/node-ID].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where clients connect with the Redis protocol [default: 127.0.0.1:6379].
    #[arg(long)]
    pub redis_listen: Option<SocketAddr>,
    /// Where /metrics and /health are served [default: 127.0.0.1:9379].
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Where peers connect (needed with --peer).
    #[arg(long)]
    pub peer_listen: Option<SocketAddr>,
    /// Another node, as ID=ADDRESS (its --peer-listen); repeat for each.
    #[arg(long = "peer", value_parser = parse_peer)]
    pub peers: Vec<(u32, SocketAddr)>,
    /// The voters the cluster started with, comma-separated, the same on every node [default:
    /// this node and every --peer]. A node started later to join (added through
    /// `POST /members/...`) is not among them; list it as a --peer of the others.
    #[arg(long, value_delimiter = ',')]
    pub initial_voters: Option<Vec<u32>>,
    /// Shards (Raft groups) the keyspace is split into; the same on every node [default: 1].
    /// One shard keeps MULTI/EXEC and multi-key commands atomic over every key.
    #[arg(long)]
    pub shards: Option<u32>,
    /// Clients connected at once, at most [default: 10000].
    #[arg(long)]
    pub connections_max: Option<usize>,
    /// A shard takes a snapshot of its state and drops its Raft log up to there after this many
    /// entries; 0 never does [default: 50000].
    #[arg(long)]
    pub snapshot_entries: Option<u64>,
    /// Clients must AUTH with this password.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Breaks the node on purpose, to show that the Jepsen harness catches the bug. Never for
    /// real data; hidden from --help.
    #[arg(long, value_enum, hide = true)]
    pub planted_bug: Option<PlantedBug>,
}

/// A deliberate bug, for testing the tests: a harness that passes a broken build proves nothing.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Reads skip the read barrier and serve whatever the local replica has applied: a follower
    /// behind, or a node cut off from the majority, answers with old values.
    StaleReads,
}

fn parse_peer(text: &str) -> Result<(u32, SocketAddr), String> {
    let (id, address) = text.split_once('=').ok_or("expected ID=ADDRESS, as 2=127.0.0.1:7002")?;
    let id = id.parse().map_err(|_| format!("not a node id: {id}"))?;
    let address = address.parse().map_err(|_| format!("not an address: {address}"))?;
    Ok((id, address))
}

/// The TOML file: the same names as the flags, with `peers` as a table of id = "address".
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    id: Option<u32>,
    data_dir: Option<PathBuf>,
    redis_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    peer_listen: Option<SocketAddr>,
    #[serde(default)]
    peers: BTreeMap<String, SocketAddr>,
    initial_voters: Option<Vec<u32>>,
    shards: Option<u32>,
    connections_max: Option<usize>,
    snapshot_entries: Option<u64>,
    requirepass: Option<String>,
    log_level: Option<String>,
}

/// Everything the node runs with, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    pub data_dir: PathBuf,
    pub redis_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub peer_listen: Option<SocketAddr>,
    /// The other nodes, by id.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Every shard's voters at the start, if not this node and every peer.
    pub initial_voters: Option<Vec<NodeId>>,
    pub shards: u32,
    pub connections_max: usize,
    pub snapshot_entries: u64,
    pub requirepass: Option<String>,
    pub log_level: String,
    pub planted_bug: Option<PlantedBug>,
}

impl Config {
    /// Reads the file `flags.config` names, if any, and lays the flags over it.
    pub fn load(
        flags: Flags,
        read_file: impl Fn(&PathBuf) -> Result<String, String>,
    ) -> Result<Config, String> {
        let file = match &flags.config {
            Some(path) => {
                let text = read_file(path)?;
                toml::from_str::<File>(&text)
                    .map_err(|error| format!("{}: {error}", path.display()))?
            }
            None => File::default(),
        };
        let mut peers = BTreeMap::new();
        for (id, address) in file.peers {
            let id = id.parse::<u32>().map_err(|_| format!("peers: not a node id: {id}"))?;
            peers.insert(NodeId(id), address);
        }
        for (id, address) in flags.peers {
            peers.insert(NodeId(id), address);
        }
        let id = NodeId(flags.id.or(file.id).unwrap_or(0));
        let config = Config {
            id,
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(format!("strata-data/node-{}", id.0))),
            redis_listen: flags
                .redis_listen
                .or(file.redis_listen)
                .unwrap_or(([127, 0, 0, 1], 6379).into()),
            http_listen: flags
                .http_listen
                .or(file.http_listen)
                .unwrap_or(([127, 0, 0, 1], 9379).into()),
            peer_listen: flags.peer_listen.or(file.peer_listen),
            peers,
            initial_voters: flags
                .initial_voters
                .or(file.initial_voters)
                .map(|voters| voters.into_iter().map(NodeId).collect()),
            shards: flags.shards.or(file.shards).unwrap_or(1),
            connections_max: flags.connections_max.or(file.connections_max).unwrap_or(10_000),
            snapshot_entries: flags.snapshot_entries.or(file.snapshot_entries).unwrap_or(50_000),
            requirepass: flags.requirepass.or(file.requirepass),
            log_level: flags.log_level.or(file.log_level).unwrap_or_else(|| "info".into()),
            planted_bug: flags.planted_bug,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.peers.contains_key(&self.id) {
            return Err(format!("--peer lists this node's own id {}", self.id.0));
        }
        if !self.peers.is_empty() && self.peer_listen.is_none() {
            return Err("--peer needs --peer-listen: where the other nodes reach this one".into());
        }
        if self.peers.len() + 1 > NODES_MAX {
            return Err(format!("at most {NODES_MAX} nodes"));
        }
        // Initial voters need not be peers any more: one removed for good may be dropped from
        // the --peer list, while the initial voters stay what the cluster started with.
        if self.initial_voters.as_ref().is_some_and(Vec::is_empty) {
            return Err("--initial-voters needs at least one node".into());
        }
        if self.shards == 0 || self.shards > SHARDS_MAX {
            return Err(format!("--shards must be 1..={SHARDS_MAX}"));
        }
        if self.connections_max == 0 {
            return Err("--connections-max must be at least 1".into());
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log_level.as_str()) {
            return Err(format!("unknown log level {}", self.log_level));
        }
        Ok(())
    }

    /// Every shard's voters at the start (bootstrap): `initial_voters`, else every node this
    /// one knows, itself included. Membership changes go on from there through Raft.
    pub fn voters(&self) -> Vec<NodeId> {
        let mut voters: Vec<NodeId> = match &self.initial_voters {
            Some(voters) => voters.clone(),
            None => self.peers.keys().copied().chain([self.id]).collect(),
        };
        voters.sort_unstable();
        voters.dedup();
        voters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(arguments: &[&str], file: &str) -> Result<Config, String> {
        let mut all = vec!["node"];
        all.extend_from_slice(arguments);
        let flags = Flags::try_parse_from(all).map_err(|error| error.to_string())?;
        let file = file.to_string();
        Config::load(flags, move |_| Ok(file.clone()))
    }

    #[test]
    fn no_arguments_make_a_single_node_on_loopback() {
        let config = load(&[], "").unwrap();
        assert_eq!(config.id, NodeId(0));
        assert_eq!(config.redis_listen, "127.0.0.1:6379".parse().unwrap());
        assert!(config.peers.is_empty());
        assert_eq!(config.voters(), vec![NodeId(0)]);
        assert_eq!(config.data_dir, PathBuf::from("strata-data/node-0"));
    }

    #[test]
    fn flags_override_the_file() {
        let file = "id = 1\nshards = 8\npeer-listen = \"127.0.0.1:7001\"\n[peers]\n2 = \"127.0.0.1:7002\"\n";
        let config =
            load(&["--config", "x.toml", "--shards", "2", "--peer", "3=127.0.0.1:7003"], file)
                .unwrap();
        assert_eq!(config.id, NodeId(1));
        assert_eq!(config.shards, 2);
        assert_eq!(config.voters(), vec![NodeId(1), NodeId(2), NodeId(3)]);
    }

    #[test]
    fn a_joining_node_is_not_among_the_initial_voters() {
        let peers = ["--peer-listen", "127.0.0.1:7004", "--peer", "1=127.0.0.1:7001"];
        let mut arguments = vec!["--id", "4", "--initial-voters", "1"];
        arguments.extend_from_slice(&peers);
        assert_eq!(load(&arguments, "").unwrap().voters(), vec![NodeId(1)]);
        let removed_for_good = ["--id", "4", "--initial-voters", "1,2", "--config", "x.toml"];
        let config = load(&removed_for_good, "peer-listen = \"127.0.0.1:7004\"\n").unwrap();
        assert_eq!(config.voters(), vec![NodeId(1), NodeId(2)]);
        assert!(load(&["--initial-voters", ""], "").is_err());
    }

    #[test]
    fn the_planted_bug_is_off_unless_asked_for_and_hidden_from_help() {
        assert_eq!(load(&[], "").unwrap().planted_bug, None);
        let broken = load(&["--planted-bug", "stale-reads"], "").unwrap();
        assert_eq!(broken.planted_bug, Some(PlantedBug::StaleReads));
        let help = <Flags as clap::CommandFactory>::command().render_long_help().to_string();
        assert!(!help.contains("planted"), "{help}");
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        assert!(load(&["--peer", "1=127.0.0.1:7001"], "").unwrap_err().contains("peer-listen"));
        assert!(load(&["--shards", "0"], "").unwrap_err().contains("shards"));
        assert!(load(&["--peer", "nonsense"], "").is_err());
        assert!(load(&["--config", "x.toml"], "unknown = 1").unwrap_err().contains("unknown"));
        let own = ["--id", "1", "--peer-listen", "127.0.0.1:1", "--peer", "1=127.0.0.1:2"];
        assert!(load(&own, "").unwrap_err().contains("own id"));
    }
}
