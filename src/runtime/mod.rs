//! The embedded runtime: a node that fires jobs (planner), claims and executes runs
//! (dispatcher, executor), records outcomes (completer) and follows changes made from
//! elsewhere (watcher), plus the builder that assembles it and the handle that steers it.
//!
//! # Several nodes
//! Any number of nodes may share one database. Firing is exactly-once per slot (see
//! the store's jobs module); claiming gives each run to one node; leases hand the runs
//! of a node that died to the others.

mod backoff;
mod builder;
mod completer;
mod dispatcher;
mod event_log;
mod executor;
mod expiry;
mod handle;
mod hooks;
mod listener;
mod on_time;
mod order;
mod planner;
pub(crate) mod policy;
mod reporter;
pub(crate) mod retry;
mod watcher;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub(crate) use builder::DEFAULT_HEARTBEAT_TIMEOUT;
pub use builder::{BuildError, DATABASE_URL_ENV, NODE_NAME_ENV, SchedulerBuilder};
pub(crate) use event_log::SUBSCRIBER_TTL;
pub use handle::SchedulerHandle;
pub use hooks::{HookResult, RunOutcome, SkippedSlots};
pub(crate) use order::InFlight;

use crate::clock::Clock;
use crate::job::{Defaults, TaskPolicy};
use crate::ops::Admin;
use crate::store::{ClaimLimits, Completion, NodeRow, Store};
use crate::task::{FailedRun, Registry};

/// At shutdown, how long runs cancelled at the end of the grace period get to stop
/// on their own before they are dropped. Their outcome is the same either way (released,
/// the attempt uncounted), and operators size `shutdown_grace` against a deadline after
/// which the process is killed (Kubernetes' `terminationGracePeriodSeconds`, say): a
/// full `cancel_grace` on top of it would overrun that deadline.
const SHUTDOWN_STOP: Duration = Duration::from_secs(1);

/// How long a stopping node waits for its last outcomes to be written.
const OUTCOMES_WAIT: Duration = Duration::from_secs(5);

/// How long webhook deliveries may still take at shutdown when the runs used up the
/// grace period: enough for a receiver nearby to take the last outcomes' first
/// attempts, short against the deadline the grace period is sized for.
const WEBHOOKS_LAST_MOMENT: Duration = Duration::from_millis(500);

/// An attempt's outcome on its way to the completer.
#[derive(Debug)]
pub(crate) struct Done {
    completion: Completion,
    failed: Option<FailedRun>,
    task: String,
    job_id: Option<i64>,
    tags: std::collections::BTreeMap<String, String>,
    /// The run has a callback URL: its end is for the webhook worker.
    callback: bool,
    /// When the attempt ended, as the node's clock read then: the run's finish time,
    /// however late the outcome is written (after a database outage, say).
    ended_at: chrono::DateTime<chrono::Utc>,
}

impl Done {
    /// `completion` of the attempt `run`.
    fn of(
        run: &crate::store::ClaimedRun,
        completion: Completion,
        failed: Option<FailedRun>,
    ) -> Done {
        Done {
            completion,
            failed,
            task: run.task.clone(),
            job_id: run.job_id,
            tags: run.tags.clone(),
            callback: run.callback,
            // Set when the attempt hands its outcome over (see `executor`).
            ended_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        }
    }
}

/// What the completer receives.
#[derive(Debug)]
pub(crate) enum Msg {
    /// An outcome to write (boxed: it is large, and the channel holds many).
    Done(Box<Done>),
    /// Answer once everything sent before is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Why a running attempt's token was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CancelReason {
    /// Not cancelled.
    None = 0,
    /// An operator cancelled the run (or a newer run replaced it).
    Operator = 1,
    /// The node is shutting down: release the run to the queue.
    Shutdown = 2,
    /// The node no longer owns the run (its lease ran out and it was taken back).
    LeaseLost = 3,
}

/// A running attempt as the node tracks it.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) attempt: u32,
    pub(crate) token: CancellationToken,
    reason: std::sync::atomic::AtomicU8,
    /// This node no longer counts this execution as the run's (see
    /// [`Running::disown`]): whatever it ends with is not written. Shared with the
    /// execution's context, whose reports are then dropped too.
    pub(crate) disowned: Arc<std::sync::atomic::AtomicBool>,
}

