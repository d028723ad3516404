//! A test harness for your own tasks: a real scheduler on a private, throw-away SQLite
//! database with a virtual clock, so a test can say "three days pass" and see, in milliseconds
//! and deterministically, every run that cron schedules, intervals, delays, retries,
//! timeouts and misfire policies produce together.
//!
//! [`TestScheduler::advance`] moves the clock through every instant at which something
//! is due (a job's slot, a queued run, a retry, a timeout) in order, letting the node
//! finish what is due at each before moving on, and returns the runs that finished.
//!
//! ```
//! use std::time::Duration;
//! use kairos::testing::TestScheduler;
//!
//! #[kairos::task(schedule = "30 2 * * *", timezone = "America/New_York")]
//! async fn nightly_backup() {}
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! // 2026-03-07 12:00 UTC: the night of the spring-forward change is next.
//! let t = TestScheduler::builder()
//!     .start_at("2026-03-07T12:00:00Z".parse().unwrap())
//!     .build()
//!     .await
//!     .unwrap();
//! let ran = t.advance(Duration::from_secs(2 * 86_400)).await;
//! let slots: Vec<String> = ran
//!     .iter()
//!     .filter(|r| r.task == "nightly_backup")
//!     .map(|r| r.scheduled_for.to_rfc3339())
//!     .collect();
//! // 02:30 does not exist on 2026-03-08: Debian's rule runs it right after the gap.
//! assert_eq!(slots, ["2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00"]);
//! t.shutdown().await;
//! # }
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::error::Error;
use crate::events::Event;
use crate::model::{JobSlot, Run, RunFilter};
use crate::ops::{Admin, Enqueue};
use crate::runtime::{BuildError, SchedulerBuilder, SchedulerHandle};
use crate::task::Registry;

/// How long the node may stay busy with what is due at one instant, no task executing
/// and nothing changing, before the harness moves on anyway.
const STUCK_AFTER: Duration = Duration::from_millis(60);
/// By default, how long (in real time) the harness waits for executing tasks before it
/// moves its clock on anyway (see [`TestSchedulerBuilder::task_wait`]).
const TASK_WAIT: Duration = Duration::from_secs(1);
/// How often the harness looks at the database while it waits.
const POLL: Duration = Duration::from_millis(2);
/// The most time steps one `advance` takes (guards against a schedule that never ends).
const MAX_STEPS: usize = 100_000;

/// What the harness starts from: exact retry delays, so tests can assert them.
fn base() -> SchedulerBuilder {
    SchedulerBuilder::default().retry_jitter(false)
}

/// Configures a [`TestScheduler`].
#[derive(Debug)]
pub struct TestSchedulerBuilder {
    start: DateTime<Utc>,
    registry: Option<Registry>,
    config: Option<Config>,
    max_workers: usize,
    task_wait: Duration,
    inner: Option<SchedulerBuilder>,
}

impl TestSchedulerBuilder {
    /// How long, in real time, the harness waits for tasks that are executing before
    /// it moves its clock on anyway (default 1 s). A task that does real work (an HTTP
    /// call, a query) finishes at the virtual instant it started, as long as it takes
    /// less than this; one that waits for something the test does later, or for its
    /// cancellation, holds each step up this long, then lets the clock move (its
    /// timeout then ends it on the virtual clock). Lower it for tests full of such
    /// tasks; raise it for slow ones.
    pub fn task_wait(mut self, d: Duration) -> Self {
        self.task_wait = d;
        self
    }

    /// Where the virtual clock starts (default 2026-01-01T00:00:00Z).
    pub fn start_at(mut self, t: DateTime<Utc>) -> Self {
        self.start = t;
        self
    }

    /// Runs these tasks instead of every `#[kairos::task]` in the program.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// A `jobs.toml` for the test (panics with its `file:line:col` error if invalid).
    pub fn config_toml(mut self, text: &str) -> Self {
        self.config = Some(Config::parse(text, "jobs.toml").unwrap_or_else(|e| panic!("{e}")));
        self
    }

