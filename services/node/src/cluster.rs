//! The key-value service's view of the cluster: shard `s` is Raft group `s + 1` on the
//! multi-Raft host, whose state machine is the shard's key-value machine (one LSM store each).

use crate::config::{Config, PlantedBug};
use crate::http::{self, MemberChange, Pages};
use std::collections::BTreeMap;
use std::rc::Rc;
use strata_kv::machine::{Machine, Shared, SnapshotPieces};
use strata_kv::resp::Reply;
use strata_kv::server::{Cluster, ClusterError};
use strata_kv::snapshot::SnapshotStream;
use strata_multiraft::{GroupId, Host, HostConfig, HostError, StateMachine};
use strata_raft::{ConfChange, ConfChangeStep, Membership};
use strata_rt::{NodeId, Runtime};

/// One shard's machine as the host drives it.
pub struct Shard(Rc<Machine>);

/// A shard's snapshot stream, as the host reads it.
pub struct ShardSnapshot(SnapshotStream);

impl strata_multiraft::SnapshotReader for ShardSnapshot {
    async fn read(&mut self, offset: u64, length_max: usize) -> Result<Vec<u8>, String> {
        self.0.read(offset, length_max).await.map_err(|error| error.to_string())
    }
}

/// The host's staged snapshot file, as the machine's install reads it.
struct StagedPieces<'a>(&'a mut strata_multiraft::SnapshotSource);

impl SnapshotPieces for StagedPieces<'_> {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        self.0.next().await
    }
}

impl StateMachine for Shard {
    type Output = Reply;
    type Snapshot = ShardSnapshot;

    async fn apply(&self, index: u64, command: &[u8]) -> Reply {
        self.0.apply(index, command).await
    }

    fn durable_index(&self) -> u64 {
        self.0.durable_index()
    }

    fn failure(&self) -> Option<String> {
        self.0.failure().map(|failure| failure.to_string())
    }

    fn snapshot(
        &self,
    ) -> impl std::future::Future<Output = Result<ShardSnapshot, String>> + 'static {
        let taking = self.0.snapshot();
        async move { taking.await.map(ShardSnapshot).map_err(|error| error.to_string()) }
    }

    async fn install(
        &self,
        index: u64,
        source: &mut strata_multiraft::SnapshotSource,
    ) -> Result<(), String> {
        self.0.install(index, &mut StagedPieces(source)).await.map_err(|error| error.to_string())
    }
}

pub struct RaftCluster {
    host: Host<Shard>,
    shards: u32,
    planted_bug: Option<PlantedBug>,
}

fn group_of(shard: u32) -> GroupId {
    GroupId::from(shard) + 1
}

impl RaftCluster {
    pub async fn open(rt: &Runtime, config: &Config) -> Result<RaftCluster, String> {
        check_identity(rt, config).await?;
        let shared = Shared::new();
        let mut machines = BTreeMap::new();
        for shard in 0..config.shards {
            let dir = format!("kv/shard-{shard}");
            let machine = Machine::open(rt, &dir, shard, shared.clone())
                .await
                .map_err(|error| format!("open shard {shard}: {error}"))?;
            machines.insert(group_of(shard), Rc::new(Shard(Rc::new(machine))));
        }
        let mut host_config = HostConfig::new(config.id, config.voters());
        host_config.snapshot_entries = config.snapshot_entries;
        let host = Host::open(rt, host_config, machines)
            .await
            .map_err(|error| format!("open the Raft log: {error}"))?;
        tracing::info!(node = config.id.0, shards = config.shards, "opened");
        if let Some(bug) = config.planted_bug {
            tracing::warn!(?bug, "running with a PLANTED BUG: this node is broken on purpose");
        }
        Ok(RaftCluster { host, shards: config.shards, planted_bug: config.planted_bug })
    }

    /// Why the host stopped, if it failed.
    pub fn failure(&self) -> Option<HostError> {
        self.host.failure().filter(|failure| *failure != HostError::Stopped)
    }

