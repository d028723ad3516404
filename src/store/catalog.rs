//! What nodes publish for tools that lack the application's code: the task catalogue
//! (effective policies and params schema of every registered task) and the queues with
//! their limits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::codec::{duration_ms, int, ms};
use super::entity::task;
use super::sql::columns;
use super::{Lock, Store, StoreError, bump, write_txn};
use crate::model::TaskInfo;

/// A task as published.
pub(crate) type CatalogTask = TaskInfo;

/// A queue's limits as declared in `[queues.<name>]` (or just used by a task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogQueue {
    pub(crate) name: String,
    pub(crate) concurrency: Option<u32>,
    pub(crate) rate: Option<(u32, Duration)>,
    /// Declared in the node's `[queues]` (its limits replace the stored ones), or
    /// only used by its tasks (recorded if new; limits another node declared stay).
    pub(crate) declared: bool,
}

impl Store {
    /// Publishes the node's task catalogue and queues.
    pub(crate) async fn sync_catalog(
        &self,
        tasks: &[CatalogTask],
        queues: &[CatalogQueue],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        self.lock(&txn, Lock::Sync).await?;
        for t in tasks {
            txn.execute_raw(self.stmt(
                "INSERT INTO kairos_tasks (name, queue, priority, max_retries, retry_delay_ms, timeout_ms, \
                 max_instances, misfire, max_catch_up, misfire_grace_ms, overlap, params_schema, location, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (name) DO UPDATE SET queue = excluded.queue, priority = excluded.priority, \
                 max_retries = excluded.max_retries, retry_delay_ms = excluded.retry_delay_ms, \
                 timeout_ms = excluded.timeout_ms, max_instances = excluded.max_instances, \
                 misfire = excluded.misfire, max_catch_up = excluded.max_catch_up, \
                 misfire_grace_ms = excluded.misfire_grace_ms, overlap = excluded.overlap, \
                 params_schema = excluded.params_schema, location = excluded.location, \
                 updated_at = excluded.updated_at",
                [
                    Value::from(t.name.clone()),
                    Value::from(t.queue.clone()),
                    Value::from(t.priority),
                    Value::from(int(t.max_retries)),
                    Value::from(duration_ms(t.retry_delay)),
                    Value::from(duration_ms(t.timeout)),
                    Value::from(t.max_instances.map(int)),
                    Value::from(t.job_policy.misfire.as_str()),
                    Value::from(int(t.job_policy.max_catch_up)),
                    Value::from(duration_ms(t.job_policy.misfire_grace)),
                    Value::from(t.job_policy.overlap.as_str()),
                    Value::from(t.params_schema.to_string()),
                    Value::from(t.location.clone()),
                    Value::from(ms(now)),
                ],
            ))
            .await?;
        }
        for q in queues {
            let on_conflict = if q.declared {
                "DO UPDATE SET concurrency = excluded.concurrency, rate_limit = \
                 excluded.rate_limit, rate_window_ms = excluded.rate_window_ms, \
                 updated_at = excluded.updated_at"
            } else {
                "DO NOTHING"
            };
            txn.execute_raw(self.stmt(
                &format!(
                    "INSERT INTO kairos_queues (name, concurrency, rate_limit, rate_window_ms, \
                     paused, updated_at) VALUES ($1, $2, $3, $4, false, $5) \
                     ON CONFLICT (name) {on_conflict}"
                ),
                [
                    Value::from(q.name.clone()),
                    Value::from(q.concurrency.map(int)),
                    Value::from(q.rate.map(|(n, _)| int(n))),
                    Value::from(q.rate.map(|(_, w)| duration_ms(w))),
                    Value::from(ms(now)),
                ],
            ))
            .await?;
        }
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The task catalogue, by name.
    pub(crate) async fn tasks(&self) -> Result<Vec<TaskInfo>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT {} FROM kairos_tasks ORDER BY name",
                    columns::<task::Entity>()
                ),
                [],
            ))
            .await?;
        rows.iter()
            .map(|r| TaskInfo::try_from(task::Model::from_query_result(r, "")?))
            .collect()
    }

    /// One published task.
    pub(crate) async fn task(&self, name: &str) -> Result<Option<TaskInfo>, StoreError> {
        self.db
            .query_one_raw(self.stmt(
                &format!(
                    "SELECT {} FROM kairos_tasks WHERE name = $1",
                    columns::<task::Entity>()
                ),
                [Value::from(name.to_string())],
            ))
            .await?
            .map(|r| TaskInfo::try_from(task::Model::from_query_result(&r, "")?))
            .transpose()
    }
}
