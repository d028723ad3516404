//! The `kairos_nodes` table: processes running the scheduler against this database.

use sea_orm::entity::prelude::*;

/// A row of `kairos_nodes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kairos_nodes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Absent on nodes registered before names existed.
    pub name: Option<String>,
    pub hostname: String,
    pub pid: i32,
    pub version: String,
    pub max_workers: i32,
    /// `running` or `stopped`.
    pub status: String,
    pub paused: bool,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// How long the node may stay silent before it counts as dead, in milliseconds, as
    /// it was started with; absent on nodes registered before it was recorded.
    pub heartbeat_timeout_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
