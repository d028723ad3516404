//! What running tasks report: their latest progress, stage and checkpoint on the run's
//! row, and their log lines in `kairos_run_logs`. Written in batches by the node's
//! reporter and fenced like completions: a node that lost a run cannot report for it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};

use super::codec::{count, from_ms, int, ms};
use super::sql::{RUNNING_BY_ID, placeholders};
use super::{Store, StoreError, write_txn};
use crate::context::LogLevel;
use crate::model::RunLog;

/// Attempts updated by one statement (six parameters each, within SQLite's and
/// PostgreSQL's parameter limits).
const REPORT_CHUNK: usize = 500;

/// The reports of one attempt since the last write.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AttemptReport {
    pub(crate) run_id: i64,
    pub(crate) attempt: u32,
    pub(crate) progress: Option<(u8, String)>,
    pub(crate) stage: Option<String>,
    pub(crate) checkpoint: Option<serde_json::Value>,
    pub(crate) logs: Vec<(DateTime<Utc>, LogLevel, String)>,
}

impl Store {
    /// Writes reports of attempts `node` runs, in one transaction. Reports for runs the
    /// node no longer owns are dropped; returns how many attempts matched.
    pub(crate) async fn write_reports(
        &self,
        node: &str,
        reports: &[AttemptReport],
    ) -> Result<usize, StoreError> {
        if reports.is_empty() {
            return Ok(0);
        }
        let _turn = self.write_turn().await;
        let txn = self.db.begin_with_options(write_txn()).await?;
        // One statement per chunk sets what each attempt reported (NULL: unchanged)
        // and returns the attempts that passed the fence; only their logs are kept.
        let mut owned = HashSet::new();
        for chunk in reports.chunks(REPORT_CHUNK) {
            let mut values = vec![Value::from(node.to_string())];
            let mut rows = Vec::with_capacity(chunk.len());
            for r in chunk {
                let k = values.len();
                rows.push(format!(
                    "(CAST(${} AS BIGINT), CAST(${} AS INTEGER), CAST(${} AS INTEGER), \
                     CAST(${} AS TEXT), CAST(${} AS TEXT), CAST(${} AS TEXT))",
                    k + 1,
                    k + 2,
                    k + 3,
                    k + 4,
                    k + 5,
                    k + 6
                ));
                let (percent, message) = match &r.progress {
                    Some((p, m)) => (Some(i32::from(*p)), Some(m.clone())),
                    None => (None, None),
                };
                values.extend([
                    Value::from(r.run_id),
                    Value::from(int(r.attempt)),
                    Value::from(percent),
                    Value::from(message),
                    Value::from(r.stage.clone()),
                    Value::from(r.checkpoint.as_ref().map(|c| c.to_string())),
                ]);
            }
            let sql = format!(
                "WITH r (id, attempt, progress, progress_message, stage, checkpoint) AS (VALUES {}) \
                 UPDATE kairos_runs SET \
                 progress = COALESCE(r.progress, kairos_runs.progress), \
                 progress_message = CASE WHEN r.progress IS NULL THEN kairos_runs.progress_message \
                 ELSE r.progress_message END, \
                 stage = COALESCE(r.stage, kairos_runs.stage), \
                 checkpoint = COALESCE(r.checkpoint, kairos_runs.checkpoint) \
                 FROM r WHERE kairos_runs.id = r.id AND kairos_runs.attempt = r.attempt \
                 AND kairos_runs.node_id = $1 AND kairos_runs.{RUNNING_BY_ID} \
                 RETURNING kairos_runs.id",
                rows.join(", ")
            );
            for row in txn.query_all_raw(self.stmt(&sql, values)).await? {
                owned.insert(row.try_get::<i64>("", "id")?);
            }
        }
        let matched = reports.iter().filter(|r| owned.contains(&r.run_id)).count();
        let mut logs: Vec<Value> = Vec::new();
        let mut rows = Vec::new();
        for r in reports.iter().filter(|r| owned.contains(&r.run_id)) {
            for (at, level, message) in &r.logs {
                let k = logs.len();
                logs.extend([
                    Value::from(r.run_id),
                    Value::from(int(r.attempt)),
                    Value::from(ms(*at)),
                    Value::from(level.as_str()),
                    Value::from(message.clone()),
                ]);
                rows.push(format!("({})", placeholders(k + 1, 5)));
                if rows.len() == 200 {
                    self.insert_logs(&txn, &rows, std::mem::take(&mut logs))
                        .await?;
                    rows.clear();
                }
            }
        }
        if !rows.is_empty() {
            self.insert_logs(&txn, &rows, logs).await?;
        }
        txn.commit().await?;
        if matched < reports.len() {
            tracing::warn!(
                stale = reports.len() - matched,
                "reports for attempts this node no longer owns were discarded"
            );
        }
        Ok(matched)
    }

    async fn insert_logs<C: ConnectionTrait>(
        &self,
        conn: &C,
        rows: &[String],
        values: Vec<Value>,
    ) -> Result<(), StoreError> {
        conn.execute_raw(self.stmt(
            &format!(
                "INSERT INTO kairos_run_logs (run_id, attempt, at, level, message) VALUES {}",
                rows.join(", ")
            ),
            values,
        ))
        .await?;
        Ok(())
    }

    /// A run's log lines after the line `after` (0 for all), oldest first, at most
    /// `limit`.
    pub(crate) async fn run_logs(
        &self,
        run_id: i64,
        after: i64,
        limit: u64,
    ) -> Result<Vec<RunLog>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT id, attempt, at, level, message FROM kairos_run_logs \
                 WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                [
                    Value::from(run_id),
                    Value::from(after),
                    Value::from(i64::try_from(limit).unwrap_or(i64::MAX)),
                ],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let level: String = r.try_get("", "level")?;
                Ok(RunLog {
                    id: r.try_get("", "id")?,
                    run_id,
                    attempt: count(r.try_get("", "attempt")?),
                    at: from_ms(r.try_get("", "at")?),
                    level: level.parse().map_err(|message| StoreError::Corrupt {
                        table: "kairos_run_logs",
                        id: run_id.to_string(),
                        message,
                    })?,
                    message: r.try_get("", "message")?,
                })
            })
            .collect()
    }
}
