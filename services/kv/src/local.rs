//! [`LocalCluster`]: a single-node, non-replicated [`Cluster`] for tests and the example server.
//! Each shard has one applier task that applies entries one at a time, with a local index counter
//! continuing from the machine's applied index; a read barrier is a no-op.
//!
//! There is no log: what the store has not flushed is lost on a crash ([`LocalCluster::flush`]
//! makes everything durable, e.g. at shutdown).

use crate::machine::{Machine, MachineError, Shared};
use crate::resp::Reply;
use crate::server::{Cluster, ClusterError};
use std::rc::Rc;
use strata_rt::sync::{channel, oneshot, OneshotSender, Sender};
use strata_rt::{JoinHandle, Runtime};

/// Entries waiting for a shard's applier.
const PENDING_MAX: usize = 4096;

type Request = (Vec<u8>, OneshotSender<Reply>);

pub struct LocalCluster {
    machines: Vec<Rc<Machine>>,
    senders: Vec<Sender<Request>>,
    _appliers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LocalCluster").field("shards", &self.machines.len()).finish()
    }
}

impl LocalCluster {
    /// Opens `shard_count` machines in `dir/shard-N` and starts their appliers.
    pub async fn open(
        rt: &Runtime,
        dir: &str,
        shard_count: u32,
    ) -> Result<LocalCluster, MachineError> {
        assert!(shard_count > 0, "a cluster has at least one shard");
        let shared = Shared::new();
        let mut machines = Vec::new();
        let mut senders = Vec::new();
        let mut appliers = Vec::new();
        for shard in 0..shard_count {
            let machine = Rc::new(
                Machine::open(rt, &format!("{dir}/shard-{shard}"), shard, shared.clone()).await?,
            );
            let (sender, mut receiver) = channel::<Request>(PENDING_MAX);
            let applier = machine.clone();
            appliers.push(rt.spawn(async move {
                let mut index = applier.applied_index();
                while let Some((entry, reply)) = receiver.receive().await {
                    index += 1;
                    reply.send(applier.apply(index, &entry).await);
                }
            }));
            machines.push(machine);
            senders.push(sender);
        }
        Ok(LocalCluster { machines, senders, _appliers: appliers })
    }

    /// Flushes every shard's store, making everything applied durable.
    pub async fn flush(&self) -> Result<(), MachineError> {
        for machine in &self.machines {
            machine.db().flush().await.map_err(MachineError::Storage)?;
        }
        Ok(())
    }
}

impl Cluster for LocalCluster {
    fn shard_count(&self) -> u32 {
        self.machines.len() as u32
    }

    async fn write(&self, shard: u32, entry: Vec<u8>) -> Result<Reply, ClusterError> {
        let (sender, receiver) = oneshot();
        self.senders[shard as usize]
            .send((entry, sender))
            .await
            .map_err(|_| ClusterError("shard stopped".into()))?;
        receiver.await.map_err(|_| ClusterError("shard stopped".into()))
    }

    async fn read_barrier(&self, _shard: u32) -> Result<(), ClusterError> {
        Ok(())
    }

    fn machine(&self, shard: u32) -> Rc<Machine> {
        self.machines[shard as usize].clone()
    }
}
