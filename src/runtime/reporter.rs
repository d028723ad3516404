//! The reporter: writes what running tasks report (progress, stage, logs, checkpoints)
//! in batches. Each attempt keeps only its latest progress, stage and checkpoint in its
//! own buffer and wakes the reporter once per write, so a task reporting a thousand
//! times a second costs a few messages and writes a second. The completer flushes it before writing outcomes, so an attempt's
//! last report is always stored before its end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use crate::context::{AttemptReports, Report, Who};
use crate::events::{Event, EventKind};
use crate::store::AttemptReport;

/// How often pending reports are written at most.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Report>) {
    let mut pending: Vec<Arc<AttemptReports>> = Vec::new();
    let mut waiting = Vec::new();
    loop {
        // Wait for the first report, then gather for a while so bursts coalesce (the
        // attempts keep folding what they report into their own buffers meanwhile).
        let Some(first) = rx.recv().await else {
            return;
        };
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Report::Pending(a)) => pending.push(a),
                Some(Report::Flush(tx)) => {
                    waiting.push(tx);
                    break;
                }
                None => {}
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => next = Some(r),
                Ok(None) | Err(_) => break,
            }
        }
        let (batch, who): (Vec<AttemptReport>, Vec<Who>) = pending
            .drain(..)
            .filter(|a| {
                // Its (node, attempt) may also be a current execution's: a write would
                // land on the run as if that execution had made it.
                if a.who.disowned.load(std::sync::atomic::Ordering::SeqCst) {
                    let dropped = a.take();
                    tracing::warn!(
                        run_id = a.who.run_id,
                        attempt = a.who.attempt,
                        logs = dropped.logs.len(),
                        "dropped the reports of an execution this node stopped as no longer the run's"
                    );
                    return false;
                }
                true
            })
            .map(|a| {
                let b = a.take();
                let report = AttemptReport {
                    run_id: a.who.run_id,
                    attempt: a.who.attempt,
                    progress: b.progress,
                    stage: b.stage,
                    checkpoint: b.checkpoint,
                    logs: b.logs,
                };
                (report, a.who.clone())
            })
            .unzip();
        if !batch.is_empty() {
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
            publish(&shared, &batch, &who);
        }
        for tx in waiting.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// Tells subscribers what was just stored.
fn publish(shared: &Shared, batch: &[AttemptReport], who: &[Who]) {
    let bus = &shared.signals.events;
    if !bus.wanted() {
        return;
    }
    let now = shared.clock.now();
    for (r, w) in batch.iter().zip(who) {
        let base = |kind| {
            Event::new(kind, now)
                .run(w.run_id, &w.task)
                .job(shared.job_name(w.job_id))
                .tags(&w.tags)
        };
        if let Some(stage) = &r.stage {
            bus.publish(base(EventKind::RunStage).data(serde_json::json!({
                "attempt": w.attempt, "stage": stage,
            })));
        }
        if let Some((percent, message)) = &r.progress {
            bus.publish(base(EventKind::RunProgress).data(serde_json::json!({
                "attempt": w.attempt, "percent": percent, "message": message,
            })));
        }
        for (at, level, message) in &r.logs {
            let mut e = base(EventKind::RunLog).data(serde_json::json!({
                "attempt": w.attempt, "level": level, "message": message,
            }));
            e.at = *at;
            bus.publish(e);
        }
    }
}
