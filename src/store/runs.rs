//! Enqueueing runs: multi-row inserts, idempotency keys, tags, and the fast path that
//! inserts a run already claimed by an idle node. Other nodes notice new runs through
//! the highest run id (see `Store::change_marker`), so an enqueue is just the insert.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};
use serde_json::Value as Json;

use super::claim::ClaimedRun;
use super::codec::{duration_ms, int, ms};
use super::sql::placeholders;
use super::{Store, StoreError, write_txn};
use crate::model::RunOrigin;

/// Ids per `IN (...)` list and rows per multi-row INSERT of small rows; keeps well
/// under SQLite's bound-parameter limit, and PostgreSQL plans longer `IN` lists worse.
pub(super) const INSERT_CHUNK: usize = 500;
/// Runs per multi-row INSERT (14 parameters each). Larger statements were slower on
/// PostgreSQL (measured with the benchmark: 1,000 rows per statement enqueued at half
/// the rate of two statements of 500).
const RUN_CHUNK: usize = 500;

/// An enqueue refused whole: the idempotency key of one of its runs belongs to an
/// unfinished run of another task or with other params. Returning that run instead
/// would hand the caller a run of something it did not ask for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyTaken {
    /// The refused run's place in the request.
    pub(crate) index: usize,
    /// The key.
    pub(crate) key: String,
    /// The run holding it.
    pub(crate) id: i64,
    /// That run's task.
    pub(crate) task: String,
    /// That run's status (`queued` or `running`).
    pub(crate) status: String,
}

/// Why an enqueue failed: the database, or a key held by a different request.
#[derive(Debug)]
pub(crate) enum EnqueueError {
    Store(StoreError),
    KeyTaken(KeyTaken),
}

impl From<StoreError> for EnqueueError {
    fn from(e: StoreError) -> Self {
        EnqueueError::Store(e)
    }
}

impl From<sea_orm::DbErr> for EnqueueError {
    fn from(e: sea_orm::DbErr) -> Self {
        EnqueueError::Store(e.into())
    }
}

/// A run to insert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewRun {
    pub(crate) task: String,
    pub(crate) queue: String,
    pub(crate) job_id: Option<i64>,
    pub(crate) origin: RunOrigin,
    pub(crate) params: Json,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) run_at: DateTime<Utc>,
    pub(crate) scheduled_for: DateTime<Utc>,
    pub(crate) priority: i32,
    pub(crate) max_retries: u32,
    pub(crate) retry_delay: Duration,
    pub(crate) timeout: Duration,
    pub(crate) idempotency_key: Option<String>,
    /// Still queued at this time, the run ends `expired`.
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// Where the finished run is POSTed.
    pub(crate) callback_url: Option<String>,
}

impl NewRun {
    /// The run a job makes for its slot `slot` (or, for a manual trigger, now).
    pub(crate) fn of_job(
        job: &crate::model::Job,
        policy: &crate::job::TaskPolicy,
        slot: DateTime<Utc>,
        origin: RunOrigin,
    ) -> NewRun {
        NewRun {
            task: job.task.clone(),
            queue: policy.queue.clone(),
            job_id: Some(job.id),
            origin,
            params: job.params.clone(),
            tags: BTreeMap::new(),
            run_at: slot,
            scheduled_for: slot,
            priority: job.priority.unwrap_or(policy.priority),
            max_retries: policy.max_retries,
            retry_delay: policy.retry_delay,
            timeout: policy.timeout,
            idempotency_key: None,
            expires_at: None,
            callback_url: job.callback_url.clone(),
        }
    }
}

/// The most runs an insert announces with their ids (see [`announce`]). A larger batch
/// is left to the trigger's plain notification: a node claims only as many runs as it
/// has free slots on hearing it, and its dispatcher claims the rest anyway, so the ids
/// would save little there, while the announcement costs a big insert a few percent.
pub(crate) const ANNOUNCED_AT_MOST: usize = 64;

