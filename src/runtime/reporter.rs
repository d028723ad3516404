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
use crate::context::{Report, Who};
use crate::events::{Event, EventKind};
use crate::store::AttemptReport;

/// How often pending reports are written at most.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Report>) {
    let mut pending: HashMap<(i64, u32), Pending> = HashMap::new();
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
        let (batch, who): (Vec<AttemptReport>, Vec<Who>) =
            pending.drain().map(|(_, p)| (p.report, p.who)).unzip();
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
        for tx in waiting.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// One attempt's reports since the last write, and who it is.
struct Pending {
    who: Who,
    report: AttemptReport,
}

/// Folds one report into the pending ones.
fn take(
    pending: &mut HashMap<(i64, u32), Pending>,
    waiting: &mut Vec<tokio::sync::oneshot::Sender<()>>,
    report: Report,
) {
    fn entry(pending: &mut HashMap<(i64, u32), Pending>, who: Who) -> &mut AttemptReport {
        &mut pending
            .entry((who.run_id, who.attempt))
            .or_insert_with(|| Pending {
                report: AttemptReport {
                    run_id: who.run_id,
                    attempt: who.attempt,
                    ..Default::default()
                },
                who,
            })
            .report
    }
    match report {
        Report::Progress {
            who,
            percent,
            message,
        } => entry(pending, who).progress = Some((percent, message)),
        Report::Stage { who, stage } => entry(pending, who).stage = Some(stage),
        Report::Log {
            who,
            at,
            level,
            message,
        } => entry(pending, who).logs.push((at, level, message)),
        Report::Checkpoint { who, state } => entry(pending, who).checkpoint = Some(state),
        Report::Flush(tx) => waiting.push(tx),
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
