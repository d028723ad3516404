//! Ending attempts: writing outcomes back in batches, the run history, operators'
//! cancel requests, and the leases that hand a dead node's runs to the others.
//!
//! # Fencing
//! Every write that ends an attempt matches `(id, attempt)`, the owning node and
//! `status = 'running'`: a worker whose run was re-queued and claimed again (after its
//! lease expired) cannot overwrite the newer attempt.
//!
//! # Cancellation wins
//! Once an operator asked to cancel a run (`cancel_requested`), the attempt's outcome
//! is written as `cancelled` whatever the task returned, unless the run had already
//! finished: the decision is made by the completing statement itself, so a cancel that
//! lands between the task's return and the write is not lost.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};
use serde_json::Value as Json;

use super::codec::{count, from_ms, int, ms};
use super::runs::INSERT_CHUNK;
use super::sql::{RUNNING_BY_ID, placeholders};
use super::{Store, StoreError, bump, write_txn};
use crate::model::{RunEventKind, RunStatus};

/// How one attempt ended, to be written back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Completion {
    /// Succeeded, with its JSON result if any.
    Succeeded {
        id: i64,
        attempt: u32,
        result: Option<Json>,
    },
    /// Ended for good with a failure status (failed, timed_out or cancelled).
    Finished {
        id: i64,
        attempt: u32,
        status: RunStatus,
        error: String,
        /// Claimed ahead of its time and ended (cancelled) before it started: the
        /// attempt is not counted and the run shows no start.
        unstarted: bool,
    },
    /// Failed; try again at `run_at`.
    Retry {
        id: i64,
        attempt: u32,
        error: String,
        run_at: DateTime<Utc>,
    },
    /// The task asked to run again at `run_at` without using up the attempt.
    Snoozed {
        id: i64,
        attempt: u32,
        run_at: DateTime<Utc>,
        note: String,
    },
    /// Not finished: hand back to the queue without counting the attempt.
    Released { id: i64, attempt: u32, why: Release },
}

/// Why an unfinished attempt went back to the queue (see [`Completion::Released`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// The node shut down before the attempt ended.
    Shutdown,
    /// The node could not renew the run's lease for a whole lease (the database was
    /// out of reach), and stopped the attempt rather than run beside another node's.
    LeaseLost,
}

impl Release {
    /// What the run's history says.
    fn note(self) -> &'static str {
        match self {
            // After the event's name: "released: its node shut down ...".
            Release::Shutdown => "its node shut down before the attempt ended",
            Release::LeaseLost => {
                "its node could not renew the lease for a whole lease (the database was \
                 out of reach), and stopped the attempt"
            }
        }
    }
}

impl Completion {
    pub(crate) fn id(&self) -> i64 {
        match self {
            Completion::Succeeded { id, .. }
            | Completion::Finished { id, .. }
            | Completion::Retry { id, .. }
            | Completion::Snoozed { id, .. }
            | Completion::Released { id, .. } => *id,
        }
    }
}

