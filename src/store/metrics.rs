//! Reads behind the Prometheus metrics of the HTTP API: runs counted by task and
//! status, and how late jobs fired their recent slots. Admin reads, off the hot path;
//! both are bounded by indexes the claim path already pays for (the lateness read goes
//! through the unique `(job_id, scheduled_for)` index, one range per job).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};

use super::codec::ms;
use super::{Store, StoreError};
use crate::model::RunStatus;

impl Store {
    /// How many runs each (task, status) pair has.
    pub(crate) async fn counts_by_task(
        &self,
    ) -> Result<BTreeMap<(String, RunStatus), u64>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT task, status, COUNT(*) AS n FROM kairos_runs GROUP BY task, status",
                [],
            ))
            .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            let task: String = r.try_get("", "task")?;
            let status: String = r.try_get("", "status")?;
            let n: i64 = r.try_get("", "n")?;
            if let Ok(s) = status.parse::<RunStatus>() {
                out.insert((task, s), u64::try_from(n).unwrap_or(0));
            }
        }
        Ok(out)
    }

    /// For the runs jobs fired on schedule for slots since `since` (at most `limit`,
    /// the most recent): the task and how many milliseconds after its nominal slot
    /// each run was created.
    pub(crate) async fn firing_lateness(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT task, created_at - scheduled_for AS late FROM kairos_runs \
                 WHERE job_id IN (SELECT id FROM kairos_jobs) AND scheduled_for >= $1 \
                 AND origin = 'schedule' ORDER BY scheduled_for DESC LIMIT $2",
                [Value::from(ms(since)), Value::from(limit)],
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("", "task")?, r.try_get::<i64>("", "late")?.max(0))))
            .collect()
    }
}
