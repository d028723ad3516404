//! Connecting: the pools and their settings per engine (and the claims pool, whose
//! commits do not wait for the disk), the notification listener's connection, and
//! connection errors that name the database and the cause.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

use super::{OpenMode, Store, StoreError, describe, migration};

/// How long a kairos transaction on PostgreSQL may sit idle before the server ends its
/// session (see `open`): far above any pause between its statements, and below the
/// heartbeat timeout, so a frozen node's locks are gone by the time others take its
/// runs back.
const IDLE_IN_TRANSACTION: &str = "10s";

/// A pooled connection idle for this long is pinged before it is used again: it may
/// have been dropped by the server (a restart) or the network. Busier ones are used as
/// they are; should one have died anyway, its statement fails like any statement
/// during an outage, and is retried.
pub(super) const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The pools' check before handing out a connection (see [`PING_IF_IDLE_FOR`]). One
/// that does not answer is dropped quietly, and the pool opens another: a failed check
/// would otherwise be logged by sqlx as a warning for each pooled connection after a
/// server restart, repeating what the node's own warnings about the outage say.
fn ping_if_idle<C: sea_orm::sqlx::Connection>(
    conn: &mut C,
    meta: sea_orm::sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<bool, sea_orm::sqlx::Error>> {
    Box::pin(async move {
        // Right after a connection was found cut (a restart, `pg_terminate_backend`),
        // the others in the pool were most likely cut too: check each before use.
        if meta.idle_for < PING_IF_IDLE_FOR && !super::cut_lately() {
            return Ok(true);
        }
        match conn.ping().await {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::debug!(error = %e, "dropping a pooled connection that does not answer");
                Ok(false)
            }
        }
    })
}

/// On PostgreSQL, a small pool for claims, on the main pool's connection settings
/// (opened lazily, so a node that never claims never opens one), whose sessions commit
/// with `synchronous_commit = off`: a claim's commit returns without waiting for the
/// write-ahead log to be flushed, which is most of what a claim costs on an idle node
/// and a large share of a busy node's cycle.
///
/// Why that loses nothing: only a crash of the database server (not of a node, not a
/// restart) can lose such a commit, and then the run is as it was before the claim,
/// queued, so it runs again, as at-least-once execution allows. The node that had
/// claimed it finds at its next renewal that the run is not its own, stops its
/// attempt and drops its outcome (should the node claim the run again first, as the
/// same attempt, it does the same: see `Running::disown`). Every later commit with the
/// default setting (any completion, any enqueue) flushes the log up to itself, claims
/// included: a completion that is durable makes its claim durable. Other sessions see
/// a claim as soon as it commits, as with any commit.
fn claims_pool(db: &DatabaseConnection) -> DatabaseConnection {
    use sea_orm::sqlx::postgres::PgPoolOptions;
    let main = db.get_postgres_connection_pool();
    let options = (*main.connect_options())
        .clone()
        .options([("synchronous_commit", "off")]);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .min_connections(0)
        .acquire_timeout(main.options().get_acquire_timeout())
        // As the main pool (see `PING_IF_IDLE_FOR`).
        .test_before_acquire(false)
        .before_acquire(ping_if_idle)
        .connect_lazy_with(options);
    sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
}

impl Store {
    /// Connects to `url`: creates and migrates in `Create` mode, checks the schema
    /// (migrating an older one) in `Existing` mode.
    pub(crate) async fn open(
        url: &str,
        mode: OpenMode,
        timeout: Duration,
    ) -> Result<Store, StoreError> {
        let store = Self::connect(url, mode, timeout).await?;
        match mode {
            OpenMode::Create => {
                store.migrate().await?;
            }
            OpenMode::Existing => store.upgrade_existing().await?,
        }
        Ok(store)
    }

