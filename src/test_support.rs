//! Not public API: what kairos's own tests need beyond the public surface: fresh
//! databases (a SQLite file per test, a PostgreSQL database per test when
//! `KAIROS_TEST_POSTGRES_URL` is set), the desired-state types, and direct access to a
//! database to damage or inspect it.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

pub use crate::job::{DEFAULT_QUEUE, JobSpec, TaskPolicy};
use crate::store::{DEFAULT_CONNECT_TIMEOUT, OpenMode, Store};

/// A database for one test; dropping it removes a SQLite file's folder.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// `sqlite` or `postgres`.
    pub name: &'static str,
    dir: Option<PathBuf>,
    /// For a PostgreSQL database: the server URL it was created through, and its name.
    created_on: Option<(String, String)>,
}

impl TestDb {
    /// The folder of a SQLite database.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// On PostgreSQL, ends every session on the database, as a server restart or a
    /// failover does; new connections are let in. Panics on SQLite.
    pub async fn end_sessions(&self) {
        self.on_server(|name| {
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
        })
        .await;
    }

    /// On PostgreSQL, an outage until [`TestDb::reopen`]: new connections are refused
    /// and every open one is ended. Panics on SQLite.
    pub async fn cut_off(&self) {
        self.on_server(|name| format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            .await;
        self.end_sessions().await;
    }

    /// Ends the outage [`TestDb::cut_off`] began.
    pub async fn reopen(&self) {
        self.on_server(|name| format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .await;
    }

    /// Runs the statement `sql(name)` through the server URL the database was created
    /// through (a connection to the database itself could not refuse or end itself).
    async fn on_server(&self, sql: impl FnOnce(&str) -> String) {
        let (server, name) = self
            .created_on
            .as_ref()
            .expect("a PostgreSQL test database");
        execute(server, &sql(name))
            .await
            .unwrap_or_else(|e| panic!("on the test server: {e}"));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
        if let Some((admin, name)) = self.created_on.take() {
            // Drop runs inside the test's runtime, which cannot be blocked on: the
            // database is dropped from a thread with a runtime of its own. FORCE ends
            // the connections the test's pools still hold.
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let db = sea_orm::Database::connect(admin).await.ok()?;
                    let res = db
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    db.close().await.ok();
                    res.ok()
                })
            })
            .join();
            if !matches!(dropped, Ok(Some(_))) {
                eprintln!("could not drop a PostgreSQL test database");
            }
        }
    }
}

/// A fresh SQLite database (the file does not exist yet).
pub fn sqlite() -> TestDb {
    let dir = std::env::temp_dir().join(format!("kairos-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    TestDb {
        url: format!("sqlite://{}", dir.join("kairos.db").display()),
        name: "sqlite",
        dir: Some(dir),
        created_on: None,
    }
}

/// A fresh PostgreSQL database, or `None` (with a printed notice) when
/// `KAIROS_TEST_POSTGRES_URL` is not set.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let Ok(admin) = std::env::var("KAIROS_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED (postgres): {test}: KAIROS_TEST_POSTGRES_URL is not set");
        return None;
    };
    let name = format!("kairos_t_{}", uuid::Uuid::new_v4().simple());
    let db = sea_orm::Database::connect(admin.clone())
        .await
        .expect("connect to KAIROS_TEST_POSTGRES_URL");
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    db.close().await.ok();
    let (base, query) = match admin.find('?') {
        Some(q) => (&admin[..q], &admin[q..]),
        None => (admin.as_str(), ""),
    };
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..=i],
        _ => base,
    };
    let sep = if base.ends_with('/') { "" } else { "/" };
    Some(TestDb {
        url: format!("{base}{sep}{name}{query}"),
        name: "postgres",
        dir: None,
        created_on: Some((admin.clone(), name.clone())),
    })
}

/// SQLite always, PostgreSQL when configured.
pub async fn databases(test: &str) -> Vec<TestDb> {
    let mut v = vec![sqlite()];
    v.extend(postgres(test).await);
    v
}

/// Opens (creating and migrating) a database and reconciles `specs` into it, as a node
/// does at start-up.
pub async fn sync_jobs(
    url: &str,
    specs: &[JobSpec],
    now: DateTime<Utc>,
) -> Result<(), crate::StoreError> {
    let store = Store::open(url, OpenMode::Create, DEFAULT_CONNECT_TIMEOUT).await?;
    store.sync_jobs(specs, now).await?;
    Ok(())
}

/// Runs a statement on an existing database (to damage it in tests, for example).
pub async fn execute(url: &str, sql: &str) -> Result<(), crate::StoreError> {
    let store = Store::connect(url, OpenMode::Existing, DEFAULT_CONNECT_TIMEOUT).await?;
    store.connection().execute_unprepared(sql).await?;
    Ok(())
}

/// Records a node as another process would have, with status `status` (`running`,
/// `stopped`, `dead`) and its last heartbeat at `beat_ms` (epoch milliseconds).
pub async fn insert_node(
    url: &str,
    id: &str,
    status: &str,
    beat_ms: i64,
) -> Result<(), crate::StoreError> {
    execute(
        url,
        &format!(
            "INSERT INTO kairos_nodes (id, hostname, pid, version, max_workers, status, paused, \
             started_at, heartbeat_at) VALUES ('{id}', 'elsewhere', 1, '0.1.0', 4, '{status}', \
             false, {beat_ms}, {beat_ms})"
        ),
    )
    .await
}

/// One number from a query (`SELECT COUNT(*) AS n ...`): reads column `n`.
pub async fn query_i64(url: &str, sql: &str) -> Result<i64, crate::StoreError> {
    let store = Store::connect(url, OpenMode::Existing, DEFAULT_CONNECT_TIMEOUT).await?;
    let row = store
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            store.connection().get_database_backend(),
            sql.to_string(),
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0))
}

/// The machine's clock, wrong by a fixed offset: a node on a machine whose clock is
/// off, for tests of how nodes agree on time.
#[derive(Debug, Clone, Copy)]
pub struct SkewedClock(pub chrono::Duration);

impl crate::clock::Clock for SkewedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> futures::future::BoxFuture<'static, ()> {
        crate::clock::Clock::sleep_until(&crate::clock::SystemClock, deadline - self.0)
    }

    fn is_wall_clock(&self) -> bool {
        true
    }
}
