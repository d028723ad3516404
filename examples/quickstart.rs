//! The kairos quickstart: an application with a cron job, an interval job, a task with
//! params enqueued at start, and a flaky task that fails, retries and ends in its
//! `on_failure` callback. It runs the embedded scheduler until Ctrl-C on
//! `KAIROS_DATABASE_URL`, else jobs.toml's `database_url`, else the SQLite default
//! (`kairos.db` in the working directory), and logs which.
//!
//! ```text
//! cargo run --example quickstart
//! # in another terminal, while it runs:
//! cargo run -- jobs list
//! cargo run -- runs list --limit 10
//! cargo run -- jobs pause heartbeat
//! cargo run -- runs watch --task import_catalog   # live progress bars
//! ```
//!
//! Set `KAIROS_QUICKSTART_SECONDS=N` to stop by itself after N seconds.

use std::time::Duration;

use kairos::{Enqueue, FailedRun, Scheduler, TaskContext};
use serde::Serialize;

/// Every five seconds, by a 6-field cron expression (seconds first).
#[kairos::task(name = "heartbeat", schedule = "*/5 * * * * *")]
async fn heartbeat(ctx: TaskContext) -> anyhow::Result<()> {
    tracing::info!(slot = %ctx.scheduled_for(), "heartbeat");
    Ok(())
}

/// Hourly by the macro; `jobs.toml` overrides it to every 20 seconds.
#[kairos::task(interval_minutes = 60, timeout = "10s")]
async fn cleanup() -> anyhow::Result<usize> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(3) // the number of files removed becomes the run's JSON result
}

/// What `report` stores as its result.
#[derive(Serialize)]
struct Report {
    region: String,
    rows: u32,
}

/// Scheduled twice by `[[jobs]]` in jobs.toml, with different params.
#[kairos::task(name = "report", max_instances = 2)]
async fn report(region: String) -> anyhow::Result<Report> {
    Ok(Report {
        rows: region.len() as u32 * 100,
        region,
    })
}

/// A one-off task with params, enqueued at start.
#[kairos::task(name = "send_welcome_email", priority = 1, max_retries = 2)]
async fn send_welcome_email(ctx: TaskContext, user_id: u64, email: String) -> anyhow::Result<()> {
    tracing::info!(run_id = ctx.run_id(), user_id, %email, "sending welcome email");
    Ok(())
}

/// Reports progress, stages and log lines as it goes: watch it with
/// `cargo run -- runs watch --task import_catalog`.
#[kairos::task(name = "import_catalog", interval_minutes = 1, timeout = "1m")]
async fn import_catalog(ctx: TaskContext) -> anyhow::Result<u32> {
    ctx.stage("downloading");
    let pages = 12;
    for page in 1..=pages {
        if ctx.is_cancelled() {
            anyhow::bail!("cancelled at page {page}");
        }
        if page == 6 {
            ctx.stage("parsing");
        }
        ctx.progress(
            (page * 100 / pages) as u8,
            format!("page {page} of {pages}"),
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    ctx.info(format!("imported {pages} pages"));
    Ok(pages)
}

/// Fails every attempt: kairos retries it with backoff, then calls `alert_ops`.
#[kairos::task(name = "flaky_sync", max_retries = 2, retry_delay = "1s", on_failure = alert_ops)]
async fn flaky_sync(ctx: TaskContext) -> anyhow::Result<()> {
    anyhow::bail!("upstream returned 503 on attempt {}", ctx.attempt())
}

async fn alert_ops(run: FailedRun) {
    tracing::error!(
        run_id = run.run_id,
        task = %run.task,
        attempts = run.attempt,
        error = %run.error,
        "on_failure: paging the on-call engineer"
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn".into()),
        )
        .init();

    // The database as the builder would pick it (KAIROS_DATABASE_URL, else jobs.toml's
    // `database_url`, else ./kairos.db), resolved here so the log names the one used.
    let config = kairos::config::Config::load("jobs.toml".as_ref())?;
    let database = std::env::var(kairos::DATABASE_URL_ENV)
        .ok()
        .filter(|url| !url.is_empty())
        .or_else(|| config.scheduler.database_url.clone())
        .unwrap_or_else(|| kairos::DEFAULT_DATABASE_URL.to_string());
    let scheduler = Scheduler::builder()
        .config(config)
        .database_url(&database)
        .build()
        .await?;
    let handle = scheduler.handle();

    handle
        .enqueue(
            Enqueue::new("send_welcome_email")
                .params(serde_json::json!({ "user_id": 42, "email": "ada@example.com" })),
        )
        .await?;
    // Params are checked where the run is enqueued, against the function's parameters:
    // a missing `email` is refused here, instead of failing when the run executes.
    if let Err(e) = handle
        .enqueue(Enqueue::new("send_welcome_email").params(serde_json::json!({ "user_id": 7 })))
        .await
    {
        tracing::warn!(error = %e, "refused at the door");
    }
    handle
        .enqueue(Enqueue::new("flaky_sync").delay(Duration::from_secs(2)))
        .await?;
    handle
        .enqueue(Enqueue::new("import_catalog").delay(Duration::from_secs(3)))
        .await?;

    if let Some(secs) = std::env::var("KAIROS_QUICKSTART_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let h = handle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            h.shutdown();
        });
    }
    tracing::info!(
        "kairos quickstart running on {}; press Ctrl-C to stop",
        kairos::redact_url(&database)
    );
    scheduler.run_until_signal().await?;
    Ok(())
}
