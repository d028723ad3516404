//! The `kairos_queues` table: each queue's limits (published by nodes from `jobs.toml`)
//! and whether an operator paused it.

use sea_orm::entity::prelude::*;

/// A row of `kairos_queues`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kairos_queues")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub concurrency: Option<i32>,
    pub rate_limit: Option<i32>,
    pub rate_window_ms: Option<i64>,
    pub paused: bool,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
