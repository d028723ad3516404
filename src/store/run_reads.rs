//! Reading runs back: one run with its history, and filtered, paginated listings.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::codec::{count, from_ms, ms};
use super::entity::run;
use super::sql::{columns, placeholders};
use super::{Store, StoreError};
use crate::model::{Run, RunEvent, RunFilter, RunPage};

impl Store {
    /// One run with its job's name and its history; `None` if there is no such run.
    pub(crate) async fn run(&self, id: i64) -> Result<Option<Run>, StoreError> {
        let Some(row) = self
            .db
            .query_one_raw(self.stmt(
                &format!(
                    "SELECT {} FROM kairos_runs WHERE id = $1",
                    columns::<run::Entity>()
                ),
                [Value::from(id)],
            ))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(self.complete_run(row).await?))
    }

    /// A run from its row, with its job's name and its history.
    pub(crate) async fn complete_run(&self, row: sea_orm::QueryResult) -> Result<Run, StoreError> {
        let mut r = Run::try_from(run::Model::from_query_result(&row, "")?)?;
        if let Some(job_id) = r.job_id {
            r.job = self.job_names(&[job_id]).await?.remove(&job_id);
        }
        r.history = self.history(r.id).await?;
        Ok(r)
    }

    /// A run's history, oldest first.
    pub(crate) async fn history(&self, run_id: i64) -> Result<Vec<RunEvent>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT attempt, at, event, message, node_id FROM kairos_run_history \
                 WHERE run_id = $1 ORDER BY id",
                [Value::from(run_id)],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let event: String = r.try_get("", "event")?;
                Ok(RunEvent {
                    attempt: count(r.try_get("", "attempt")?),
                    at: from_ms(r.try_get("", "at")?),
                    event: event.parse().map_err(|message| StoreError::Corrupt {
                        table: "kairos_run_history",
                        id: run_id.to_string(),
                        message,
                    })?,
                    message: r.try_get("", "message")?,
                    node_id: r.try_get("", "node_id")?,
                })
            })
            .collect()
    }

    /// Runs matching `filter`, newest first, one page of them, with the total count.
    pub(crate) async fn runs(&self, filter: &RunFilter) -> Result<RunPage, StoreError> {
        let mut conds: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let arg = |values: &mut Vec<Value>, v: Value| {
            values.push(v);
            format!("${}", values.len())
        };
        if !filter.status.is_empty() {
            let first = values.len() + 1;
            for s in &filter.status {
                values.push(Value::from(s.as_str()));
            }
            conds.push(format!(
                "status IN ({})",
                placeholders(first, filter.status.len())
            ));
        }
        if let Some(t) = &filter.task {
            let p = arg(&mut values, Value::from(t.clone()));
            conds.push(format!("task = {p}"));
        }
        if let Some(q) = &filter.queue {
            let p = arg(&mut values, Value::from(q.clone()));
            conds.push(format!("queue = {p}"));
        }
        if let Some(j) = filter.job_id {
            let p = arg(&mut values, Value::from(j));
            conds.push(format!("job_id = {p}"));
        }
        if let Some(name) = &filter.job {
            let p = arg(&mut values, Value::from(name.clone()));
            // The job of that name; none being left, the deleted ones of that name,
            // whose runs were kept. A new job is not given the history of an old one
            // whose name it took.
            conds.push(format!(
                "job_id IN (SELECT id FROM kairos_jobs WHERE name = {p} \
                 UNION ALL SELECT id FROM kairos_former_jobs WHERE name = {p} \
                 AND NOT EXISTS (SELECT 1 FROM kairos_jobs WHERE name = {p}))"
            ));
        }
        for (k, v) in &filter.tags {
            let pk = arg(&mut values, Value::from(k.clone()));
            let pv = arg(&mut values, Value::from(v.clone()));
            conds.push(format!(
                "id IN (SELECT run_id FROM kairos_run_tags WHERE key = {pk} AND value = {pv})"
            ));
        }
        if let Some(t) = filter.created_after {
            let p = arg(&mut values, Value::from(ms(t)));
            conds.push(format!("created_at >= {p}"));
        }
        if let Some(t) = filter.created_before {
            let p = arg(&mut values, Value::from(ms(t)));
            conds.push(format!("created_at < {p}"));
        }
        let where_ = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let total: i64 = self
            .db
            .query_one_raw(self.stmt(
                &format!("SELECT COUNT(*) AS n FROM kairos_runs{where_}"),
                values.clone(),
            ))
            .await?
            .map(|r| r.try_get("", "n"))
            .transpose()?
            .unwrap_or(0);
        let page = filter.effective_page();
        let page_size = filter.effective_page_size();
        let offset = (page - 1).saturating_mul(page_size);
        let lim = arg(
            &mut values,
            Value::from(i64::try_from(page_size).unwrap_or(i64::MAX)),
        );
        let off = arg(
            &mut values,
            Value::from(i64::try_from(offset).unwrap_or(i64::MAX)),
        );
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT {} FROM kairos_runs{where_} ORDER BY id DESC LIMIT {lim} OFFSET {off}",
                    columns::<run::Entity>()
                ),
                values,
            ))
            .await?;
        let mut runs = rows
            .iter()
            .map(|r| Run::try_from(run::Model::from_query_result(r, "")?))
            .collect::<Result<Vec<_>, _>>()?;
        let job_ids: Vec<i64> = runs.iter().filter_map(|r| r.job_id).collect();
        if !job_ids.is_empty() {
            let names = self.job_names(&job_ids).await?;
            for r in &mut runs {
                r.job = r.job_id.and_then(|j| names.get(&j).cloned());
            }
        }
        Ok(RunPage {
            runs,
            total: u64::try_from(total).unwrap_or(0),
            page,
            page_size,
        })
    }

    /// Names of these jobs, by id.
    pub(crate) async fn job_names(&self, ids: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            // A deleted job's runs (kept, or running when it was deleted) still name it.
            let list = placeholders(1, chunk.len());
            let sql = format!(
                "SELECT id, name FROM kairos_jobs WHERE id IN ({list}) \
                 UNION ALL SELECT id, name FROM kairos_former_jobs WHERE id IN ({list})"
            );
            for r in self
                .db
                .query_all_raw(self.stmt(&sql, chunk.iter().map(|i| Value::from(*i))))
                .await?
            {
                out.insert(r.try_get("", "id")?, r.try_get("", "name")?);
            }
        }
        Ok(out)
    }
}