/// On PostgreSQL, wraps `insert` (an `INSERT .. RETURNING id` into `kairos_runs`) so
/// that the statement announces the runs it adds itself, with their ids, instead of
/// leaving it to the `kairos_notify` trigger, whose notification cannot carry them. A
/// node that hears the ids claims those runs through the primary key (see
/// `Announced`). With `notify` false (runs inserted already claimed, which no other
/// node needs to hear of) the statement only silences the trigger.
///
/// The trigger stands down for a statement that set `kairos.announced` to its own
/// start time, which this one does whether or not it adds a run: an insert that adds
/// none (its idempotency key already taken, or a claimed insert refused because
/// something is paused) has nothing to announce. The setting is made on the side of
/// the final join that is always read, since PostgreSQL skips the other side of a join
/// whose first side is empty; the statement then returns one row with a null id.
///
/// With `expiring`, the insert returns `expires_at` too, and the notification tells
/// when the earliest of the runs' times to live ends, so that nodes expire them on
/// time (see `runtime::expiry`).
fn announce(insert: &str, notify: bool, expiring: bool) -> String {
    let expiry = if expiring {
        " || coalesce('@' || min(expires_at), '')"
    } else {
        ""
    };
    let (announced, joined) = if notify {
        (
            format!(
                ", announced AS (SELECT pg_notify('{}', '{}' || min(id) || '-' || max(id){expiry} \
                 || ' ' || current_setting('application_name')) FROM ins HAVING count(*) > 0)",
                super::migration::NOTIFY_CHANNEL,
                super::ANNOUNCED_RUNS
            ),
            "(ins CROSS JOIN announced)",
        )
    } else {
        (String::new(), "ins")
    };
    format!(
        "WITH ins AS ({insert}), quiet AS \
         (SELECT set_config('kairos.announced', statement_timestamp()::text, true) AS q)\
         {announced} SELECT ins.id FROM quiet LEFT JOIN {joined} ON true"
    )
}

fn tags_text(tags: &BTreeMap<String, String>) -> Option<String> {
    (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default())
}

impl Store {
    /// Inserts runs in one transaction. Returns, in order, each run's id and whether it
    /// already existed (an unfinished run with the same idempotency key).
    pub(crate) async fn enqueue(
        &self,
        runs: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, bool)>, EnqueueError> {
        // A connection the server cut fails the statement before it runs; the others
        // in the pool are checked from then on (see `cut_lately`), so once more is
        // enough. Nothing was written: no run is enqueued twice.
        match self.enqueue_once(runs, now).await {
            Err(EnqueueError::Store(StoreError::Db(e))) if super::cut_before_it_ran(&e) => {
                tracing::debug!(error = %e, "enqueue on a connection the server cut; once more");
                self.enqueue_once(runs, now).await
            }
            other => other,
        }
    }

    async fn enqueue_once(
        &self,
        runs: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, bool)>, EnqueueError> {
        let _turn = self.write_turn().await;
        let plain = runs
            .iter()
            .all(|r| r.idempotency_key.is_none() && r.tags.is_empty());
        // Other nodes notice new runs through MAX(id) (see `change_marker`), so an
        // enqueue is just the insert: one statement for a small plain batch.
        if plain && runs.len() <= RUN_CHUNK {
            let ids = self.insert_runs(&self.db, runs, now, None).await?;
            return Ok(ids.into_iter().map(|id| (id, false)).collect());
        }
        let txn = self.db.begin_with_options(write_txn()).await?;
        let out = self.enqueue_on(&txn, runs, now).await?;
        txn.commit().await?;
        Ok(out)
    }