    pub async fn close(&self) {
        self.host.close().await;
    }
}

/// The shape of the cluster this data directory belongs to, written at first start.
const IDENTITY_PATH: &str = "cluster";

fn identity(config: &Config) -> String {
    let voters: Vec<String> = config.voters().iter().map(|voter| voter.0.to_string()).collect();
    let body = format!(
        "strata cluster 1\nnode {}\nvoters {}\nshards {}\n",
        config.id.0,
        voters.join(","),
        config.shards
    );
    format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()))
}

/// Refuses to start with another node id, other voters or another shard count than the data
/// directory was created with: more shards would remap keys (earlier writes would read as
/// absent), and a node restarted without its peers would be a one-node cluster on its own
/// (split brain). Membership changes go through Raft instead (`POST /members/...`).
async fn check_identity(rt: &Runtime, config: &Config) -> Result<(), String> {
    let expected = identity(config);
    let disk = rt.disk();
    let io = |what: &str, error: std::io::Error| format!("{what} {IDENTITY_PATH}: {error}");
    match disk.open(IDENTITY_PATH).await {
        Ok(file) => {
            let len = file.len().await.map_err(|error| io("size of", error))?;
            if len > 4096 {
                return Err(format!("{IDENTITY_PATH} is {len} bytes: not Strata's"));
            }
            let bytes =
                file.read_exact_at(len as usize, 0).await.map_err(|error| io("read", error))?;
            let found = String::from_utf8_lossy(&bytes);
            if found != expected {
                return Err(format!(
                    "this data directory was created for another cluster shape:\n{found}the \
                     settings given are:\n{expected}start with the same --id, voters (--initial-voters, \
                     else every --peer) and --shards, \
                     or use another --data-dir"
                ));
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let staging = format!("{IDENTITY_PATH}.new");
            let file = disk.create(&staging).await.map_err(|error| io("create", error))?;
            let (written, _) = file.write_at(expected.into_bytes(), 0).await;
            written.map_err(|error| io("write", error))?;
            file.sync().await.map_err(|error| io("sync", error))?;
            disk.rename(&staging, IDENTITY_PATH).await.map_err(|error| io("rename", error))?;
            disk.sync_dir("").await.map_err(|error| io("sync the directory of", error))
        }
        Err(error) => Err(io("open", error)),
    }
}

fn cluster_error(error: HostError) -> ClusterError {
    ClusterError(error.to_string())
}

impl Cluster for RaftCluster {
    fn shard_count(&self) -> u32 {
        self.shards
    }

    async fn write(&self, shard: u32, entry: Vec<u8>) -> Result<Reply, ClusterError> {
        self.host.propose(group_of(shard), &entry).await.map_err(cluster_error)
    }

    async fn write_many(
        &self,
        shard: u32,
        entries: Vec<Vec<u8>>,
    ) -> Vec<Result<Reply, ClusterError>> {
        let commands: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let outputs = self.host.propose_many(group_of(shard), &commands).await;
        outputs.into_iter().map(|output| output.map_err(cluster_error)).collect()
    }

    async fn read_barrier(&self, shard: u32) -> Result<(), ClusterError> {
        if self.planted_bug == Some(PlantedBug::StaleReads) {
            return Ok(());
        }
        self.host.read_barrier(group_of(shard)).await.map_err(cluster_error)
    }

    fn machine(&self, shard: u32) -> Rc<Machine> {
        let shard = self.host.machine(group_of(shard)).expect("every shard has a group");
        shard.0.clone()
    }

    fn is_leader(&self, shard: u32) -> bool {
        self.host
            .status(group_of(shard))
            .is_some_and(|status| status.role == strata_raft::Role::Leader)
    }
}

/// `1,2,3`.
fn show_ids(ids: &std::collections::BTreeSet<NodeId>) -> String {
    let ids: Vec<String> = ids.iter().map(|id| id.0.to_string()).collect();
    ids.join(",")
}

fn show_membership(membership: &Membership) -> String {
    let mut out = format!("voters {}", show_ids(&membership.voters));
    if membership.is_joint() {
        out += &format!(" (joint with {})", show_ids(&membership.voters_outgoing));
    }
    if !membership.learners.is_empty() {
        out += &format!(" learners {}", show_ids(&membership.learners));
    }
    out
}

/// Whether `change` already holds in `membership` (so asking again is done at once).
fn already_made(change: MemberChange, membership: &Membership) -> bool {
    !membership.is_joint()
        && match change {
            MemberChange::AddLearner(id) => membership.is_learner(id),
            MemberChange::AddVoter(id) => membership.is_voter(id),
            MemberChange::Remove(id) => !membership.contains(id),
        }
}

impl RaftCluster {
    /// Makes `change` on one shard, if this node leads it; a line saying how it went.
    async fn change_shard(&self, shard: u32, change: MemberChange) -> Result<String, String> {
        let group = group_of(shard);
        let status = self.host.status(group).expect("every shard has a group");
        if status.role != strata_raft::Role::Leader {
            return Err(match status.leader {
                Some(leader) => format!("shard {shard}: node {} leads it; ask there", leader.0),
                None => format!("shard {shard}: no leader known; try again"),
            });
        }
        // Only a committed configuration answers "already" (one still being made may yet fail).
        let applied = self.host.membership_applied(group);
        if let Some(membership) = applied.filter(|membership| already_made(change, membership)) {
            return Ok(format!("shard {shard}: {} (already)", show_membership(&membership)));
        }
        let step = match change {
            MemberChange::AddLearner(id) => ConfChangeStep::AddLearner(id),
            MemberChange::AddVoter(id) => ConfChangeStep::AddVoter(id),
            MemberChange::Remove(id) => ConfChangeStep::Remove(id),
        };
        let conf_change = ConfChange { steps: vec![step] };
        match self.host.change_membership(group, conf_change).await {
            Ok(membership) => Ok(format!("shard {shard}: {}", show_membership(&membership))),
            Err(HostError::NotLeader { leader: Some(leader) }) => {
                Err(format!("shard {shard}: node {} leads it; ask there", leader.0))
            }
            Err(error) => Err(format!("shard {shard}: {error}")),
        }
    }
}

impl Pages for RaftCluster {
    fn members(&self) -> String {
        let mut out = String::new();
        for shard in 0..self.shards {
            let group = group_of(shard);
            let (Some(membership), Some(status)) =
                (self.host.membership(group), self.host.status(group))
            else {
                continue;
            };
            let leader = status.leader.map_or("none known".into(), |leader| leader.0.to_string());
            out += &format!("shard {shard}: leader {leader}, {}\n", show_membership(&membership));
        }
        out
    }

    async fn change_members(&self, change: MemberChange) -> Result<String, String> {
        tracing::info!(?change, "membership change asked for");
        let mut lines = Vec::new();
        let mut all_made = true;
        for shard in 0..self.shards {
            let outcome = self.change_shard(shard, change).await;
            all_made &= outcome.is_ok();
            lines.push(outcome.unwrap_or_else(|error| error));
        }
        let text = lines.join("\n") + "\n";
        if all_made {
            Ok(text)
        } else {
            Err(text)
        }
    }

    fn unhealthy(&self) -> Option<String> {
        if let Some(failure) = self.failure() {
            return Some(failure.to_string());
        }
        let removed: Vec<u32> = (0..self.shards)
            .filter(|&shard| {
                self.host.status(group_of(shard)).is_some_and(|status| status.removed_at.is_some())
            })
            .collect();
        if !removed.is_empty() {
            return Some(format!(
                "removed from shards {removed:?}: their leaders' configuration leaves this node \
                 out; stop it, or add it again"
            ));
        }
        let leaderless: Vec<u32> = (0..self.shards)
            .filter(|&shard| {
                self.host.status(group_of(shard)).is_none_or(|status| status.leader.is_none())
            })
            .collect();
        (!leaderless.is_empty()).then(|| format!("shards without a leader: {leaderless:?}"))
    }

    fn metrics(&self) -> String {
        let stats = self.host.stats();
        let mut out = String::new();
        let total = |value: u64| [(String::new(), value)];
        let counters: [(&str, &str, u64); 15] = [
            ("strata_raft_wal_syncs_total", "Syncs of the shared Raft WAL.", stats.wal_syncs),
            (
                "strata_raft_wal_sync_microseconds_total",
                "Time spent waiting for WAL appends to be durable (over syncs: the mean sync).",
                stats.wal_sync_micros,
            ),
            (
                "strata_raft_entries_persisted_total",
                "Entries written to the WAL.",
                stats.entries_persisted,
            ),
            ("strata_raft_entries_committed_total", "Entries committed.", stats.entries_committed),
            ("strata_raft_proposals_total", "Proposals made here.", stats.proposals),
            (
                "strata_raft_proposals_forwarded_out_total",
                "Proposals sent to a leader elsewhere.",
                stats.proposals_forwarded_out,
            ),
            (
                "strata_raft_proposals_forwarded_in_total",
                "Proposals received from followers.",
                stats.proposals_forwarded_in,
            ),
            ("strata_raft_reads_total", "Read barriers.", stats.reads),
            ("strata_raft_envelopes_sent_total", "Peer envelopes sent.", stats.envelopes_sent),
            (
                "strata_raft_envelopes_refused_total",
                "Peer envelopes that did not decode.",
                stats.envelopes_refused,
            ),
            (
                "strata_raft_removal_notices_sent_total",
                "Times this node, leading, told a node that a shard's configuration leaves it out.",
                stats.removal_notices_sent,
            ),
            (
                "strata_raft_snapshots_taken_total",
                "Snapshots shards took (each compacting their Raft log).",
                stats.snapshots_taken,
            ),
            (
                "strata_raft_snapshot_chunks_sent_total",
                "Snapshot chunks read for followers.",
                stats.snapshot_chunks_sent,
            ),
            (
                "strata_raft_snapshots_installed_total",
                "Snapshots installed from leaders.",
                stats.snapshots_installed,
            ),
            (
                "strata_raft_checkpoints_total",
                "WAL checkpoints (each dropping older segments).",
                stats.checkpoints,
            ),
        ];
        for (name, help, value) in counters {
            http::metric(&mut out, name, "counter", help, &total(value));
        }
        let segments = total(stats.wal_segments);
        http::metric(
            &mut out,
            "strata_raft_wal_segments",
            "gauge",
            "Segments of the WAL.",
            &segments,
        );
        let mut per_shard =
            |name: &str, help: &str, value: &dyn Fn(&strata_multiraft::GroupStatus) -> u64| {
                let samples: Vec<(String, u64)> = (0..self.shards)
                    .filter_map(|shard| {
                        let status = self.host.status(group_of(shard))?;
                        Some((format!("shard=\"{shard}\""), value(&status)))
                    })
                    .collect();
                http::metric(&mut out, name, "gauge", help, &samples);
            };
        per_shard("strata_raft_term", "Current Raft term.", &|status| status.term);
        per_shard("strata_raft_commit_index", "Highest committed index.", &|status| {
            status.commit_index
        });
        per_shard("strata_raft_applied_index", "Highest applied index.", &|status| {
            status.applied_index
        });
        per_shard("strata_raft_is_leader", "1 if this node leads the shard.", &|status| {
            u64::from(status.role == strata_raft::Role::Leader)
        });
        per_shard(
            "strata_raft_leader",
            "The shard's leader as known here (node id + 1; 0: none).",
            &|status| status.leader.map_or(0, |leader| u64::from(leader.0) + 1),
        );
        per_shard(
            "strata_raft_removed",
            "1 if the shard's leader said its configuration leaves this node out.",
            &|status| u64::from(status.removed_at.is_some()),
        );
        out
    }
}