/// What the test harness needs to step time (see `crate::testing`).
impl Store {
    /// The earliest instant after `now` at which something is due: a job's next slot,
    /// a queued run's start or expiry, or a running attempt's timeout.
    pub(crate) async fn next_instant(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let n = Value::from(ms(now));
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT \
                 (SELECT MIN(next_run_at) FROM kairos_jobs WHERE enabled AND NOT paused AND next_run_at > $1) AS job, \
                 (SELECT MIN(run_at) FROM kairos_runs WHERE status = 'queued' AND attempt >= 0 AND run_at > $1) AS queued, \
                 (SELECT MIN(expires_at) FROM kairos_runs WHERE status = 'queued' AND expires_at > $1) AS expiry, \
                 (SELECT MIN(started_at + timeout_ms) FROM kairos_runs WHERE status = 'running' \
                  AND started_at + timeout_ms > $1) AS timeout, \
                 (SELECT MIN(started_at) FROM kairos_runs WHERE status = 'running' \
                  AND started_at > $1) AS start",
                [n],
            ))
            .await?;
        let Some(r) = row else { return Ok(None) };
        let mut best: Option<i64> = None;
        for col in ["job", "queued", "expiry", "timeout", "start"] {
            if let Some(t) = r.try_get::<Option<i64>>("", col)? {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        }
        Ok(best.map(from_ms))
    }

    /// Whether work is due at `now`: a job's slot or a queued run due by `due_by` (a
    /// node with a lead fires and claims them ahead), or a running run (one claimed
    /// ahead of its start does not count until then).
    pub(crate) async fn busy(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        due_by: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT \
                 (SELECT COUNT(*) FROM kairos_jobs WHERE enabled AND NOT paused AND next_run_at <= $2) AS jobs, \
                 (SELECT COUNT(*) FROM kairos_runs WHERE status = 'queued' AND run_at <= $2 \
                  AND queue NOT IN (SELECT name FROM kairos_queues WHERE paused) \
                  AND (expires_at IS NULL OR expires_at > $1)) AS queued, \
                 (SELECT COUNT(*) FROM kairos_runs WHERE status = 'running' AND started_at <= $1) AS running",
                [Value::from(ms(now)), Value::from(ms(due_by))],
            ))
            .await?;
        let Some(r) = row else { return Ok(false) };
        Ok(r.try_get::<i64>("", "jobs")?
            + r.try_get::<i64>("", "queued")?
            + r.try_get::<i64>("", "running")?
            > 0)
    }

    /// A fingerprint of the runs table that changes whenever a run does.
    pub(crate) async fn runs_fingerprint(&self) -> Result<(i64, i64, i64), StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT (SELECT COUNT(*) FROM kairos_runs) AS n, \
                 (SELECT COUNT(*) FROM kairos_runs WHERE finished_at IS NOT NULL) AS done, \
                 (SELECT value FROM kairos_meta WHERE key = 'change_seq') AS seq",
                [],
            ))
            .await?;
        Ok(match row {
            Some(r) => (
                r.try_get("", "n")?,
                r.try_get("", "done")?,
                r.try_get::<Option<i64>>("", "seq")?.unwrap_or(0),
            ),
            None => (0, 0, 0),
        })
    }

    /// Runs that finished after `after` and at or before `until`, in the order they
    /// finished.
    pub(crate) async fn finished_between(
        &self,
        after: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Run>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT {} FROM kairos_runs WHERE finished_at > $1 AND finished_at <= $2 \
                     ORDER BY finished_at, id",
                    columns::<run::Entity>()
                ),
                [Value::from(ms(after)), Value::from(ms(until))],
            ))
            .await?;
        let mut runs = rows
            .iter()
            .map(|r| Run::try_from(run::Model::from_query_result(r, "")?))
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<i64> = runs.iter().filter_map(|r| r.job_id).collect();
        if !ids.is_empty() {
            let names = self.job_names(&ids).await?;
            for r in &mut runs {
                r.job = r.job_id.and_then(|j| names.get(&j).cloned());
            }
        }
        Ok(runs)
    }
}