    /// Connects without touching the schema.
    pub(crate) async fn connect(
        url: &str,
        mode: OpenMode,
        timeout: Duration,
    ) -> Result<Store, StoreError> {
        let shown = redact_url(url);
        let origin = format!("kairos {}", uuid::Uuid::new_v4().simple());
        let mut opts = ConnectOptions::new(url.to_string());
        opts.sqlx_logging(std::env::var_os("KAIROS_SQLX_LOG").is_some())
            .connect_timeout(timeout)
            .acquire_timeout(timeout.max(Duration::from_secs(30)))
            // The pool's default pings every connection it hands out: a round trip
            // before each statement. A connection in use moments ago is alive; one
            // that sat idle (through an outage, say) is still checked.
            .test_before_acquire(false)
            .map_sqlx_postgres_before_acquire(ping_if_idle)
            .map_sqlx_sqlite_before_acquire(ping_if_idle);
        // The SQLite file, resolved now: the process may change its working directory
        // later, and the log watch is set up again whenever the log file goes.
        let mut file = None;
        if url.starts_with("sqlite:") {
            let path = sqlite_path(url);
            if let Some(path) = &path {
                open_sqlite_path(path, mode)?;
                file = Some(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
            }
            // One writer at a time is SQLite's rule; a small pool gives concurrent readers
            // without contending for the write lock.
            opts.max_connections(4).min_connections(1);
            // The file exists by now. The pool opens connections all along; one opened
            // after the file was deleted must fail rather than start an empty database
            // beside the running nodes (in-memory databases have no file to create).
            let create = path.is_none();
            opts.map_sqlx_sqlite_opts(move |o| {
                o.create_if_missing(create)
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
            // While the server is down the pool retries connecting until this runs
            // out: every HTTP request and node statement would wait it in full before
            // the outage is reported. Statements on a live server get a connection in
            // milliseconds, so the connect timeout (at least 5 s) is plenty.
            opts.acquire_timeout(timeout.max(Duration::from_secs(5)));
            if !url.contains("application_name=") {
                let name = origin.clone();
                opts.map_sqlx_postgres_opts(move |o| o.application_name(&name));
            }
            // kairos's transactions send their statements back to back. One left open
            // for seconds belongs to a process that froze (SIGSTOP, a stalled VM) with
            // rows locked, and the other nodes' take-back of its runs would wait for
            // it to wake: the server ends such a session instead, releasing its locks.
            // (An application's own transaction, as `enqueue_in` uses, is not on
            // these connections.)
            opts.map_sqlx_postgres_opts(|o| {
                o.options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)])
            });
            // The pool retries a refused connection until its timeout; one plain TCP
            // connect tells "nothing listens there" at once.
            if let Some((host, port)) = pg_address(url) {
                match tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((host.as_str(), port)),
                )
                .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        return Err(StoreError::Connect {
                            url: shown,
                            reason: format!(
                                "nothing accepts connections at {host}:{port}; is the server running?"
                            ),
                        });
                    }
                    Ok(Err(e)) => {
                        return Err(StoreError::Connect {
                            url: shown,
                            reason: format!("cannot reach {host}:{port}: {e}"),
                        });
                    }
                    Err(_) => {
                        return Err(StoreError::Connect {
                            url: shown,
                            reason: format!(
                                "no answer from {host}:{port} within {} (set a longer connect timeout if the server is slow)",
                                crate::schedule::format_duration(timeout)
                            ),
                        });
                    }
                }
            }
        } else {
            return Err(StoreError::UnsupportedUrl(shown));
        }
        // SQLite answers "database is locked" at once, without its busy handler, when
        // another process is switching a fresh file to WAL: retry that for a while.
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(20);
        loop {
            match Self::connect_once(opts.clone(), &shown, &origin, timeout).await {
                Ok(mut store) => {
                    store.file = file;
                    return Ok(store);
                }
                Err(StoreError::Connect { reason, .. })
                    if reason.contains("database is locked") && started.elapsed() < timeout =>
                {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    async fn connect_once(
        opts: ConnectOptions,
        shown: &str,
        origin: &str,
        timeout: Duration,
    ) -> Result<Store, StoreError> {
        // The pool's own timeout covers acquiring; this one also bounds a TCP connect
        // to a host that never answers.
        let connect = tokio::time::timeout(timeout + Duration::from_millis(500), async {
            Database::connect(opts).await
        });
        let db = match connect.await {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => {
                return Err(StoreError::Connect {
                    url: shown.to_string(),
                    reason: connect_reason(&e, timeout),
                });
            }
            Err(_) => {
                return Err(StoreError::Connect {
                    url: shown.to_string(),
                    reason: format!(
                        "no answer within {} (set a longer connect timeout if the server is slow)",
                        crate::schedule::format_duration(timeout)
                    ),
                });
            }
        };
        let backend = db.get_database_backend();
        let claims = if backend == DbBackend::Postgres {
            claims_pool(&db)
        } else {
            db.clone()
        };
        let store = Store {
            db,
            backend,
            url: shown.to_string(),
            origin: origin.to_string(),
            write_gate: Default::default(),
            claims,
            file: None,
            watchers: Default::default(),
            identity: Default::default(),
        };
        // Opening SQLite is lazy: read one page now, so a file that is not a database
        // fails here with its name rather than at the first query.
        if !store.is_pg()
            && let Err(e) = store
                .db
                .execute_unprepared("SELECT count(*) FROM sqlite_master")
                .await
        {
            return Err(StoreError::Connect {
                url: store.url.clone(),
                reason: describe(&e),
            });
        }
        Ok(store)
    }

    /// On PostgreSQL, a listener on the notifications kairos's triggers send (see the
    /// `notify` migration), on a connection of its own: it holds the connection for
    /// good, and must not take one from the pool the hot path uses. The node also
    /// claims announced runs on it (see `runtime::listener`), so its session
    /// commits as the claims pool's do.
    pub(crate) async fn listen(
        &self,
    ) -> Option<Result<sea_orm::sqlx::postgres::PgListener, StoreError>> {
        use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
        if !self.is_pg() {
            return None;
        }
        let options = (*self.db.get_postgres_connection_pool().connect_options())
            .clone()
            .options([("synchronous_commit", "off")]);
        let connect = async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(migration::NOTIFY_CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        Some(
            connect
                .await
                .map_err(|e| StoreError::Db(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))),
        )
    }
}

/// `url` with its password hidden (`***`), for logs and messages: the password of
/// `scheme://user:password@host`, and the value of a `password=` query parameter.
///
/// ```
/// assert_eq!(
///     kairos::redact_url("postgres://app:s3cret@db/jobs?sslmode=require"),
///     "postgres://app:***@db/jobs?sslmode=require"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

/// Host and port of a `postgres://` URL with a TCP host (not a Unix socket).
fn pg_address(url: &str) -> Option<(String, u16)> {
    let rest = &url[url.find("://")? + 3..];
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit('@').next()?;
    if hostport.is_empty() {
        return None;
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6.split_once(']')?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    // Several hosts (`h1,h2`) are the driver's business.
    if host.is_empty() || host.contains(',') {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 5432,
    };
    Some((host, port))
}

/// The file of a `sqlite:` URL, `None` for in-memory databases.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let rest = rest.split('?').next().unwrap_or("");
    if rest.is_empty() || rest == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(rest))
}

/// Checks that a SQLite file can be opened in `mode`; in `Create` mode, creates it empty
/// if there is none (SQLite takes an empty file for an empty database; racing processes
/// both succeed).
fn open_sqlite_path(path: &Path, mode: OpenMode) -> Result<(), StoreError> {
    if path.exists() {
        if path.is_dir() {
            return Err(StoreError::Connect {
                url: format!("sqlite://{}", path.display()),
                reason: "it is a folder, not a file".into(),
            });
        }
        return Ok(());
    }
    match mode {
        OpenMode::Existing => Err(StoreError::NoDatabase {
            path: path.to_path_buf(),
        }),
        OpenMode::Create => {
            let folder = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !folder.is_dir() {
                return Err(StoreError::MissingFolder {
                    path: path.to_path_buf(),
                    folder: folder.to_path_buf(),
                });
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map(drop)
                .map_err(|e| StoreError::Connect {
                    url: format!("sqlite://{}", path.display()),
                    reason: format!("cannot create the file: {e}"),
                })
        }
    }
}

/// A connection failure in words.
fn connect_reason(e: &DbErr, timeout: Duration) -> String {
    let raw = e.to_string();
    let lower = raw.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        format!(
            "no answer within {} ({raw})",
            crate::schedule::format_duration(timeout)
        )
    } else if lower.contains("connection refused") {
        format!("nothing accepts connections at that address; is the server running? ({raw})")
    } else {
        describe(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        for (url, shown) in [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("sqlite://kairos.db", "sqlite://kairos.db"),
            ("sqlite://./a@b/kairos.db", "sqlite://./a@b/kairos.db"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            (
                "postgres://h/db?user=u&password=secret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "postgres://u:secret@h/db?application_name=a@b",
                "postgres://u:***@h/db?application_name=a@b",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn postgres_addresses() {
        assert_eq!(
            pg_address("postgres://u:p@db.example:6543/x?sslmode=disable"),
            Some(("db.example".into(), 6543))
        );
        assert_eq!(pg_address("postgresql://h/x"), Some(("h".into(), 5432)));
        assert_eq!(
            pg_address("postgres://[::1]:5433/x"),
            Some(("::1".into(), 5433))
        );
        assert_eq!(pg_address("postgres:///x?host=/run/postgresql"), None);
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://kairos.db"),
            Some(PathBuf::from("kairos.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }

    /// A database file deleted under a running store is not made again, empty, by the
    /// next connection the pool opens: that connection fails instead.
    #[tokio::test]
    async fn a_deleted_sqlite_file_is_not_created_again_by_the_pool() {
        let dir =
            std::env::temp_dir().join(format!("kairos-gone-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kairos.db");
        let url = format!("sqlite://{}", file.display());
        let store = Store::connect(&url, OpenMode::Create, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(file.exists());
        let pool = store.db.get_sqlite_connection_pool();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        // A connection as the pool opens one (the pool itself may hand out one it
        // opened before the file went, which still reads the deleted file).
        use sea_orm::sqlx::ConnectOptions;
        let second = pool.connect_options().connect().await;
        assert!(
            second.is_err(),
            "a new connection opened a database: {second:?}"
        );
        assert!(!file.exists(), "the pool created the file again");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The log a node watches stays the database's after the process changes its
    /// working directory: a relative URL is resolved when the store connects.
    #[tokio::test]
    async fn a_relative_sqlite_path_is_watched_where_it_was_opened() {
        // The temporary folder, reached from the working directory by a relative path.
        let cwd = std::env::current_dir().unwrap();
        let mut rel = PathBuf::new();
        for _ in cwd.components().skip(1) {
            rel.push("..");
        }
        let tmp = std::env::temp_dir();
        rel.push(tmp.strip_prefix("/").unwrap_or(&tmp));
        rel.push(format!("kairos-rel-{}.db", uuid::Uuid::new_v4().simple()));
        let name = rel.display().to_string();
        assert!(rel.is_relative(), "{name}");
        let url = format!("sqlite://{name}");
        let store = Store::connect(&url, OpenMode::Create, Duration::from_secs(10))
            .await
            .unwrap();
        let wal = store.wal_file().unwrap();
        let expected = cwd.join(format!("{name}-wal"));
        assert_eq!(wal, expected);
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{name}{suffix}"));
        }
    }
}
