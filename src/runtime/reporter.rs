//! The reporter: collects what running tasks report (progress, stage, logs,
//! checkpoints) and writes it in batches, keeping only the latest progress, stage and
//! checkpoint of each attempt: a task reporting a thousand times a second costs a few
//! writes a second. The completer flushes it before writing outcomes, so an attempt's
//! last report is always stored before its end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use crate::context::Report;
use crate::store::AttemptReport;

/// How often pending reports are written at most.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Report>) {
    let mut pending: HashMap<(i64, u32), AttemptReport> = HashMap::new();
    let mut waiting = Vec::new();
    loop {
        // Wait for the first report, then gather for a while so bursts coalesce.
        let Some(first) = rx.recv().await else {
            return;
        };
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        let mut next = Some(first);
        loop {
            if let Some(report) = next.take() {
                let flush_now = matches!(report, Report::Flush(_));
                take(&mut pending, &mut waiting, report);
                if flush_now {
                    break;
                }
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => next = Some(r),
                Ok(None) | Err(_) => break,
            }
        }
        let batch: Vec<AttemptReport> = pending.drain().map(|(_, r)| r).collect();
        let mut wait = Duration::from_millis(50);
        for _ in 0..5 {
            match shared.store.write_reports(&shared.node.id, &batch).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, attempts = batch.len(), "cannot store run reports; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        for tx in waiting.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// Folds one report into the pending ones.
fn take(
    pending: &mut HashMap<(i64, u32), AttemptReport>,
    waiting: &mut Vec<tokio::sync::oneshot::Sender<()>>,
    report: Report,
) {
    fn entry(
        pending: &mut HashMap<(i64, u32), AttemptReport>,
        run_id: i64,
        attempt: u32,
    ) -> &mut AttemptReport {
        pending
            .entry((run_id, attempt))
            .or_insert_with(|| AttemptReport {
                run_id,
                attempt,
                ..Default::default()
            })
    }
    match report {
        Report::Progress {
            run_id,
            attempt,
            percent,
            message,
        } => {
            entry(pending, run_id, attempt).progress = Some((percent, message));
        }
        Report::Stage {
            run_id,
            attempt,
            stage,
        } => {
            entry(pending, run_id, attempt).stage = Some(stage);
        }
        Report::Log {
            run_id,
            attempt,
            at,
            level,
            message,
        } => {
            entry(pending, run_id, attempt)
                .logs
                .push((at, level, message));
        }
        Report::Checkpoint {
            run_id,
            attempt,
            state,
        } => {
            entry(pending, run_id, attempt).checkpoint = Some(state);
        }
        Report::Flush(tx) => waiting.push(tx),
    }
}
