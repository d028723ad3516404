//! The event stream: every state change of runs and jobs (queued, started, progress,
//! stage, log, retried, finished, skipped slots, job paused/resumed/changed) as it
//! happens, for `handle.events()`, `kairos runs watch` and the HTTP API's live views.
//!
//! # Delivery
//! In a node, events go through a broadcast channel: publishing never waits, and a
//! subscriber that falls behind is dropped with an [`EventKind::Dropped`] notice rather
//! than slowing the scheduler. Publishing costs nothing while nobody subscribes.
//!
//! Events made by other processes (the CLI, other nodes) travel through the database:
//! while some process subscribes (it beats a heartbeat in `kairos_subscribers`), every
//! process writes its events to `kairos_events` in batches, and subscribers read them
//! back by id. Nobody watching, nothing is written. Whether anybody watches is read
//! every few seconds by a node and at most once a second by a process that is not
//! one, so that an enqueue does not pay a round trip for it. Batches of different
//! processes land out of step, so a reader holds what it reads for a moment and hands
//! it on in the order the events happened (see `Reorder`).

mod reorder;
#[cfg(test)]
pub(crate) use reorder::HOLD;
pub(crate) use reorder::Reorder;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A run was enqueued or fired (or queued again for a retry or snooze).
    RunQueued,
    /// An attempt started.
    RunStarted,
    /// The task reported progress.
    RunProgress,
    /// The task entered a stage.
    RunStage,
    /// The task wrote a log line.
    RunLog,
    /// An attempt failed and a retry is scheduled.
    RunRetried,
    /// The run ended (see `data.status`).
    RunFinished,
    /// Slots of a job passed without a run.
    SlotSkipped,
    /// A job was paused.
    JobPaused,
    /// A job was resumed.
    JobResumed,
    /// A job was created, changed or deleted.
    JobChanged,
    /// A node started (`data`: `node_id`, `name`, `hostname`, `pid`, `workers`).
    NodeJoined,
    /// A node stopped, or was declared dead by another (`data`: `node_id`, `reason`:
    /// `stopped` or `dead`).
    NodeLeft,
    /// This subscriber fell behind and was dropped; the stream ends after it.
    Dropped,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 14] = [
        EventKind::RunQueued,
        EventKind::RunStarted,
        EventKind::RunProgress,
        EventKind::RunStage,
        EventKind::RunLog,
        EventKind::RunRetried,
        EventKind::RunFinished,
        EventKind::SlotSkipped,
        EventKind::JobPaused,
        EventKind::JobResumed,
        EventKind::JobChanged,
        EventKind::NodeJoined,
        EventKind::NodeLeft,
        EventKind::Dropped,
    ];

    /// The name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunQueued => "run_queued",
            EventKind::RunStarted => "run_started",
            EventKind::RunProgress => "run_progress",
            EventKind::RunStage => "run_stage",
            EventKind::RunLog => "run_log",
            EventKind::RunRetried => "run_retried",
            EventKind::RunFinished => "run_finished",
            EventKind::SlotSkipped => "slot_skipped",
            EventKind::JobPaused => "job_paused",
            EventKind::JobResumed => "job_resumed",
            EventKind::JobChanged => "job_changed",
            EventKind::NodeJoined => "node_joined",
            EventKind::NodeLeft => "node_left",
            EventKind::Dropped => "dropped",
        }
    }
}

crate::model::names!(EventKind, "event kind");

/// One state change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// The run it concerns.
    pub run_id: Option<i64>,
    /// The job it concerns (by name), or the run's job.
    pub job: Option<String>,
    /// The run's task.
    pub task: Option<String>,
    /// The run's tags (when known).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The process that made the change (a node id; `None` for an admin tool).
    pub node_id: Option<String>,
    /// Details: `attempt`, `status`, `error`, `percent`, `message`, `stage`, `level`,
    /// `slots`, `reason`, depending on the kind.
    pub data: Value,
}

impl Event {
    /// An event of `kind` at `at` with no subject yet.
    pub(crate) fn new(kind: EventKind, at: DateTime<Utc>) -> Self {
        Event {
            at,
            kind,
            run_id: None,
            job: None,
            task: None,
            tags: BTreeMap::new(),
            node_id: None,
            data: Value::Object(Default::default()),
        }
    }

    pub(crate) fn run(mut self, run_id: i64, task: &str) -> Self {
        self.run_id = Some(run_id);
        self.task = Some(task.to_string());
        self
    }

    pub(crate) fn job(mut self, job: Option<String>) -> Self {
        self.job = job;
        self
    }

    pub(crate) fn tags(mut self, tags: &BTreeMap<String, String>) -> Self {
        self.tags = tags.clone();
        self
    }