impl Store {
    /// Writes back how attempts ended, in one transaction (or one statement). Returns
    /// the final status of each completion that matched its fence (the rest belonged to
    /// a newer attempt or another node, and are dropped with a warning); successes only
    /// with `with_successes`.
    pub(crate) async fn complete(
        &self,
        node: &str,
        done: &[Completion],
        now: DateTime<Utc>,
        with_successes: bool,
    ) -> Result<HashMap<i64, RunStatus>, StoreError> {
        let mut out = HashMap::new();
        if done.is_empty() {
            return Ok(out);
        }
        let _turn = self.write_turn().await;
        let mut matched = 0usize;
        // Plain successes (no result) are the common case: one statement per distinct
        // attempt number (almost always just one), matching ids through the primary key.
        let mut plain: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
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
        // Successes with a result: one statement per distinct attempt number and chunk,
        // the results passed as one JSON object.
        let mut with_result: BTreeMap<u32, Vec<(i64, String)>> = BTreeMap::new();
        for c in done {
            if let Completion::Succeeded {
                id,
                attempt,
                result: Some(result),
            } = c
            {
                with_result
                    .entry(*attempt)
                    .or_default()
                    .push((*id, result.to_string()));
            }
        }
        // A batch of successes that is one statement needs no transaction around it:
        // on SQLite a transaction holds the write lock across round trips, and the
        // node's claims wait for it (a batch of results took 2.5 ms instead of 0.7).
        let statements = plain
            .values()
            .map(|v| v.len().div_ceil(INSERT_CHUNK))
            .sum::<usize>()
            + with_result
                .values()
                .map(|v| v.len().div_ceil(RESULT_CHUNK))
                .sum::<usize>();
        let only_successes = done
            .iter()
            .all(|c| matches!(c, Completion::Succeeded { .. }));
        let batch = Successes {
            node,
            now,
            with_successes,
        };
        if statements == 1 && only_successes {
            for (attempt, ids) in &plain {
                matched += self
                    .complete_plain(&self.db, &batch, *attempt, ids, &mut out)
                    .await?;
            }
            for (attempt, rows) in &with_result {
                matched += self
                    .complete_results(&self.db, &batch, *attempt, rows, &mut out)
                    .await?;
            }
            warn_stale(done, matched);
            return Ok(out);
        }
        let txn = self.db.begin_with_options(write_txn()).await?;
        for (attempt, ids) in &plain {
            for chunk in ids.chunks(INSERT_CHUNK) {
                matched += self
                    .complete_plain(&txn, &batch, *attempt, chunk, &mut out)
                    .await?;
            }
        }
        for (attempt, rows) in &with_result {
            for chunk in rows.chunks(RESULT_CHUNK) {
                matched += self
                    .complete_results(&txn, &batch, *attempt, chunk, &mut out)
                    .await?;
            }
        }
        let mut released = false;
        for c in done {
            let fence = |id: i64, attempt: u32, first: usize| {
                (
                    format!(
                        "WHERE id = ${} AND attempt = ${} AND node_id = ${} AND {RUNNING_BY_ID} \
                         RETURNING status, cancel_requested, error",
                        first,
                        first + 1,
                        first + 2
                    ),
                    [
                        Value::from(id),
                        Value::from(int(attempt)),
                        Value::from(node.to_string()),
                    ],
                )
            };
            let Some(Update {
                set,
                mut values,
                event,
            }) = c.update(now)
            else {
                continue;
            };
            let (id, attempt) = (c.id(), c.attempt());
            let (where_, fence_values) = fence(id, attempt, values.len() + 1);
            values.extend(fence_values);
            let sql = format!("UPDATE kairos_runs SET {set} {where_}");
            let Some(row) = txn.query_one_raw(self.stmt(&sql, values)).await? else {
                continue;
            };
            matched += 1;
            released |= matches!(c, Completion::Released { .. });
            let status: String = row.try_get("", "status")?;
            let status: RunStatus = status.parse().unwrap_or(RunStatus::Failed);
            out.insert(id, status);
            if let Some((kind, message)) = event {
                // A cancel that won says why the row does: an operator, a newer run that
                // replaced it, its job's deletion; not how the stopped attempt ended.
                let (kind, message) = match status {
                    RunStatus::Cancelled => (
                        RunEventKind::Cancelled,
                        row.try_get::<Option<String>>("", "error")?
                            .unwrap_or(message),
                    ),
                    _ => (kind, message),
                };
                self.add_history(&txn, id, attempt, now, kind, Some(&message), Some(node))
                    .await?;
            }
        }
        // Runs released by a node that is stopping are due at once, and only the other
        // nodes can run them: the counter wakes them (as for runs taken back from a
        // dead node), where an update of a queued run's row would tell nobody.
        if released {
            bump(&txn, self).await?;
        }
        txn.commit().await?;
        warn_stale(done, matched);
        Ok(out)
    }

