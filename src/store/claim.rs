//! Claiming due runs for a node, in batches, in claim order (priority, then due
//! time), within the limits.
//!
//! # Limits
//! `max_instances` per task and `concurrency` and `rate_limit` per queue are enforced
//! in the claim: running runs (and, for rate limits, recorded starts) are counted inside
//! the claim transaction, which on PostgreSQL first takes an advisory lock so that two
//! nodes cannot both see the last free slot. Paused queues and nodes are excluded by the
//! claim statement itself, so nothing starts from a paused queue or on a paused node.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};
use serde_json::Value as Json;

use super::codec::{count, duration_ms, from_ms, ms, ms_duration};
use super::runs::INSERT_CHUNK;
use super::sql::placeholders;
use super::{Lock, Store, StoreError, write_txn};

/// A run handed to this node to execute.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClaimedRun {
    pub(crate) id: i64,
    pub(crate) task: String,
    pub(crate) queue: String,
    pub(crate) job_id: Option<i64>,
    pub(crate) params: Json,
    pub(crate) tags: BTreeMap<String, String>,
    /// This attempt's number (1-based).
    pub(crate) attempt: u32,
    pub(crate) scheduled_for: DateTime<Utc>,
    pub(crate) max_retries: u32,
    pub(crate) retry_delay: Duration,
    pub(crate) timeout: Duration,
    /// When this attempt starts (its `started_at`): when it was claimed, or its
    /// `run_at` for a run claimed ahead of its time (see `SchedulerBuilder::lead`).
    pub(crate) started_at: DateTime<Utc>,
    /// The state an earlier attempt saved.
    pub(crate) checkpoint: Option<Json>,
    /// The run has a callback URL (see `Enqueue::callback_url`), which never changes
    /// once the run exists: only then need its end be looked up for a webhook.
    pub(crate) callback: bool,
}

/// A queue's limits as a node enforces them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueLimit {
    /// Runs of the queue running at once.
    pub(crate) concurrency: Option<u32>,
    /// At most `.0` starts in any window of `.1`.
    pub(crate) rate: Option<(u32, Duration)>,
}

/// The limits a claim must respect.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClaimLimits {
    /// Task name → runs allowed at once.
    pub(crate) max_instances: HashMap<String, u32>,
    /// Queue name → limits.
    pub(crate) queues: HashMap<String, QueueLimit>,
}

impl ClaimLimits {
    /// No limit at all: claims count nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.max_instances.is_empty() && self.queues.is_empty()
    }
}

/// What a claim got, and when it is worth trying again if limits held runs back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claim {
    pub(crate) runs: Vec<ClaimedRun>,
    /// The earliest time a rate-limited queue has budget again.
    pub(crate) retry_at: Option<DateTime<Utc>>,
}

const CLAIM_COLUMNS: &str = "id, task, queue, job_id, params, tags, attempt, scheduled_for, max_retries, \
     retry_delay_ms, timeout_ms, checkpoint, started_at, callback_url IS NOT NULL AS callback";

/// Conditions every claim adds: nothing starts from a paused queue or on a paused node,
/// and no run whose time to live ran out (`$2` is the claim's time).
/// Both subqueries are uncorrelated, so each is evaluated once per claim and the scan
/// keeps following the claim index in order (a correlated `NOT EXISTS` per row led
/// PostgreSQL to scan and sort every queued run).
const NOT_PAUSED: &str = "queue NOT IN (SELECT name FROM kairos_queues WHERE paused) \
     AND NOT EXISTS (SELECT 1 FROM kairos_nodes n WHERE n.id = $1 AND n.paused) \
     AND (expires_at IS NULL OR expires_at > $2)";

