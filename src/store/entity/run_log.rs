//! The `kairos_run_logs` table: log lines a run wrote, pruned with it.

use sea_orm::entity::prelude::*;

/// A row of `kairos_run_logs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kairos_run_logs")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The run.
    pub run_id: i64,
    /// Attempt that wrote it.
    pub attempt: i32,
    /// Time (ms).
    pub at: i64,
    /// trace, debug, info, warn, error.
    pub level: String,
    /// The text.
    pub message: String,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