    /// Completes successes with a result of one attempt number (at most
    /// [`RESULT_CHUNK`]), the results passed as one JSON object; returns how many rows
    /// matched. With `with_successes`, the statuses they were stored with go into `out`.
    async fn complete_results<C: ConnectionTrait>(
        &self,
        conn: &C,
        batch: &Successes<'_>,
        attempt: u32,
        rows: &[(i64, String)],
        out: &mut HashMap<i64, RunStatus>,
    ) -> Result<usize, StoreError> {
        let mut values = batch.values(attempt);
        let returning = if batch.with_successes {
            " RETURNING kairos_runs.id, kairos_runs.status"
        } else {
            ""
        };
        let set = format!(
            "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'succeeded' END, \
             error = {}, finished_at = $1, lease_until = NULL",
            cancelled_error()
        );
        let fence = format!(
            "kairos_runs.node_id = $2 AND kairos_runs.attempt = $3 AND kairos_runs.{RUNNING_BY_ID}"
        );
        // The results travel as one JSON object (id → the result's text, as a string,
        // so that it is stored byte for byte): one parameter, whatever the batch's
        // size, so the statement's text is the same for every batch on SQLite and is
        // prepared once. A VALUES list of two parameters a row made SQLite parse a
        // statement of up to 500 parameters for nearly every batch (the batches'
        // sizes vary, more than the statement cache holds), and completing a run
        // with a result cost 3.5 times one without.
        let map: serde_json::Map<String, Json> = rows
            .iter()
            .map(|(id, result)| (id.to_string(), Json::String(result.clone())))
            .collect();
        values.push(Value::from(Json::Object(map).to_string()));
        let sql = if self.is_pg() {
            // The object is looked up per row, the rows found by primary key like
            // plain successes; it is parsed once per statement (a subquery of its
            // own), not once per row as a cast of a parameter would be under a generic
            // plan. Joined to a VALUES list instead, PostgreSQL estimated that few of
            // the listed runs are running (most runs are not) and compared each row
            // with every value: a fifth of the throughput.
            values.extend(rows.iter().map(|(id, _)| Value::from(*id)));
            format!(
                "UPDATE kairos_runs SET {set}, result = (SELECT CAST($4 AS JSONB)) ->> CAST(id AS TEXT) \
                 WHERE id IN ({}) AND {fence}{returning}",
                placeholders(5, rows.len())
            )
        } else {
            // SQLite reads the object's entries once and looks each run up by rowid.
            format!(
                "WITH v (id, result) AS (SELECT CAST(key AS INTEGER), value FROM json_each($4)) \
                 UPDATE kairos_runs SET {set}, result = v.result \
                 FROM v WHERE kairos_runs.id = v.id AND {fence}{returning}"
            )
        };
        self.end_successes(conn, batch, &sql, values, out).await
    }

    /// Completes plain successes (no result) of one attempt number; returns how many
    /// rows matched (attempts this node still owned). With `with_successes`, the
    /// statuses they were stored with go into `out`.
    async fn complete_plain<C: ConnectionTrait>(
        &self,
        conn: &C,
        batch: &Successes<'_>,
        attempt: u32,
        ids: &[i64],
        out: &mut HashMap<i64, RunStatus>,
    ) -> Result<usize, StoreError> {
        let mut values = batch.values(attempt);
        values.extend(ids.iter().map(|id| Value::from(*id)));
        let sql = plain_success_sql(ids.len(), batch.with_successes);
        self.end_successes(conn, batch, &sql, values, out).await
    }

    /// Runs a statement that ends successes; returns how many rows it matched. Reading
    /// a row back per success is a measurable share of the hot path: the statuses are
    /// read (into `out`) only when someone (a hook, an event subscriber) needs them.
    async fn end_successes<C: ConnectionTrait>(
        &self,
        conn: &C,
        batch: &Successes<'_>,
        sql: &str,
        values: Vec<Value>,
        out: &mut HashMap<i64, RunStatus>,
    ) -> Result<usize, StoreError> {
        if !batch.with_successes {
            return Ok(conn
                .execute_raw(self.stmt(sql, values))
                .await?
                .rows_affected() as usize);
        }
        let rows = conn.query_all_raw(self.stmt(sql, values)).await?;
        for r in &rows {
            let status: String = r.try_get("", "status")?;
            out.insert(
                r.try_get("", "id")?,
                status.parse().unwrap_or(RunStatus::Succeeded),
            );
        }
        Ok(rows.len())
    }

