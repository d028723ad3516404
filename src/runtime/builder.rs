//! Assembling a node: database, configuration, registry, clock and limits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Scheduler, Shared};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::store::{ClaimLimits, DEFAULT_DATABASE_URL, NodeInfo, Store, StoreError};
use crate::task::{DuplicateTask, Registry};

/// Environment variable naming the database when the builder is not told one.
pub const DATABASE_URL_ENV: &str = "KAIROS_DATABASE_URL";

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
    lease: Option<Duration>,
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
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = Some(d);
        self
    }

    /// How long a claimed run stays owned without a renewal (default 60s).
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = Some(d);
        self
    }

    /// Opens the database, applies migrations, checks the configuration against the
    /// registry, and reconciles the declared jobs into the database.
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
        if max_workers == 0 || max_workers > Semaphore::MAX_PERMITS / 2 {
            return Err(BuildError::Invalid(format!(
                "max_workers = {max_workers}: use a number from 1 to a few thousand"
            )));
        }
        let (specs, policies) = config.resolve(&registry)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let store = Store::connect(&url).await?;
        let now = clock.now();
        let disabled = store.sync_jobs(&specs, now).await?;
        for name in disabled {
            tracing::warn!(job = %name, "job no longer declared in code or config: disabled");
        }
        let catalogue: Vec<_> = registry
            .tasks()
            .into_iter()
            .filter_map(|t| {
                policies
                    .get(t.name)
                    .map(|p| (t.name.to_string(), p.clone(), t.location.to_string()))
            })
            .collect();
        store.sync_tasks(&catalogue, now).await?;
        let claim_limits = ClaimLimits {
            max_instances: policies
                .iter()
                .filter_map(|(k, p)| p.max_instances.map(|m| (k.clone(), m)))
                .collect::<HashMap<_, _>>(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let node = NodeInfo {
            id: uuid::Uuid::now_v7().to_string(),
            hostname: hostname(),
            pid: std::process::id(),
            max_workers,
        };
        let shared = Shared {
            store,
            clock,
            registry,
            policies,
            defaults: config.defaults.clone(),
            claim_limits,
            node,
            lease: self.lease.unwrap_or(Duration::from_secs(60)),
            shutdown_grace: self
                .shutdown_grace
                .or(config.scheduler.shutdown_grace)
                .unwrap_or(Duration::from_secs(30)),
            workers: Arc::new(Semaphore::new(max_workers)),
            wake_planner: Notify::new(),
            wake_dispatcher: Notify::new(),
            shutdown: CancellationToken::new(),
            started: std::sync::atomic::AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            completions: tx,
        };
        Ok(Scheduler {
            shared: Arc::new(shared),
            completions: rx,
        })
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
