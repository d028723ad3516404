//! Persistence: connecting (with errors that name the database and the cause), the
//! schema and its migrations, and every query kairos runs. Nothing outside this module
//! builds SQL or sees a column encoding: rows are decoded here, by column name, into the
//! typed records of [`crate::model`] (times, durations, enums, JSON values).
//!
//! Hot paths (claiming, completing, firing) are single statements over batches with
//! backend-specific details (`FOR UPDATE SKIP LOCKED`, `BEGIN IMMEDIATE`) kept here.

mod catalog;
mod claim;
pub(crate) mod codec;
mod complete;
mod connect;
pub use connect::redact_url;
mod control;
#[cfg(test)]
mod db_tests;
mod deliveries;
#[allow(unreachable_pub)]
mod entity;
mod events;
mod jobs;
mod metrics;
pub(crate) mod migration;
mod nodes;
#[cfg(test)]
mod notify_tests;
mod queues;
mod reports;
mod retention;
mod run_reads;
mod runs;
pub(crate) mod schema;
mod slots;
mod sql;
mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions,
};

pub(crate) use catalog::CatalogQueue;
pub(crate) use claim::{Announced, ClaimLimits, ClaimedRun, QueueLimit};
pub(crate) use complete::{Completion, Release, TakenBack};
pub(crate) use control::{CancelOutcome, DeleteOutcome, RetryOutcome};
pub(crate) use events::EVENT_CHUNK;
pub(crate) use jobs::{FireOutcome, FirePlan, PlannedRun, SlotRecord};
pub(crate) use nodes::{Beat, BeatLook, NodeRow, default_name as default_node_name};
pub(crate) use queues::stored_limit;
pub(crate) use reports::AttemptReport;
pub(crate) use runs::{EnqueueError, NewRun};
pub(crate) use stats::{Finished, StatsScope};

/// The URL used when none is configured: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://kairos.db";

/// The error of a run that `overlap = "replace"` cancelled; an outcome written for a
/// run being cancelled keeps it rather than saying an operator cancelled it.
pub(crate) const REPLACED: &str = "replaced by a newer run of its job (overlap = replace)";

/// The error of a run cancelled because its job was deleted; kept the same way.
pub(crate) const JOB_DELETED: &str = "cancelled: its job was deleted";

/// The error of a run whose time to live ran out while it was queued.
pub(crate) const EXPIRED: &str = "expired: still queued when its time to live ran out";

/// How long connecting may take by default before it fails.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL names no supported engine.
    #[error(
        "unsupported database URL `{0}`: use `sqlite://path/to/file.db` or `postgres://user:pass@host/db`"
    )]
    UnsupportedUrl(String),
    /// A SQLite file that should exist does not.
    #[error(
        "no kairos database at {path}: the file does not exist; check --database-url (or \
         KAIROS_DATABASE_URL), start the application once, or run `kairos migrate` to create it"
    )]
    NoDatabase {
        /// The file.
        path: PathBuf,
    },
    /// The folder of a SQLite file does not exist.
    #[error("cannot create the database {path}: the folder {} does not exist", folder.display())]
    MissingFolder {
        /// The file.
        path: PathBuf,
        /// Its folder.
        folder: PathBuf,
    },
    /// The database could not be reached or opened.
    #[error("cannot open the database {url}: {reason}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// The database has no kairos tables.
    #[error(
        "{url} has no kairos tables; start the application once against it, or run `kairos migrate`"
    )]
    NotInitialised {
        /// The URL, password hidden.
        url: String,
    },
    /// Tables or columns are missing.
    #[error("the kairos schema in {url} is damaged: {}", problems.join("; "))]
    Damaged {
        /// The URL, password hidden.
        url: String,
        /// What is missing and how to fix it.
        problems: Vec<String>,
    },
    /// A query failed.
    #[error("database error: {}", describe(.0))]
    Db(DbErr),
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
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        if cut_before_it_ran(&e) || lost_connection(&e) {
            CUT_AT_MS.store(
                chrono::Utc::now().timestamp_millis(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        StoreError::Db(e)
    }
}

/// When this process last found a connection the server had cut (ms since the epoch).
static CUT_AT_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// How long after a cut connection every pooled connection is checked before use.
const CUT_LATELY: i64 = 5_000;

/// Whether a connection was found cut in the last few seconds (see `ping_if_idle`).
pub(crate) fn cut_lately() -> bool {
    let at = CUT_AT_MS.load(std::sync::atomic::Ordering::Relaxed);
    at != 0 && chrono::Utc::now().timestamp_millis() - at < CUT_LATELY
}

/// Whether a statement failed on a session the server had ended (an administrator, a
/// shutdown): PostgreSQL answers a statement sent on it with that session's end, and a
/// statement it was running when it ended it is rolled back. Trying it again on
/// another connection is safe. (A broken connection is not counted: a statement may
/// have committed before the break.)
pub(crate) fn cut_before_it_ran(e: &DbErr) -> bool {
    sql_state(e).is_some_and(|c| matches!(&*c, "57P01" | "57P02" | "57P03"))
}

/// The SQLSTATE of a statement's failure, if the database gave one.
pub(crate) fn sql_state(e: &DbErr) -> Option<String> {
    let (DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))) = e
    else {
        return None;
    };
    match &**e {
        sea_orm::sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

impl StoreError {
    /// True when the failure is about reaching or opening the database (as opposed to a
    /// query on a working one): at start, or later when the database goes away (no
    /// connection can be had, or the one in use was cut). Trying again later may work.
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::Db(e) => lost_connection(e),
            StoreError::Corrupt { .. } => false,
            _ => true,
        }
    }
}