    /// Appends an entry to a run's history.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn add_history<C: ConnectionTrait>(
        &self,
        conn: &C,
        run_id: i64,
        attempt: u32,
        at: DateTime<Utc>,
        event: RunEventKind,
        message: Option<&str>,
        node: Option<&str>,
    ) -> Result<(), StoreError> {
        conn.execute_raw(self.stmt(
            "INSERT INTO kairos_run_history (run_id, attempt, at, event, message, node_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            [
                Value::from(run_id),
                Value::from(int(attempt)),
                Value::from(ms(at)),
                Value::from(event.as_str()),
                Value::from(message.map(str::to_string)),
                Value::from(node.map(str::to_string)),
            ],
        ))
        .await?;
        Ok(())
    }

    /// Running runs of `node` that an operator asked to cancel: (id, attempt).
    pub(crate) async fn cancel_requests(&self, node: &str) -> Result<Vec<(i64, u32)>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT id, attempt FROM kairos_runs WHERE status = 'running' AND node_id = $1 AND cancel_requested",
                [Value::from(node.to_string())],
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("", "id")?, count(r.try_get("", "attempt")?))))
            .collect()
    }

    /// Takes back the running runs whose lease expired (their node died or stalled).
    /// It takes the write lock: a beat calls it only when [`Store::heartbeat`] found
    /// an ended lease (or it just declared a node dead).
    ///
    /// # Recovery and attempts
    /// The lost attempt counts: it started, and may have had effects. A run with
    /// attempts left goes back to the queue (due now) for its next attempt; a run whose
    /// lost attempt was its last ends `failed`. So `attempt` never exceeds
    /// `max_retries + 1`. Returns the runs taken back and what became of each.
    pub(crate) async fn recover_expired(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<TakenBack>, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let rows = txn
            .query_all_raw(self.stmt(
                "SELECT id, task, job_id, attempt, max_retries, node_id, cancel_requested \
                 FROM kairos_runs WHERE status = 'running' AND lease_until < $1",
                [Value::from(ms(now))],
            ))
            .await?;
        if rows.is_empty() {
            txn.commit().await?;
            return Ok(Vec::new());
        }
        let mut taken = Vec::new();
        for r in rows {
            let id: i64 = r.try_get("", "id")?;
            let attempt = count(r.try_get("", "attempt")?);
            let max_retries = count(r.try_get("", "max_retries")?);
            let node: Option<String> = r.try_get("", "node_id")?;
            let cancelling: bool = r.try_get("", "cancel_requested")?;
            let last = attempt > max_retries;
            // A run an operator was cancelling ends cancelled either way (the updates
            // below say so too), and its history says that, not that it was retried.
            let (message, kind) = if cancelling {
                (
                    "cancelled: its node stopped renewing the lease before the attempt ended",
                    RunEventKind::Cancelled,
                )
            } else if last {
                (
                    "its node stopped renewing the lease during the final attempt",
                    RunEventKind::Recovered,
                )
            } else {
                (
                    "its node stopped renewing the lease; the attempt was taken back",
                    RunEventKind::Recovered,
                )
            };
            let sql = if last {
                format!(
                    "UPDATE kairos_runs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END, \
                     finished_at = $1, error = $2, node_id = NULL, lease_until = NULL \
                     WHERE id = $3 AND attempt = $4 AND {RUNNING_BY_ID}"
                )
            } else {
                format!(
                    "UPDATE kairos_runs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
                     finished_at = CASE WHEN cancel_requested THEN $1 ELSE NULL END, run_at = $1, error = $2, \
                     node_id = NULL, lease_until = NULL, \
                     progress = CASE WHEN cancel_requested THEN progress END, \
                     progress_message = CASE WHEN cancel_requested THEN progress_message END, \
                     stage = CASE WHEN cancel_requested THEN stage END \
                     WHERE id = $3 AND attempt = $4 AND {RUNNING_BY_ID}"
                )
            };
            let res = txn
                .execute_raw(self.stmt(
                    &sql,
                    [
                        Value::from(ms(now)),
                        Value::from(message),
                        Value::from(id),
                        Value::from(int(attempt)),
                    ],
                ))
                .await?;
            if res.rows_affected() == 0 {
                continue;
            }
            taken.push(TakenBack {
                id,
                task: r.try_get("", "task")?,
                job_id: r.try_get("", "job_id")?,
                attempt,
                status: match (cancelling, last) {
                    (true, _) => RunStatus::Cancelled,
                    (false, true) => RunStatus::Failed,
                    (false, false) => RunStatus::Queued,
                },
                why: message,
            });
            self.add_history(&txn, id, attempt, now, kind, Some(message), node.as_deref())
                .await?;
        }
        // Re-queued runs keep their ids: tell idle nodes through the counter.
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(taken)
    }

    /// Extends the leases of `attempts`, the (id, attempt) pairs `node` is running;
    /// returns those it still owns: one missing here was taken back.
    ///
    /// Only the attempts the node knows of are renewed: a run the database shows as
    /// the node's but that the node does not run (its claim committed, but the answer
    /// was lost with the connection) has its lease run out and is taken back, instead
    /// of being kept running forever by a live node.
    ///
    /// On PostgreSQL, rows another transaction holds are skipped: the node's own
    /// completions lock the runs they end, and waiting on each other the two
    /// deadlocked (a stall of a second, then an error). A skipped run still counts as
    /// owned if it was at the statement's start, and its lease is extended at the next
    /// renewal (a third of a lease later).
    pub(crate) async fn renew_leases(
        &self,
        node: &str,
        attempts: &[(i64, u32)],
        until: DateTime<Utc>,
    ) -> Result<Vec<(i64, u32)>, StoreError> {
        let _turn = self.periodic_write_turn().await;
        let mut owned = Vec::with_capacity(attempts.len());
        for chunk in attempts.chunks(INSERT_CHUNK) {
            let ids = placeholders(3, chunk.len());
            let mine = format!("id IN ({ids}) AND node_id = $2 AND {RUNNING_BY_ID}");
            let sql = if self.is_pg() {
                format!(
                    "WITH mine AS (SELECT id, attempt FROM kairos_runs WHERE {mine}), \
                     renewed AS (UPDATE kairos_runs SET lease_until = $1 WHERE id IN \
                     (SELECT id FROM kairos_runs WHERE {mine} FOR UPDATE SKIP LOCKED) RETURNING id) \
                     SELECT id, attempt FROM mine"
                )
            } else {
                format!(
                    "UPDATE kairos_runs SET lease_until = $1 WHERE {mine} RETURNING id, attempt"
                )
            };
            let mut values = vec![Value::from(ms(until)), Value::from(node.to_string())];
            values.extend(chunk.iter().map(|(id, _)| Value::from(*id)));
            for r in self.db.query_all_raw(self.stmt(&sql, values)).await? {
                owned.push((r.try_get("", "id")?, count(r.try_get("", "attempt")?)));
            }
        }
        Ok(owned)
    }

    /// The earliest `run_at` after `after` among queued runs.
    pub(crate) async fn next_queued_after(
        &self,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                // `attempt >= 0` matches the predicate of `kairos_runs_next_due`.
                "SELECT MIN(run_at) AS t FROM kairos_runs WHERE status = 'queued' AND attempt >= 0 \
                 AND run_at > $1",
                [Value::from(ms(after))],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<i64>>("", "t")?.map(from_ms),
            None => None,
        })
    }
}

