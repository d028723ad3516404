//! The `kairos_runs` table: one row per run, updated through its attempts.

use sea_orm::entity::prelude::*;

/// A row of `kairos_runs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kairos_runs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub task: String,
    pub queue: String,
    pub job_id: Option<i64>,
    pub origin: String,
    pub params: String,
    /// JSON object of string tags; also indexed in `kairos_run_tags`.
    pub tags: Option<String>,
    pub status: String,
    pub priority: i32,
    pub run_at: i64,
    pub scheduled_for: i64,
    pub attempt: i32,
    pub max_retries: i32,
    pub retry_delay_ms: i64,
    pub timeout_ms: i64,
    pub node_id: Option<String>,
    pub lease_until: Option<i64>,
    pub cancel_requested: bool,
    pub idempotency_key: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// A queued run not started by then ends `expired`.
    pub expires_at: Option<i64>,
    /// 0 to 100, as the task last reported.
    pub progress: Option<i32>,
    pub progress_message: Option<String>,
    /// App-defined stage the task last reported.
    pub stage: Option<String>,
    /// JSON state the task saved for its next attempt.
    pub checkpoint: Option<String>,
    /// Where the finished run is POSTed.
    pub callback_url: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