    /// Runs executing at once (default 8).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n;
        self
    }

    /// Adjusts the underlying [`SchedulerBuilder`] (hooks, lease, ...); the database,
    /// clock, registry and configuration are set by the harness. Retry delays are not
    /// jittered unless this turns `retry_jitter` back on.
    pub fn with(mut self, f: impl FnOnce(SchedulerBuilder) -> SchedulerBuilder) -> Self {
        self.inner = Some(f(self.inner.take().unwrap_or_else(base)));
        self
    }

    /// Starts the scheduler.
    pub async fn build(self) -> Result<TestScheduler, BuildError> {
        let clock = ManualClock::new(self.start);
        // A file rather than `:memory:`: the node's loops share a pool of connections,
        // and each in-memory connection would see a database of its own.
        let dir =
            std::env::temp_dir().join(format!("kairos-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            BuildError::Invalid(format!(
                "cannot create the test database folder {}: {e}",
                dir.display()
            ))
        })?;
        let url = format!("sqlite://{}", dir.join("kairos.db").display());
        let mut b = self.inner.unwrap_or_else(base);
        b = b
            .database_url(&url)
            .clock(clock.clone())
            .max_workers(self.max_workers)
            .maintenance_interval(Duration::from_millis(20))
            .shutdown_grace(Duration::from_millis(100))
            .cancel_grace(Duration::from_millis(100));
        if let Some(r) = self.registry {
            b = b.registry(r);
        }
        b = b.config(self.config.unwrap_or_default());
        let sched = match b.build().await {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let handle = sched.handle();
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut stream = handle.events();
        let sink = events.clone();
        let recorder = tokio::spawn(async move {
            while let Some(e) = stream.next().await {
                if let Ok(mut v) = sink.lock() {
                    v.push(e);
                }
            }
        });
        let node = tokio::spawn(sched.run());
        Ok(TestScheduler {
            handle,
            task_wait: self.task_wait,
            clock,
            node: Some(node),
            recorder,
            events,
            start: self.start,
            dir,
            url,
        })
    }
}

/// A scheduler on a throw-away database and a virtual clock. See the module docs.
#[derive(Debug)]
pub struct TestScheduler {
    handle: SchedulerHandle,
    task_wait: Duration,
    clock: ManualClock,
    node: Option<JoinHandle<Result<(), Error>>>,
    recorder: JoinHandle<()>,
    events: Arc<Mutex<Vec<Event>>>,
    start: DateTime<Utc>,
    dir: std::path::PathBuf,
    url: String,
}

impl TestScheduler {
    /// Configures a harness.
    pub fn builder() -> TestSchedulerBuilder {
        TestSchedulerBuilder {
            start: "2026-01-01T00:00:00Z".parse().expect("a valid time"),
            registry: None,
            config: None,
            max_workers: 8,
            task_wait: TASK_WAIT,
            inner: None,
        }
    }

    /// A harness with every `#[kairos::task]` of the program, at 2026-01-01T00:00:00Z.
    pub async fn start() -> Result<TestScheduler, BuildError> {
        TestScheduler::builder().build().await
    }

    /// The virtual time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The virtual clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The node's handle (enqueue, pause, ...).
    pub fn handle(&self) -> &SchedulerHandle {
        &self.handle
    }

    /// Every operation on jobs, runs, queues and nodes.
    pub fn admin(&self) -> &Admin {
        self.handle.admin()
    }

    /// The URL of the harness's database (`sqlite://...`), which exists until
    /// [`TestScheduler::shutdown`] or drop.
    pub fn database_url(&self) -> &str {
        &self.url
    }

    /// A new connection to the harness's database, standing for the application's own:
    /// a test can begin a transaction on it and pass it to
    /// [`SchedulerHandle::enqueue_in`], as the application does with its database.
    pub async fn connect(&self) -> Result<sea_orm::DatabaseConnection, sea_orm::DbErr> {
        sea_orm::Database::connect(self.url.as_str()).await
    }

    /// Enqueues a run (it runs at the next `advance` or `run_until_idle`).
    pub async fn enqueue(&self, e: Enqueue) -> Result<i64, Error> {
        self.handle.enqueue(e).await
    }

    /// Lets the node finish everything due at the current time; returns the runs that
    /// finished meanwhile.
    pub async fn run_until_idle(&self) -> Vec<Run> {
        let seen = self.finished_now().await;
        self.settle().await;
        self.finished_since(seen).await
    }