/// What every statement of a batch of successes shares.
struct Successes<'a> {
    node: &'a str,
    now: DateTime<Utc>,
    /// Whether the statuses the runs were stored with are wanted.
    with_successes: bool,
}

impl Successes<'_> {
    /// The values `$1` (time), `$2` (node) and `$3` (attempt) of a statement.
    fn values(&self, attempt: u32) -> Vec<Value> {
        vec![
            Value::from(ms(self.now)),
            Value::from(self.node.to_string()),
            Value::from(int(attempt)),
        ]
    }
}

/// Successes with a result per statement at most: their JSON object is one parameter,
/// but PostgreSQL's statement lists their ids too, and the object is held in memory.
const RESULT_CHUNK: usize = INSERT_CHUNK / 2;

/// The error a success writes: none, or why the run was being cancelled (an operator,
/// or `overlap = "replace"` or its job's deletion, whose reason is already there).
fn cancelled_error() -> String {
    format!(
        "CASE WHEN cancel_requested AND (error = '{}' OR error = '{}') THEN error \
         WHEN cancel_requested THEN 'cancelled by operator' ELSE NULL END",
        super::REPLACED,
        super::JOB_DELETED
    )
}

/// The statement that ends `n` attempts as plain successes: `$1` the time, `$2` the
/// node, `$3` the attempt, then the ids.
pub(super) fn plain_success_sql(n: usize, with_successes: bool) -> String {
    format!(
        "UPDATE kairos_runs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'succeeded' END, \
         error = {}, finished_at = $1, lease_until = NULL \
         WHERE id IN ({}) AND node_id = $2 AND attempt = $3 AND {RUNNING_BY_ID}{}",
        cancelled_error(),
        placeholders(4, n),
        if with_successes {
            " RETURNING id, status"
        } else {
            ""
        }
    )
}