/// Runs `op` again while it fails for want of a connection (one the server cut, a
/// server restarting, a pool that cannot connect yet), for up to `within`, backing off
/// from 50 ms to 1 s: the start of a node must ride out what a running node rides out.
/// Only for operations that are safe to repeat (a transaction that rolled back, an
/// upsert).
pub(crate) async fn patiently<T, F, Fut>(within: Duration, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(50);
    loop {
        match op().await {
            Err(StoreError::Db(e)) if lost_connection(&e) && started.elapsed() + wait < within => {
                tracing::warn!(error = %describe(&e), "the database is out of reach; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Whether a statement failed for want of a working connection rather than because of
/// the statement: the pool could open none (refused, timed out, closed), the server
/// cut the one in use (a restart, an administrator, a network that dropped it), or
/// another process kept SQLite's file locked longer than the busy timeout.
fn lost_connection(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::sqlx::sqlite::SqliteError;
    let sqlx = match e {
        // What acquiring a connection fails with: the pool's timeout (it retries refused
        // connections until then) or any error of opening one.
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match &**sqlx {
        Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed => true,
        Sqlx::WorkerCrashed => true,
        // PostgreSQL's codes for a session it ended or would not start: class 08
        // (connection exception), the shutdowns of class 57P, too many connections.
        // SQLite's file locked by another process (SQLITE_BUSY, SQLITE_LOCKED and their
        // extended codes) past the busy timeout: the database is there but out of
        // reach for now, and the same statement later will most likely pass.
        Sqlx::Database(d) if d.try_downcast_ref::<SqliteError>().is_some() => d
            .code()
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        Sqlx::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The message of a database error, with the causes users hit most spelled out.
fn describe(e: &DbErr) -> String {
    let raw = without_source_lines(&e.to_string());
    let lower = raw.to_ascii_lowercase();
    let hint = if lower.contains("readonly database") || lower.contains("read-only") {
        Some("the database file (or its folder) is read-only")
    } else if lower.contains("file is not a database") {
        Some("the file is not a SQLite database")
    } else if lower.contains("malformed") {
        Some("the database file is corrupt")
    } else if lower.contains("unable to open database file") {
        Some("the file cannot be opened (missing folder or no permission)")
    } else if lower.contains("(code: 517)") {
        // SQLITE_BUSY_SNAPSHOT: no wait ends it, only a new transaction does.
        Some(
            "this transaction read the database before another connection wrote to it, so \
             SQLite will not let it write: roll it back and run it again, or begin it as an \
             immediate transaction (SqliteTransactionMode::Immediate) so that it takes the \
             write lock first",
        )
    } else if lower.contains("database is locked") {
        Some("another process keeps the database locked (a long write transaction?); try again")
    } else if lower.contains("disk i/o error") || lower.contains("no space left") {
        Some("the disk failed or is full")
    } else {
        None
    };
    match hint {
        Some(h) => format!("{h} ({raw})"),
        None => raw,
    }
}

/// `message` without the " at line N" sqlx appends to PostgreSQL's errors: N is a line
/// of the server's own C sources, which tells users nothing.
fn without_source_lines(message: &str) -> String {
    const MARK: &str = " at line ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let number = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        let whole = after[number..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric());
        if number > 0 && whole {
            out.push_str(&rest[..at]);
            rest = &after[number..];
        } else {
            out.push_str(&rest[..at + MARK.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// On SQLite, this process's turn to write (see [`Store::write_turn`]), and a count of
/// the turns taken and ended.
#[derive(Debug, Default)]
pub(crate) struct WriteGate {
    lock: tokio::sync::Mutex<()>,
    taken: AtomicU64,
    ended: AtomicU64,
}

/// A turn to write; counted as ended when dropped.
pub(crate) struct WriteTurn<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
    /// `None` for a turn not counted (see [`Store::periodic_write_turn`]).
    ended: Option<&'a AtomicU64>,
}

impl Drop for WriteTurn<'_> {
    fn drop(&mut self) {
        if let Some(ended) = self.ended {
            ended.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The first word of the notification with which an insert of runs announces their
/// ids: `kairos_runs#<first>-<last> <application_name>`, or
/// `kairos_runs#<first>-<last>@<ms> ..` when some of them have a time to live, the
/// earliest of which ends at `<ms>` (see `runs::announce`).
pub(crate) const ANNOUNCED_RUNS: &str = "kairos_runs#";

/// What a notification on kairos's channel tells a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Runs were inserted, with the range of their ids when the insert announced it.
    Runs(Option<Announced>),
    /// Something else changed (the change counter moved).
    Changed,
}

impl Notice {
    /// Reads a notification's payload; what it cannot read counts as a change.
    pub(crate) fn read(payload: &str) -> Notice {
        let word = payload.split(' ').next().unwrap_or_default();
        if word == "kairos_runs" {
            return Notice::Runs(None);
        }
        let Some(range) = word.strip_prefix(ANNOUNCED_RUNS) else {
            return Notice::Changed;
        };
        // A range it cannot read still says that runs were inserted.
        let range = range.split('@').next().unwrap_or_default();
        let announced = range
            .split_once('-')
            .and_then(|(first, last)| Some((first.parse().ok()?, last.parse().ok()?)))
            .filter(|(first, last)| first <= last)
            .map(|(first, last)| Announced { first, last });
        Notice::Runs(announced)
    }

    /// When the earliest time to live of the runs an insert announced ends, if it gave
    /// one.
    pub(crate) fn expiry(payload: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let word = payload.split(' ').next()?.strip_prefix(ANNOUNCED_RUNS)?;
        let at = word.split_once('@')?.1.parse().ok()?;
        Some(codec::from_ms(at))
    }
}

/// Whether opening may create the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Create the SQLite file and the tables if missing (nodes, `kairos migrate`).
    Create,
    /// Use an existing kairos database, migrating it if it is older (admin commands):
    /// never create an empty one by mistake.
    Existing,
}

/// A handle to the kairos tables in one database.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: DatabaseConnection,
    backend: DbBackend,
    url: String,
    /// On PostgreSQL, the `application_name` of this handle's connections: the
    /// database's notifications name it, so a node can ignore what it did itself.
    origin: String,
    /// On SQLite, this process's turn to write (see [`Store::write_turn`]).
    write_gate: std::sync::Arc<WriteGate>,
    /// Where claims run: on PostgreSQL, connections of their own whose commits do not
    /// wait for the write-ahead log to reach the disk (see [`Store::claims_db`]); on
    /// SQLite, `db` itself.
    claims: DatabaseConnection,
    /// The SQLite file, when the database is one (not in memory).
    file: Option<PathBuf>,
    /// Whether anybody watches the event log, as this process last learned it (see
    /// [`Store::watched_lately`]).
    watchers: std::sync::Arc<events::WatchersSeen>,
    /// Which database this is, read once (see [`Store::database_of`]).
    identity: std::sync::Arc<tokio::sync::OnceCell<String>>,
}

impl Store {
    /// On SQLite, waits for this process's other writes (claims, completions,
    /// reports, enqueues, and the periodic writes of [`Store::periodic_write_turn`])
    /// to finish before starting one. SQLite takes one writer at a
    /// time, and a connection that finds the database locked sleeps in steps of 1, 2,
    /// 5 ms and more before it looks again: a claim and a completion from two
    /// connections of the same node left each other sleeping, which cost a third of
    /// the throughput with runs that return results. Waiting here, the next write
    /// starts the moment the last one ends. The turns are counted (see
    /// [`Store::write_turns`]). PostgreSQL locks rows, not the database: nothing to
    /// wait for.
    pub(super) async fn write_turn(&self) -> Option<WriteTurn<'_>> {
        let mut turn = self.periodic_write_turn().await?;
        self.write_gate.taken.fetch_add(1, Ordering::SeqCst);
        turn.ended = Some(&self.write_gate.ended);
        Some(turn)
    }

    /// [`Store::write_turn`] for a node's periodic writes (heartbeats, lease
    /// renewals, event writes, expiry sweeps): they wait their turn like the others,
    /// but do not count as the node's own writes in [`Store::write_turns`]. The node's
    /// watch of the write-ahead log takes them for another process's and reads the
    /// change marker, once every few seconds; counted as its own, they would hide a
    /// change another process committed in the same moment until the next poll.
    pub(super) async fn periodic_write_turn(&self) -> Option<WriteTurn<'_>> {
        if self.is_pg() {
            return None;
        }
        Some(WriteTurn {
            _guard: self.write_gate.lock.lock().await,
            ended: None,
        })
    }

    /// On SQLite, how many write turns this process has taken and ended (see
    /// [`Store::write_turn`]): a node tells its own commits from other processes' by
    /// them (see `runtime::listener`).
    pub(crate) fn write_turns(&self) -> (u64, u64) {
        (
            self.write_gate.taken.load(Ordering::SeqCst),
            self.write_gate.ended.load(Ordering::SeqCst),
        )
    }

    /// The connection claims go through (see `connect::claims_pool`).
    pub(super) fn claims_db(&self) -> &DatabaseConnection {
        &self.claims
    }

    /// The URL as shown to users (password hidden).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The database engine.
    pub(crate) fn backend(&self) -> DbBackend {
        self.backend
    }

    /// True on PostgreSQL.
    pub(crate) fn is_pg(&self) -> bool {
        self.backend == DbBackend::Postgres
    }

    /// Whether a notification's payload (`<table> <application_name>`, see the
    /// `notify` migration, or [`ANNOUNCED_RUNS`]) came from this handle's own
    /// connections.
    pub(crate) fn is_own_notification(&self, payload: &str) -> bool {
        payload
            .split_once(' ')
            .is_some_and(|(_, origin)| origin == self.origin)
    }

    /// On a SQLite file (kairos's are in WAL mode), its write-ahead log, which every
    /// commit of any connection writes to (see `runtime::listener`).
    pub(crate) fn wal_file(&self) -> Option<PathBuf> {
        let file = self.file.as_ref()?;
        let mut name = file.as_os_str().to_owned();
        name.push("-wal");
        Some(PathBuf::from(name))
    }

    /// SQL for the database server's current time in epoch milliseconds. Node
    /// liveness (heartbeats, dead-node detection, health) is judged on this one clock,
    /// so nodes whose own clocks disagree (or run on a test's virtual clock) neither
    /// declare each other dead nor look alive when they are not.
    pub(crate) fn db_now_ms(&self) -> &'static str {
        if self.is_pg() {
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        } else {
            "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
        }
    }

    /// The underlying connection, for tests that inspect tables directly.
    #[allow(dead_code)]
    pub(crate) fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// What changed in the database since a node last looked: a counter every
    /// mutation of jobs, queues, nodes or runs bumps (pause, resume, trigger, cancel),
    /// and the highest run id (new runs, enqueued by any process). A node polls it to
    /// notice work and commands from the CLI and other nodes.
    pub(crate) async fn change_marker(&self) -> Result<(i64, i64), StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT (SELECT value FROM kairos_meta WHERE key = 'change_seq') AS seq, \
                 (SELECT MAX(id) FROM kairos_runs) AS max_id",
                [],
            ))
            .await?;
        Ok(match row {
            Some(r) => (
                r.try_get::<Option<i64>>("", "seq")?.unwrap_or(0),
                r.try_get::<Option<i64>>("", "max_id")?.unwrap_or(0),
            ),
            None => (0, 0),
        })
    }

    /// Which database `conn` is connected to: PostgreSQL's `current_database()`, or
    /// the file of SQLite's main database. Two connections of one engine may still be
    /// on two databases (an application's and kairos's on one server).
    pub(crate) async fn database_of<C: ConnectionTrait>(
        &self,
        conn: &C,
    ) -> Result<String, StoreError> {
        if self.is_pg() {
            let row = conn
                .query_one_raw(self.stmt("SELECT current_database() AS name", []))
                .await?;
            return Ok(match row {
                Some(r) => r.try_get::<String>("", "name")?,
                None => String::new(),
            });
        }
        // The bare pragma, not `SELECT .. FROM pragma_database_list`: a SELECT opens a
        // read snapshot in the application's deferred transaction, and the insert that
        // follows then fails with "database is locked" whenever another connection
        // (a node's heartbeat) wrote in between. The pragma reads no table.
        for row in conn
            .query_all_raw(self.stmt("PRAGMA database_list", []))
            .await?
        {
            if row.try_get::<String>("", "name")? == "main" {
                return Ok(row.try_get::<String>("", "file")?);
            }
        }
        Ok(String::new())
    }

    /// [`Store::database_of`] kairos's own connections, read once.
    pub(crate) async fn own_database(&self) -> Result<&str, StoreError> {
        self.identity
            .get_or_try_init(|| self.database_of(&self.db))
            .await
            .map(String::as_str)
    }

    pub(crate) fn stmt<I>(&self, sql: &str, values: I) -> sea_orm::Statement
    where
        I: IntoIterator<Item = sea_orm::Value>,
    {
        sql::stmt(self.backend, sql, values)
    }

    /// Serialises writers that must not interleave across processes on PostgreSQL
    /// (schema changes, job reconciliation, limited claims) with a transaction-level
    /// advisory lock, released at commit. SQLite's `BEGIN IMMEDIATE` already
    /// serialises every writer.
    pub(crate) async fn lock<C: ConnectionTrait>(
        &self,
        txn: &C,
        lock: Lock,
    ) -> Result<(), StoreError> {
        if self.is_pg() {
            txn.execute_raw(self.stmt(
                "SELECT pg_advisory_xact_lock($1)",
                [sea_orm::Value::from(lock as i64)],
            ))
            .await?;
        }
        Ok(())
    }
}

/// Advisory lock keys (arbitrary constants, unlikely to clash with an application's).
#[derive(Debug, Clone, Copy)]
#[repr(i64)]
pub(crate) enum Lock {
    /// Migrations and schema repair.
    Schema = 0x6b61_6972_6f73_0001,
    /// Reconciling declared jobs, tasks and queues.
    Sync = 0x6b61_6972_6f73_0002,
    /// Claims that count running runs against a limit.
    Limits = 0x6b61_6972_6f73_0003,
}

/// Write transactions take SQLite's write lock up front: a deferred transaction that
/// reads and then writes can fail with SQLITE_BUSY when another writer got in between.
pub(crate) fn write_txn() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    }
}

/// Tells the other processes that something changed.
pub(crate) async fn bump<C: ConnectionTrait>(conn: &C, store: &Store) -> Result<(), StoreError> {
    conn.execute_raw(store.stmt(
        "UPDATE kairos_meta SET value = value + 1 WHERE key = 'change_seq'",
        [],
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn patiently_repeats_only_what_failed_for_want_of_a_connection() {
        use std::sync::atomic::AtomicU32;
        let lost = || StoreError::Db(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout));
        let tries = AtomicU32::new(0);
        let got = patiently(Duration::from_secs(5), || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(lost()),
                n => Ok(n),
            }
        })
        .await
        .unwrap();
        assert_eq!(got, 2);
        // A failed statement is not repeated.
        let tries = AtomicU32::new(0);
        let err = patiently(Duration::from_secs(5), || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(StoreError::Db(DbErr::Custom("no such column".into())))
        })
        .await
        .unwrap_err();
        assert!(!err.is_connection());
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        // Nor one that goes on past the bound.
        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        patiently(Duration::from_millis(300), || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(lost())
        })
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(300));
        assert!(tries.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn a_stale_snapshot_is_told_apart_from_a_lock_held_elsewhere() {
        let stale =
            DbErr::Custom("error returned from database: (code: 517) database is locked".into());
        assert!(
            describe(&stale).contains("roll it back"),
            "{}",
            describe(&stale)
        );
        let held =
            DbErr::Custom("error returned from database: (code: 5) database is locked".into());
        assert!(describe(&held).contains("try again"), "{}", describe(&held));
    }

    #[test]
    fn notifications_are_read_by_their_first_word() {
        assert_eq!(Notice::read("kairos_runs kairos 12ab"), Notice::Runs(None));
        assert_eq!(
            Notice::read("kairos_runs#7-9 kairos 12ab"),
            Notice::Runs(Some(Announced { first: 7, last: 9 }))
        );
        assert_eq!(Announced { first: 7, last: 9 }.len(), 3);
        assert_eq!(Notice::expiry("kairos_runs#7-9 kairos 12ab"), None);
        // Runs with a time to live: the earliest end rides along.
        assert_eq!(
            Notice::read("kairos_runs#7-9@1700000000123 kairos 12ab"),
            Notice::Runs(Some(Announced { first: 7, last: 9 }))
        );
        assert_eq!(
            Notice::expiry("kairos_runs#7-9@1700000000123 kairos 12ab"),
            Some(codec::from_ms(1_700_000_000_123))
        );
        assert_eq!(Notice::expiry("kairos_runs#7-9@x kairos"), None);
        assert_eq!(Notice::read("kairos_meta kairos 12ab"), Notice::Changed);
        // A range it cannot read still announces runs: the node claims as for a
        // plain insert.
        for odd in [
            "kairos_runs#9-7 x",
            "kairos_runs#7 x",
            "kairos_runs#a-b x",
            "kairos_runs#",
        ] {
            assert_eq!(Notice::read(odd), Notice::Runs(None), "{odd}");
        }
        assert_eq!(Notice::read(""), Notice::Changed);
        assert_eq!(Notice::read("kairos_runsx 1"), Notice::Changed);
    }

    #[test]
    fn a_lost_connection_is_told_from_a_failed_statement() {
        use std::sync::Arc;

        use sea_orm::{ConnAcquireErr, RuntimeErr};

        let sqlx = |e: sea_orm::sqlx::Error| RuntimeErr::SqlxError(Arc::new(e));
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let lost = [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            DbErr::Conn(sqlx(sea_orm::sqlx::Error::Io(refused()))),
            DbErr::Query(sqlx(sea_orm::sqlx::Error::Io(refused()))),
            DbErr::Exec(sqlx(sea_orm::sqlx::Error::PoolTimedOut)),
        ];
        for e in lost {
            assert!(StoreError::Db(e.clone()).is_connection(), "{e}");
            assert_eq!(
                crate::Error::from(StoreError::Db(e.clone())).code(),
                "database_unavailable",
                "{e}"
            );
        }
        let failed = [
            DbErr::Query(sqlx(sea_orm::sqlx::Error::RowNotFound)),
            DbErr::Exec(RuntimeErr::Internal("syntax error".into())),
            DbErr::RecordNotFound("x".into()),
            DbErr::Custom("x".into()),
        ];
        for e in failed {
            assert!(!StoreError::Db(e.clone()).is_connection(), "{e}");
            assert_eq!(
                crate::Error::from(StoreError::Db(e.clone())).code(),
                "database",
                "{e}"
            );
        }
    }

    #[test]
    fn the_servers_source_lines_are_left_out_of_messages() {
        for (raw, shown) in [
            (
                "Query Error: error returned from database: terminating connection due to \
                 administrator command at line 3211",
                "Query Error: error returned from database: terminating connection due to \
                 administrator command",
            ),
            (
                "database \"x\" does not exist at line 948 (hint)",
                "database \"x\" does not exist (hint)",
            ),
            ("no number at line x", "no number at line x"),
            ("a word at line 12b stays", "a word at line 12b stays"),
            ("no such table: kairos_runs", "no such table: kairos_runs"),
        ] {
            assert_eq!(without_source_lines(raw), shown);
        }
    }
}
