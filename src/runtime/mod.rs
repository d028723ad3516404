//! The embedded runtime: a node that fires jobs (planner), claims and executes runs
//! (dispatcher, executor), records outcomes (completer) and follows changes made from
//! elsewhere (watcher), plus the builder that assembles it and the handle that steers it.
//!
//! # Several nodes
//! Any number of nodes may share one database. Firing is exactly-once per slot (see
//! [`crate::store`]); claiming gives each run to one node; leases hand the runs of a
//! node that died to the others.

mod builder;
mod completer;
mod dispatcher;
mod executor;
mod handle;
pub mod planner;
pub mod retry;
mod watcher;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use builder::{BuildError, DATABASE_URL_ENV, SchedulerBuilder};
pub use handle::{Enqueue, HandleError, SchedulerHandle};

use crate::clock::Clock;
use crate::job::{Defaults, TaskPolicy};
use crate::store::{ClaimLimits, Completion, NodeInfo, Store};
use crate::task::{FailedRun, Registry};

/// An attempt's outcome on its way to the completer.
#[derive(Debug)]
pub(crate) struct Done {
    completion: Completion,
    failed: Option<FailedRun>,
}

/// What the completer receives.
#[derive(Debug)]
pub(crate) enum Msg {
    /// An outcome to write.
    Done(Done),
    /// Answer once everything sent before is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// State shared by the node's loops and handles.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Store,
    clock: Arc<dyn Clock>,
    registry: Registry,
    policies: HashMap<String, TaskPolicy>,
    defaults: Defaults,
    claim_limits: ClaimLimits,
    node: NodeInfo,
    lease: Duration,
    shutdown_grace: Duration,
    workers: Arc<Semaphore>,
    wake_planner: Notify,
    wake_dispatcher: Notify,
    shutdown: CancellationToken,
    /// True while `run()` drives the node; the enqueue fast path needs its loops.
    started: std::sync::atomic::AtomicBool,
    running: Mutex<HashMap<i64, executor::Running>>,
    completions: mpsc::UnboundedSender<Msg>,
}

impl Shared {
    /// Waits until `deadline` on the clock (forever if none), a wake-up, or shutdown.
    /// Returns false on shutdown. `woken` is created (and enabled) before the work
    /// that decided the deadline, so a wake-up sent meanwhile is not lost.
    async fn idle(&self, deadline: Option<DateTime<Utc>>, woken: Pin<&mut Notified<'_>>) -> bool {
        let sleep = async {
            match deadline {
                Some(t) => self.clock.sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = woken => true,
            _ = sleep => true,
        }
    }

    /// The effective policy of a task, or the defaults for a task this node lacks.
    fn policy(&self, task: &str) -> TaskPolicy {
        self.policies.get(task).cloned().unwrap_or(TaskPolicy {
            max_instances: None,
            max_retries: self.defaults.max_retries,
            retry_delay: self.defaults.retry_delay,
            timeout: self.defaults.timeout,
            priority: self.defaults.priority,
            queue: None,
        })
    }
}

/// A node: build it with [`Scheduler::builder`], steer it with [`Scheduler::handle`],
/// and drive it with [`Scheduler::run`] or [`Scheduler::run_until_signal`].
#[derive(Debug)]
pub struct Scheduler {
    shared: Arc<Shared>,
    completions: mpsc::UnboundedReceiver<Msg>,
}

impl Scheduler {
    /// Starts configuring a node.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    /// A cloneable handle to enqueue runs and steer jobs, usable before and during `run`.
    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle::new(self.shared.clone())
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.node.id
    }

    /// Runs the node until [`SchedulerHandle::shutdown`] is called, then shuts down
    /// gracefully: stops claiming, lets running runs finish within the grace period,
    /// then cancels the rest and releases them to the queue.
    pub async fn run(self) -> Result<(), crate::store::StoreError> {
        let Scheduler {
            shared,
            completions,
        } = self;
        shared
            .store
            .register_node(&shared.node, shared.clock.now())
            .await?;
        tracing::info!(node = %shared.node.id, workers = shared.node.max_workers, "kairos node started");
        let completer = tokio::spawn(completer::run(shared.clone(), completions));
        let planner = tokio::spawn(planner::run(shared.clone()));
        let dispatcher = tokio::spawn(dispatcher::run(shared.clone()));
        let watcher = tokio::spawn(watcher::run(shared.clone()));
        shared
            .started
            .store(true, std::sync::atomic::Ordering::SeqCst);

        shared.shutdown.cancelled().await;
        shared
            .started
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = tokio::join!(planner, dispatcher, watcher);
        tracing::info!("shutting down: waiting for running runs");
        let max = shared.node.max_workers as u32;
        let all_idle = shared.workers.acquire_many(max);
        if tokio::time::timeout(shared.shutdown_grace, all_idle)
            .await
            .is_err()
        {
            let running = shared.running.lock().expect("running map poisoned");
            tracing::warn!(
                runs = running.len(),
                "grace period over: releasing running runs"
            );
            for r in running.values() {
                r.reason.store(
                    executor::CANCEL_SHUTDOWN,
                    std::sync::atomic::Ordering::SeqCst,
                );
                r.token.cancel();
            }
        }
        // Every executor holds a permit until it has sent its outcome.
        let _ = shared.workers.acquire_many(max).await;
        // Outcomes travel in order: once the flush marker is answered, all are written.
        let (tx, rx) = tokio::sync::oneshot::channel();
        if shared.completions.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
        completer.abort();
        let _ = shared
            .store
            .stop_node(&shared.node.id, shared.clock.now())
            .await;
        tracing::info!("kairos node stopped");
        Ok(())
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> Result<(), crate::store::StoreError> {
        let handle = self.handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received");
            handle.shutdown();
        });
        self.run().await
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
