//! What a running task sees of its run ([`TaskContext`]): who it is (run, job, nominal
//! time, attempt, tags), whether it should stop, and how it reports back: progress,
//! stage, per-run logs and checkpoints that the next attempt resumes from.
//!
//! Reports are not written by the task: they go to the node's reporter, which keeps
//! only the latest progress, stage and checkpoint of each run and writes them a few
//! times a second at most, always before the attempt's outcome. A task that reports
//! nothing costs nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::task::TaskError;

/// How much a run's log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Detail for debugging.
    Debug,
    /// What happened.
    Info,
    /// Something looked wrong but the task went on.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// Every level, least severe first.
    pub const ALL: [LogLevel; 4] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

crate::model::names!(LogLevel, "log level");

/// Which attempt a report is about, and what events about it carry.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    pub(crate) run_id: i64,
    pub(crate) attempt: u32,
    pub(crate) task: Arc<str>,
    pub(crate) job_id: Option<i64>,
    pub(crate) tags: Arc<BTreeMap<String, String>>,
    /// Set when the node stopped this execution as no longer the run's (see
    /// `Running::disown`): the reporter drops what it still reports, which the
    /// database could take for the node's new claim of the same attempt.
    pub(crate) disowned: Arc<AtomicBool>,
}

/// What an attempt reported since the reporter last took it.
#[derive(Debug, Default)]
pub(crate) struct Buffered {
    pub(crate) progress: Option<(u8, String)>,
    pub(crate) stage: Option<String>,
    pub(crate) checkpoint: Option<Value>,
    pub(crate) logs: Vec<(DateTime<Utc>, LogLevel, String)>,
    /// The reporter holds this attempt in its pending set (so no wake-up is needed).
    queued: bool,
}

/// An attempt's reports, kept in the context until the reporter takes them: a task
/// reporting a thousand times between two writes sends the reporter one message.
#[derive(Debug)]
pub(crate) struct AttemptReports {
    pub(crate) who: Who,
    buffer: Mutex<Buffered>,
}

impl AttemptReports {
    fn new(who: Who) -> Arc<Self> {
        Arc::new(AttemptReports {
            who,
            buffer: Mutex::new(Buffered::default()),
        })
    }

    /// Takes what was reported since the last call; the next report wakes the
    /// reporter again.
    pub(crate) fn take(&self) -> Buffered {
        let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *b)
    }

    /// Puts back what the reporter took but could not write, under what was reported
    /// since: newer progress, stage and checkpoint win, and the older log lines come
    /// first. The reporter keeps holding the attempt, so no wake-up is needed (one
    /// sent meanwhile makes the reporter hold it twice, which it allows for).
    pub(crate) fn put_back(&self, older: crate::store::AttemptReport) {
        let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        b.progress = b.progress.take().or(older.progress);
        b.stage = b.stage.take().or(older.stage);
        b.checkpoint = b.checkpoint.take().or(older.checkpoint);
        let newer = std::mem::replace(&mut b.logs, older.logs);
        b.logs.extend(newer);
        b.queued = true;
    }
}

/// A message to the node's reporter.
#[derive(Debug)]
pub(crate) enum Report {
    /// This attempt has reports waiting in its buffer.
    Pending(Arc<AttemptReports>),
    /// Answer once everything reported before is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Where a context sends its reports, and the clock that stamps log lines.
#[derive(Clone)]
pub(crate) struct ReportSink {
    pub(crate) tx: mpsc::UnboundedSender<Report>,
    pub(crate) now: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
}

impl fmt::Debug for ReportSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportSink").finish_non_exhaustive()
    }
}

/// What a running task knows about its run, how it learns it should stop, and how it
/// reports progress, stages, logs and checkpoints.
#[derive(Debug, Clone)]
pub struct TaskContext {
    inner: Arc<ContextInner>,
}

#[derive(Debug)]
struct ContextInner {
    reports: Arc<AttemptReports>,
    scheduled_for: DateTime<Utc>,
    cancel: CancellationToken,
    checkpoint: Mutex<Option<Value>>,
    sink: Option<ReportSink>,
}

impl TaskContext {
    /// Builds a context; the runtime does this for every attempt. A context built this
    /// way (to call a task directly, in a test) keeps its reports to itself.
    pub fn new(
        run_id: i64,
        task: impl Into<String>,
        job_id: Option<i64>,
        scheduled_for: DateTime<Utc>,
        attempt: u32,
        cancel: CancellationToken,
    ) -> Self {
        let task: String = task.into();
        Self::for_attempt_with(
            run_id,
            &task,
            job_id,
            scheduled_for,
            attempt,
            cancel,
            BTreeMap::new(),
            None,
            None,
            Arc::default(),
        )
    }