impl Running {
    pub(crate) fn new(attempt: u32, token: CancellationToken) -> Self {
        Running {
            attempt,
            token,
            reason: std::sync::atomic::AtomicU8::new(CancelReason::None as u8),
            disowned: Default::default(),
        }
    }

    /// Stops this execution and drops what it still reports and ends with: the node
    /// no longer owns the run under this execution's claim. That is so once the run's
    /// row is not this node's attempt any more (the lease renewal found it taken back,
    /// or its claim lost), and when the node claimed the same attempt again.
    ///
    /// The latter happens only when the database lost the claim this execution runs
    /// under (a crashed PostgreSQL server can lose the last claims, which commit
    /// without waiting for the disk): the run was queued again with the attempt
    /// uncounted, and the new claim has the same attempt number. A write of this
    /// execution would then be refused by the fence on node and attempt, or, worse,
    /// land on the node's own new claim of that attempt, which the fence cannot tell
    /// from this one.
    pub(crate) fn disown(&self) {
        self.disowned.store(true, Ordering::SeqCst);
        self.cancel(CancelReason::LeaseLost);
    }

    pub(crate) fn is_disowned(&self) -> bool {
        self.disowned.load(Ordering::SeqCst)
    }

    /// Cancels the attempt for `reason` (an operator's cancel is not downgraded).
    pub(crate) fn cancel(&self, reason: CancelReason) {
        let _ = self.reason.compare_exchange(
            CancelReason::None as u8,
            reason as u8,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> CancelReason {
        match self.reason.load(Ordering::SeqCst) {
            1 => CancelReason::Operator,
            2 => CancelReason::Shutdown,
            3 => CancelReason::LeaseLost,
            _ => CancelReason::None,
        }
    }
}

/// What the node's loops wait on, shared with the [`Admin`] so that a change made
/// through it reaches this node's loops at once.
#[derive(Debug)]
pub(crate) struct Signals {
    pub(crate) wake_planner: Notify,
    pub(crate) wake_dispatcher: Notify,
    /// An attempt ended and gave its worker slot back. The dispatcher listens only
    /// while slots are what it waits for (see `dispatcher`).
    pub(crate) slot_freed: Notify,
    /// Another process changed something (see `listener`): the watcher looks at once.
    pub(crate) changed: Notify,
    /// Whether database notifications reach this node (see `listener`); while they
    /// do, the watcher's polling is only a backstop.
    pub(crate) listening: std::sync::atomic::AtomicBool,
    /// Attempts running on this node, by run id.
    pub(crate) running: Mutex<HashMap<i64, Arc<Running>>>,
    /// Attempts that ended here and whose outcome the completer has not written yet:
    /// (run id, attempt). They are still this node's, so their leases are renewed until
    /// then; otherwise an outcome held up (a database outage, a clock that jumped) could
    /// find its run taken back, and be refused.
    pub(crate) finishing: Mutex<HashSet<(i64, u32)>>,
    /// The node's event stream.
    pub(crate) events: crate::events::EventBus,
    /// Enqueues through this node not yet published (see `order`).
    pub(crate) enqueues: order::EnqueueGate,
    /// Tasks executing right now (past a claimed-ahead run's wait for its time): the
    /// test harness waits for them before it moves its clock on.
    pub(crate) executing: std::sync::atomic::AtomicUsize,
    /// The earliest time to live among queued runs, as far as this node knows.
    pub(crate) expiry: expiry::Deadline,
}

impl Signals {
    pub(crate) fn new(events: crate::events::EventBus) -> Self {
        Signals {
            wake_planner: Notify::new(),
            wake_dispatcher: Notify::new(),
            slot_freed: Notify::new(),
            changed: Notify::new(),
            listening: std::sync::atomic::AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            finishing: Mutex::new(HashSet::new()),
            events,
            enqueues: order::EnqueueGate::default(),
            executing: std::sync::atomic::AtomicUsize::new(0),
            expiry: expiry::Deadline::default(),
        }
    }
}

impl Signals {
    /// Cancels a local attempt, if this node runs it; returns whether it did.
    pub(crate) fn cancel_local(
        &self,
        run_id: i64,
        attempt: Option<u32>,
        reason: CancelReason,
    ) -> bool {
        let running = self.running.lock().expect("running map poisoned");
        match running
            .get(&run_id)
            .filter(|r| attempt.is_none_or(|a| a == r.attempt))
        {
            Some(r) => {
                r.cancel(reason);
                true
            }
            None => false,
        }
    }

    /// The attempts this node holds now, running or with their outcome still to be
    /// written.
    pub(crate) fn local_attempts(&self) -> Vec<Held> {
        // The same lock order as the executor's, which moves an attempt from one to the
        // other under both: none is missed in between.
        let running = self.running.lock().expect("running map poisoned");
        let finishing = self.finishing.lock().expect("finishing set poisoned");
        running
            .iter()
            .map(|(id, r)| Held {
                id: *id,
                attempt: r.attempt,
                running: Some(r.clone()),
            })
            .chain(finishing.iter().map(|&(id, attempt)| Held {
                id,
                attempt,
                running: None,
            }))
            .collect()
    }
}

/// An attempt this node holds, as its lease renewal saw it.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) id: i64,
    pub(crate) attempt: u32,
    /// The execution, while it runs; none once it ended and its outcome waits for the
    /// completer. What the renewal then decides applies to this very execution, not to
    /// a new claim of the same attempt made meanwhile.
    pub(crate) running: Option<Arc<Running>>,
}

/// State shared by the node's loops and handles.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Store,
    admin: Admin,
    clock: Arc<dyn Clock>,
    /// The wall clock's correction to the database's time, re-measured on each beat
    /// (none for a test clock).
    clock_sync: Option<Arc<crate::clock::SyncedClock>>,
    registry: Registry,
    policies: HashMap<String, TaskPolicy>,
    defaults: Defaults,
    /// The limits claims respect: the node's tasks' `max_instances`, and the queues'
    /// limits as stored, which the watcher reads again when another node may have
    /// declared new ones (see `watcher::refresh_queue_limits`).
    claim_limits: std::sync::RwLock<Arc<ClaimLimits>>,
    node: NodeRow,
    lease: Duration,
    /// How often the node beats its heartbeat and renews its leases.
    beat_interval: Duration,
    /// A node silent for longer is declared dead.
    heartbeat_timeout: Duration,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    retention: crate::config::Retention,
    maintenance_interval: Duration,
    /// How often the watcher looks for other processes' changes (see `watcher`).
    poll_interval: Duration,
    /// How far ahead of their time slots are fired and runs claimed, so that they
    /// start on time (see `SchedulerBuilder::lead`).
    lead: chrono::Duration,
    /// Whether retry delays are jittered (see `SchedulerBuilder::retry_jitter`).
    retry_jitter: bool,
    workers: Arc<Semaphore>,
    signals: Arc<Signals>,
    shutdown: CancellationToken,
    /// Cancelled when shutdown stops waiting for cancelled runs to stop on their own:
    /// the executors drop those still running (see `Scheduler::run`).
    abandon: CancellationToken,
    /// Cancelled at shutdown once this node's runs have all ended or been dropped and
    /// their outcomes written: until then the watcher goes on beating and renewing
    /// their leases (and applying operators' cancels), or another node would take
    /// them back and run them beside this one during the grace period.
    drained: CancellationToken,
    /// Cancelled once the node has stopped: its runs ended or released, its record
    /// marked stopped (the event log writes until then).
    stopped: CancellationToken,
    /// True while `run()` drives the node; the enqueue fast path needs its loops.
    started: AtomicBool,
    completions: mpsc::UnboundedSender<Msg>,
    /// Where running tasks' reports go (see `reporter`).
    reports: crate::context::ReportSink,
    hooks: hooks::Hooks,
    /// Where finished runs with a callback URL go (see `crate::webhook`).
    webhooks: crate::webhook::Webhooks,
    /// Names of jobs by id, for events about their runs.
    job_names: Mutex<HashMap<i64, String>>,
    /// The start times runs claimed ahead wait for (see `on_time`).
    starts: on_time::Starts,
    /// The first part of the node that failed, and how (see `supervised`).
    failed: Mutex<Option<(&'static str, String)>>,
}

/// Runs one part of the node. Should it panic (a bug, or a log writer that panics on a
/// closed pipe), the node records it and shuts down, and `run` returns the failure: a
/// node that went on beating its heartbeat without, say, its completer would renew the
/// leases of runs it never finishes, so nobody else would take them back.
async fn supervised(shared: Arc<Shared>, part: &'static str, work: BoxFuture<'static, ()>) {
    if let Err(panic) = std::panic::AssertUnwindSafe(work).catch_unwind().await {
        shared.fail(part, &*panic);
    }
}

impl Shared {
    /// The limits claims respect now.
    fn claim_limits(&self) -> Arc<ClaimLimits> {
        self.claim_limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records that `part` of the node panicked with `panic`, and shuts the node down
    /// (see `supervised`); `run` then returns the first such failure.
    fn fail(&self, part: &'static str, panic: &(dyn std::any::Any + Send)) {
        let message = crate::task::panic_message(panic);
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert((part, message));
        self.shutdown.cancel();
    }

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

    /// Waits for `start`, the start of a run claimed ahead of its time: on the dot
    /// with a wall clock (see `on_time`), as the clock moves with a test clock.
    async fn start_at(&self, start: DateTime<Utc>) {
        if self.clock.is_wall_clock() {
            let left = (start - self.clock.now()).to_std().unwrap_or_default();
            self.starts.until(std::time::Instant::now() + left).await;
            // The gate keeps the monotonic clock's time; had the wall clock been
            // slewed or stepped meanwhile, the run still starts no earlier than
            // `start` on the node's clock.
            if self.clock.now() < start {
                self.clock.sleep_until(start).await;
            }
        } else {
            self.clock.sleep_until(start).await;
        }
    }

    /// The name of job `id`, as far as this node knows it.
    pub(crate) fn job_name(&self, id: Option<i64>) -> Option<String> {
        let id = id?;
        self.job_names.lock().ok()?.get(&id).cloned()
    }

    /// Learns the name of job `id` from the database if this node does not know it
    /// (a job created elsewhere, which this node never fired: a manual trigger), so
    /// that the events of its runs name it, and subscribers to the job hear them. Only
    /// while anybody listens.
    pub(crate) async fn learn_job_name(&self, id: Option<i64>) {
        let Some(id) = id else { return };
        if !self.signals.events.wanted() || self.job_name(Some(id)).is_some() {
            return;
        }
        match self.store.job_names(&[id]).await {
            Ok(found) => {
                if let Ok(mut names) = self.job_names.lock() {
                    names.extend(found);
                }
            }
            Err(e) => tracing::debug!(error = %e, job_id = id, "cannot read the job's name"),
        }
    }

    /// Publishes the event `make` builds, if anybody listens.
    pub(crate) fn emit(&self, make: impl FnOnce() -> crate::events::Event) {
        if self.signals.events.wanted() {
            self.signals.events.publish(make());
        }
    }

    /// The effective policy of a task, or the defaults for a task this node lacks.
    fn policy(&self, task: &str) -> TaskPolicy {
        self.policies
            .get(task)
            .cloned()
            .unwrap_or_else(|| self.defaults.unknown_task_policy())
    }
}

/// A node: build it with [`Scheduler::builder`], steer it with [`Scheduler::handle`],
/// and drive it with [`Scheduler::run`] or [`Scheduler::run_until_signal`].
#[derive(Debug)]
pub struct Scheduler {
    shared: Arc<Shared>,
    completions: mpsc::UnboundedReceiver<Msg>,
    reports: mpsc::UnboundedReceiver<crate::context::Report>,
    events: mpsc::UnboundedReceiver<crate::events::Event>,
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
    /// then cancels the rest, drops those that have not stopped a moment later, and
    /// releases them to the queue (see [`SchedulerBuilder::shutdown_grace`]).
    pub async fn run(self) -> Result<(), crate::Error> {
        let Scheduler {
            shared,
            completions,
            reports,
            events,
        } = self;
        // Repeatable: the insert does nothing if an earlier try committed.
        crate::store::patiently(crate::store::DEFAULT_CONNECT_TIMEOUT, || {
            shared.store.register_node(&shared.node, false)
        })
        .await?;
        // Should this future be dropped half-way, the event log still ends.
        let _stopped = shared.stopped.clone().drop_guard();
        tracing::info!(node = %shared.node.id, workers = shared.node.max_workers, "kairos node started");
        let spawn = |part, work| tokio::spawn(supervised(shared.clone(), part, work));
        let reporter = spawn("reporter", reporter::run(shared.clone(), reports).boxed());
        let event_log = spawn("event log", event_log::run(shared.clone(), events).boxed());
        let webhooks = shared.webhooks.start(
            shared.store.clone(),
            shared.node.id.clone(),
            shared.clock.clone(),
            shared.maintenance_interval,
            shared.shutdown_grace,
        );
        let completer = spawn(
            "completer",
            completer::run(shared.clone(), completions).boxed(),
        );
        // Read before the planner and the dispatcher first look: whatever another
        // process changes after this read moves the marker past it, and the watcher's
        // next look wakes them; read after their first look, a run enqueued in between
        // would be in the marker already and wait for the next change. (Unread, the
        // first look finds it moved and wakes them.)
        let marker = shared.store.change_marker().await.unwrap_or((0, 0));
        let planner = spawn("planner", planner::run(shared.clone()).boxed());
        let dispatcher = spawn("dispatcher", dispatcher::run(shared.clone()).boxed());
        let watcher = spawn("watcher", watcher::run(shared.clone(), marker).boxed());
        let listener = spawn("listener", listener::run(shared.clone()).boxed());
        shared.started.store(true, Ordering::SeqCst);

        shared.shutdown.cancelled().await;
        // From the request to stop, which is what the process's own deadline counts from.
        let grace_ends = tokio::time::Instant::now() + shared.shutdown_grace;
        shared.started.store(false, Ordering::SeqCst);
        // Not the watcher: the runs still going are this node's until they end.
        let _ = tokio::join!(planner, dispatcher, listener);
        tracing::info!("shutting down: waiting for running runs");
        let max = u32::try_from(shared.node.max_workers).unwrap_or(u32::MAX);
        let all_idle = shared.workers.acquire_many(max);
        if tokio::time::timeout_at(grace_ends, all_idle).await.is_err() {
            {
                let running = shared.signals.running.lock().expect("running map poisoned");
                tracing::warn!(
                    runs = running.len(),
                    "grace period over: releasing running runs"
                );
                for r in running.values() {
                    r.cancel(CancelReason::Shutdown);
                }
            }
            let stop = shared.cancel_grace.min(SHUTDOWN_STOP);
            if tokio::time::timeout(stop, shared.workers.acquire_many(max))
                .await
                .is_err()
            {
                tracing::warn!("dropping the runs that did not stop when cancelled");
                shared.abandon.cancel();
            }
        }
        // Every executor holds a permit until it has sent its outcome.
        let _ = shared.workers.acquire_many(max).await;
        // Outcomes travel in order: once the flush marker is answered, all are written.
        // With the database out of reach they cannot be: after a bound the node stops
        // all the same, and the runs are taken back when their leases end, as a
        // crashed node's are (its process would be killed soon anyway).
        let (tx, rx) = tokio::sync::oneshot::channel();
        if shared.completions.send(Msg::Flush(tx)).is_ok()
            && tokio::time::timeout(OUTCOMES_WAIT, rx).await.is_err()
        {
            tracing::warn!(
                "the last outcomes could not be written within {}s (is the database out of \
                 reach?); stopping without them: their runs are taken back when their leases end",
                OUTCOMES_WAIT.as_secs()
            );
        }
        shared.drained.cancel();
        // A beat in progress against a database out of reach would hold it for the
        // pool's whole wait.
        let mut watcher = watcher;
        if tokio::time::timeout(Duration::from_secs(1), &mut watcher)
            .await
            .is_err()
        {
            watcher.abort();
        }
        completer.abort();
        reporter.abort();
        // After the last outcomes: their webhooks get a first attempt, within what is
        // left of the grace period (at least a moment, for the outcomes written last).
        if let Some(w) = webhooks {
            w.stop(grace_ends.max(tokio::time::Instant::now() + WEBHOOKS_LAST_MOMENT))
                .await;
        }
        // Both bounded: with the database out of reach, the node's record ends as a
        // crashed node's does (declared dead), and its last events are not written.
        let _ = tokio::time::timeout(OUTCOMES_WAIT, shared.store.stop_node(&shared.node.id)).await;
        shared.stopped.cancel();
        let mut event_log = event_log;
        if tokio::time::timeout(OUTCOMES_WAIT, &mut event_log)
            .await
            .is_err()
        {
            event_log.abort();
        }
        let failed = shared
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((part, message)) = failed {
            return Err(crate::Error::NodeFailed { part, message });
        }
        tracing::info!("kairos node stopped");
        Ok(())
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> Result<(), crate::Error> {
        let handle = self.handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received");
            handle.shutdown();
            // A second signal while the node winds down (an operator's second Ctrl-C):
            // stop now. Runs not finished are taken back when their leases end.
            wait_for_signal().await;
            tracing::warn!("second signal: exiting at once, without waiting for running runs");
            std::process::exit(130);
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
