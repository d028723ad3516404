//! Run queries and mutations: enqueue, claim, complete, cancel, release, list.
//!
//! # Fencing
//! Every write that ends an attempt matches `(id, attempt)`, the owning node and
//! `status = 'running'`: a worker whose run was re-queued and claimed again (after its
//! lease expired) cannot overwrite the newer attempt.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    SqliteTransactionMode, TransactionOptions, TransactionTrait, Value,
};

use super::entity::run;
use super::sql::placeholders;
use super::types::{NewRun, Run, RunFilter, RunStatus};
use super::{Store, StoreError, duration_ms, from_ms, ms};

/// Rows per multi-row INSERT; keeps well under SQLite's bound-parameter limit.
const INSERT_CHUNK: usize = 500;

/// A run handed to this node to execute.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedRun {
    /// Run id.
    pub id: i64,
    /// Task name.
    pub task: String,
    /// Job that fired it.
    pub job_id: Option<i64>,
    /// Params (raw JSON text; parsed by the executor).
    pub params: String,
    /// This attempt's number (1-based).
    pub attempt: i32,
    /// Nominal slot or requested start.
    pub scheduled_for: DateTime<Utc>,
    /// Retries allowed.
    pub max_retries: i32,
    /// Base backoff, ms.
    pub retry_delay_ms: i64,
    /// Limit of this attempt, ms.
    pub timeout_ms: i64,
    /// When this attempt was claimed (its `started_at`).
    pub started_at: DateTime<Utc>,
}

/// How one attempt ended, to be written back.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Succeeded, with the JSON result text if any.
    Succeeded {
        /// Run id.
        id: i64,
        /// Attempt.
        attempt: i32,
        /// Result JSON text.
        result: Option<String>,
    },
    /// Ended for good with a failure status (failed, timed_out or cancelled).
    Finished {
        /// Run id.
        id: i64,
        /// Attempt.
        attempt: i32,
        /// Final status.
        status: RunStatus,
        /// Error text.
        error: String,
    },
    /// Failed; try again at `run_at`.
    Retry {
        /// Run id.
        id: i64,
        /// Attempt.
        attempt: i32,
        /// Error text of this attempt.
        error: String,
        /// When to try again.
        run_at: DateTime<Utc>,
    },
    /// Not finished: hand back to the queue without counting the attempt (shutdown).
    Released {
        /// Run id.
        id: i64,
        /// Attempt.
        attempt: i32,
    },
}

impl Completion {
    fn id(&self) -> i64 {
        match self {
            Completion::Succeeded { id, .. }
            | Completion::Finished { id, .. }
            | Completion::Retry { id, .. }
            | Completion::Released { id, .. } => *id,
        }
    }
}

/// Per-task concurrency limits that a claim must respect.
#[derive(Debug, Clone, Default)]
pub struct ClaimLimits {
    /// Task name → runs allowed at once.
    pub max_instances: HashMap<String, u32>,
}

/// What `cancel_run` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was queued and is now cancelled.
    Cancelled,
    /// The run is running; its node will cancel it.
    Requested,
    /// The run had already finished with this status.
    AlreadyFinished(RunStatus),
}

const CLAIM_COLUMNS: &str =
    "id, task, job_id, params, attempt, scheduled_for, max_retries, retry_delay_ms, timeout_ms";

impl Store {
    /// Inserts runs; returns their ids in order.
    pub async fn enqueue(
        &self,
        runs: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        // Other nodes notice new runs through MAX(id) (see `change_marker`), so an
        // enqueue is just the insert: one statement, or one transaction for big batches.
        if runs.len() <= INSERT_CHUNK {
            return self
                .insert_runs(&self.db, runs, "'queued', 0", &[], now)
                .await;
        }
        let txn = self.db.begin_with_options(write_txn()).await?;
        let mut ids = Vec::with_capacity(runs.len());
        for chunk in runs.chunks(INSERT_CHUNK) {
            ids.extend(
                self.insert_runs(&txn, chunk, "'queued', 0", &[], now)
                    .await?,
            );
        }
        txn.commit().await?;
        Ok(ids)
    }

