//! Forgetting: pruning finished runs (with their tags, history, logs and webhook
//! deliveries) in small batches so the runs table is never locked for long, expiring
//! queued runs whose time to live ran out, and trimming the event log.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};

use super::codec::ms;
use super::sql::placeholders;
use super::{Store, StoreError, bump, write_txn};
use crate::model::RunStatus;

/// Runs deleted per transaction: each batch holds the write lock only briefly.
const PRUNE_BATCH: i64 = 1000;

/// Tables holding rows that belong to a run.
pub(super) const RUN_CHILDREN: [&str; 4] = [
    "kairos_run_tags",
    "kairos_run_history",
    "kairos_run_logs",
    "kairos_deliveries",
];

impl Store {
    /// Deletes runs with one of `statuses` that finished before `before`, with
    /// everything that belongs to them, in batches. Returns how many runs went.
    pub(crate) async fn prune_runs(
        &self,
        statuses: &[RunStatus],
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let statuses: Vec<RunStatus> = statuses
            .iter()
            .copied()
            .filter(|s| s.is_finished())
            .collect();
        if statuses.is_empty() {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let txn = self.db.begin_with_options(write_txn()).await?;
            let mut values: Vec<Value> = statuses.iter().map(|s| Value::from(s.as_str())).collect();
            let n = values.len();
            values.push(Value::from(ms(before)));
            values.push(Value::from(PRUNE_BATCH));
            let rows = txn
                .query_all_raw(self.stmt(
                    &format!(
                        "SELECT id FROM kairos_runs WHERE status IN ({}) AND finished_at < ${} \
                         ORDER BY finished_at LIMIT ${}",
                        placeholders(1, n),
                        n + 1,
                        n + 2
                    ),
                    values,
                ))
                .await?;
            let ids: Vec<i64> = rows
                .iter()
                .map(|r| r.try_get::<i64>("", "id"))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                txn.commit().await?;
                break;
            }
            let list = placeholders(1, ids.len());
            let id_values = || ids.iter().map(|id| Value::from(*id));
            for table in RUN_CHILDREN {
                txn.execute_raw(self.stmt(
                    &format!("DELETE FROM {table} WHERE run_id IN ({list})"),
                    id_values(),
                ))
                .await?;
            }
            txn.execute_raw(self.stmt(
                &format!("DELETE FROM kairos_runs WHERE id IN ({list})"),
                id_values(),
            ))
            .await?;
            txn.commit().await?;
            total += ids.len() as u64;
            if (ids.len() as i64) < PRUNE_BATCH {
                break;
            }
        }
        if total > 0 {
            bump(&self.db, self).await?;
        }
        Ok(total)
    }

    /// Deletes slot records that end before `before` (the oldest runs they refer to
    /// are gone by then).
    pub(crate) async fn prune_slots(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = self
            .db
            .execute_raw(self.stmt(
                "DELETE FROM kairos_job_slots WHERE last_slot < $1",
                [Value::from(ms(before))],
            ))
            .await?;
        Ok(res.rows_affected())
    }

    /// Marks queued runs whose time to live ran out as `expired`. Returns how many.
    ///
    /// Returns each run expired: its id, task, job and attempts made.
    pub(crate) async fn expire_runs(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, String, Option<i64>, i32)>, StoreError> {
        let _turn = self.periodic_write_turn().await;
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "UPDATE kairos_runs SET status = 'expired', finished_at = $1, error = $2 \
                 WHERE status = 'queued' AND expires_at IS NOT NULL AND expires_at <= $1 \
                 RETURNING id, task, job_id, attempt",
                [Value::from(ms(now)), Value::from(super::EXPIRED)],
            ))
            .await?;
        let expired = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("", "id")?,
                    r.try_get("", "task")?,
                    r.try_get("", "job_id")?,
                    r.try_get("", "attempt")?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if !expired.is_empty() {
            bump(&self.db, self).await?;
        }
        Ok(expired)
    }

    /// The earliest time to live among queued runs (an index holds them), of those
    /// ending after `after` when given.
    pub(crate) async fn next_expiry(
        &self,
        after: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT MIN(expires_at) AS at FROM kairos_runs \
                 WHERE expires_at IS NOT NULL AND status = 'queued' AND expires_at > $1",
                [Value::from(after.map_or(i64::MIN, ms))],
            ))
            .await?;
        Ok(match row {
            Some(r) => r
                .try_get::<Option<i64>>("", "at")?
                .map(super::codec::from_ms),
            None => None,
        })
    }
}