    /// The context of a claimed attempt, reporting to the node.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn for_attempt(
        run_id: i64,
        task: &str,
        job_id: Option<i64>,
        scheduled_for: DateTime<Utc>,
        attempt: u32,
        cancel: CancellationToken,
        tags: BTreeMap<String, String>,
        checkpoint: Option<Value>,
        sink: ReportSink,
        disowned: Arc<AtomicBool>,
    ) -> Self {
        Self::for_attempt_with(
            run_id,
            task,
            job_id,
            scheduled_for,
            attempt,
            cancel,
            tags,
            checkpoint,
            Some(sink),
            disowned,
        )
    }

    /// A context reporting to `sink`, or keeping its reports to itself without one.
    #[allow(clippy::too_many_arguments)]
    fn for_attempt_with(
        run_id: i64,
        task: &str,
        job_id: Option<i64>,
        scheduled_for: DateTime<Utc>,
        attempt: u32,
        cancel: CancellationToken,
        tags: BTreeMap<String, String>,
        checkpoint: Option<Value>,
        sink: Option<ReportSink>,
        disowned: Arc<AtomicBool>,
    ) -> Self {
        TaskContext {
            inner: Arc::new(ContextInner {
                reports: AttemptReports::new(Who {
                    run_id,
                    attempt,
                    task: task.into(),
                    job_id,
                    tags: Arc::new(tags),
                    disowned,
                }),
                scheduled_for,
                cancel,
                checkpoint: Mutex::new(checkpoint),
                sink,
            }),
        }
    }

    /// The same context carrying these tags (for tests of a task that reads them).
    pub fn with_tags(self, tags: BTreeMap<String, String>) -> Self {
        let i = &self.inner;
        TaskContext {
            inner: Arc::new(ContextInner {
                reports: AttemptReports::new(Who {
                    tags: Arc::new(tags),
                    ..i.reports.who.clone()
                }),
                scheduled_for: i.scheduled_for,
                cancel: i.cancel.clone(),
                checkpoint: Mutex::new(i.checkpoint.lock().ok().and_then(|c| c.clone())),
                sink: i.sink.clone(),
            }),
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> i64 {
        self.inner.reports.who.run_id
    }
    /// The task's name.
    pub fn task(&self) -> &str {
        &self.inner.reports.who.task
    }
    /// The job that fired this run, if a job did.
    pub fn job_id(&self) -> Option<i64> {
        self.inner.reports.who.job_id
    }
    /// The nominal time of the slot (for a job) or the requested start (for a one-off run).
    /// With the attempt it makes a stable idempotency key.
    pub fn scheduled_for(&self) -> DateTime<Utc> {
        self.inner.scheduled_for
    }
    /// 1 for the first attempt, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.inner.reports.who.attempt
    }
    /// The run's tags.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.inner.reports.who.tags
    }
    /// True once the run was cancelled or the node is shutting down.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }
    /// Completes when the run is cancelled; select on it to stop cooperatively.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Folds a report into the attempt's buffer, waking the reporter if it does not
    /// hold the attempt yet.
    fn report(&self, update: impl FnOnce(&mut Buffered)) {
        let Some(sink) = &self.inner.sink else {
            return;
        };
        let reports = &self.inner.reports;
        let wake = {
            let mut b = reports.buffer.lock().unwrap_or_else(|e| e.into_inner());
            update(&mut b);
            !std::mem::replace(&mut b.queued, true)
        };
        if wake {
            // The reporter lives as long as the node; a send fails only while the
            // node is being torn down, when the report no longer matters.
            let _ = sink.tx.send(Report::Pending(reports.clone()));
        }
    }

    /// Reports how far the run is, 0 to 100 (clamped), and what it is doing, e.g.
    /// `ctx.progress(42, "district 7 of 19")`. Stored a few times a second at most;
    /// the last report before the attempt ends is always stored.
    pub fn progress(&self, percent: u8, message: impl Into<String>) {
        let message = message.into();
        self.report(|b| b.progress = Some((percent.min(100), message)));
    }

    /// Reports the stage the run entered, e.g. `ctx.stage("searching_web")`.
    pub fn stage(&self, stage: impl Into<String>) {
        let stage = stage.into();
        self.report(|b| b.stage = Some(stage));
    }

    /// Adds a line to the run's log (`kairos runs logs ID`).
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        let message = message.into();
        let at = self
            .inner
            .sink
            .as_ref()
            .map_or_else(Utc::now, |s| (s.now)());
        self.report(|b| b.logs.push((at, level, message)));
    }

    /// Adds an `info` line to the run's log.
    pub fn info(&self, message: impl Into<String>) {
        self.log(LogLevel::Info, message)
    }

    /// Adds a `warn` line to the run's log.
    pub fn warn(&self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message)
    }

    /// Saves `state` so that a later attempt of this run resumes from it
    /// ([`TaskContext::last_checkpoint`]). Fails only if `state` cannot be serialized.
    pub fn checkpoint<T: Serialize + ?Sized>(&self, state: &T) -> Result<(), TaskError> {
        let state = serde_json::to_value(state)
            .map_err(|e| TaskError::Failed(format!("cannot serialize the checkpoint: {e}")))?;
        if let Ok(mut c) = self.inner.checkpoint.lock() {
            *c = Some(state.clone());
        }
        self.report(|b| b.checkpoint = Some(state));
        Ok(())
    }

    /// The state saved by the last [`TaskContext::checkpoint`] of this run (in this or
    /// an earlier attempt), or `None` if there is none or it does not read as `T`.
    pub fn last_checkpoint<T: DeserializeOwned>(&self) -> Option<T> {
        let c = self.inner.checkpoint.lock().ok()?.clone()?;
        serde_json::from_value(c).ok()
    }
}
