//! kairos: persistent, cluster-safe cron and background-run scheduler.
//!
//! Annotate async functions with [`#[kairos::task]`](macro@task), embed a
//! [`Scheduler`] in the application, and kairos fires their schedules exactly once per
//! slot, runs them with timeouts, retries and limits, and records every run in the
//! database (SQLite by default, PostgreSQL for several nodes).
//!
//! ```no_run
//! use std::time::Duration;
//! use kairos::{Enqueue, Scheduler, TaskContext};
//!
//! /// Every fifteen minutes, retried up to three times.
//! #[kairos::task(interval_minutes = 15, max_retries = 3, retry_delay = "1m")]
//! async fn sync_emails(ctx: TaskContext) -> anyhow::Result<()> {
//!     println!("attempt {} of the slot {}", ctx.attempt(), ctx.scheduled_for());
//!     Ok(())
//! }
//!
//! /// At midnight in Shanghai for every region, or for the one in the run's JSON
//! /// params (its own schedule fires with none, so `region` must be optional).
//! #[kairos::task(schedule = "0 0 * * *", timezone = "Asia/Shanghai", timeout = "10m")]
//! async fn daily_report(region: Option<String>) -> anyhow::Result<u32> {
//!     Ok(region.map_or(0, |r| r.len() as u32))
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let scheduler = Scheduler::builder()
//!         .database_url("sqlite://kairos.db")
//!         .config_file("jobs.toml")
//!         .max_workers(8)
//!         .build()
//!         .await?;
//!     let handle = scheduler.handle();
//!     handle
//!         .enqueue(
//!             Enqueue::new("daily_report")
//!                 .params(serde_json::json!({ "region": "eu" }))
//!                 .delay(Duration::from_secs(30)),
//!         )
//!         .await?;
//!     // Until Ctrl-C or SIGTERM; then running runs get a grace period.
//!     scheduler.run_until_signal().await?;
//!     Ok(())
//! }
//! ```
//!
//! The pieces: [`task`](mod@task) (the registry and the context a run sees), [`schedule`]
//! (cron, intervals, durations), [`config`] (`jobs.toml`), [`Scheduler`] and its
//! [`SchedulerHandle`] (the embedded node), [`Admin`] (every operation on jobs, runs,
//! queues and nodes, shared by the handle, the CLI and the HTTP API), the records they
//! return ([`Job`], [`Run`], [`JobSlot`], ...), [`cli`] (the admin CLI) and [`clock`]
//! (real and manual time).

pub mod cli;
pub mod clock;
pub mod config;
mod context;
mod error;
pub mod events;
pub mod http;
mod job;
mod model;
mod ops;
mod runtime;
mod schema_check;
mod sqlx_txn;
mod store;
mod suggest;
pub mod task;
pub mod testing;
pub mod webhook;

/// Schedules: cron expressions, intervals, one-off times, durations.
pub mod schedule {
    pub use kairos_schedule::*;
}

pub use kairos_macros::task;

/// The SeaORM version kairos uses, for [`Admin::enqueue_in`] with the application's own
/// transaction.
pub use sea_orm;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use model::{
    DisabledReason, Health, Job, JobPolicy, JobSlot, JobSource, NodeInfo, QueueInfo, Run,
    RunEstimate, RunEvent, RunEventKind, RunFilter, RunLog, RunOrigin, RunPage, RunStatus,
    SkipReason, SlotOutcome, Stats, TaskInfo, TaskStats,
};
pub use ops::{
    Admin, CancelResult, DEFAULT_HEARTBEAT_MAX_AGE, Enqueue, Enqueued, JobChanges, NewJob,
};
pub use runtime::{
    BuildError, DATABASE_URL_ENV, HookResult, NODE_NAME_ENV, RunOutcome, Scheduler,
    SchedulerBuilder, SchedulerHandle, SkippedSlots,
};
pub use sqlx_txn::SqlxTxn;
pub use store::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_DATABASE_URL, StoreError, redact_url};
pub use task::{
    FailedRun, LogLevel, Misfire, Overlap, ParamDef, Registry, TaskContext, TaskDef, TaskError,
    snooze,
};
pub use webhook::RunDelivery;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// Not public API: internals and helpers for kairos's own tests.
#[doc(hidden)]
pub mod test_support;
