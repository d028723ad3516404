//! The `kairos_runs` table: one row per run, updated through its attempts.

use sea_orm::entity::prelude::*;

/// A row of `kairos_runs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kairos_runs")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Task name.
    pub task: String,
    /// Job that fired it.
    pub job_id: Option<i64>,
    /// JSON params.
    pub params: String,
    /// queued, running, succeeded, failed, timed_out, cancelled.
    pub status: String,
    /// Lower runs first.
    pub priority: i32,
    /// Queue name.
    pub queue: Option<String>,
    /// Earliest start of the next attempt (ms).
    pub run_at: i64,
    /// Nominal slot (job runs) or requested start (ms).
    pub scheduled_for: i64,
    /// Attempts started so far.
    pub attempt: i32,
    /// Retries allowed after the first attempt.
    pub max_retries: i32,
    /// Base backoff (ms).
    pub retry_delay_ms: i64,
    /// Limit of one attempt (ms).
    pub timeout_ms: i64,
    /// Node that owns the running attempt.
    pub node_id: Option<String>,
    /// Lease expiry of the running attempt (ms).
    pub lease_until: Option<i64>,
    /// Operator asked to cancel.
    pub cancel_requested: bool,
    /// JSON result of the successful attempt.
    pub result: Option<String>,
    /// Error text of the last failed attempt.
    pub error: Option<String>,
    /// Enqueue time (ms).
    pub created_at: i64,
    /// Start of the last attempt (ms).
    pub started_at: Option<i64>,
    /// End of the run (ms).
    pub finished_at: Option<i64>,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
