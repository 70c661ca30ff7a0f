//! The runtime layer: the one door to the outside world.
//!
//! No code outside this crate and `sim/` reads a clock, sleeps, spawns a thread, opens a file or a
//! socket, or draws randomness directly: it asks a [`Runtime`]. A `Runtime` is a cheap, clonable
//! handle on one node's [`Backend`]: the deterministic simulator (`strata-sim`) or the production
//! io_uring backend. Service code is written once against the handle types here ([`Disk`],
//! [`File`], [`Net`], [`Stream`], [`Rng`]) and runs unchanged on both.
//!
//! Tasks are local to their node's thread: futures need not be `Send`.

pub mod backend;
mod buffer;
mod buggify;
mod disk;
mod net;
mod rng;
pub mod sync;
mod task;
mod time;
pub mod transport;
#[cfg(target_os = "linux")]
pub mod uring;

pub use backend::{Backend, BufResult, LocalBoxFuture, OpenOptions, TaskId};
pub use buffer::{AlignedBuffer, DIRECT_IO_ALIGNMENT};
#[doc(hidden)]
pub use buggify::fire as __buggify_fire;
pub use buggify::{install_buggify_hook, BuggifyHook};
pub use disk::{check_path, Disk, File};
pub use net::{Listener, Net, NodeId, Stream};
pub use rng::Rng;
pub use task::JoinHandle;
pub use time::{Duration, Instant};

use std::future::Future;
use std::rc::Rc;

/// One node's handle on its backend. Clone it freely.
#[derive(Clone)]
pub struct Runtime {
    backend: Rc<dyn Backend>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Runtime").field("node", &self.node_id()).finish()
    }
}

impl Runtime {
    pub fn new(backend: Rc<dyn Backend>) -> Runtime {
        Runtime { backend }
    }

    pub fn node_id(&self) -> NodeId {
        self.backend.node_id()
    }

    /// This node's monotonic clock.
    pub fn now(&self) -> Instant {
        self.backend.now()
    }

    /// Wall-clock time since the Unix epoch; may jump and drift apart from [`Self::now`].
    pub fn now_unix(&self) -> Duration {
        self.backend.now_unix()
    }

    pub async fn sleep(&self, duration: Duration) {
        self.sleep_until(self.now() + duration).await
    }

    pub async fn sleep_until(&self, deadline: Instant) {
        self.backend.sleep_until(deadline).await
    }

    /// Runs `future` for at most `duration`; `Err(Elapsed)` if the time ran out first (the future
    /// is dropped, cancelling whatever it was doing).
    pub async fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> Result<F::Output, Elapsed> {
        self.timeout_at(self.now() + duration, future).await
    }

    /// Runs `future` until `deadline` at most; `Err(Elapsed)` if the time ran out first.
    pub async fn timeout_at<F: Future>(
        &self,
        deadline: Instant,
        future: F,
    ) -> Result<F::Output, Elapsed> {
        match sync::select(future, self.sleep_until(deadline)).await {
            sync::Either::Left(output) => Ok(output),
            sync::Either::Right(()) => Err(Elapsed),
        }
    }

    /// Runs `future` as a task of this node. Dropping the handle detaches the task.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        task::spawn(&self.backend, future)
    }

    /// A generator seeded by the runtime: deterministic in simulation.
    pub fn rng(&self) -> Rng {
        Rng::with_seed(self.backend.random_seed())
    }

    pub fn disk(&self) -> Disk {
        Disk::new(self.backend.clone())
    }

    pub fn net(&self) -> Net {
        Net::new(self.backend.clone())
    }
}

/// A [`Runtime::timeout`] ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}
