//! Assembling a node: database, configuration, registry, clock and limits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use std::future::Future;

use super::hooks::{HookResult, RunOutcome, SkippedSlots};
use super::{Scheduler, Shared, Signals};

/// How long a claimed run stays owned without a renewal, by default.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// How often a node beats its heartbeat and renews its leases, by default.
pub(crate) const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// After how long without a heartbeat a node is declared dead, by default. With the
/// interval above, a killed node's runs are taken back 10–12 s after it died.
pub(crate) const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
/// How far ahead of their time slots are fired and runs claimed, by default.
const DEFAULT_LEAD: Duration = Duration::from_millis(200);
/// The longest lead accepted.
const MAX_LEAD: Duration = Duration::from_secs(1);
use crate::clock::{Clock, SyncedClock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::ops::{Admin, Tasks, task_info};
use crate::store::{
    CatalogQueue, ClaimLimits, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DATABASE_URL, NodeRow, OpenMode,
    QueueLimit, Store, StoreError, patiently,
};
use crate::task::{DuplicateTask, Registry};

/// Environment variable naming the database when the builder is not told one.
pub const DATABASE_URL_ENV: &str = "KAIROS_DATABASE_URL";

/// Environment variable naming the node when the builder is not told a name.
pub const NODE_NAME_ENV: &str = "KAIROS_NODE_NAME";

/// Why a node could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `jobs.toml` is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Two tasks share a name.
    #[error(transparent)]
    DuplicateTask(#[from] DuplicateTask),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Configures a [`Scheduler`]. Every setting has a default: the SQLite file
/// `kairos.db`, every `#[kairos::task]` in the program, the system clock, and as many
/// workers as `[scheduler] max_workers` says (else 16).
#[derive(Debug, Default)]
pub struct SchedulerBuilder {
    database_url: Option<String>,
    config_path: Option<PathBuf>,
    config: Option<Config>,
    registry: Option<Registry>,
    clock: Option<Arc<dyn Clock>>,
    max_workers: Option<usize>,
    shutdown_grace: Option<Duration>,
    cancel_grace: Option<Duration>,
    lease: Option<Duration>,
    heartbeat_interval: Option<Duration>,
    heartbeat_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    maintenance_interval: Option<Duration>,
    poll_interval: Option<Duration>,
    lead: Option<Duration>,
    retry_jitter: Option<bool>,
    node_name: Option<String>,
    hooks: super::hooks::Hooks,
    webhooks: crate::config::WebhookConfig,
}

impl SchedulerBuilder {
    /// The database (`sqlite://file.db`, `postgres://...`). Otherwise
    /// `KAIROS_DATABASE_URL`, then `[scheduler] database_url`, then `sqlite://kairos.db`.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    /// Reads `jobs.toml` (or another file) for schedules and overrides.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_path = Some(path.into());
        self
    }

    /// Uses an already parsed configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Runs exactly these tasks instead of every `#[kairos::task]` in the program.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The clock; tests pass a [`crate::ManualClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Runs executing at once on this node.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// How long shutdown waits for running runs before releasing them (default 30s).
    /// Then they are cancelled, and those that have not stopped a moment later (the
    /// smaller of `cancel_grace` and 1s) are dropped: `run` returns about that long
    /// after the grace period, plus the time to write the outcomes.
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = Some(d);
        self
    }

    /// How long a cancelled run may take to stop on its own (noticing
    /// `ctx.cancelled()`) before it is dropped (default 5s). At shutdown, at most 1s
    /// of it (see [`SchedulerBuilder::shutdown_grace`]).
    pub fn cancel_grace(mut self, d: Duration) -> Self {
        self.cancel_grace = Some(d);
        self
    }

    /// How long a claimed run stays owned without a renewal (default `[scheduler]
    /// lease`, else 60s). The node
    /// renews its leases with every heartbeat, and at least every third of the lease;
    /// a lease shorter than 3s is refused. A node that finds it no longer owns a run
    /// (taken back after its lease ran out, or its node was declared dead) stops it.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = Some(d);
        self
    }

    /// How often the node records that it is alive and renews its leases (default
    /// `[scheduler] heartbeat_interval`, else 2s).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = Some(d);
        self
    }

    /// A node whose last heartbeat is older than this is declared dead by the other
    /// nodes (or by the next node started on the database), and its running runs are
    /// taken back: queued again, or failed when it was their final attempt (default
    /// `[scheduler] heartbeat_timeout`, else 10s; at least three heartbeats).
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = Some(d);
        self
    }

    /// How often the node expires runs past their time to live, sweeps for webhook
    /// deliveries and prunes per `[retention]` (default 10s).
    pub fn maintenance_interval(mut self, d: Duration) -> Self {
        self.maintenance_interval = Some(d);
        self
    }

    /// How often the node looks for changes other processes made (runs they enqueued,
    /// pauses, cancels, job changes) (default 500ms). On PostgreSQL the database
    /// notifies the node at once and this poll, ten times slower, is only a backstop
    /// for a lost notification channel. On SQLite (on Linux) the node hears other
    /// processes' commits through the write-ahead log, and this poll is the bound only
    /// for changes made while the node was writing too.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = Some(d);
        self
    }

    /// How far ahead of their time scheduled slots are fired and due runs claimed
    /// (default 200ms with the system clock, 0 with a test clock; at most 1s). The
    /// database work for a slot shared by a thousand jobs is done before the slot, and
    /// each run waits on the node for its second: it starts on the dot instead of after
    /// that work. A run claimed ahead shows as `running` with its future start time
    /// meanwhile; jobs with an instance limit are fired only when due.
    pub fn lead(mut self, d: Duration) -> Self {
        self.lead = Some(d);
        self
    }

    /// Whether retry delays are jittered to 75–125% of the backoff (default true, so
    /// that runs failing together do not all retry at once). Tests that assert exact
    /// retry times turn it off; `kairos::testing` does.
    pub fn retry_jitter(mut self, on: bool) -> Self {
        self.retry_jitter = Some(on);
        self
    }

    /// Calls `hook` after each run that succeeds (on this node). A hook that panics or
    /// returns an error is logged; it never changes the run.
    pub fn on_success<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(RunOutcome) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookResult,
    {
        self.hooks.on_success.push(super::hooks::hook(hook));
        self
    }

    /// Calls `hook` after each run that fails for good (failed or timed out, its
    /// attempts used up), besides the task's own `on_failure`.
    pub fn on_failure<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(RunOutcome) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookResult,
    {
        self.hooks.on_failure.push(super::hooks::hook(hook));
        self
    }

    /// Calls `hook` after each failed attempt that will be retried.
    pub fn on_retry<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(RunOutcome) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookResult,
    {
        self.hooks.on_retry.push(super::hooks::hook(hook));
        self
    }

    /// Calls `hook` when slots of a job pass without a run (overlap, misfire, pause),
    /// as this node fires the job.
    pub fn on_skip<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(SkippedSlots) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookResult,
    {
        self.hooks.on_skip.push(super::hooks::hook(hook));
        self
    }

    /// Signs webhook deliveries with this secret (`X-Kairos-Signature`, see
    /// [`crate::webhook`]); wins over `KAIROS_WEBHOOK_SECRET` and `[webhooks] secret`.
    pub fn webhook_secret(mut self, secret: impl Into<String>) -> Self {
        self.webhooks.secret = Some(secret.into());
        self
    }

    /// Limit of one webhook delivery attempt, connecting included (default
    /// `[webhooks] timeout`, else 10s).
    pub fn webhook_timeout(mut self, d: Duration) -> Self {
        self.webhooks.timeout = Some(d);
        self
    }

    /// Webhook deliveries tried at most per finished run, the first included (default
    /// `[webhooks] max_attempts`, else 5).
    pub fn webhook_max_attempts(mut self, n: u32) -> Self {
        self.webhooks.max_attempts = Some(n);
        self
    }

    /// Wait after the first failed webhook delivery, doubling after each further one
    /// (default `[webhooks] retry_delay`, else 1s).
    pub fn webhook_retry_delay(mut self, d: Duration) -> Self {
        self.webhooks.retry_delay = Some(d);
        self
    }

    /// The name this node shows under in `kairos nodes list`, the HTTP API and the
    /// dashboard, and by which an operator can pause it (`kairos nodes pause NAME`).
    /// Otherwise `KAIROS_NODE_NAME`, then `[scheduler] node_name`, then
    /// `<hostname>:<pid>`. A pod or service name fits; names need not be unique (the
    /// node's id is), but a name two live nodes share cannot pick one of them.
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// How long connecting to the database may take before start-up fails (default
    /// `[scheduler] connect_timeout`, else 5s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = Some(d);
        self
    }

    /// Opens the database, applies migrations, checks the configuration against the
    /// registry, and reconciles the declared jobs, tasks and queues into the database.
    pub async fn build(self) -> Result<Scheduler, BuildError> {
        let config = match (self.config, &self.config_path) {
            (Some(c), _) => c,
            (None, Some(p)) => Config::load(p)?,
            (None, None) => Config::default(),
        };
        let registry = match self.registry {
            Some(r) => r,
            None => Registry::from_inventory()?,
        };
        let url = self
            .database_url
            .or_else(|| {
                std::env::var(DATABASE_URL_ENV)
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .or_else(|| config.scheduler.database_url.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
        let max_workers = self
            .max_workers
            .or(config.scheduler.max_workers)
            .unwrap_or(16);
        if max_workers == 0 || max_workers > crate::config::MAX_WORKERS {
            return Err(BuildError::Invalid(format!(
                "max_workers = {max_workers}: use a number from 1 to {}",
                crate::config::MAX_WORKERS
            )));
        }
        let hostname = hostname();
        let node_name = node_name(
            self.node_name,
            std::env::var(NODE_NAME_ENV),
            &config,
            &hostname,
        )?;
        let (jobs, policies) = config.resolve(&registry)?;
        let webhooks = crate::webhook::WebhookSettings::resolve(
            &self.webhooks,
            std::env::var(crate::webhook::SECRET_ENV).ok(),
            &config.webhooks,
        )
        .map_err(BuildError::Invalid)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        // Settings are checked before the database is opened (or created).
        let lease = self
            .lease
            .or(config.scheduler.lease)
            .unwrap_or(DEFAULT_LEASE);
        let heartbeat_interval = self
            .heartbeat_interval
            .or(config.scheduler.heartbeat_interval)
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL);
        let heartbeat_timeout = self
            .heartbeat_timeout
            .or(config.scheduler.heartbeat_timeout)
            .unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT);
        // The two heartbeat settings may come from different places: say which, so the
        // one to change can be found.
        let from = |builder: bool, file: bool| match (builder, file) {
            (true, _) => "set by the builder",
            (false, true) => "from jobs.toml's [scheduler]",
            (false, false) => "the default",
        };
        if let Some(problem) = crate::config::lease_problem(lease)
            .or_else(|| crate::config::heartbeat_interval_problem(heartbeat_interval))
            .or_else(|| {
                crate::config::heartbeat_timeout_problem(heartbeat_timeout, heartbeat_interval).map(
                    |p| {
                        format!(
                            "{p} (the timeout is {}, the interval {})",
                            from(
                                self.heartbeat_timeout.is_some(),
                                config.scheduler.heartbeat_timeout.is_some()
                            ),
                            from(
                                self.heartbeat_interval.is_some(),
                                config.scheduler.heartbeat_interval.is_some()
                            )
                        )
                    },
                )
            })
        {
            return Err(BuildError::Invalid(problem));
        }
        let lead = match self.lead {
            Some(d) if d > MAX_LEAD => {
                return Err(BuildError::Invalid(format!(
                    "lead = {}: use at most {} (runs would show as running long before they start)",
                    crate::schedule::format_duration(d),
                    crate::schedule::format_duration(MAX_LEAD)
                )));
            }
            Some(d) => d,
            None if clock.is_wall_clock() => DEFAULT_LEAD,
            None => Duration::ZERO,
        };
        let timeout = self
            .connect_timeout
            .or(config.scheduler.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        // A connection the server cuts while the node starts (a restart, an
        // administrator) is ridden out here as it is once the node runs.
        let store = patiently(timeout, || Store::open(&url, OpenMode::Create, timeout)).await?;
        // A wall clock is read through the database's: nodes on machines whose clocks
        // disagree must still agree on when a slot is due and a lease ends.
        let clock_sync = if clock.is_wall_clock() {
            let synced = Arc::new(SyncedClock::new(clock.clone()));
            super::watcher::sync_clock(&store, &synced).await;
            Some(synced)
        } else {
            None
        };
        let clock: Arc<dyn Clock> = match &clock_sync {
            Some(s) => s.clone(),
            None => clock,
        };
        let now = clock.now();
        let synced = patiently(timeout, || store.sync_jobs(&jobs, now)).await?;
        for name in synced.disabled {
            tracing::warn!(job = %name, "job no longer declared in code or config: disabled");
        }
        for name in synced.taken_over {
            tracing::warn!(job = %name, "a job created at run time has the name of a declared job: the declaration replaces it");
        }
        // Expected once after a deploy; on every start, it means nodes sharing this
        // database run different code or jobs.toml and keep replacing each other's.
        for (name, what) in synced.changed {
            tracing::warn!(job = %name, changes = %what, "this node's declaration of the job differs from the stored one (another version of the code or jobs.toml, or another node's): it replaces it; nodes sharing a database should declare the same jobs");
        }
        let catalogue: Vec<_> = registry
            .tasks()
            .into_iter()
            .filter_map(|t| policies.get(t.name).map(|p| task_info(t, p)))
            .collect();
        let mut queues: Vec<CatalogQueue> = config
            .queues
            .iter()
            .map(|(name, q)| CatalogQueue {
                name: name.clone(),
                concurrency: q.concurrency,
                rate: q.rate_limit.map(|r| (r.count, r.window)),
                declared: true,
            })
            .collect();
        for p in policies.values() {
            if !queues.iter().any(|q| q.name == p.queue) {
                queues.push(CatalogQueue {
                    name: p.queue.clone(),
                    concurrency: None,
                    rate: None,
                    declared: false,
                });
            }
        }
        let stored = patiently(timeout, || store.queues()).await?;
        patiently(timeout, || store.sync_catalog(&catalogue, &queues, now)).await?;
        let claim_limits = ClaimLimits {
            max_instances: policies
                .iter()
                .filter_map(|(k, p)| p.max_instances.map(|m| (k.clone(), m)))
                .collect::<HashMap<_, _>>(),
            queues: queue_limits(&queues, &stored),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let report_clock = clock.clone();
        let node = NodeRow {
            id: uuid::Uuid::now_v7().to_string(),
            name: node_name,
            hostname,
            pid: std::process::id(),
            max_workers,
            heartbeat_timeout,
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let signals = Arc::new(Signals::new(crate::events::EventBus::new(
            Some(node.id.clone()),
            Some(events_tx),
        )));
        // Whether anybody watches, known before the application's first enqueue: runs
        // enqueued as the node starts (before its event log first looks) are heard by
        // watchers elsewhere too. Unread, the event log's first look tells.
        if let Ok(w) = store
            .watched(chrono::Utc::now() - super::SUBSCRIBER_TTL, &node.id)
            .await
        {
            signals.events.saw_watchers(w);
        }
        let job_names = patiently(timeout, || store.jobs())
            .await?
            .into_iter()
            .map(|j| (j.id, j.name))
            .collect();
        let admin = Admin::new(
            store.clone(),
            Tasks::App {
                registry: registry.clone(),
                policies: policies.clone(),
            },
            clock.clone(),
            config.defaults.clone(),
            Some(signals.clone()),
        );
        let shared = Shared {
            store,
            admin,
            clock,
            clock_sync,
            registry,
            policies,
            defaults: config.defaults.clone(),
            claim_limits: std::sync::RwLock::new(Arc::new(claim_limits)),
            node,
            lease,
            // Renewed at least three times per lease, so one slow beat never loses it.
            beat_interval: heartbeat_interval.min(lease / 3),
            heartbeat_timeout,
            shutdown_grace: self
                .shutdown_grace
                .or(config.scheduler.shutdown_grace)
                .unwrap_or(Duration::from_secs(30)),
            cancel_grace: self.cancel_grace.unwrap_or(Duration::from_secs(5)),
            retention: config.retention,
            maintenance_interval: self
                .maintenance_interval
                .unwrap_or(Duration::from_secs(10))
                .max(Duration::from_millis(10)),
            lead: chrono::Duration::from_std(lead).unwrap_or_default(),
            poll_interval: self
                .poll_interval
                .unwrap_or(super::watcher::WATCH_INTERVAL)
                .max(Duration::from_millis(10)),
            retry_jitter: self.retry_jitter.unwrap_or(true),
            workers: Arc::new(Semaphore::new(max_workers)),
            signals,
            shutdown: CancellationToken::new(),
            abandon: CancellationToken::new(),
            drained: CancellationToken::new(),
            stopped: CancellationToken::new(),
            started: AtomicBool::new(false),
            completions: tx,
            hooks: self.hooks,
            webhooks: crate::webhook::Webhooks::new(webhooks),
            job_names: std::sync::Mutex::new(job_names),
            starts: Default::default(),
            failed: Default::default(),
            reports: crate::context::ReportSink {
                tx: report_tx,
                now: Arc::new(move || report_clock.now()),
            },
        };
        Ok(Scheduler {
            shared: Arc::new(shared),
            completions: rx,
            reports: report_rx,
            events: events_rx,
        })
    }
}

/// The node's name: the builder's, else `env` (`KAIROS_NODE_NAME`, empty counting as
/// unset), else `[scheduler] node_name`, else `<hostname>:<pid>`; refused with what to
/// fix when it cannot be shown or typed.
fn node_name(
    given: Option<String>,
    env: Result<String, std::env::VarError>,
    config: &Config,
    hostname: &str,
) -> Result<String, BuildError> {
    let env = || match env {
        Ok(n) if !n.is_empty() => Ok(Some(n)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(BuildError::Invalid(format!(
            "{NODE_NAME_ENV} is not valid UTF-8; set it to a plain name such as `worker-1`"
        ))),
    };
    let (name, from) = if let Some(n) = given {
        (n, "node_name(..)")
    } else if let Some(n) = env()? {
        (n, NODE_NAME_ENV)
    } else if let Some(n) = &config.scheduler.node_name {
        (n.clone(), "[scheduler] node_name")
    } else {
        return Ok(crate::store::default_node_name(
            hostname,
            std::process::id(),
        ));
    };
    match crate::config::node_name_problem(&name) {
        Some(problem) => Err(BuildError::Invalid(format!("{from}: {problem}"))),
        None => Ok(name),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The queue limits a node enforces: those its `[queues]` declares (which replace the
/// stored ones), and those stored for every other queue (declared by another node's
/// jobs.toml), so that a node whose own file lacks them still holds them. A
/// difference is logged, as for jobs: nodes sharing a database should agree.
fn queue_limits(
    own: &[CatalogQueue],
    stored: &[crate::model::QueueInfo],
) -> HashMap<String, QueueLimit> {
    let mut limits = HashMap::new();
    for q in own.iter().filter(|q| q.declared) {
        if let Some(s) = stored.iter().find(|s| s.name == q.name) {
            let theirs = (s.concurrency, s.rate_limit.zip(s.rate_window));
            if theirs != (q.concurrency, q.rate) {
                tracing::warn!(
                    queue = %q.name,
                    "this node's [queues] limits differ from the stored ones (another \
                     version of jobs.toml, or another node's): it replaces them; nodes \
                     sharing a database should declare the same [queues]"
                );
            }
        }
        if q.concurrency.is_some() || q.rate.is_some() {
            let limit = QueueLimit {
                concurrency: q.concurrency,
                rate: q.rate,
            };
            limits.insert(q.name.clone(), limit);
        }
    }
    for s in stored {
        let declared = own.iter().any(|q| q.declared && q.name == s.name);
        let Some(limit) = crate::store::stored_limit(s).filter(|_| !declared) else {
            continue;
        };
        tracing::info!(
            queue = %s.name,
            concurrency = ?limit.concurrency,
            rate = ?limit.rate,
            "this node holds the limits stored for a queue its jobs.toml does not declare"
        );
        limits.insert(s.name.clone(), limit);
    }
    limits
}

#[cfg(test)]
mod tests {
    use std::env::VarError;
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn a_node_name_comes_from_the_builder_the_environment_the_file_or_the_host() {
        let file = Config::parse("[scheduler]\nnode_name = \"from-file\"\n", "jobs.toml").unwrap();
        let name = |given: Option<&str>, env: Result<String, VarError>, config: &Config| {
            node_name(given.map(String::from), env, config, "host").map_err(|e| e.to_string())
        };
        let unset = || Err(VarError::NotPresent);
        let set = |v: &str| Ok(v.to_string());
        assert_eq!(name(Some("code"), set("env"), &file).unwrap(), "code");
        assert_eq!(name(None, set("env"), &file).unwrap(), "env");
        assert_eq!(name(None, set(""), &file).unwrap(), "from-file");
        assert_eq!(name(None, unset(), &file).unwrap(), "from-file");
        let default = name(None, unset(), &Config::default()).unwrap();
        assert_eq!(default, format!("host:{}", std::process::id()));

        let err = name(None, set(" padded"), &file).unwrap_err();
        assert!(
            err.starts_with("KAIROS_NODE_NAME: ") && err.contains("`padded`"),
            "{err}"
        );
        let garbled = Err(VarError::NotUnicode(OsString::from("x")));
        let err = name(None, garbled, &file).unwrap_err();
        assert!(err.contains("KAIROS_NODE_NAME is not valid UTF-8"), "{err}");
        // The builder's name wins without looking at the environment.
        let garbled = Err(VarError::NotUnicode(OsString::from("x")));
        assert_eq!(name(Some("code"), garbled, &file).unwrap(), "code");
    }
}
