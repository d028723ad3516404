//! Reading numbers about runs: counts by status, recent completions with their
//! durations, a queued run's place in its queue, and node heartbeats. Admin reads only;
//! none of these is on the hot path.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};

use super::codec::{count, from_ms, ms};
use super::sql::placeholders;
use super::{Store, StoreError};
use crate::model::RunStatus;

/// Which runs statistics are about.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatsScope {
    pub(crate) task: Option<String>,
    pub(crate) tags: Vec<(String, String)>,
}

impl StatsScope {
    /// ` AND ...` conditions for the scope, their values appended to `values`.
    fn conditions(&self, values: &mut Vec<Value>) -> String {
        let mut sql = String::new();
        if let Some(t) = &self.task {
            values.push(Value::from(t.clone()));
            sql.push_str(&format!(" AND task = ${}", values.len()));
        }
        for (k, v) in &self.tags {
            values.push(Value::from(k.clone()));
            values.push(Value::from(v.clone()));
            sql.push_str(&format!(
                " AND id IN (SELECT run_id FROM kairos_run_tags WHERE key = ${} AND value = ${})",
                values.len() - 1,
                values.len()
            ));
        }
        sql
    }
}

/// A finished run as statistics see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finished {
    pub(crate) task: String,
    pub(crate) status: RunStatus,
    pub(crate) finished_at: DateTime<Utc>,
    /// Of its last attempt, when it started.
    pub(crate) duration_ms: Option<i64>,
}

/// Worker slots on nodes that beat recently, as the database's clock judges.
#[derive(Debug, Default)]
pub(crate) struct LiveWorkers {
    pub(crate) workers: u64,
    /// Of which on nodes that are not paused: the slots that start runs.
    pub(crate) unpaused: u64,
    /// The newest heartbeat of a running node.
    pub(crate) newest: Option<DateTime<Utc>>,
    /// How old that heartbeat is.
    pub(crate) newest_age: Option<std::time::Duration>,
    /// The newest heartbeat of any node, a stopped or dead one's last included.
    pub(crate) last_beat: Option<DateTime<Utc>>,
}

