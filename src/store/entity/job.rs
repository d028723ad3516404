//! The `kairos_jobs` table: persisted schedules.

use sea_orm::entity::prelude::*;

/// A row of `kairos_jobs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kairos_jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    pub task: String,
    /// `cron`, `interval` or `once`.
    pub kind: String,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub dst: String,
    pub interval_ms: Option<i64>,
    /// The instant of a one-off job; the anchor of an interval job.
    pub anchor_at: Option<i64>,
    pub params: String,
    pub priority: Option<i32>,
    pub misfire: String,
    pub max_catch_up: i32,
    pub misfire_grace_ms: i64,
    pub overlap: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub paused: bool,
    pub paused_at: Option<i64>,
    /// Closed pause windows `[[from_ms, to_ms], ...]` not yet accounted for by firing.
    pub pause_windows: Option<String>,
    pub source: String,
    /// The next slot to fire; kept while paused so missed slots can be accounted for.
    pub next_run_at: Option<i64>,
    pub last_fired_at: Option<i64>,
    /// Bumped by every change; part of the firing compare-and-set.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Where the job's finished runs are POSTed.
    pub callback_url: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