/// The query that picks claimable runs in claim order: `columns` of at most `$3` queued
/// runs due by `$2` for node `$1`, with `exclude` (more conditions) added; locked on
/// PostgreSQL, skipping rows another claim holds.
///
/// It must follow `kairos_runs_claim` in order: any other plan reads and sorts every
/// queued run at each claim. PostgreSQL picks it by cost, which `kairos_runs_next_due`
/// is kept out of (see its definition); SQLite, without statistics, preferred a range
/// scan plus a sort, so it is told.
pub(super) fn pick_sql(pg: bool, columns: &str, exclude: &str) -> String {
    let (from, lock) = if pg {
        ("kairos_runs", " FOR UPDATE SKIP LOCKED")
    } else {
        ("kairos_runs INDEXED BY kairos_runs_claim", "")
    };
    format!(
        "SELECT {columns} FROM {from} WHERE status = 'queued' AND run_at <= $2 AND {NOT_PAUSED}{exclude} \
         ORDER BY priority, run_at, id LIMIT $3{lock}"
    )
}

/// How long a claim waits for the limits lock before it claims only the runs no limit
/// applies to (see `Store::claim`).
const LIMITS_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The ids of the runs one insert statement added, as it announced them to listening
/// nodes (PostgreSQL; see `Store::insert_runs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Announced {
    /// The lowest id.
    pub(crate) first: i64,
    /// The highest id.
    pub(crate) last: i64,
}

impl Announced {
    /// How many ids the range holds (runs of other inserts may be among them, and
    /// ids a rolled-back insert took are not).
    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.last - self.first + 1).unwrap_or(0)
    }
}

/// [`pick_sql`] on PostgreSQL for the runs with ids `$6` to `$7` (an announced insert):
/// the same conditions and order, read through the primary key. The claim index
/// would serve too, but it is walked from its start, and until vacuum it keeps an
/// entry for every run claimed since: after a burst, tens of thousands of dead
/// entries to step over at each claim, where the key goes straight to the new runs.
/// The status test is written so that it cannot match the claim index's predicate,
/// which keeps PostgreSQL from picking that index (its statistics cannot see the
/// dead entries).
fn pick_announced_sql() -> String {
    format!(
        "SELECT id FROM kairos_runs WHERE id BETWEEN $6 AND $7 AND status || '' = 'queued' \
         AND run_at <= $2 AND {NOT_PAUSED} ORDER BY priority, run_at, id LIMIT $3 \
         FOR UPDATE SKIP LOCKED"
    )
}

/// The claimed runs of a claim's `RETURNING {CLAIM_COLUMNS}` rows.
fn decode_claimed(rows: &[sea_orm::QueryResult]) -> Result<Vec<ClaimedRun>, StoreError> {
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get("", "id")?;
            let corrupt = |message: String| StoreError::Corrupt {
                table: "kairos_runs",
                id: id.to_string(),
                message,
            };
            let params: String = r.try_get("", "params")?;
            let tags: Option<String> = r.try_get("", "tags")?;
            Ok(ClaimedRun {
                id,
                task: r.try_get("", "task")?,
                queue: r.try_get("", "queue")?,
                job_id: r.try_get("", "job_id")?,
                params: serde_json::from_str(&params)
                    .map_err(|e| corrupt(format!("params: {e}")))?,
                tags: match tags {
                    Some(t) => {
                        serde_json::from_str(&t).map_err(|e| corrupt(format!("tags: {e}")))?
                    }
                    None => BTreeMap::new(),
                },
                attempt: count(r.try_get("", "attempt")?),
                scheduled_for: from_ms(r.try_get("", "scheduled_for")?),
                max_retries: count(r.try_get("", "max_retries")?),
                retry_delay: ms_duration(r.try_get("", "retry_delay_ms")?),
                timeout: ms_duration(r.try_get("", "timeout_ms")?),
                started_at: from_ms(r.try_get("", "started_at")?),
                checkpoint: r
                    .try_get::<Option<String>>("", "checkpoint")?
                    .map(|c| {
                        serde_json::from_str(&c).map_err(|e| corrupt(format!("checkpoint: {e}")))
                    })
                    .transpose()?,
                callback: r.try_get("", "callback")?,
            })
        })
        .collect()
}