/// A run taken back from a node that stopped renewing its lease.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TakenBack {
    pub(crate) id: i64,
    pub(crate) task: String,
    pub(crate) job_id: Option<i64>,
    /// The attempt that was lost.
    pub(crate) attempt: u32,
    /// `queued` for its next attempt, or how it ended: `failed` (that was its last),
    /// `cancelled` (an operator was cancelling it).
    pub(crate) status: RunStatus,
    /// What its history says.
    pub(crate) why: &'static str,
}

/// One completion's `SET` clause, its values, and the history entry it adds.
struct Update {
    set: &'static str,
    values: Vec<Value>,
    event: Option<(RunEventKind, String)>,
}

impl Completion {
    pub(crate) fn attempt(&self) -> u32 {
        match self {
            Completion::Succeeded { attempt, .. }
            | Completion::Finished { attempt, .. }
            | Completion::Retry { attempt, .. }
            | Completion::Snoozed { attempt, .. }
            | Completion::Released { attempt, .. } => *attempt,
        }
    }

    /// `None` for a plain success, which is written in bulk.
    fn update(&self, now: DateTime<Utc>) -> Option<Update> {
        Some(match self {
            // Successes are written in batches (see `complete`).
            Completion::Succeeded { .. } => return None,
            Completion::Finished {
                status,
                error,
                unstarted,
                ..
            } => Update {
                // A run that `overlap = "replace"` or its job's deletion cancelled
                // keeps saying so.
                set: "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE $1 END, \
                         error = CASE WHEN cancel_requested AND (error = $4 OR error = $5) \
                         THEN error ELSE $2 END, finished_at = $3, lease_until = NULL, \
                         attempt = attempt - $6, started_at = CASE WHEN $6 = 1 THEN NULL ELSE started_at END",
                values: vec![
                    Value::from(status.as_str()),
                    Value::from(error.clone()),
                    Value::from(ms(now)),
                    Value::from(super::REPLACED),
                    Value::from(super::JOB_DELETED),
                    Value::from(i32::from(*unstarted)),
                ],
                event: Some((
                    match status {
                        RunStatus::TimedOut => RunEventKind::TimedOut,
                        RunStatus::Cancelled => RunEventKind::Cancelled,
                        _ => RunEventKind::Failed,
                    },
                    error.clone(),
                )),
            },
            Completion::Retry { error, run_at, .. } => Update {
                set: "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
                         finished_at = CASE WHEN cancel_requested THEN $1 ELSE NULL END, \
                         run_at = $2, error = $3, node_id = NULL, lease_until = NULL, \
                         progress = CASE WHEN cancel_requested THEN progress END, \
                         progress_message = CASE WHEN cancel_requested THEN progress_message END, \
                         stage = CASE WHEN cancel_requested THEN stage END",
                values: vec![
                    Value::from(ms(now)),
                    Value::from(ms(*run_at)),
                    Value::from(error.clone()),
                ],
                event: Some((RunEventKind::Retried, error.clone())),
            },
            Completion::Snoozed { run_at, note, .. } => Update {
                set: "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
                         finished_at = CASE WHEN cancel_requested THEN $1 ELSE NULL END, \
                         attempt = attempt - 1, run_at = $2, node_id = NULL, lease_until = NULL, started_at = NULL, \
                         progress = CASE WHEN cancel_requested THEN progress END, \
                         progress_message = CASE WHEN cancel_requested THEN progress_message END, \
                         stage = CASE WHEN cancel_requested THEN stage END",
                values: vec![Value::from(ms(now)), Value::from(ms(*run_at))],
                event: Some((RunEventKind::Snoozed, note.clone())),
            },
            Completion::Released { why, .. } => Update {
                set: "status = 'queued', attempt = attempt - 1, node_id = NULL, lease_until = NULL, \
                         started_at = NULL, progress = NULL, progress_message = NULL, stage = NULL",
                values: vec![],
                event: Some((RunEventKind::Released, why.note().to_string())),
            },
        })
    }
}

/// Logs outcomes the database refused because their attempt was no longer this node's.
fn warn_stale(done: &[Completion], matched: usize) {
    if matched < done.len() {
        tracing::warn!(
            stale = done.len() - matched,
            first = done.first().map(Completion::id),
            "some outcomes were for attempts this node no longer owns; discarded"
        );
    }
}
