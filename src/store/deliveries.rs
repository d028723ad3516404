//! Webhook deliveries: which finished runs a node must POST, and the record of every
//! delivery attempt in `kairos_deliveries` (one row per HTTP attempt; a row is updated
//! only to store the outcome of an attempt claimed as in progress).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};

use super::codec::{count, from_ms, int, ms};
use super::sql::placeholders;
use super::{Store, StoreError, write_txn};
use crate::webhook::{IN_PROGRESS, RunDelivery};

/// Ids per `IN (...)` list: far below every backend's parameter limit.
const ID_CHUNK: usize = 500;

/// Advisory lock key serialising webhook claims across PostgreSQL nodes (next to the
/// store's own keys, `0x6b61_6972_6f73_000N`).
const WEBHOOK_CLAIM_LOCK: i64 = 0x6b61_6972_6f73_0010;

impl Store {
    /// Of the attempts `ended` (run id, attempt) that `node` just completed, the runs
    /// that have a callback URL and ended for good with that very attempt.
    ///
    /// Matching the node and the attempt is the fence: a completion this node's
    /// completer dropped as stale (the run was taken back and finished elsewhere) is not
    /// delivered here, so each finish is POSTed by the node that wrote it.
    pub(crate) async fn webhook_runs(
        &self,
        node: &str,
        ended: &[(i64, u32)],
    ) -> Result<Vec<i64>, StoreError> {
        let mut out = Vec::new();
        for chunk in ended.chunks(ID_CHUNK) {
            let attempts: HashMap<i64, u32> = chunk.iter().copied().collect();
            let mut values = vec![Value::from(node.to_string())];
            values.extend(chunk.iter().map(|(id, _)| Value::from(*id)));
            let sql = format!(
                "SELECT id, attempt FROM kairos_runs WHERE id IN ({}) \
                 AND callback_url IS NOT NULL AND node_id = $1 AND finished_at IS NOT NULL",
                placeholders(2, chunk.len())
            );
            for r in self.db.query_all_raw(self.stmt(&sql, values)).await? {
                let id: i64 = r.try_get("", "id")?;
                let attempt = count(r.try_get("", "attempt")?);
                if attempts.get(&id) == Some(&attempt) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Claims, for delivery by this node, runs that ended without an attempt outcome
    /// of a node after `since`: expired, cancelled while queued (or between attempts),
    /// or failed because their node died during the final attempt. Those are the
    /// finished runs whose `node_id` is NULL; every run a completer ends keeps its
    /// node, so the two ways never deliver the same finish.
    ///
    /// A run is claimed by recording its first attempt as in progress, in a write
    /// transaction that first checks that it has no delivery yet (serialised across
    /// nodes: SQLite's write lock, an advisory lock on PostgreSQL), so one node delivers
    /// it. Returns `(run id, the attempt row to complete)`, at most `limit`.
    pub(crate) async fn claim_orphan_webhooks(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let find = "SELECT id, callback_url FROM kairos_runs \
             WHERE status IN ('expired', 'cancelled', 'failed') AND finished_at > $1 \
             AND node_id IS NULL AND callback_url IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM kairos_deliveries d WHERE d.run_id = kairos_runs.id) \
             ORDER BY finished_at LIMIT $2";
        let values = || {
            [
                Value::from(ms(since)),
                Value::from(i64::try_from(limit).unwrap_or(i64::MAX)),
            ]
        };
        // A plain read first: an idle node never takes the write lock for this.
        if self
            .db
            .query_all_raw(self.stmt(find, values()))
            .await?
            .is_empty()
        {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_with_options(write_txn()).await?;
        if self.is_pg() {
            txn.execute_raw(self.stmt(
                "SELECT pg_advisory_xact_lock($1)",
                [Value::from(WEBHOOK_CLAIM_LOCK)],
            ))
            .await?;
        }
        let mut out = Vec::new();
        for r in txn.query_all_raw(self.stmt(find, values())).await? {
            let run_id: i64 = r.try_get("", "id")?;
            let url: String = r.try_get("", "callback_url")?;
            let row = txn
                .query_one_raw(self.stmt(
                    "INSERT INTO kairos_deliveries (run_id, url, attempt, at, status_code, error, delivered) \
                     VALUES ($1, $2, 1, $3, NULL, $4, false) RETURNING id",
                    [
                        Value::from(run_id),
                        Value::from(url),
                        Value::from(ms(now)),
                        Value::from(IN_PROGRESS),
                    ],
                ))
                .await?;
            if let Some(row) = row {
                out.push((run_id, row.try_get("", "id")?));
            }
        }
        txn.commit().await?;
        Ok(out)
    }

    /// Stores the outcome of an attempt recorded as in progress (row `row`; its URL
    /// stays the one claimed).
    pub(crate) async fn complete_delivery(
        &self,
        row: i64,
        d: &RunDelivery,
    ) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "UPDATE kairos_deliveries SET at = $1, status_code = $2, error = $3, \
                 delivered = $4 WHERE id = $5",
                [
                    Value::from(ms(d.at)),
                    Value::from(d.status_code.map(i32::from)),
                    Value::from(d.error.clone()),
                    Value::from(d.delivered),
                    Value::from(row),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Records one delivery attempt.
    pub(crate) async fn add_delivery(&self, d: &RunDelivery) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "INSERT INTO kairos_deliveries (run_id, url, attempt, at, status_code, error, delivered) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [
                    Value::from(d.run_id),
                    Value::from(d.url.clone()),
                    Value::from(int(d.attempt)),
                    Value::from(ms(d.at)),
                    Value::from(d.status_code.map(i32::from)),
                    Value::from(d.error.clone()),
                    Value::from(d.delivered),
                ],
            ))
            .await?;
        Ok(())
    }

    /// A run's delivery attempts, oldest first.
    pub(crate) async fn deliveries(&self, run_id: i64) -> Result<Vec<RunDelivery>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT url, attempt, at, status_code, error, delivered FROM kairos_deliveries \
                 WHERE run_id = $1 ORDER BY id",
                [Value::from(run_id)],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let code: Option<i32> = r.try_get("", "status_code")?;
                Ok(RunDelivery {
                    run_id,
                    attempt: count(r.try_get("", "attempt")?),
                    at: from_ms(r.try_get("", "at")?),
                    url: r.try_get("", "url")?,
                    status_code: code.and_then(|c| u16::try_from(c).ok()),
                    error: r.try_get("", "error")?,
                    delivered: r.try_get("", "delivered")?,
                })
            })
            .collect()
    }
}