    pub(crate) fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

/// Which events a subscriber wants: every field narrows the selection.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct EventFilter {
    /// Only events of this run.
    pub run_id: Option<i64>,
    /// Only events of this job.
    pub job: Option<String>,
    /// Only events of runs of this task.
    pub task: Option<String>,
    /// Only events of runs carrying this tag.
    pub tag: Option<(String, String)>,
    /// Only these kinds (all when empty).
    pub kinds: Vec<EventKind>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        EventFilter::default()
    }
    /// Only events of this run.
    pub fn run(mut self, id: i64) -> Self {
        self.run_id = Some(id);
        self
    }
    /// Only events of this job.
    pub fn job(mut self, name: impl Into<String>) -> Self {
        self.job = Some(name.into());
        self
    }
    /// Only events of runs of this task.
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.task = Some(task.into());
        self
    }
    /// Only events of runs carrying this tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tag = Some((key.into(), value.into()));
        self
    }
    /// Only these kinds.
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = EventKind>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Whether `e` passes the filter.
    pub fn matches(&self, e: &Event) -> bool {
        if e.kind == EventKind::Dropped {
            return true;
        }
        self.run_id.is_none_or(|id| e.run_id == Some(id))
            && self.job.as_ref().is_none_or(|j| e.job.as_ref() == Some(j))
            && self
                .task
                .as_ref()
                .is_none_or(|t| e.task.as_ref() == Some(t))
            && self
                .tag
                .as_ref()
                .is_none_or(|(k, v)| e.tags.get(k) == Some(v))
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
    }
}

/// A subscription: [`EventStream::next`] yields matching events as they happen.
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<Event>,
    filter: EventFilter,
    done: bool,
    closed: tokio_util::sync::CancellationToken,
    _guard: Option<Arc<SubscriberGuard>>,
}

impl EventStream {
    /// The next matching event; `None` once the stream ended (the node stopped, or
    /// this subscriber fell behind and got its `Dropped` notice).
    pub async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            let next = tokio::select! {
                // What was published before the node stopped comes first.
                biased;
                r = self.rx.recv() => r,
                _ = self.closed.cancelled() => match self.rx.try_recv() {
                    Ok(e) => Ok(e),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(_) => Err(broadcast::error::RecvError::Closed),
                },
            };
            match next {
                Ok(e) if self.filter.matches(&e) => return Some(e),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.done = true;
                    tracing::warn!(missed, "event subscriber fell behind: dropped");
                    return Some(
                        Event::new(EventKind::Dropped, Utc::now()).data(serde_json::json!({
                            "missed": missed,
                            "message": "this subscriber fell behind and was dropped; subscribe again",
                        })),
                    );
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

/// Counts the node's local subscribers, so it knows to pull other processes' events.
#[derive(Debug)]
pub(crate) struct SubscriberGuard {
    count: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Buffered events a subscriber may fall behind by before it is dropped.
const CAPACITY: usize = 4096;

/// A node's (or an admin tool's) event publisher.
#[derive(Debug)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<Event>,
    /// Events to write to the database while other processes watch.
    persist: Option<mpsc::UnboundedSender<Event>>,
    /// Whether some process subscribes through the database (refreshed by the node).
    pub(crate) remote_watchers: AtomicBool,
    /// When `remote_watchers` was last read from the database.
    watchers_read: std::sync::Mutex<Option<std::time::Instant>>,
    /// Local subscribers (they want other processes' events too).
    pub(crate) local: Arc<std::sync::atomic::AtomicUsize>,
    /// Stamped on events this process makes.
    pub(crate) node_id: Option<String>,
    /// Cancelled once the node stopped and published its last event: subscribers'
    /// streams end then, although the bus lives on in handles still held.
    closed: tokio_util::sync::CancellationToken,
}

impl EventBus {
    pub(crate) fn new(
        node_id: Option<String>,
        persist: Option<mpsc::UnboundedSender<Event>>,
    ) -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
            persist,
            remote_watchers: AtomicBool::new(false),
            watchers_read: std::sync::Mutex::new(None),
            local: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            node_id,
            closed: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Ends every stream (after what they have not read yet): the node has stopped.
    pub(crate) fn close(&self) {
        self.closed.cancel();
    }

    /// Records a reading of whether another process subscribes through the database.
    pub(crate) fn saw_watchers(&self, watched: bool) {
        self.remote_watchers.store(watched, Ordering::Relaxed);
        *self.watchers_read.lock().expect("watchers poisoned") = Some(std::time::Instant::now());
    }

    /// Whether the last reading of [`EventBus::saw_watchers`] is younger than `age`.
    pub(crate) fn watchers_read_within(&self, age: std::time::Duration) -> bool {
        self.watchers_read
            .lock()
            .expect("watchers poisoned")
            .is_some_and(|t| t.elapsed() < age)
    }

    /// Whether anyone would see an event: build events only then.
    pub(crate) fn wanted(&self) -> bool {
        self.tx.receiver_count() > 0 || self.remote_watchers.load(Ordering::Relaxed)
    }

    /// Publishes an event made by this process.
    pub(crate) fn publish(&self, mut e: Event) {
        if e.node_id.is_none() {
            e.node_id = self.node_id.clone();
        }
        if self.remote_watchers.load(Ordering::Relaxed)
            && let Some(p) = &self.persist
        {
            let _ = p.send(e.clone());
        }
        let _ = self.tx.send(e);
    }

    /// Re-publishes locally an event another process made (read from the database).
    pub(crate) fn relay(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    /// A new local subscription.
    pub(crate) fn subscribe(&self, filter: EventFilter) -> EventStream {
        self.local.fetch_add(1, Ordering::SeqCst);
        EventStream {
            rx: self.tx.subscribe(),
            filter,
            done: false,
            closed: self.closed.clone(),
            _guard: Some(Arc::new(SubscriberGuard {
                count: self.local.clone(),
            })),
        }
    }

    /// Local subscribers right now.
    pub(crate) fn local_subscribers(&self) -> usize {
        self.local.load(Ordering::SeqCst)
    }
}
