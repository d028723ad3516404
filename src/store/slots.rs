//! The record of every slot of every job. A slot that fired is accounted for by its run
//! (`scheduled_for`, origin `schedule` or `catch_up`); slots that passed without their
//! own run are stored as ranges (`kairos_job_slots`): `coalesced` into a run, or
//! `skipped` with a reason. A range of skipped slots that continues the previous one
//! with the same reason is extended rather than repeated, so a long-running job that
//! skips every second for a day adds one row, not 86,400.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};

use super::codec::{from_ms, ms};
use super::jobs::SlotRecord;
use super::{Store, StoreError};
use crate::model::{RunOrigin, SlotOutcome};

/// A stored range of slots with what became of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredSlots {
    pub(crate) record: SlotRecord,
    pub(crate) run_id: Option<i64>,
}

impl Store {
    /// Stores `rec`, extending the job's latest range when it continues it (same
    /// outcome and reason, and it ended at `prev`, the slot just before `rec.first`).
    pub(super) async fn record_slots<C: ConnectionTrait>(
        &self,
        conn: &C,
        job_id: i64,
        prev: Option<DateTime<Utc>>,
        rec: &SlotRecord,
        run_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let reason = rec.reason.map(|r| r.as_str());
        if let (Some(prev), SlotOutcome::Skipped) = (prev, rec.outcome) {
            let res = conn
                .execute_raw(self.stmt(
                    "UPDATE kairos_job_slots SET last_slot = $1, recorded_at = $2 \
                     WHERE id = (SELECT MAX(id) FROM kairos_job_slots WHERE job_id = $3) \
                     AND last_slot = $4 AND outcome = 'skipped' AND reason = $5",
                    [
                        Value::from(ms(rec.last)),
                        Value::from(ms(now)),
                        Value::from(job_id),
                        Value::from(ms(prev)),
                        Value::from(reason),
                    ],
                ))
                .await?;
            if res.rows_affected() > 0 {
                return Ok(());
            }
        }
        conn.execute_raw(self.stmt(
            "INSERT INTO kairos_job_slots (job_id, first_slot, last_slot, outcome, reason, run_id, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                Value::from(job_id),
                Value::from(ms(rec.first)),
                Value::from(ms(rec.last)),
                Value::from(rec.outcome.as_str()),
                Value::from(reason),
                Value::from(run_id),
                Value::from(ms(now)),
            ],
        ))
        .await?;
        Ok(())
    }

    /// Stored slot ranges of a job that end at or after `since`, oldest first.
    pub(crate) async fn slot_ranges(
        &self,
        job_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<StoredSlots>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT first_slot, last_slot, outcome, reason, run_id FROM kairos_job_slots \
                 WHERE job_id = $1 AND last_slot >= $2 ORDER BY first_slot, id",
                [Value::from(job_id), Value::from(ms(since))],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let corrupt = |message: String| StoreError::Corrupt {
                    table: "kairos_job_slots",
                    id: format!("job {job_id}"),
                    message,
                };
                let outcome: String = r.try_get("", "outcome")?;
                let reason: Option<String> = r.try_get("", "reason")?;
                Ok(StoredSlots {
                    record: SlotRecord {
                        first: from_ms(r.try_get("", "first_slot")?),
                        last: from_ms(r.try_get("", "last_slot")?),
                        outcome: outcome.parse().map_err(corrupt)?,
                        reason: reason.map(|s| s.parse()).transpose().map_err(corrupt)?,
                    },
                    run_id: r.try_get("", "run_id")?,
                })
            })
            .collect()
    }

    /// Runs a job fired for its slots at or after `since`: (slot, run id, origin).
    pub(crate) async fn slot_runs(
        &self,
        job_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, i64, RunOrigin)>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT scheduled_for, id, origin FROM kairos_runs WHERE job_id = $1 \
                 AND scheduled_for >= $2 AND origin IN ('schedule', 'catch_up') ORDER BY scheduled_for",
                [Value::from(job_id), Value::from(ms(since))],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let origin: String = r.try_get("", "origin")?;
                Ok((
                    from_ms(r.try_get("", "scheduled_for")?),
                    r.try_get("", "id")?,
                    origin.parse().map_err(|message| StoreError::Corrupt {
                        table: "kairos_runs",
                        id: format!("job {job_id}"),
                        message,
                    })?,
                ))
            })
            .collect()
    }
}
