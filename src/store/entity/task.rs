//! The `kairos_tasks` table: the task catalogue nodes publish (effective policies and
//! params schema), so the standalone CLI can check and default runs without the code.

use sea_orm::entity::prelude::*;

/// A row of `kairos_tasks`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kairos_tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub queue: String,
    pub priority: i32,
    pub max_retries: i32,
    pub retry_delay_ms: i64,
    pub timeout_ms: i64,
    pub max_instances: Option<i32>,
    pub misfire: String,
    pub max_catch_up: i32,
    pub misfire_grace_ms: i64,
    pub overlap: String,
    pub params_schema: String,
    pub location: String,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