impl Store {
    /// Claims up to `limit` due runs (run_at ≤ `due_by`) for `node`, lowest priority
    /// number first, then earliest run_at, within `limits` (see "Limits" above). A run
    /// claimed before its `run_at` (`due_by` ahead of `clock()`) gets that as its start.
    pub(crate) async fn claim(
        &self,
        node: &str,
        due_by: DateTime<Utc>,
        clock: &(dyn Fn() -> DateTime<Utc> + Sync),
        limit: usize,
        lease: Duration,
        limits: &ClaimLimits,
    ) -> Result<Claim, StoreError> {
        let mut now = clock();
        if limit == 0 {
            return Ok(Claim::default());
        }
        let _turn = self.write_turn().await;
        let pg = self.is_pg();
        if limits.is_empty() {
            let runs = self
                .claim_plain(self.claims_db(), node, due_by, now, limit, lease, None)
                .await?;
            return Ok(Claim {
                runs,
                retry_at: None,
            });
        }
        let txn = self.claims_db().begin_with_options(write_txn()).await?;
        // The starts (ms) of the runs claimed in rate-limited queues.
        let mut starts: HashMap<String, Vec<i64>> = HashMap::new();
        if !self.lock_limits(&txn).await? {
            // Another node has held the lock for long: it is stopped or cut off, and
            // the server ends its transaction in time. Runs no limit applies to need
            // no lock: they are claimed meanwhile, the others at the next look.
            txn.rollback().await?;
            tracing::warn!("claims of limited runs wait: another node holds their lock for long");
            let runs = self
                .claim_free(
                    self.claims_db(),
                    node,
                    due_by,
                    now,
                    limit,
                    lease,
                    None,
                    Some(limits),
                )
                .await?;
            return Ok(Claim {
                runs,
                retry_at: Some(now + chrono::Duration::from_std(LIMITS_WAIT).unwrap_or_default()),
            });
        }
        // The lock may have been waited for while other nodes' runs ended: the
        // claim's time (the runs' start) is taken once it is held.
        now = clock().max(now);
        let mut room = Room::default();
        self.count_room(&txn, limits, now, &mut room).await?;
        let full_tasks: Vec<String> = room.full_tasks();
        let full_queues: Vec<String> = room.full_queues();
        let mut values = vec![
            Value::from(node.to_string()),
            Value::from(ms(due_by)),
            Value::from((limit * 4) as i64),
        ];
        let mut exclude = String::new();
        if !full_tasks.is_empty() {
            exclude.push_str(&format!(
                " AND task NOT IN ({})",
                placeholders(values.len() + 1, full_tasks.len())
            ));
            values.extend(full_tasks.into_iter().map(Value::from));
        }
        if !full_queues.is_empty() {
            exclude.push_str(&format!(
                " AND queue NOT IN ({})",
                placeholders(values.len() + 1, full_queues.len())
            ));
            values.extend(full_queues.into_iter().map(Value::from));
        }
        let sql = pick_sql(pg, "id, task, queue, run_at", &exclude);
        let mut ids = Vec::new();
        for r in txn.query_all_raw(self.stmt(&sql, values)).await? {
            if ids.len() == limit {
                break;
            }
            let id: i64 = r.try_get("", "id")?;
            let task: String = r.try_get("", "task")?;
            let queue: String = r.try_get("", "queue")?;
            if room.take(&task, &queue) {
                ids.push(id);
                if limits.queues.get(&queue).is_some_and(|q| q.rate.is_some()) {
                    // A run claimed ahead of its time starts then, not now: counted
                    // from now, its window would end early by as much.
                    let run_at: i64 = r.try_get("", "run_at")?;
                    starts.entry(queue).or_default().push(run_at.max(ms(now)));
                }
            }
        }
        let retry_at = room.budget_returns(limits, &starts);
        if ids.is_empty() {
            txn.commit().await?;
            return Ok(Claim {
                runs: Vec::new(),
                retry_at,
            });
        }
        let mut values = vec![
            Value::from(node.to_string()),
            Value::from(ms(now)),
            Value::from(ms(now) + duration_ms(lease)),
        ];
        values.extend(ids.iter().map(|id| Value::from(*id)));
        let sql = format!(
            "UPDATE kairos_runs SET status = 'running', attempt = attempt + 1, node_id = $1, \
             started_at = CASE WHEN run_at > $2 THEN run_at ELSE $2 END, lease_until = $3 \
             WHERE id IN ({}) RETURNING {CLAIM_COLUMNS}",
            placeholders(4, ids.len())
        );
        let rows = txn.query_all_raw(self.stmt(&sql, values)).await?;
        for (queue, at) in &starts {
            self.record_starts(&txn, queue, at, now, limits).await?;
        }
        txn.commit().await?;
        let mut claimed = decode_claimed(&rows)?;
        // RETURNING gives no order guarantee; start in claim order.
        let pos: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        claimed.sort_by_key(|c| pos.get(&c.id).copied().unwrap_or(usize::MAX));
        Ok(Claim {
            runs: claimed,
            retry_at,
        })
    }

