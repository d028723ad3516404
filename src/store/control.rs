//! Operator actions on one run: cancel, retry, delete. Each is one transaction that
//! reads the run's state and changes it only if the state allows, so two operators (or
//! an operator and the node) cannot interleave badly.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};

use super::codec::{count, ms};
use super::entity::run;
use super::sql::columns;
use super::{Store, StoreError, bump, write_txn};
use crate::model::{RunEventKind, RunStatus};

/// What `cancel_run` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    /// The run was queued and is now cancelled.
    Cancelled,
    /// The run is running; its node stops it (cooperatively, then by dropping it).
    Requested,
    /// The run had already finished with this status.
    AlreadyFinished(RunStatus),
    /// No such run.
    NotFound,
}

/// What `delete_run` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeleteOutcome {
    /// Deleted; it had this status.
    Deleted(RunStatus),
    /// It is running: cancel it first.
    Running,
    /// No such run.
    NotFound,
}

/// What `retry_run` did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RetryOutcome {
    /// Queued again for its next attempt: the run as the retry left it (a node may
    /// claim it the moment the retry commits).
    Queued(Box<crate::model::Run>),
    /// The run is not finished, or succeeded: nothing to retry.
    NotRetryable(RunStatus),
    /// No such run.
    NotFound,
}

impl Store {
    async fn status_of<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: i64,
    ) -> Result<Option<(RunStatus, u32, u32)>, StoreError> {
        let Some(row) = conn
            .query_one_raw(self.stmt(
                "SELECT status, attempt, max_retries FROM kairos_runs WHERE id = $1",
                [Value::from(id)],
            ))
            .await?
        else {
            return Ok(None);
        };
        let status: String = row.try_get("", "status")?;
        let status = status.parse().map_err(|message| StoreError::Corrupt {
            table: "kairos_runs",
            id: id.to_string(),
            message,
        })?;
        Ok(Some((
            status,
            count(row.try_get("", "attempt")?),
            count(row.try_get("", "max_retries")?),
        )))
    }

    /// Cancels a queued run at once, or asks the owning node to cancel a running one.
    pub(crate) async fn cancel_run(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let Some((status, attempt, _)) = self.status_of(&txn, id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        let outcome = match status {
            RunStatus::Queued => {
                txn.execute_raw(self.stmt(
                    "UPDATE kairos_runs SET status = 'cancelled', finished_at = $1, cancel_requested = true, \
                     error = 'cancelled while queued' WHERE id = $2 AND status = 'queued'",
                    [Value::from(ms(now)), Value::from(id)],
                ))
                .await?;
                self.add_history(
                    &txn,
                    id,
                    attempt,
                    now,
                    RunEventKind::Cancelled,
                    Some("cancelled while queued"),
                    None,
                )
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

    /// Queues a finished, unsuccessful run again as its next attempt, due now. The
    /// operator grants that attempt: `max_retries` grows so the attempt number stays
    /// within `max_attempts`. The last error stays on the run and in its history until
    /// the new attempt ends.
    pub(crate) async fn retry_run(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<RetryOutcome, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let Some((status, attempt, max_retries)) = self.status_of(&txn, id).await? else {
            return Ok(RetryOutcome::NotFound);
        };
        if !matches!(
            status,
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::Cancelled
        ) {
            return Ok(RetryOutcome::NotRetryable(status));
        }
        // The next attempt is `attempt + 1`; it must be allowed: attempt + 1 <= max + 1.
        let max_retries = max_retries.max(attempt);
        let res = txn
            .execute_raw(self.stmt(
                "UPDATE kairos_runs SET status = 'queued', run_at = $1, finished_at = NULL, \
                 cancel_requested = false, node_id = NULL, lease_until = NULL, max_retries = $2, \
                 progress = NULL, progress_message = NULL, stage = NULL \
                 WHERE id = $3 AND status = $4",
                [
                    Value::from(ms(now)),
                    Value::from(super::codec::int(max_retries)),
                    Value::from(id),
                    Value::from(status.as_str()),
                ],
            ))
            .await?;
        if res.rows_affected() == 0 {
            return Ok(RetryOutcome::NotRetryable(status));
        }
        self.add_history(
            &txn,
            id,
            attempt,
            now,
            RunEventKind::ManualRetry,
            Some(&format!(
                "queued again by an operator after ending {status}"
            )),
            None,
        )
        .await?;
        bump(&txn, self).await?;
        let row = txn
            .query_one_raw(self.stmt(
                &format!(
                    "SELECT {} FROM kairos_runs WHERE id = $1",
                    columns::<run::Entity>()
                ),
                [Value::from(id)],
            ))
            .await?
            .ok_or(StoreError::Db(sea_orm::DbErr::RecordNotFound(format!(
                "run {id}"
            ))))?;
        txn.commit().await?;
        Ok(RetryOutcome::Queued(Box::new(
            self.complete_run(row).await?,
        )))
    }

    /// Deletes a run that is not running, with its tags and history.
    pub(crate) async fn delete_run(&self, id: i64) -> Result<DeleteOutcome, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let Some((status, _, _)) = self.status_of(&txn, id).await? else {
            return Ok(DeleteOutcome::NotFound);
        };
        if status == RunStatus::Running {
            return Ok(DeleteOutcome::Running);
        }
        for table in super::retention::RUN_CHILDREN {
            let sql = format!("DELETE FROM {table} WHERE run_id = $1");
            txn.execute_raw(self.stmt(&sql, [Value::from(id)])).await?;
        }
        txn.execute_raw(self.stmt("DELETE FROM kairos_runs WHERE id = $1", [Value::from(id)]))
            .await?;
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(DeleteOutcome::Deleted(status))
    }
}