    /// Inserts one run already claimed by `node`: the fast path for work enqueued on a
    /// node with an idle worker, which then needs no separate claim.
    pub async fn enqueue_claimed(
        &self,
        run: &NewRun,
        node: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<ClaimedRun, StoreError> {
        let extra = [
            Value::from(node.to_string()),
            Value::from(ms(now)),
            Value::from(ms(now) + duration_ms(lease)),
        ];
        let id = self
            .insert_runs(
                &self.db,
                std::slice::from_ref(run),
                "'running', 1",
                &extra,
                now,
            )
            .await?[0];
        Ok(ClaimedRun {
            id,
            task: run.task.clone(),
            job_id: None,
            params: run.params.to_string(),
            attempt: 1,
            scheduled_for: run.run_at,
            max_retries: run.max_retries as i32,
            retry_delay_ms: duration_ms(run.retry_delay),
            timeout_ms: duration_ms(run.timeout),
            started_at: now,
        })
    }

    /// One multi-row INSERT. `state` is the SQL for `status, attempt`; `owner`, when
    /// given, is `node_id, started_at, lease_until` for runs inserted as running.
    async fn insert_runs<C: ConnectionTrait>(
        &self,
        conn: &C,
        runs: &[NewRun],
        state: &str,
        owner: &[Value],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let per_row = 10 + owner.len();
        let mut values = Vec::with_capacity(runs.len() * per_row);
        let mut rows = Vec::with_capacity(runs.len());
        for r in runs {
            let n = values.len();
            rows.push(format!(
                "({}, {state}, false)",
                placeholders(n + 1, per_row)
            ));
            values.extend([
                Value::from(r.task.clone()),
                Value::from(r.params.to_string()),
                Value::from(r.priority),
                Value::from(r.queue.clone()),
                Value::from(ms(r.run_at)),
                Value::from(ms(r.run_at)),
                Value::from(r.max_retries as i32),
                Value::from(duration_ms(r.retry_delay)),
                Value::from(duration_ms(r.timeout)),
                Value::from(ms(now)),
            ]);
            values.extend(owner.iter().cloned());
        }
        let owner_cols = if owner.is_empty() {
            ""
        } else {
            "node_id, started_at, lease_until, "
        };
        let sql = format!(
            "INSERT INTO kairos_runs (task, params, priority, queue, run_at, scheduled_for, \
             max_retries, retry_delay_ms, timeout_ms, created_at, {owner_cols}status, attempt, cancel_requested) \
             VALUES {} RETURNING id",
            rows.join(", ")
        );
        let mut ids = conn
            .query_all_raw(self.stmt(&sql, values))
            .await?
            .iter()
            .map(|row| row.try_get_by_index::<i64>(0))
            .collect::<Result<Vec<_>, _>>()?;
        // Ids grow in VALUES order; RETURNING does not promise an order.
        ids.sort_unstable();
        Ok(ids)
    }

    /// Claims up to `limit` due runs (run_at ≤ `due_by`) for `node`, lowest priority
    /// number first, then earliest run_at, skipping tasks at their instance limit.
    pub async fn claim(
        &self,
        node: &str,
        due_by: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
        lease: std::time::Duration,
        limits: &ClaimLimits,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let pg = self.backend == sea_orm::DbBackend::Postgres;
        let txn = self.db.begin_with_options(write_txn()).await?;
        let lock = if pg { " FOR UPDATE SKIP LOCKED" } else { "" };
        // Without statistics SQLite prefers a range scan on another index plus a sort of
        // every due row; the claim index yields rows already in claim order.
        let from = if pg {
            "kairos_runs"
        } else {
            "kairos_runs INDEXED BY kairos_runs_claim"
        };
        let ids: Vec<i64> = if limits.max_instances.is_empty() {
            let sql = format!(
                "SELECT id FROM {from} WHERE status = 'queued' AND run_at <= $1 \
                 ORDER BY priority, run_at, id LIMIT $2{lock}"
            );
            txn.query_all_raw(self.stmt(&sql, [Value::from(ms(due_by)), Value::from(limit as i64)]))
                .await?
                .iter()
                .map(|r| r.try_get_by_index::<i64>(0))
                .collect::<Result<_, _>>()?
        } else {
            // Count what already runs of each limited task, then pick candidates in
            // order while there is room. Done inside the claim transaction, so two
            // claims on SQLite (one writer) cannot both take the last slot.
            let names: Vec<&String> = limits.max_instances.keys().collect();
            let sql = format!(
                "SELECT task, COUNT(*) FROM kairos_runs WHERE status = 'running' AND task IN ({}) GROUP BY task",
                placeholders(1, names.len())
            );
            let mut room: HashMap<String, i64> = limits
                .max_instances
                .iter()
                .map(|(k, v)| (k.clone(), i64::from(*v)))
                .collect();
            for r in txn
                .query_all_raw(self.stmt(&sql, names.iter().map(|n| Value::from((*n).clone()))))
                .await?
            {
                let task: String = r.try_get_by_index(0)?;
                let n: i64 = r.try_get_by_index(1)?;
                if let Some(left) = room.get_mut(&task) {
                    *left -= n;
                }
            }
            let full: Vec<String> = room
                .iter()
                .filter(|(_, left)| **left <= 0)
                .map(|(k, _)| k.clone())
                .collect();
            let mut values = vec![Value::from(ms(due_by)), Value::from((limit * 4) as i64)];
            let exclude = if full.is_empty() {
                String::new()
            } else {
                let s = format!(" AND task NOT IN ({})", placeholders(3, full.len()));
                values.extend(full.iter().map(|t| Value::from(t.clone())));
                s
            };
            let sql = format!(
                "SELECT id, task FROM {from} WHERE status = 'queued' AND run_at <= $1{exclude} \
                 ORDER BY priority, run_at, id LIMIT $2{lock}"
            );
            let mut ids = Vec::new();
            for r in txn.query_all_raw(self.stmt(&sql, values)).await? {
                if ids.len() == limit {
                    break;
                }
                let id: i64 = r.try_get_by_index(0)?;
                let task: String = r.try_get_by_index(1)?;
                match room.get_mut(&task) {
                    Some(left) if *left <= 0 => continue,
                    Some(left) => *left -= 1,
                    None => {}
                }
                ids.push(id);
            }
            ids
        };
        if ids.is_empty() {
            txn.commit().await?;
            return Ok(Vec::new());
        }
        let mut values = vec![
            Value::from(node.to_string()),
            Value::from(ms(now)),
            Value::from(ms(now) + duration_ms(lease)),
        ];
        values.extend(ids.iter().map(|id| Value::from(*id)));
        let sql = format!(
            "UPDATE kairos_runs SET status = 'running', attempt = attempt + 1, node_id = $1, \
             started_at = $2, lease_until = $3 WHERE id IN ({}) RETURNING {CLAIM_COLUMNS}",
            placeholders(4, ids.len())
        );
        let rows = txn.query_all_raw(self.stmt(&sql, values)).await?;
        txn.commit().await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(ClaimedRun {
                    id: r.try_get_by_index(0)?,
                    task: r.try_get_by_index(1)?,
                    job_id: r.try_get_by_index(2)?,
                    params: r.try_get_by_index(3)?,
                    attempt: r.try_get_by_index(4)?,
                    scheduled_for: from_ms(r.try_get_by_index(5)?),
                    max_retries: r.try_get_by_index(6)?,
                    retry_delay_ms: r.try_get_by_index(7)?,
                    timeout_ms: r.try_get_by_index(8)?,
                    started_at: now,
                })
            })
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
        // RETURNING gives no order guarantee; start in claim order.
        let pos: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        claimed.sort_by_key(|c| pos.get(&c.id).copied().unwrap_or(usize::MAX));
        Ok(claimed)
    }

    /// Writes back how attempts ended, in one transaction. Returns how many rows
    /// matched their fence (the rest belonged to a newer attempt or another node).
    pub async fn complete(
        &self,
        node: &str,
        done: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        if done.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin_with_options(write_txn()).await?;
        let mut matched = 0usize;
        // Plain successes (no result) are the common case: one statement per distinct
        // attempt number (almost always just one), matching ids through the primary key.
        let mut plain: std::collections::BTreeMap<i32, Vec<i64>> = Default::default();
        for c in done {
            if let Completion::Succeeded {
                id,
                attempt,
                result: None,
            } = c
            {
                plain.entry(*attempt).or_default().push(*id);
            }
        }
        for (attempt, ids) in &plain {
            for chunk in ids.chunks(INSERT_CHUNK) {
                let mut values = vec![
                    Value::from(ms(now)),
                    Value::from(node.to_string()),
                    Value::from(*attempt),
                ];
                values.extend(chunk.iter().map(|id| Value::from(*id)));
                let sql = format!(
                    "UPDATE kairos_runs SET status = 'succeeded', finished_at = $1, lease_until = NULL, \
                     error = NULL WHERE id IN ({}) AND node_id = $2 AND attempt = $3 AND status = 'running'",
                    placeholders(4, chunk.len())
                );
                matched += txn
                    .execute_raw(self.stmt(&sql, values))
                    .await?
                    .rows_affected() as usize;
            }
        }
        for c in done {
            let (sql, values): (&str, Vec<Value>) = match c {
                Completion::Succeeded { result: None, .. } => continue,
                Completion::Succeeded {
                    id,
                    attempt,
                    result: Some(result),
                } => (
                    "UPDATE kairos_runs SET status = 'succeeded', finished_at = $1, lease_until = NULL, \
                     error = NULL, result = $2 WHERE id = $3 AND attempt = $4 AND node_id = $5 AND status = 'running'",
                    vec![
                        Value::from(ms(now)),
                        Value::from(result.clone()),
                        Value::from(*id),
                        Value::from(*attempt),
                        Value::from(node.to_string()),
                    ],
                ),
                Completion::Finished {
                    id,
                    attempt,
                    status,
                    error,
                } => (
                    "UPDATE kairos_runs SET status = $1, finished_at = $2, lease_until = NULL, error = $3 \
                     WHERE id = $4 AND attempt = $5 AND node_id = $6 AND status = 'running'",
                    vec![
                        Value::from(status.as_str()),
                        Value::from(ms(now)),
                        Value::from(error.clone()),
                        Value::from(*id),
                        Value::from(*attempt),
                        Value::from(node.to_string()),
                    ],
                ),
                Completion::Retry {
                    id,
                    attempt,
                    error,
                    run_at,
                } => (
                    "UPDATE kairos_runs SET status = 'queued', run_at = $1, error = $2, node_id = NULL, \
                     lease_until = NULL WHERE id = $3 AND attempt = $4 AND node_id = $5 AND status = 'running'",
                    vec![
                        Value::from(ms(*run_at)),
                        Value::from(error.clone()),
                        Value::from(*id),
                        Value::from(*attempt),
                        Value::from(node.to_string()),
                    ],
                ),
                Completion::Released { id, attempt } => (
                    "UPDATE kairos_runs SET status = 'queued', attempt = attempt - 1, node_id = NULL, \
                     lease_until = NULL, started_at = NULL WHERE id = $1 AND attempt = $2 AND node_id = $3 \
                     AND status = 'running'",
                    vec![
                        Value::from(*id),
                        Value::from(*attempt),
                        Value::from(node.to_string()),
                    ],
                ),
            };
            matched += txn
                .execute_raw(self.stmt(sql, values))
                .await?
                .rows_affected() as usize;
        }
        txn.commit().await?;
        if matched < done.len() {
            tracing::warn!(
                stale = done.len() - matched,
                first = done.first().map(Completion::id),
                "some completions no longer owned by this node were discarded"
            );
        }
        Ok(matched)
    }

    /// Cancels a queued run at once, or asks the owning node to cancel a running one.
    pub async fn cancel_run(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let row = txn
            .query_one_raw(self.stmt(
                "SELECT status FROM kairos_runs WHERE id = $1",
                [Value::from(id)],
            ))
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        let status: String = row.try_get_by_index(0)?;
        let status: RunStatus = status.parse().map_err(|message| StoreError::Corrupt {
            table: "kairos_runs",
            id: id.to_string(),
            message,
        })?;
        let outcome = match status {
            RunStatus::Queued => {
                txn.execute_raw(self.stmt(
                    "UPDATE kairos_runs SET status = 'cancelled', finished_at = $1, cancel_requested = true, \
                     error = 'cancelled while queued' WHERE id = $2 AND status = 'queued'",
                    [Value::from(ms(now)), Value::from(id)],
                ))
                .await?;
                CancelOutcome::Cancelled
            }
            RunStatus::Running => {
                txn.execute_raw(self.stmt(
                    "UPDATE kairos_runs SET cancel_requested = true WHERE id = $1",
                    [Value::from(id)],
                ))
                .await?;
                CancelOutcome::Requested
            }
            finished => CancelOutcome::AlreadyFinished(finished),
        };
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(outcome)
    }

    /// Running runs of `node` that an operator asked to cancel: (id, attempt).
    pub async fn cancel_requests(&self, node: &str) -> Result<Vec<(i64, i32)>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT id, attempt FROM kairos_runs WHERE status = 'running' AND node_id = $1 AND cancel_requested",
                [Value::from(node.to_string())],
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
            .collect()
    }

    /// Puts back in the queue the running runs whose lease expired (their node died),
    /// so another node runs them again; returns how many.
    pub async fn requeue_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = self
            .db
            .execute_raw(self.stmt(
                "UPDATE kairos_runs SET status = 'queued', node_id = NULL, lease_until = NULL, \
                 error = 'lease expired: the node running it stopped or stalled' \
                 WHERE status = 'running' AND lease_until < $1",
                [Value::from(ms(now))],
            ))
            .await?;
        if res.rows_affected() > 0 {
            // Re-queued runs keep their ids: tell idle nodes through the counter.
            bump(&self.db, self).await?;
        }
        Ok(res.rows_affected())
    }

    /// Extends the lease of every run `node` is running.
    pub async fn renew_leases(&self, node: &str, until: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = self
            .db
            .execute_raw(self.stmt(
                "UPDATE kairos_runs SET lease_until = $1 WHERE status = 'running' AND node_id = $2",
                [Value::from(ms(until)), Value::from(node.to_string())],
            ))
            .await?;
        Ok(res.rows_affected())
    }

    /// The earliest `run_at` among queued runs.
    pub async fn next_queued_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT MIN(run_at) FROM kairos_runs WHERE status = 'queued'",
                [],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get_by_index::<Option<i64>>(0)?.map(from_ms),
            None => None,
        })
    }

    /// One run.
    pub async fn run(&self, id: i64) -> Result<Run, StoreError> {
        let m = run::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        let mut r = Run::try_from(m)?;
        if let Some(job_id) = r.job_id {
            r.job = self.job_names(&[job_id]).await?.remove(&job_id);
        }
        Ok(r)
    }

    /// Runs matching `filter`, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let mut q = run::Entity::find();
        if let Some(s) = filter.status {
            q = q.filter(run::Column::Status.eq(s.as_str()));
        }
        if let Some(t) = &filter.task {
            q = q.filter(run::Column::Task.eq(t.as_str()));
        }
        if let Some(j) = filter.job_id {
            q = q.filter(run::Column::JobId.eq(j));
        }
        let models = q
            .order_by_desc(run::Column::Id)
            .limit(filter.limit.unwrap_or(50))
            .all(&self.db)
            .await?;
        let mut runs = models
            .into_iter()
            .map(Run::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let job_ids: Vec<i64> = runs.iter().filter_map(|r| r.job_id).collect();
        if !job_ids.is_empty() {
            let names = self.job_names(&job_ids).await?;
            for r in &mut runs {
                r.job = r.job_id.and_then(|j| names.get(&j).cloned());
            }
        }
        Ok(runs)
    }

    /// How many runs are queued and how many running. Reads only the partial indexes
    /// of unfinished runs, so it stays cheap however many finished runs are kept.
    pub async fn open_run_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT (SELECT COUNT(*) FROM kairos_runs WHERE status = 'queued'), \
                 (SELECT COUNT(*) FROM kairos_runs WHERE status = 'running')",
                [],
            ))
            .await?;
        Ok(match row {
            Some(r) => (r.try_get_by_index(0)?, r.try_get_by_index(1)?),
            None => (0, 0),
        })
    }
}

/// Write transactions take SQLite's write lock up front: a deferred transaction that
/// reads and then writes can fail with SQLITE_BUSY when another writer got in between.
pub(crate) fn write_txn() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    }
}

/// Tells the other processes that something changed.
pub(crate) async fn bump<C: ConnectionTrait>(conn: &C, store: &Store) -> Result<(), StoreError> {
    conn.execute_raw(store.stmt(
        "UPDATE kairos_meta SET value = value + 1 WHERE key = 'change_seq'",
        [],
    ))
    .await?;
    Ok(())
}