impl Store {
    /// How many runs have each status.
    pub(crate) async fn status_counts(
        &self,
        scope: &StatsScope,
    ) -> Result<BTreeMap<RunStatus, u64>, StoreError> {
        let mut values = Vec::new();
        let cond = scope.conditions(&mut values);
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT status, COUNT(*) AS n FROM kairos_runs WHERE 1 = 1{cond} GROUP BY status"
                ),
                values,
            ))
            .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            let status: String = r.try_get("", "status")?;
            let n: i64 = r.try_get("", "n")?;
            if let Ok(s) = status.parse::<RunStatus>() {
                out.insert(s, u64::try_from(n).unwrap_or(0));
            }
        }
        Ok(out)
    }

    /// Runs that finished since `since` (at most `limit`, most recent first).
    pub(crate) async fn finished_since(
        &self,
        since: DateTime<Utc>,
        scope: &StatsScope,
        limit: i64,
    ) -> Result<Vec<Finished>, StoreError> {
        let finished: Vec<RunStatus> = RunStatus::ALL
            .into_iter()
            .filter(|s| s.is_finished())
            .collect();
        let mut values: Vec<Value> = finished.iter().map(|s| Value::from(s.as_str())).collect();
        values.push(Value::from(ms(since)));
        let since_p = values.len();
        let cond = scope.conditions(&mut values);
        values.push(Value::from(limit));
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT task, status, started_at, finished_at, node_id FROM kairos_runs \
                     WHERE status IN ({}) AND finished_at >= ${since_p}{cond} \
                     ORDER BY finished_at DESC LIMIT ${}",
                    placeholders(1, finished.len()),
                    values.len()
                ),
                values,
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("", "status")?;
                let started: Option<i64> = r.try_get("", "started_at")?;
                let finished_at: i64 = r.try_get("", "finished_at")?;
                // A run ended without its node (taken back from a dead node, expired,
                // cancelled while queued) has no execution time to count: from its
                // start to when another node noticed is not how long the task takes.
                let ran_to_the_end = r.try_get::<Option<String>>("", "node_id")?.is_some();
                Ok(Finished {
                    task: r.try_get("", "task")?,
                    status: status.parse().unwrap_or(RunStatus::Failed),
                    finished_at: from_ms(finished_at),
                    duration_ms: started
                        .filter(|_| ran_to_the_end)
                        .map(|s| (finished_at - s).max(0)),
                })
            })
            .collect()
    }

    /// Queued runs of `queue` due by `now` that a claim takes before the run `(id,
    /// priority, run_at)`.
    /// The starts of rate-limited queue `queue` recorded after `since` (some may be
    /// ahead of now: runs claimed ahead of their time), oldest first.
    pub(crate) async fn queue_starts_since(
        &self,
        queue: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT at FROM kairos_queue_starts WHERE queue = $1 AND at > $2 ORDER BY at",
                [Value::from(queue.to_string()), Value::from(ms(since))],
            ))
            .await?;
        rows.iter()
            .map(|r| Ok(from_ms(r.try_get::<i64>("", "at")?)))
            .collect()
    }

    pub(crate) async fn queued_ahead(
        &self,
        queue: &str,
        id: i64,
        priority: i32,
        run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT COUNT(*) AS n FROM kairos_runs WHERE status = 'queued' AND queue = $1 \
                 AND run_at <= $2 AND (priority < $3 OR (priority = $3 AND (run_at < $4 \
                 OR (run_at = $4 AND id < $5))))",
                [
                    Value::from(queue.to_string()),
                    Value::from(ms(now.max(run_at))),
                    Value::from(priority),
                    Value::from(ms(run_at)),
                    Value::from(id),
                ],
            ))
            .await?;
        Ok(match row {
            Some(r) => u64::try_from(r.try_get::<i64>("", "n")?).unwrap_or(0),
            None => 0,
        })
    }

    /// Worker slots of running nodes that beat within `max_age` (`None`: within each
    /// node's own heartbeat timeout), and the newest heartbeat.
    pub(crate) async fn live_workers(
        &self,
        max_age: Option<std::time::Duration>,
    ) -> Result<LiveWorkers, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                &format!(
                    "SELECT (SELECT SUM(max_workers) FROM kairos_nodes WHERE status = 'running' \
                     AND heartbeat_at >= {now} - COALESCE($1, heartbeat_timeout_ms, $2)) AS workers, \
                     (SELECT SUM(max_workers) FROM kairos_nodes WHERE status = 'running' \
                     AND heartbeat_at >= {now} - COALESCE($1, heartbeat_timeout_ms, $2) \
                     AND NOT paused) AS unpaused, \
                     (SELECT MAX(heartbeat_at) FROM kairos_nodes WHERE status = 'running') AS newest, \
                     (SELECT MAX(heartbeat_at) FROM kairos_nodes) AS last_beat, \
                     {now} AS db_now",
                    now = self.db_now_ms()
                ),
                [
                    Value::from(max_age.map(super::codec::duration_ms)),
                    Value::from(super::codec::duration_ms(
                        crate::runtime::DEFAULT_HEARTBEAT_TIMEOUT,
                    )),
                ],
            ))
            .await?;
        let Some(r) = row else {
            return Ok(LiveWorkers::default());
        };
        let newest = r.try_get::<Option<i64>>("", "newest")?;
        let db_now: i64 = r.try_get("", "db_now")?;
        let slots = |name: &str| -> Result<u64, StoreError> {
            Ok(u64::from(count(
                i32::try_from(r.try_get::<Option<i64>>("", name)?.unwrap_or(0)).unwrap_or(i32::MAX),
            )))
        };
        Ok(LiveWorkers {
            workers: slots("workers")?,
            unpaused: slots("unpaused")?,
            newest: newest.map(from_ms),
            newest_age: newest
                .map(|t| std::time::Duration::from_millis((db_now - t).max(0) as u64)),
            last_beat: r.try_get::<Option<i64>>("", "last_beat")?.map(from_ms),
        })
    }

    /// Answers a trivial query: the database is reachable.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .query_one_raw(self.stmt("SELECT 1 AS one", []))
            .await?;
        Ok(())
    }
}