    /// Claims up to `limit` due runs for `node` when no limit applies, on `conn`: one
    /// statement picks, locks and claims them, with no transaction around it. Returns
    /// them in claim order. `conn` is the claims pool, or on PostgreSQL the node's
    /// listening connection (see `runtime::listener`), whose session commits as the
    /// pool's do. `among`, on PostgreSQL, is the range of ids an insert announced
    /// (see [`Announced`]): only runs in it are claimed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn claim_plain<C: ConnectionTrait>(
        &self,
        conn: &C,
        node: &str,
        due_by: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        among: Option<Announced>,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        self.claim_free(conn, node, due_by, now, limit, lease, among, None)
            .await
    }

    /// [`Store::claim_plain`], leaving out the runs of the tasks and queues `except`
    /// limits when given.
    #[allow(clippy::too_many_arguments)]
    async fn claim_free<C: ConnectionTrait>(
        &self,
        conn: &C,
        node: &str,
        due_by: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
        among: Option<Announced>,
        except: Option<&ClaimLimits>,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        // Only PostgreSQL announces ids (SQLite has no notifications).
        let among = among.filter(|_| self.is_pg());
        let mut values = vec![
            Value::from(node.to_string()),
            Value::from(ms(due_by)),
            Value::from(limit as i64),
            Value::from(ms(now)),
            Value::from(ms(now) + duration_ms(lease)),
        ];
        if let Some(a) = among {
            values.extend([Value::from(a.first), Value::from(a.last)]);
        }
        let mut exclude = String::new();
        if let Some(limits) = except {
            let tasks: Vec<&String> = limits.max_instances.keys().collect();
            let queues: Vec<&String> = limits.queues.keys().collect();
            for (column, names) in [("task", tasks), ("queue", queues)] {
                if !names.is_empty() {
                    exclude.push_str(&format!(
                        " AND {column} NOT IN ({})",
                        placeholders(values.len() + 1, names.len())
                    ));
                    values.extend(names.into_iter().map(|n| Value::from(n.clone())));
                }
            }
        }
        let pick = match among {
            Some(_) => pick_announced_sql(),
            None => pick_sql(self.is_pg(), "id", &exclude),
        };
        let sql = format!(
            "UPDATE kairos_runs SET status = 'running', attempt = attempt + 1, node_id = $1, \
             started_at = CASE WHEN run_at > $4 THEN run_at ELSE $4 END, lease_until = $5 \
             WHERE id IN ({pick}) RETURNING {CLAIM_COLUMNS}, priority, run_at"
        );
        let rows = conn.query_all_raw(self.stmt(&sql, values)).await?;
        let mut order = Vec::with_capacity(rows.len());
        for r in &rows {
            order.push((
                r.try_get::<i32>("", "priority")?,
                r.try_get::<i64>("", "run_at")?,
                r.try_get::<i64>("", "id")?,
            ));
        }
        // RETURNING gives no order guarantee; start in claim order.
        order.sort_unstable();
        let pos: HashMap<i64, usize> = order.iter().enumerate().map(|(i, k)| (k.2, i)).collect();
        let mut runs = decode_claimed(&rows)?;
        runs.sort_by_key(|c| pos.get(&c.id).copied().unwrap_or(usize::MAX));
        Ok(runs)
    }

    /// Takes the limits lock in `txn`, waiting for it at most [`LIMITS_WAIT`]: false
    /// when it did not get it (the transaction is then aborted). SQLite's write lock,
    /// which the transaction holds already, serialises claims there.
    async fn lock_limits<C: ConnectionTrait>(&self, txn: &C) -> Result<bool, StoreError> {
        if !self.is_pg() {
            return Ok(true);
        }
        let key = Value::from(Lock::Limits as i64);
        let row = txn
            .query_one_raw(self.stmt("SELECT pg_try_advisory_xact_lock($1) AS got", [key.clone()]))
            .await?;
        if row.map(|r| r.try_get::<bool>("", "got")).transpose()? == Some(true) {
            return Ok(true);
        }
        // Held: another node claims right now, which takes a millisecond or two.
        txn.execute_unprepared(&format!(
            "SET LOCAL lock_timeout = '{}ms'",
            LIMITS_WAIT.as_millis()
        ))
        .await?;
        match txn
            .execute_raw(self.stmt("SELECT pg_advisory_xact_lock($1)", [key]))
            .await
        {
            Ok(_) => Ok(true),
            // lock_not_available: the wait timed out.
            Err(e) if super::sql_state(&e).as_deref() == Some("55P03") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Counts what the limited tasks and queues already use.
    async fn count_room<C: ConnectionTrait>(
        &self,
        txn: &C,
        limits: &ClaimLimits,
        now: DateTime<Utc>,
        room: &mut Room,
    ) -> Result<(), StoreError> {
        for (task, max) in &limits.max_instances {
            room.tasks.insert(task.clone(), i64::from(*max));
        }
        if !limits.max_instances.is_empty() {
            let names: Vec<&String> = limits.max_instances.keys().collect();
            let sql = format!(
                "SELECT task, COUNT(*) AS n FROM kairos_runs WHERE status = 'running' AND task IN ({}) GROUP BY task",
                placeholders(1, names.len())
            );
            for r in txn
                .query_all_raw(self.stmt(&sql, names.iter().map(|n| Value::from((*n).clone()))))
                .await?
            {
                let task: String = r.try_get("", "task")?;
                let n: i64 = r.try_get("", "n")?;
                if let Some(left) = room.tasks.get_mut(&task) {
                    *left -= n;
                }
            }
        }
        let limited: Vec<(&String, &QueueLimit)> = limits.queues.iter().collect();
        let with_concurrency: Vec<&String> = limited
            .iter()
            .filter(|(_, l)| l.concurrency.is_some())
            .map(|(q, _)| *q)
            .collect();
        for (q, l) in &limited {
            let mut left = i64::MAX;
            if let Some(c) = l.concurrency {
                left = left.min(i64::from(c));
            }
            if let Some((n, window)) = l.rate {
                let since = now - chrono::Duration::from_std(window).unwrap_or_default();
                let rows = txn
                    .query_all_raw(self.stmt(
                        "SELECT at FROM kairos_queue_starts WHERE queue = $1 AND at > $2 ORDER BY at",
                        [Value::from((*q).clone()), Value::from(ms(since))],
                    ))
                    .await?;
                let starts = rows
                    .iter()
                    .map(|r| r.try_get::<i64>("", "at"))
                    .collect::<Result<Vec<_>, _>>()?;
                left = left.min(i64::from(n) - starts.len() as i64);
                room.starts.insert((*q).clone(), starts);
            }
            room.queues.insert((*q).clone(), left);
        }
        if !with_concurrency.is_empty() {
            let sql = format!(
                "SELECT queue, COUNT(*) AS n FROM kairos_runs WHERE status = 'running' AND queue IN ({}) GROUP BY queue",
                placeholders(1, with_concurrency.len())
            );
            for r in txn
                .query_all_raw(self.stmt(
                    &sql,
                    with_concurrency.iter().map(|q| Value::from((*q).clone())),
                ))
                .await?
            {
                let queue: String = r.try_get("", "queue")?;
                let n: i64 = r.try_get("", "n")?;
                let conc = limits
                    .queues
                    .get(&queue)
                    .and_then(|l| l.concurrency)
                    .map_or(i64::MAX, i64::from);
                if let Some(left) = room.queues.get_mut(&queue) {
                    *left = (*left).min(conc - n);
                }
            }
        }
        Ok(())
    }

    /// Records the starts (ms) of runs of a rate-limited queue and forgets starts older
    /// than its window.
    async fn record_starts<C: ConnectionTrait>(
        &self,
        txn: &C,
        queue: &str,
        starts: &[i64],
        now: DateTime<Utc>,
        limits: &ClaimLimits,
    ) -> Result<(), StoreError> {
        let Some((_, window)) = limits.queues.get(queue).and_then(|l| l.rate) else {
            return Ok(());
        };
        let since = now - chrono::Duration::from_std(window).unwrap_or_default();
        txn.execute_raw(self.stmt(
            "DELETE FROM kairos_queue_starts WHERE queue = $1 AND at <= $2",
            [Value::from(queue.to_string()), Value::from(ms(since))],
        ))
        .await?;
        for chunk in starts.chunks(INSERT_CHUNK) {
            let mut values = Vec::new();
            let rows: Vec<String> = chunk
                .iter()
                .map(|at| {
                    let k = values.len();
                    values.extend([Value::from(queue.to_string()), Value::from(*at)]);
                    format!("({})", placeholders(k + 1, 2))
                })
                .collect();
            txn.execute_raw(self.stmt(
                &format!(
                    "INSERT INTO kairos_queue_starts (queue, at) VALUES {}",
                    rows.join(", ")
                ),
                values,
            ))
            .await?;
        }
        Ok(())
    }
}

/// Free capacity of limited tasks and queues during one claim.
#[derive(Debug, Default)]
struct Room {
    tasks: HashMap<String, i64>,
    queues: HashMap<String, i64>,
    /// Recorded starts (ms) in the current window of each rate-limited queue.
    starts: HashMap<String, Vec<i64>>,
}

impl Room {
    /// When a rate-limited queue has budget again after this claim (`taken`: the
    /// starts it adds): when enough of the starts in its window leave it. `None` if
    /// every queue still has budget.
    fn budget_returns(
        &self,
        limits: &ClaimLimits,
        taken: &HashMap<String, Vec<i64>>,
    ) -> Option<DateTime<Utc>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        for (q, l) in &limits.queues {
            let Some((n, window)) = l.rate else { continue };
            let mut starts = self.starts.get(q).cloned().unwrap_or_default();
            starts.extend(taken.get(q).into_iter().flatten());
            starts.sort_unstable();
            let n = n as usize;
            if starts.len() < n {
                continue;
            }
            // One more start fits once the start at this index has left the window.
            let free = from_ms(starts[starts.len() - n])
                + chrono::Duration::from_std(window).unwrap_or_default();
            earliest = Some(earliest.map_or(free, |t| t.min(free)));
        }
        earliest
    }

    fn full_tasks(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|(_, left)| **left <= 0)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn full_queues(&self) -> Vec<String> {
        self.queues
            .iter()
            .filter(|(_, left)| **left <= 0)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Takes one slot for a run of `task` in `queue` if both have room.
    fn take(&mut self, task: &str, queue: &str) -> bool {
        let t = self.tasks.get(task).copied();
        let q = self.queues.get(queue).copied();
        if t.is_some_and(|n| n <= 0) || q.is_some_and(|n| n <= 0) {
            return false;
        }
        if let Some(n) = self.tasks.get_mut(task) {
            *n -= 1;
        }
        if let Some(n) = self.queues.get_mut(queue) {
            *n -= 1;
        }
        true
    }
}
