//! The node's side of the event log (see `crate::events`): it writes this node's
//! events to the database while another process watches, relays other processes'
//! events to this node's subscribers while it has any, and trims old events. Idle (no
//! watcher anywhere), it only checks every few seconds whether somebody started
//! watching.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use crate::events::{Event, EventKind};

/// How often pending events are written and others' events read.
const TICK: Duration = Duration::from_millis(250);
/// How often subscriptions are renewed and looked for.
const BEAT: Duration = Duration::from_secs(2);
/// A subscriber that has not beaten for this long is gone.
pub(crate) const SUBSCRIBER_TTL: chrono::Duration = chrono::Duration::seconds(10);
/// Events older than this are deleted.
const KEEP: chrono::Duration = chrono::Duration::minutes(10);
/// Events kept for watchers while the database is out of reach, at most.
const MAX_UNWRITTEN: usize = 20_000;

pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Event>) {
    let bus = &shared.signals.events;
    let me = shared.node.id.clone();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat: Option<tokio::time::Instant> = None;
    let mut last_prune = tokio::time::Instant::now();
    let mut subscribed = false;
    let mut after: i64 = 0;
    let mut announced = false;
    // Other processes' events in the order they happened (see `Reorder`).
    let mut order = crate::events::Reorder::default();
    // This node's events a write failed for, with the database out of reach.
    let mut unwritten: Vec<Event> = Vec::new();
    let mut warned_unwritten = false;
    loop {
        // Until the node has stopped, not merely begun to: the runs that end during
        // the shutdown are written for watchers too, and `node_left` comes last.
        tokio::select! {
            _ = shared.stopped.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = chrono::Utc::now();
        if last_beat.is_none_or(|t| t.elapsed() >= BEAT) {
            last_beat = Some(tokio::time::Instant::now());
            // The node's heartbeat reads it too, at the same pace by default: only a
            // slower heartbeat (or none yet) leaves it to this loop.
            if !bus.watchers_read_within(BEAT + TICK) {
                match shared.store.watched(now - SUBSCRIBER_TTL, &me).await {
                    Ok(w) => bus.saw_watchers(w),
                    Err(e) => tracing::debug!(error = %e, "cannot read event subscribers"),
                }
            }
            if !announced {
                // Once watchers elsewhere are known, so that they hear of it too.
                announced = true;
                shared.emit(|| {
                    Event::new(EventKind::NodeJoined, shared.clock.now()).data(serde_json::json!({
                        "node_id": me,
                        "name": shared.node.name,
                        "hostname": shared.node.hostname,
                        "pid": shared.node.pid,
                        "workers": shared.node.max_workers,
                    }))
                });
            }
            let local = bus.local_subscribers() > 0;
            if local {
                if !subscribed {
                    after = shared.store.last_event_id().await.unwrap_or(0);
                }
                subscribed = shared.store.subscriber_beat(&me, now).await.is_ok();
            } else if subscribed {
                let _ = shared.store.subscriber_leave(&me).await;
                subscribed = false;
                order = crate::events::Reorder::default();
            }
        }
        // Events a failed write left behind go first, in order.
        let mut batch = std::mem::take(&mut unwritten);
        while let Ok(e) = rx.try_recv() {
            batch.push(e);
        }
        // Chunk by chunk, so that what was written is not written again.
        let mut written = 0;
        let mut failed = None;
        for chunk in batch.chunks(crate::store::EVENT_CHUNK) {
            match shared.store.insert_events(chunk).await {
                Ok(()) => written += chunk.len(),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        batch.drain(..written);
        if let Some(e) = failed {
            // Kept for the next tick while the database is out of reach (watchers
            // elsewhere would otherwise miss runs' starts and ends for good); a
            // database that answers and refuses them would refuse them again.
            if e.is_connection() {
                let over = batch.len().saturating_sub(MAX_UNWRITTEN);
                if over > 0 {
                    tracing::warn!(
                        events = over,
                        "cannot write events for watchers; dropping the oldest"
                    );
                    batch.drain(..over);
                }
                if !warned_unwritten {
                    warned_unwritten = true;
                    tracing::warn!(error = %e, events = batch.len(), "cannot write events for watchers; keeping them until the database answers");
                }
                unwritten = batch;
            } else {
                tracing::warn!(error = %e, events = batch.len(), "cannot write events for watchers");
            }
        } else {
            warned_unwritten = false;
        }
        if subscribed {
            match shared.store.events_after(after, Some(&me), 1000).await {
                Ok(events) => {
                    after = events.last().map_or(after, |(id, _)| *id);
                    order.push(events);
                }
                Err(e) => tracing::debug!(error = %e, "cannot read other processes' events"),
            }
        }
        for e in order.release() {
            bus.relay(e);
        }
        if last_prune.elapsed() >= Duration::from_secs(60) {
            last_prune = tokio::time::Instant::now();
            let _ = shared.store.prune_events(now - KEEP).await;
        }
    }
    shared.emit(|| {
        Event::new(EventKind::NodeLeft, shared.clock.now()).data(
            serde_json::json!({ "node_id": me, "name": shared.node.name, "reason": "stopped" }),
        )
    });
    // What is still pending (this node's last events) goes out before it stops.
    let rest: Vec<Event> = unwritten
        .into_iter()
        .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        .collect();
    if !rest.is_empty()
        && let Err(e) = shared.store.insert_events(&rest).await
    {
        tracing::debug!(error = %e, "cannot write the last events");
    }
    if subscribed {
        let _ = shared.store.subscriber_leave(&me).await;
    }
    // `node_left` and the last events are out: the node's streams end after them.
    bus.close();
}
