//! Queues as operators see them: limits, pause state, and how many runs wait and run.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::codec::{ms, queue_info};
use super::entity::queue;
use super::sql::columns;
use super::{QueueLimit, Store, StoreError, bump, write_txn};
use crate::model::QueueInfo;

/// The limit a stored queue puts on claims; `None` for a queue without any.
pub(crate) fn stored_limit(q: &QueueInfo) -> Option<QueueLimit> {
    let rate = q.rate_limit.zip(q.rate_window);
    (q.concurrency.is_some() || rate.is_some()).then_some(QueueLimit {
        concurrency: q.concurrency,
        rate,
    })
}

impl Store {
    /// Every queue that is declared, used by a published task, or holds unfinished
    /// runs, by name.
    pub(crate) async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError> {
        let mut out: BTreeMap<String, queue::Model> = BTreeMap::new();
        for r in self
            .db
            .query_all_raw(self.stmt(
                &format!("SELECT {} FROM kairos_queues", columns::<queue::Entity>()),
                [],
            ))
            .await?
        {
            let m = queue::Model::from_query_result(&r, "")?;
            out.insert(m.name.clone(), m);
        }
        let blank = |name: String| queue::Model {
            name,
            concurrency: None,
            rate_limit: None,
            rate_window_ms: None,
            paused: false,
            updated_at: 0,
        };
        for r in self
            .db
            .query_all_raw(self.stmt("SELECT DISTINCT queue FROM kairos_tasks", []))
            .await?
        {
            let name: String = r.try_get("", "queue")?;
            out.entry(name.clone()).or_insert_with(|| blank(name));
        }
        let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        // One query per status, each with the literal predicate of that status's
        // partial index, so the count reads only unfinished runs, however many
        // finished ones the table holds.
        for (status, running) in [("queued", false), ("running", true)] {
            let sql = format!(
                "SELECT queue, COUNT(*) AS n FROM kairos_runs WHERE status = '{status}' GROUP BY queue"
            );
            for r in self.db.query_all_raw(self.stmt(&sql, [])).await? {
                let name: String = r.try_get("", "queue")?;
                let n = u64::try_from(r.try_get::<i64>("", "n")?).unwrap_or(0);
                let c = counts.entry(name.clone()).or_default();
                if running {
                    c.1 = n;
                } else {
                    c.0 = n;
                }
                out.entry(name.clone()).or_insert_with(|| blank(name));
            }
        }
        Ok(out
            .into_values()
            .map(|m| {
                let (q, r) = counts.get(&m.name).copied().unwrap_or_default();
                queue_info(m, q, r)
            })
            .collect())
    }

    /// The limits stored for each queue that has any, which every node holds (the
    /// last `[queues]` declaration written by a node's start). Reads the queues' own
    /// table only.
    pub(crate) async fn queue_limits(&self) -> Result<HashMap<String, QueueLimit>, StoreError> {
        let mut out = HashMap::new();
        for r in self
            .db
            .query_all_raw(self.stmt(
                &format!("SELECT {} FROM kairos_queues", columns::<queue::Entity>()),
                [],
            ))
            .await?
        {
            let q = queue_info(queue::Model::from_query_result(&r, "")?, 0, 0);
            if let Some(limit) = stored_limit(&q) {
                out.insert(q.name, limit);
            }
        }
        Ok(out)
    }

    /// Pauses or resumes a queue (creating its row if only runs or tasks named it).
    pub(crate) async fn set_queue_paused(
        &self,
        name: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        txn.execute_raw(self.stmt(
            "INSERT INTO kairos_queues (name, concurrency, rate_limit, rate_window_ms, paused, updated_at) \
             VALUES ($1, NULL, NULL, NULL, $2, $3) ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, \
             updated_at = excluded.updated_at",
            [
                Value::from(name.to_string()),
                Value::from(paused),
                Value::from(ms(now)),
            ],
        ))
        .await?;
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(())
    }
}
