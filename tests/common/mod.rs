//! Test support: fresh databases (a SQLite file per test, and a PostgreSQL database per
//! test when `KAIROS_TEST_POSTGRES_URL` is set), hand-registered tasks, and waiting for
//! run states with a bounded real-time poll.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use kairos::store::Store;
use kairos::{Run, RunStatus};

/// A database for one test; dropping it removes the SQLite file's directory.
pub struct TestDb {
    pub url: String,
    pub name: &'static str,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh SQLite database.
pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("kairos.db").display());
    TestDb {
        url,
        name: "sqlite",
        _dir: Some(dir),
    }
}

/// A fresh PostgreSQL database, or `None` (with a printed notice) when
/// `KAIROS_TEST_POSTGRES_URL` is not set.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let Ok(admin) = std::env::var("KAIROS_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED (postgres): {test}: KAIROS_TEST_POSTGRES_URL is not set");
        return None;
    };
    use sea_orm::ConnectionTrait;
    let name = format!("kairos_t_{}", uuid::Uuid::new_v4().simple());
    let db = sea_orm::Database::connect(admin.clone())
        .await
        .expect("connect to KAIROS_TEST_POSTGRES_URL");
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    db.close().await.ok();
    let base = match admin.rfind('/') {
        Some(i) if admin[..i].ends_with('/') => admin.clone() + "/",
        Some(i) => admin[..i + 1].to_string(),
        None => admin.clone() + "/",
    };
    let (base, query) = match admin.find('?') {
        Some(q) => (base, admin[q..].to_string()),
        None => (base, String::new()),
    };
    Some(TestDb {
        url: format!("{base}{name}{query}"),
        name: "postgres",
        _dir: None,
    })
}

/// SQLite always, PostgreSQL when configured.
pub async fn databases(test: &str) -> Vec<TestDb> {
    let mut v = vec![sqlite()];
    v.extend(postgres(test).await);
    v
}

/// Polls the store until the run reaches `status` (bounded: fails after 10 s).
pub async fn wait_status(store: &Store, id: i64, status: RunStatus) -> Run {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let run = store.run(id).await.expect("read run");
        if run.status == status {
            return run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {id} did not reach {status}; it is {:?}",
            run
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls until `f` is true (bounded: fails after 10 s).
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