    /// Moves the clock forward by `d`, through every instant at which something is
    /// due, in order; returns the runs that finished, by the virtual time they
    /// finished (runs that finished at one instant by id: to see the order they ran
    /// in, read [`TestScheduler::events`]).
    pub async fn advance(&self, d: Duration) -> Vec<Run> {
        let target = self.now() + chrono::Duration::from_std(d).expect("a duration in range");
        self.advance_to(target).await
    }

    /// Moves the clock to `t` (see [`TestScheduler::advance`]).
    pub async fn advance_to(&self, t: DateTime<Utc>) -> Vec<Run> {
        let seen = self.finished_now().await;
        let store = self.admin().store();
        for _ in 0..MAX_STEPS {
            self.settle().await;
            let now = self.now();
            match store.next_instant(now).await.ok().flatten() {
                Some(next) if next <= t => self.clock.set(next),
                _ => break,
            }
        }
        if self.now() < t {
            self.clock.set(t);
        }
        self.settle().await;
        self.finished_since(seen).await
    }

    /// Runs matching a filter (newest first, up to 1,000).
    pub async fn runs(&self, filter: RunFilter) -> Vec<Run> {
        self.admin()
            .runs(&filter.page(1, 1000))
            .await
            .expect("read runs")
            .runs
    }

    /// Every slot of a job since the harness started, oldest first.
    pub async fn slots(&self, job: &str) -> Vec<JobSlot> {
        self.admin()
            .job_slots(job, self.start, 100_000)
            .await
            .expect("read slots")
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Stops the node.
    pub async fn shutdown(mut self) {
        self.handle.shutdown();
        if let Some(node) = self.node.take() {
            let _ = node.await;
        }
        self.recorder.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Waits until nothing is due or running, or until neither the runs table nor the
    /// tasks executing change for a moment (a task waiting on something else).
    async fn settle(&self) {
        let store = self.admin().store();
        let mut last = None;
        let mut since = tokio::time::Instant::now();
        // Give the node's loops a chance to see the new time first.
        tokio::task::yield_now().await;
        tokio::time::sleep(POLL).await;
        // A node with a lead fires slots and claims runs that far ahead: until it has,
        // they are work to wait for. (A job with an instance limit is fired only when
        // due, so it holds the wait until the node is seen to be stuck.)
        let lead = self.handle.lead();
        loop {
            let now = self.now();
            let due_by = now + lead;
            if !store.busy(now, due_by).await.unwrap_or(false) {
                // Outcomes still on their way to the database would show as running.
                tokio::time::sleep(POLL).await;
                if !store.busy(now, due_by).await.unwrap_or(false) {
                    return;
                }
            }
            // A task that starts or ends is a change too: the one that just ended must
            // not have used up, while it executed, the moment its outcome takes to be
            // written and the run its limit held back to be claimed.
            let executing = self.handle.executing();
            let fp = (store.runs_fingerprint().await.ok(), executing);
            // A task doing real work changes nothing until it ends: waited for, up to
            // `task_wait`, so that its outcome does not depend on how long it takes.
            let patience = if executing > 0 {
                self.task_wait.max(STUCK_AFTER)
            } else {
                STUCK_AFTER
            };
            if last != Some(fp) {
                last = Some(fp);
                since = tokio::time::Instant::now();
            } else if since.elapsed() >= patience {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Where a call starts: its time, and the runs that had already finished at it
    /// (a run finishes at the virtual time it ends, never before the clock's time).
    async fn finished_now(&self) -> (DateTime<Utc>, HashSet<i64>) {
        let now = self.now();
        let done = self.finished(now).await.into_iter().map(|r| r.id).collect();
        (now, done)
    }

    /// The runs that finished since `finished_now` gave `seen`, in the order they did.
    async fn finished_since(&self, (from, seen): (DateTime<Utc>, HashSet<i64>)) -> Vec<Run> {
        let mut runs = self.finished(from).await;
        runs.retain(|r| !seen.contains(&r.id));
        runs
    }

    async fn finished(&self, from: DateTime<Utc>) -> Vec<Run> {
        self.admin()
            .store()
            .finished_between(from - chrono::Duration::milliseconds(1), self.now())
            .await
            .expect("read finished runs")
    }
}

impl Drop for TestScheduler {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.recorder.abort();
        if let Some(node) = &self.node {
            node.abort();
        }
        // SQLite keeps working on an unlinked file; removing it now frees the space
        // once the last connection closes.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