    /// Inserts runs on `conn`, a transaction (kairos's own, or the application's, so
    /// that the runs exist if and only if it commits). Returns what
    /// [`Store::enqueue`] returns.
    pub(crate) async fn enqueue_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        runs: &[NewRun],
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, bool)>, EnqueueError> {
        let mut out = vec![(0, false); runs.len()];
        // Runs with a key one by one (each may find an existing run), the rest batched.
        let (keyed, batched): (Vec<usize>, Vec<usize>) =
            (0..runs.len()).partition(|&i| runs[i].idempotency_key.is_some());
        for chunk in batched.chunks(RUN_CHUNK) {
            let rows: Vec<NewRun> = chunk.iter().map(|&i| runs[i].clone()).collect();
            let ids = self.insert_runs(conn, &rows, now, None).await?;
            for (&i, id) in chunk.iter().zip(ids) {
                out[i] = (id, false);
            }
        }
        for i in keyed {
            out[i] = self
                .insert_keyed(conn, &runs[i], now)
                .await?
                .map_err(|mut taken| {
                    taken.index = i;
                    EnqueueError::KeyTaken(taken)
                })?;
        }
        let tagged: Vec<(i64, &BTreeMap<String, String>)> = runs
            .iter()
            .zip(&out)
            .filter(|(r, (_, existed))| !r.tags.is_empty() && !existed)
            .map(|(r, (id, _))| (*id, &r.tags))
            .collect();
        self.insert_tags(conn, &tagged).await?;
        Ok(out)
    }

    /// Inserts one run already claimed by `node`: the fast path for work enqueued on a
    /// node with an idle worker, which then needs no separate claim. `None` when the
    /// node, every node or the run's queue is paused (then enqueue it normally) or when
    /// its idempotency key names an unfinished run.
    pub(crate) async fn enqueue_claimed(
        &self,
        run: &NewRun,
        node: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ClaimedRun>, StoreError> {
        let _turn = self.write_turn().await;
        let one = std::slice::from_ref(run);
        let id = if run.tags.is_empty() {
            // One statement is atomic on its own: no transaction round trips on the
            // path whose latency users feel most.
            let ids = self
                .insert_runs(&self.db, one, now, Some((node, lease)))
                .await?;
            match ids.first() {
                Some(&id) => id,
                None => return Ok(None),
            }
        } else {
            let txn = self.db.begin_with_options(write_txn()).await?;
            let ids = self
                .insert_runs(&txn, one, now, Some((node, lease)))
                .await?;
            let Some(&id) = ids.first() else {
                txn.rollback().await?;
                return Ok(None);
            };
            self.insert_tags(&txn, &[(id, &run.tags)]).await?;
            txn.commit().await?;
            id
        };
        Ok(Some(ClaimedRun {
            id,
            task: run.task.clone(),
            queue: run.queue.clone(),
            job_id: run.job_id,
            params: run.params.clone(),
            tags: run.tags.clone(),
            attempt: 1,
            scheduled_for: run.scheduled_for,
            max_retries: run.max_retries,
            retry_delay: run.retry_delay,
            timeout: run.timeout,
            started_at: now,
            checkpoint: None,
            callback: run.callback_url.is_some(),
        }))
    }

    /// A run with an idempotency key: inserted, or the unfinished run holding the key.
    /// Inserts a run with an idempotency key: its id and `false`, or the id of the
    /// unfinished run holding the key and `true` when that run is of the same task and
    /// params, or who holds the key (index 0) when it is not.
    async fn insert_keyed<C: ConnectionTrait>(
        &self,
        conn: &C,
        run: &NewRun,
        now: DateTime<Utc>,
    ) -> Result<Result<(i64, bool), KeyTaken>, StoreError> {
        // The unique partial index decides; the loop covers the holder finishing
        // between the failed insert and the read.
        for _ in 0..3 {
            if let Some(&id) = self
                .insert_runs(conn, std::slice::from_ref(run), now, None)
                .await?
                .first()
            {
                return Ok(Ok((id, false)));
            }
            let row = conn
                .query_one_raw(self.stmt(
                    "SELECT id, task, params, status FROM kairos_runs \
                     WHERE idempotency_key = $1 AND (status = 'queued' OR status = 'running')",
                    [Value::from(run.idempotency_key.clone())],
                ))
                .await?;
            if let Some(r) = row {
                let id: i64 = r.try_get("", "id")?;
                let task: String = r.try_get("", "task")?;
                let params: String = r.try_get("", "params")?;
                // Compared as JSON: the same object in another key order is the same.
                let same = task == run.task
                    && serde_json::from_str::<Json>(&params).ok().as_ref() == Some(&run.params);
                if same {
                    return Ok(Ok((id, true)));
                }
                return Ok(Err(KeyTaken {
                    index: 0,
                    key: run.idempotency_key.clone().unwrap_or_default(),
                    id,
                    task,
                    status: r.try_get("", "status")?,
                }));
            }
        }
        Err(StoreError::Db(sea_orm::DbErr::Custom(format!(
            "idempotency key `{}` is contended; try again",
            run.idempotency_key.as_deref().unwrap_or_default()
        ))))
    }

    /// One multi-row INSERT; rows whose idempotency key is taken are left out. With
    /// `owner`, the runs are inserted running (attempt 1, leased to that node) unless the
    /// node, every node or the queue is paused.
    async fn insert_runs<C: ConnectionTrait>(
        &self,
        conn: &C,
        runs: &[NewRun],
        now: DateTime<Utc>,
        owner: Option<(&str, Duration)>,
    ) -> Result<Vec<i64>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        // Columns most runs leave empty are only written when a run of the batch has
        // them: every bound parameter costs on the hot path.
        let extra = runs
            .iter()
            .any(|r| r.expires_at.is_some() || r.callback_url.is_some());
        let per_row: usize = if extra { 16 } else { 14 };
        let mut values = Vec::with_capacity(runs.len() * per_row + 3);
        let mut rows = Vec::with_capacity(runs.len());
        let (state, guard) = match owner {
            Some((node, lease)) => {
                values.push(Value::from(node.to_string()));
                values.push(Value::from(ms(now)));
                values.push(Value::from(ms(now) + duration_ms(lease)));
                ("'running', 1, $1, $2, $3", true)
            }
            None => ("'queued', 0, NULL, NULL, NULL", false),
        };
        for r in runs {
            let n = values.len();
            rows.push(format!(
                "({}, {state}, false)",
                placeholders(n + 1, per_row)
            ));
            values.extend([
                Value::from(r.task.clone()),
                Value::from(r.queue.clone()),
                Value::from(r.job_id),
                Value::from(r.origin.as_str()),
                Value::from(r.params.to_string()),
                Value::from(tags_text(&r.tags)),
                Value::from(r.priority),
                Value::from(ms(r.run_at)),
                Value::from(ms(r.scheduled_for)),
                Value::from(int(r.max_retries)),
                Value::from(duration_ms(r.retry_delay)),
                Value::from(duration_ms(r.timeout)),
                Value::from(r.idempotency_key.clone()),
                Value::from(ms(now)),
            ]);
            if extra {
                values.push(Value::from(r.expires_at.map(ms)));
                values.push(Value::from(r.callback_url.clone()));
            }
        }
        let cols = format!(
            "task, queue, job_id, origin, params, tags, priority, run_at, scheduled_for, \
             max_retries, retry_delay_ms, timeout_ms, idempotency_key, created_at, {}\
             status, attempt, node_id, started_at, lease_until, cancel_requested",
            if extra {
                "expires_at, callback_url, "
            } else {
                ""
            }
        );
        // Only a run with an idempotency key can conflict (enqueued runs have no job
        // slot); PostgreSQL makes every row of an `ON CONFLICT` insert speculative.
        let on_conflict = if runs.iter().any(|r| r.idempotency_key.is_some()) {
            " ON CONFLICT DO NOTHING"
        } else {
            ""
        };
        let sql = if guard {
            // One row: insert it only where nothing is paused.
            let row = rows.join(", ");
            format!(
                "INSERT INTO kairos_runs ({cols}) SELECT {} \
                 WHERE NOT EXISTS (SELECT 1 FROM kairos_queues q WHERE q.name = $5 AND q.paused) \
                 AND NOT EXISTS (SELECT 1 FROM kairos_nodes n WHERE n.id = $1 AND n.paused)\
                 {on_conflict} RETURNING id",
                &row[1..row.len() - 1]
            )
        } else {
            let returning = if extra && self.is_pg() {
                "id, expires_at"
            } else {
                "id"
            };
            format!(
                "INSERT INTO kairos_runs ({cols}) VALUES {}{on_conflict} RETURNING {returning}",
                rows.join(", ")
            )
        };
        let sql = if self.is_pg() && (guard || runs.len() <= ANNOUNCED_AT_MOST) {
            announce(&sql, !guard, extra && !guard)
        } else {
            sql
        };
        // An announcing insert that added nothing returns one row with a null id.
        let mut ids = conn
            .query_all_raw(self.stmt(&sql, values))
            .await?
            .iter()
            .filter_map(|row| row.try_get::<Option<i64>>("", "id").transpose())
            .collect::<Result<Vec<_>, _>>()?;
        // Ids grow in VALUES order; RETURNING does not promise an order.
        ids.sort_unstable();
        Ok(ids)
    }

    /// Records run tags in the lookup table.
    pub(super) async fn insert_tags<C: ConnectionTrait>(
        &self,
        conn: &C,
        tagged: &[(i64, &BTreeMap<String, String>)],
    ) -> Result<(), StoreError> {
        let pairs: Vec<(i64, &String, &String)> = tagged
            .iter()
            .flat_map(|(id, tags)| tags.iter().map(move |(k, v)| (*id, k, v)))
            .collect();
        for chunk in pairs.chunks(INSERT_CHUNK) {
            let mut values = Vec::with_capacity(chunk.len() * 3);
            let rows: Vec<String> = chunk
                .iter()
                .map(|(id, k, v)| {
                    let n = values.len();
                    values.extend([
                        Value::from(*id),
                        Value::from((*k).clone()),
                        Value::from((*v).clone()),
                    ]);
                    format!("({})", placeholders(n + 1, 3))
                })
                .collect();
            conn.execute_raw(self.stmt(
                &format!(
                    "INSERT INTO kairos_run_tags (run_id, key, value) VALUES {} ON CONFLICT DO NOTHING",
                    rows.join(", ")
                ),
                values,
            ))
            .await?;
        }
        Ok(())
    }
}
