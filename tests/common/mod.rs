//! Test support: fresh databases (from `kairos::test_support`), and waiting for run states
//! with a bounded real-time poll. Running the `kairos` binary, for the CLI tests, is in
//! [`cli`].

#![allow(dead_code, unreachable_pub)]

pub mod cli;
pub mod http;
pub mod process;

use std::time::Duration;

use kairos::{Admin, Run, RunStatus};

#[allow(unused_imports)]
pub use kairos::test_support::{TestDb, databases, postgres, sqlite};

/// Polls until the run reaches `status` (bounded: fails after 10 s).
pub async fn wait_status(admin: &Admin, id: i64, status: RunStatus) -> Run {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let run = admin.run(id).await.expect("read run");
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
