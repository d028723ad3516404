//! The event log other processes read (see `crate::events`): events written in
//! batches while somebody watches, read back by id, and the subscribers' heartbeats
//! that tell writers whether anybody watches.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};

use super::codec::{from_ms, ms};
use super::sql::placeholders;
use super::{Store, StoreError};
use crate::events::Event;

/// How long a process that is not a node trusts what it last read about watchers.
const WATCHERS_TTL: Duration = Duration::from_secs(1);

/// What this process knows about watchers without asking the database: its own
/// subscriptions (by subscriber id, with their last beat) and its last reading.
#[derive(Debug, Default)]
pub(crate) struct WatchersSeen {
    own: Mutex<HashMap<String, Instant>>,
    read: Mutex<Option<(Instant, bool)>>,
}

/// Events one insert statement writes at most.
pub(crate) const EVENT_CHUNK: usize = 300;

impl Store {
    /// Appends events to the log, [`EVENT_CHUNK`] per statement.
    pub(crate) async fn insert_events(&self, events: &[Event]) -> Result<(), StoreError> {
        let _turn = self.periodic_write_turn().await;
        for chunk in events.chunks(EVENT_CHUNK) {
            let mut values = Vec::with_capacity(chunk.len() * 7);
            let rows: Vec<String> = chunk
                .iter()
                .map(|e| {
                    let k = values.len();
                    let mut data = e.data.clone();
                    if !e.tags.is_empty()
                        && let serde_json::Value::Object(m) = &mut data
                    {
                        m.insert(
                            "tags".into(),
                            serde_json::to_value(&e.tags).unwrap_or_default(),
                        );
                    }
                    values.extend([
                        Value::from(ms(e.at)),
                        Value::from(e.kind.as_str()),
                        Value::from(e.run_id),
                        Value::from(e.job.clone()),
                        Value::from(e.task.clone()),
                        Value::from(e.node_id.clone()),
                        Value::from(data.to_string()),
                    ]);
                    format!("({})", placeholders(k + 1, 7))
                })
                .collect();
            self.db
                .execute_raw(self.stmt(
                    &format!(
                        "INSERT INTO kairos_events (at, kind, run_id, job, task, node_id, data) VALUES {}",
                        rows.join(", ")
                    ),
                    values,
                ))
                .await?;
        }
        Ok(())
    }

    /// The newest event's id (0 when there is none).
    pub(crate) async fn last_event_id(&self) -> Result<i64, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt("SELECT MAX(id) AS id FROM kairos_events", []))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<i64>>("", "id")?.unwrap_or(0),
            None => 0,
        })
    }

    /// Events after `after`, oldest first, leaving out those `skip_node` made.
    pub(crate) async fn events_after(
        &self,
        after: i64,
        skip_node: Option<&str>,
        limit: u64,
    ) -> Result<Vec<(i64, Event)>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT id, at, kind, run_id, job, task, node_id, data FROM kairos_events \
                 WHERE id > $1 AND (node_id IS NULL OR node_id <> $2) ORDER BY id LIMIT $3",
                [
                    Value::from(after),
                    Value::from(skip_node.unwrap_or("").to_string()),
                    Value::from(i64::try_from(limit).unwrap_or(i64::MAX)),
                ],
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get("", "id")?;
            let kind: String = r.try_get("", "kind")?;
            let Ok(kind) = kind.parse() else {
                continue; // a kind from a newer version: skip it
            };
            let data: String = r.try_get("", "data")?;
            let mut data: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
            let tags = data
                .as_object_mut()
                .and_then(|m| m.remove("tags"))
                .and_then(|t| serde_json::from_value(t).ok())
                .unwrap_or_default();
            out.push((
                id,
                Event {
                    at: from_ms(r.try_get("", "at")?),
                    kind,
                    run_id: r.try_get("", "run_id")?,
                    job: r.try_get("", "job")?,
                    task: r.try_get("", "task")?,
                    tags,
                    node_id: r.try_get("", "node_id")?,
                    data,
                },
            ));
        }
        Ok(out)
    }

    /// Records that subscriber `id` still watches.
    pub(crate) async fn subscriber_beat(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _turn = self.periodic_write_turn().await;
        self.db
            .execute_raw(self.stmt(
                "INSERT INTO kairos_subscribers (id, heartbeat_at) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                [Value::from(id.to_string()), Value::from(ms(now))],
            ))
            .await?;
        let mut own = self.watchers.own.lock().expect("watchers poisoned");
        own.insert(id.to_string(), Instant::now());
        Ok(())
    }

    /// Subscriber `id` stopped watching.
    pub(crate) async fn subscriber_leave(&self, id: &str) -> Result<(), StoreError> {
        self.watchers
            .own
            .lock()
            .expect("watchers poisoned")
            .remove(id);
        self.db
            .execute_raw(self.stmt(
                "DELETE FROM kairos_subscribers WHERE id = $1",
                [Value::from(id.to_string())],
            ))
            .await?;
        Ok(())
    }

    /// Whether a subscriber other than `me` beat since `since`.
    pub(crate) async fn watched(&self, since: DateTime<Utc>, me: &str) -> Result<bool, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT COUNT(*) AS n FROM kairos_subscribers WHERE heartbeat_at >= $1 AND id <> $2",
                [Value::from(ms(since)), Value::from(me.to_string())],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64>("", "n")? > 0,
            None => false,
        })
    }

    /// Whether anybody watches the event log, for a process that is not a node (an
    /// admin tool, `kairos serve`) about to write its events: a subscription of this
    /// process's own counts at once; others are read at most once a second, since an
    /// enqueue would otherwise pay a round trip for it. A watcher that starts in
    /// another process thus gets this process's events within a second (a node's
    /// within its two-second beat).
    pub(crate) async fn watched_lately(&self, since: DateTime<Utc>) -> Result<bool, StoreError> {
        let ttl = crate::runtime::SUBSCRIBER_TTL.to_std().unwrap_or_default();
        if self
            .watchers
            .own
            .lock()
            .expect("watchers poisoned")
            .values()
            .any(|beat| beat.elapsed() < ttl)
        {
            return Ok(true);
        }
        if let Some((at, watched)) = *self.watchers.read.lock().expect("watchers poisoned")
            && at.elapsed() < WATCHERS_TTL
        {
            return Ok(watched);
        }
        let watched = self.watched(since, "").await?;
        *self.watchers.read.lock().expect("watchers poisoned") = Some((Instant::now(), watched));
        Ok(watched)
    }

    /// Forgets events and subscribers older than `before`.
    pub(crate) async fn prune_events(&self, before: DateTime<Utc>) -> Result<(), StoreError> {
        for sql in [
            "DELETE FROM kairos_events WHERE at < $1",
            "DELETE FROM kairos_subscribers WHERE heartbeat_at < $1",
        ] {
            self.db
                .execute_raw(self.stmt(sql, [Value::from(ms(before))]))
                .await?;
        }
        Ok(())
    }
}
