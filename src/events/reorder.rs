//! Putting other processes' events back in the order they happened. Each process
//! appends its events to the log in batches (every quarter second), so an event made
//! on one node can be read after a later event another node wrote first: a run's
//! `run_queued` after its `run_finished`. A reader holds what it reads for a moment
//! and hands events on in the order of their times.

use std::time::Duration;

use tokio::time::Instant;

use super::Event;

/// How long an event read from the log is held: longer than a writer's batch and a
/// reader's poll together, so that an earlier event written late is read meanwhile.
pub(crate) const HOLD: Duration = Duration::from_millis(600);

/// Events read from the log, held until they can be handed on in order.
#[derive(Debug, Default)]
pub(crate) struct Reorder {
    /// When each was read, its id in the log, and the event.
    held: Vec<(Instant, i64, Event)>,
}

impl Reorder {
    /// Takes events just read from the log.
    pub(crate) fn push(&mut self, events: impl IntoIterator<Item = (i64, Event)>) {
        let now = Instant::now();
        self.held
            .extend(events.into_iter().map(|(id, e)| (now, id, e)));
    }

    /// The events due, oldest first: those held for [`HOLD`], and every held event
    /// that happened no later than one of them.
    pub(crate) fn release(&mut self) -> Vec<Event> {
        let now = Instant::now();
        let Some(upto) = self
            .held
            .iter()
            .filter(|(read, ..)| now.duration_since(*read) >= HOLD)
            .map(|(_, _, e)| e.at)
            .max()
        else {
            return Vec::new();
        };
        self.held.sort_by_key(|(_, id, e)| (e.at, *id));
        let n = self.held.partition_point(|(_, _, e)| e.at <= upto);
        self.held.drain(..n).map(|(_, _, e)| e).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;
    use chrono::{DateTime, Utc};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn event(kind: EventKind, ms: i64) -> Event {
        Event::new(kind, at(ms)).run(7, "t")
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_written_late_is_handed_on_before_later_ones() {
        let mut r = Reorder::default();
        // Another node's batch came first: the run finished (at 5 ms) ...
        r.push([(10, event(EventKind::RunFinished, 5))]);
        assert!(r.release().is_empty(), "held at first");
        tokio::time::advance(Duration::from_millis(250)).await;
        // ... before the batch that queued it (at 0 ms) was written.
        r.push([(11, event(EventKind::RunQueued, 0))]);
        assert!(r.release().is_empty());
        tokio::time::advance(HOLD - Duration::from_millis(250)).await;
        let kinds: Vec<EventKind> = r.release().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::RunQueued, EventKind::RunFinished]);
        assert!(r.release().is_empty(), "nothing is handed on twice");
    }

    #[tokio::test(start_paused = true)]
    async fn events_that_happened_later_wait_for_their_own_time() {
        let mut r = Reorder::default();
        r.push([(1, event(EventKind::RunStarted, 0))]);
        tokio::time::advance(Duration::from_millis(300)).await;
        r.push([(2, event(EventKind::RunProgress, 300))]);
        tokio::time::advance(HOLD - Duration::from_millis(300)).await;
        let first: Vec<EventKind> = r.release().into_iter().map(|e| e.kind).collect();
        assert_eq!(first, [EventKind::RunStarted]);
        tokio::time::advance(Duration::from_millis(300)).await;
        let next: Vec<EventKind> = r.release().into_iter().map(|e| e.kind).collect();
        assert_eq!(next, [EventKind::RunProgress]);
    }
}
