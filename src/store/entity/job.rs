//! The `kairos_jobs` table: persisted schedules.

use sea_orm::entity::prelude::*;

/// A row of `kairos_jobs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kairos_jobs")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique job name.
    #[sea_orm(unique)]
    pub name: String,
    /// Task it runs.
    pub task: String,
    /// `cron`, `interval` or `once`.
    pub kind: String,
    /// Cron expression (kind = cron).
    pub cron: Option<String>,
    /// IANA zone (kind = cron).
    pub timezone: Option<String>,
    /// Interval in ms (kind = interval).
    pub interval_ms: Option<i64>,
    /// Instant in ms (kind = once); also the interval anchor.
    pub anchor_at: Option<i64>,
    /// JSON params of each run.
    pub params: String,
    /// Disabled by config: never fires.
    pub enabled: bool,
    /// Paused by an operator: slots pass without runs.
    pub paused: bool,
    /// Priority of fired runs, if it overrides the task's.
    pub priority: Option<i32>,
    /// `code`, `config` or `api`.
    pub source: String,
    /// Next nominal slot (ms); None when the schedule is exhausted.
    pub next_run_at: Option<i64>,
    /// Last slot that fired a run (ms).
    pub last_fired_at: Option<i64>,
    /// Bumped by every change; part of the firing compare-and-set.
    pub version: i64,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
