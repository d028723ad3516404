//! The `kairos_nodes` table: processes running the scheduler against this database.

use sea_orm::entity::prelude::*;

/// A row of `kairos_nodes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kairos_nodes")]
pub struct Model {
    /// Node id (a UUID chosen at start-up).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: i32,
    /// Worker slots.
    pub max_workers: i32,
    /// running or stopped.
    pub status: String,
    /// Start (ms).
    pub started_at: i64,
    /// Last heartbeat (ms).
    pub heartbeat_at: i64,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
