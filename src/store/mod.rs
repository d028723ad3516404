//! Persistence: the SeaORM entities and migrations, and every query the runtime and the
//! admin tools need. Nothing outside this module builds SQL.
//!
//! Hot paths (claiming, completing, firing) are single statements over batches with
//! backend-specific details (`FOR UPDATE SKIP LOCKED`, `BEGIN IMMEDIATE`) kept here.

pub mod entity;
mod jobs;
pub mod migration;
mod nodes;
mod runs;
mod sql;
mod types;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;

pub use jobs::{FireOutcome, FirePlan};
pub use nodes::NodeInfo;
pub use runs::{CancelOutcome, ClaimLimits, ClaimedRun, Completion};
pub use types::{Job, NewRun, Run, RunFilter, RunStatus, StoredTask};

/// The URL used when none is configured: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://kairos.db";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL names no supported engine.
    #[error(
        "unsupported database URL `{0}`: use `sqlite://path/to/file.db` or `postgres://user:pass@host/db`"
    )]
    UnsupportedUrl(String),
    /// The database could not be reached or the query failed.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A row holds data this version cannot read.
    #[error("corrupt row in {table} (id {id}): {message}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Row id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// No such job.
    #[error("no job named `{0}`; `kairos jobs list` shows the jobs")]
    JobNotFound(String),
    /// No such run.
    #[error("no run with id {0}; `kairos runs list` shows recent runs")]
    RunNotFound(i64),
}

/// A handle to the kairos tables in one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: DbBackend,
}

impl Store {
    /// Connects to `url` and applies pending migrations.
    ///
    /// SQLite files are created if missing and opened in WAL mode with a busy timeout,
    /// so the CLI can read and write while a node runs.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let store = Self::connect_without_migrating(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema.
    pub async fn connect_without_migrating(url: &str) -> Result<Store, StoreError> {
        let mut opts = ConnectOptions::new(url.to_string());
        opts.sqlx_logging(false);
        if url.starts_with("sqlite:") {
            // One writer at a time is SQLite's rule; a small pool gives concurrent readers
            // without contending for the write lock.
            opts.max_connections(4).min_connections(1);
            opts.map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(false)
                    // The claim and completion statements touch index pages all over
                    // the runs table; a larger page cache and memory-mapped reads keep
                    // them from re-reading pages through the OS on every batch.
                    .pragma("cache_size", "-65536")
                    .pragma("mmap_size", "268435456")
                    .pragma("temp_store", "memory")
            });
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            opts.max_connections(8).min_connections(1);
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        }
        let db = Database::connect(opts).await?;
        let backend = db.get_database_backend();
        Ok(Store { db, backend })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migration::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// The underlying SeaORM connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Which engine this store talks to.
    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// What changed in the database since a node last looked: a counter every
    /// mutation of jobs or runs bumps (pause, resume, trigger, cancel), and the highest
    /// run id (new runs, enqueued by any process). A node polls it to notice work and
    /// commands from the CLI and other nodes.
    pub async fn change_marker(&self) -> Result<(i64, i64), StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT (SELECT value FROM kairos_meta WHERE key = 'change_seq'), \
                 (SELECT MAX(id) FROM kairos_runs)",
                [],
            ))
            .await?;
        Ok(match row {
            Some(r) => (
                r.try_get_by_index::<Option<i64>>(0)?.unwrap_or(0),
                r.try_get_by_index::<Option<i64>>(1)?.unwrap_or(0),
            ),
            None => (0, 0),
        })
    }

    pub(crate) fn stmt<I>(&self, sql: &str, values: I) -> sea_orm::Statement
    where
        I: IntoIterator<Item = sea_orm::Value>,
    {
        sql::stmt(self.backend, sql, values)
    }
}

/// Milliseconds since the epoch.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant `ms` milliseconds after the epoch.
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
