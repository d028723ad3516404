//! The reporter: writes what running tasks report (progress, stage, logs, checkpoints)
//! in batches. Each attempt keeps only its latest progress, stage and checkpoint in its
//! own buffer and wakes the reporter once per write, so a task reporting a thousand
//! times a second costs a few messages and writes a second. The completer flushes it
//! before writing outcomes, so an attempt's last report is always stored before its
//! end. While the database is out of reach, reports wait in memory, as outcomes do.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use crate::context::{AttemptReports, Report, Who};
use crate::events::{Event, EventKind};
use crate::store::AttemptReport;

/// How often pending reports are written at most.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Failed writes after which reports the database refuses (while it answers) are
/// dropped, rather than holding every later report, and the outcomes waiting on them,
/// for ever. Reports that fail because the database is out of reach are kept.
const REFUSED_AT_MOST: u32 = 5;

pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Report>) {
    let mut pending: Vec<Arc<AttemptReports>> = Vec::new();
    let mut waiting = Vec::new();
    // Set while reports wait to be written again: when, and the wait after that.
    let mut retry: Option<(tokio::time::Instant, Duration)> = None;
    let mut refused = 0;
    let mut open = true;
    loop {
        // Wait for the first report, then gather for a while so bursts coalesce (the
        // attempts keep folding what they report into their own buffers meanwhile).
        // A flush ends the gathering, unless a failed write waits for its next try.
        let deadline = match retry {
            Some((at, _)) => at,
            None => {
                let Some(first) = rx.recv().await else {
                    return;
                };
                if receive(first, &mut pending, &mut waiting) {
                    tokio::time::Instant::now()
                } else {
                    tokio::time::Instant::now() + FLUSH_EVERY
                }
            }
        };
        loop {
            if !open {
                tokio::time::sleep_until(deadline).await;
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => {
                    if receive(r, &mut pending, &mut waiting) && retry.is_none() {
                        break;
                    }
                }
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        if write(&shared, &mut pending, &mut refused).await {
            retry = None;
            for tx in waiting.drain(..) {
                let _ = tx.send(());
            }
            if !open {
                return;
            }
        } else {
            let wait = retry.map_or(Duration::from_millis(50), |(_, w)| w);
            retry = Some((
                tokio::time::Instant::now() + wait,
                (wait * 2).min(Duration::from_secs(5)),
            ));
        }
    }
}

/// Takes one message; returns whether it asks for a flush.
fn receive(
    r: Report,
    pending: &mut Vec<Arc<AttemptReports>>,
    waiting: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) -> bool {
    match r {
        Report::Pending(a) => {
            pending.push(a);
            false
        }
        Report::Flush(tx) => {
            waiting.push(tx);
            true
        }
    }
}

/// Writes what the attempts in `pending` reported. Returns false when that is to be
/// tried again: the reports are then back in the attempts' buffers, under whatever
/// they reported since, and the attempts back in `pending`.
async fn write(shared: &Shared, pending: &mut Vec<Arc<AttemptReports>>, refused: &mut u32) -> bool {
    // An attempt put back after a failed write may have been sent again since.
    pending.sort_by_key(|a| Arc::as_ptr(a) as usize);
    pending.dedup_by(|a, b| Arc::ptr_eq(a, b));
    let (batch, held): (Vec<AttemptReport>, Vec<Arc<AttemptReports>>) = pending
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
                    "dropped the reports of an execution this node stopped, as the run is no \
                     longer this node's"
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
            (report, a)
        })
        .unzip();
    if batch.is_empty() {
        return true;
    }
    match shared.store.write_reports(&shared.node.id, &batch).await {
        Ok(_) => {
            *refused = 0;
            let who: Vec<Who> = held.iter().map(|a| a.who.clone()).collect();
            publish(shared, &batch, &who);
            true
        }
        Err(e) => {
            // Out of reach, the database will take them once it is back (as the
            // outcomes waiting on them); refused by a database that answers, they are
            // tried a few times.
            if shared.store.ping().await.is_ok() {
                *refused += 1;
                if *refused >= REFUSED_AT_MOST {
                    *refused = 0;
                    tracing::error!(error = %e, attempts = batch.len(), "cannot store run reports; dropping them");
                    return true;
                }
            }
            tracing::warn!(error = %e, attempts = batch.len(), "cannot store run reports; retrying");
            for (report, a) in batch.into_iter().zip(held) {
                a.put_back(report);
                pending.push(a);
            }
            false
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
