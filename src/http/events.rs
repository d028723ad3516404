//! Live events: `GET /api/v1/events` (Server-Sent Events, filtered by query) and
//! `/api/v1/ws` (WebSocket: the client subscribes to a run, a job, a task, a tag or
//! everything, and may hold several subscriptions).
//!
//! # Where events come from
//! Embedded with a running node's [`Admin`], subscribers read that node's event stream,
//! which already relays the events of other processes. Over an admin tool's `Admin`
//! (`kairos serve`), the [`Hub`] subscribes to the database's event log while anybody
//! listens: it beats a subscriber heartbeat (so every node starts writing its events,
//! within a couple of seconds), reads the log four times a second and fans the events
//! out; when the last listener leaves, it stops, and nodes stop writing.
//!
//! # Slow consumers
//! Each listener has a bounded buffer. One that falls behind (its connection does not
//! drain) gets a `dropped` notice and is disconnected; nothing waits for it, so the
//! scheduler is never slowed by a listener.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::input::{self, Query};
use crate::events::{EventBus, EventFilter, EventKind, EventStream};
use crate::ops::Admin;

/// How often the event log is read while somebody listens.
const TICK: Duration = Duration::from_millis(250);
/// How often the subscription heartbeat is renewed (nodes forget a subscriber after
/// 10 s without one).
const BEAT: Duration = Duration::from_secs(2);
/// How long the log is still read after the last listener left (a reconnecting
/// dashboard should not make every node stop and restart writing).
const LINGER: Duration = Duration::from_secs(5);
/// How long one WebSocket message may take to send before the client counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the closing message at shutdown may take to send.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Subscriptions one WebSocket may hold.
const MAX_SUBSCRIPTIONS: usize = 100;

/// Fans the database's event log out to this process's listeners (see the module doc).
pub(crate) struct Hub {
    admin: Admin,
    bus: Arc<EventBus>,
    polling: Arc<AtomicBool>,
    /// Held while a poller starts; keeps the newest poller, for [`Hub::closed`].
    start: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Ends the poller (which then leaves the subscribers) when the server shuts down.
    stop: CancellationToken,
}

impl Hub {
    pub(crate) fn new(admin: Admin, stop: CancellationToken) -> Hub {
        Hub {
            admin,
            bus: Arc::new(EventBus::new(None, None)),
            polling: Arc::new(AtomicBool::new(false)),
            start: tokio::sync::Mutex::new(None),
            stop,
        }
    }

    /// Waits until the poller, once the stop token is cancelled, has left the
    /// subscribers, so nodes stop writing events for this process at once rather than
    /// when its subscription expires.
    pub(crate) async fn closed(&self) {
        if let Some(poller) = self.start.lock().await.take() {
            let _ = poller.await;
        }
    }

    /// A new listener's stream: events from the moment it is returned on.
    pub(crate) async fn subscribe(&self, filter: EventFilter) -> Result<EventStream, ApiError> {
        if let Some(s) = self.admin.local_events(filter.clone()) {
            return Ok(s);
        }
        // Counted as a listener before the poller's state is looked at: a poller about
        // to stop sees it and carries on.
        let stream = self.bus.subscribe(filter);
        let mut starting = self.start.lock().await;
        if !self.polling.load(Ordering::SeqCst) {
            let me = format!("http-{}", uuid::Uuid::new_v4().simple());
            let store = self.admin.store();
            // The first beat before answering: from here on, this process's own changes
            // are logged, and other nodes notice within their next beat.
            store
                .subscriber_beat(&me, chrono::Utc::now())
                .await
                .map_err(|e| ApiError::from(crate::Error::from(e)))?;
            let after = store
                .last_event_id()
                .await
                .map_err(|e| ApiError::from(crate::Error::from(e)))?;
            self.polling.store(true, Ordering::SeqCst);
            *starting = Some(tokio::spawn(poll(
                self.admin.clone(),
                self.bus.clone(),
                self.polling.clone(),
                me,
                after,
                self.stop.clone(),
            )));
        }
        Ok(stream)
    }
}

async fn poll(
    admin: Admin,
    bus: Arc<EventBus>,
    polling: Arc<AtomicBool>,
    me: String,
    mut after: i64,
    stop: CancellationToken,
) {
    let store = admin.store();
    let mut last_beat = tokio::time::Instant::now();
    let mut idle_since: Option<tokio::time::Instant> = None;
    // In the order they happened, not the order nodes wrote them.
    let mut order = crate::events::Reorder::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.cancelled() => break,
        }
        if bus.local_subscribers() == 0 {
            let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= LINGER {
                polling.store(false, Ordering::SeqCst);
                // A listener that arrived meanwhile saw `polling` still true and
                // started nothing: keep serving it, unless another poller started.
                if bus.local_subscribers() > 0 && !polling.swap(true, Ordering::SeqCst) {
                    idle_since = None;
                    continue;
                }
                break;
            }
        } else {
            idle_since = None;
        }
        if last_beat.elapsed() >= BEAT {
            last_beat = tokio::time::Instant::now();
            if let Err(e) = store.subscriber_beat(&me, chrono::Utc::now()).await {
                tracing::debug!(error = %e, "cannot renew the event subscription");
            }
        }
        match store.events_after(after, None, 1000).await {
            Ok(events) => {
                after = events.last().map_or(after, |(id, _)| *id);
                order.push(events);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the event log"),
        }
        for e in order.release() {
            bus.relay(e);
        }
    }
    let _ = store.subscriber_leave(&me).await;
}

/// The filter of `GET /api/v1/events`.
fn sse_filter(raw: Option<&str>) -> Result<EventFilter, ApiError> {
    let mut q = Query::parse(raw);
    let mut f = EventFilter::all();
    f.run_id = q.parsed::<i64>("run")?;
    f.job = q.one("job")?;
    f.task = q.one("task")?;
    f.tag = q.one("tag")?.map(|t| input::tag("tag", &t)).transpose()?;
    for k in q.all("kind") {
        f.kinds.push(
            k.parse::<EventKind>()
                .map_err(|e| ApiError::field("kind", e))?,
        );
    }
    q.finish(&["run", "job", "task", "tag", "kind"])?;
    Ok(f)
}

/// Live events as Server-Sent Events: each has its kind as the SSE event name and the
/// event as JSON data. The first, `subscribed`, says the stream is live; a `dropped`
/// event (the client fell behind) ends the stream.
#[utoipa::path(
    get, operation_id = "events_sse", path = "/api/v1/events", tag = "events",
    params(
        ("run" = Option<i64>, Query, description = "Only events of this run"),
        ("job" = Option<String>, Query, description = "Only events of this job"),
        ("task" = Option<String>, Query, description = "Only events of runs of this task"),
        ("tag" = Option<String>, Query, description = "Only events of runs with this tag, key=value"),
        ("kind" = Option<String>, Query, description = "Only these kinds, comma-separated (run_queued, run_started, run_progress, run_stage, run_log, run_retried, run_finished, slot_skipped, job_paused, job_resumed, job_changed, node_joined, node_left)"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "An endless text/event-stream", content_type = "text/event-stream"),
        (status = 400, description = "Invalid filter, or a task no node registered", body = ErrorBody),
        (status = 404, description = "No run or job of that id or name", body = ErrorBody),
    )
)]
pub(crate) async fn sse(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let filter = sse_filter(raw.as_deref())?;
    // A filter naming nothing known would wait forever for nothing: refused, with a
    // did-you-mean, as `GET /api/v1/runs` does.
    known(&st.admin, &filter).await?;
    let stream = st.hub.subscribe(filter).await?;
    let first = SseEvent::default()
        .event("subscribed")
        .data(json!({ "type": "subscribed" }).to_string());
    let events = futures::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        let e = stream.next().await?;
        let sse = SseEvent::default()
            .event(e.kind.as_str())
            .data(serde_json::to_string(&e).unwrap_or_default());
        // After the dropped notice the stream ends.
        let next = (e.kind != EventKind::Dropped).then_some(stream);
        Some((Ok(sse), next))
    });
    let all = futures::StreamExt::chain(futures::stream::once(async { Ok(first) }), events);
    // Ends on shutdown, or the server would wait for a client that never leaves.
    let all = futures::StreamExt::take_until(all, st.stop.clone().cancelled_owned());
    Ok(Sse::new(all).keep_alive(KeepAlive::default()))
}

/// A message from a WebSocket client: `subscribe` (to what one of `run`, `job`,
/// `task`, `tag` selects, everything when none, optionally of some `kinds`) or
/// `unsubscribe` (a `subscription`). Flat rather than a tagged enum, so a bad value
/// is reported with its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    run: Option<i64>,
    job: Option<String>,
    task: Option<String>,
    tag: Option<String>,
    #[serde(default)]
    kinds: Vec<String>,
    subscription: Option<u64>,
}

/// Live events over a WebSocket.
///
/// The client sends `{"type": "subscribe", "run": 42}` (or `"job"`, `"task"`, `"tag":
/// "key=value"`, optionally `"kinds": [...]`; none of them: everything) and gets
/// `{"type": "subscribed", "subscription": 1}`; then `{"type": "event",
/// "subscriptions": [1], "event": {...}}` for each matching event. `{"type":
/// "unsubscribe", "subscription": 1}` stops one. A bad message gets `{"type":
/// "error", "error": {...}}`. A client that falls behind gets `{"type": "dropped"}`
/// and the connection is closed (code 1013).
#[utoipa::path(
    get, operation_id = "events_ws", path = "/api/v1/ws", tag = "events",
    security((), ("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
    )
)]
pub(crate) async fn ws(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    Query::parse(raw.as_deref()).finish(&[])?;
    let upgrade = upgrade.map_err(|r| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{}: connect with a WebSocket client", r.body_text()),
        )
    })?;
    let stream = st.hub.subscribe(EventFilter::all()).await?;
    let stop = st.stop.clone();
    let admin = st.admin.clone();
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| session(socket, stream, stop, admin))
        .into_response())
}

async fn session(
    mut socket: WebSocket,
    mut events: EventStream,
    stop: CancellationToken,
    admin: Admin,
) {
    let mut subs: Vec<(u64, EventFilter)> = Vec::new();
    let mut next_id = 1;
    loop {
        tokio::select! {
            // The server is shutting down: say so (1001, going away) and end, rather
            // than hold the shutdown until the client leaves.
            _ = stop.cancelled() => {
                let close = Message::Close(Some(CloseFrame {
                    code: 1001,
                    reason: "the server is shutting down".into(),
                }));
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(close)).await;
                return;
            }
            msg = socket.recv() => {
                let reply = match msg {
                    None | Some(Err(_)) => return,
                    // The client closes: answer its close frame (queued by the
                    // WebSocket as it read it, sent by the flush) so that it closes
                    // cleanly, 1000 rather than 1006.
                    Some(Ok(Message::Close(_))) => {
                        let _ = tokio::time::timeout(
                            CLOSE_TIMEOUT,
                            futures::SinkExt::flush(&mut socket),
                        )
                        .await;
                        return;
                    }
                    Some(Ok(Message::Text(t))) => {
                        on_message(&admin, t.as_str(), &mut subs, &mut next_id).await
                    }
                    Some(Ok(Message::Binary(_))) => error_reply(ApiError::field(
                        "message", "send JSON text messages",
                    )),
                    Some(Ok(_)) => continue,
                };
                if !send(&mut socket, reply).await {
                    return;
                }
            }
            e = events.next() => {
                let Some(e) = e else {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                };
                if e.kind == EventKind::Dropped {
                    let notice = json!({ "type": "dropped", "message": e.data["message"], "missed": e.data["missed"] });
                    let _ = send(&mut socket, notice).await;
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1013,
                            reason: "fell behind".into(),
                        })))
                        .await;
                    return;
                }
                let ids: Vec<u64> = subs
                    .iter()
                    .filter(|(_, f)| f.matches(&e))
                    .map(|(id, _)| *id)
                    .collect();
                if !ids.is_empty()
                    && !send(&mut socket, json!({ "type": "event", "subscriptions": ids, "event": e })).await
                {
                    return;
                }
            }
        }
    }
}

/// Sends one JSON message; false when the client is gone or too slow to take it.
async fn send(socket: &mut WebSocket, v: serde_json::Value) -> bool {
    matches!(
        tokio::time::timeout(
            SEND_TIMEOUT,
            socket.send(Message::Text(v.to_string().into()))
        )
        .await,
        Ok(Ok(()))
    )
}

/// Checks that the run, job and task a filter names exist (a task: that some node
/// registered it).
async fn known(admin: &Admin, f: &EventFilter) -> Result<(), ApiError> {
    if let Some(id) = f.run_id {
        admin.run(id).await?;
    }
    if let Some(job) = &f.job {
        admin.job(job).await?;
    }
    if let Some(task) = &f.task
        && let Some(e) = admin.unknown_task_filter(task).await?
    {
        return Err(e.into());
    }
    Ok(())
}

fn error_reply(e: ApiError) -> serde_json::Value {
    json!({ "type": "error", "error": { "code": e.code, "message": e.message, "details": e.details } })
}

async fn on_message(
    admin: &Admin,
    text: &str,
    subs: &mut Vec<(u64, EventFilter)>,
    next_id: &mut u64,
) -> serde_json::Value {
    let msg = match input::parse_json::<ClientMessage>(text.as_bytes()) {
        Ok(m) => m,
        Err(e) => return error_reply(e),
    };
    match (msg.kind.as_str(), msg.subscription) {
        ("subscribe", None) => {
            if subs.len() >= MAX_SUBSCRIPTIONS {
                return error_reply(ApiError::field(
                    "type",
                    format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
                ));
            }
            let mut f = EventFilter::all();
            f.run_id = msg.run;
            f.job = msg.job;
            f.task = msg.task;
            match msg.tag.map(|t| input::tag("tag", &t)).transpose() {
                Ok(t) => f.tag = t,
                Err(e) => return error_reply(e),
            }
            for k in msg.kinds {
                match k.parse::<EventKind>() {
                    Ok(k) => f.kinds.push(k),
                    Err(e) => return error_reply(ApiError::field("kinds", e)),
                }
            }
            // A subscription naming nothing known would wait forever for nothing:
            // refused as the event stream's filters are.
            if let Err(e) = known(admin, &f).await {
                return error_reply(e);
            }
            let id = *next_id;
            *next_id += 1;
            subs.push((id, f));
            json!({ "type": "subscribed", "subscription": id })
        }
        ("subscribe", Some(_)) => error_reply(ApiError::field(
            "subscription",
            "`subscription` goes with `unsubscribe`",
        )),
        ("unsubscribe", Some(subscription)) => {
            let before = subs.len();
            subs.retain(|(id, _)| *id != subscription);
            if subs.len() == before {
                return error_reply(ApiError::field(
                    "subscription",
                    format!("no subscription {subscription} on this connection"),
                ));
            }
            json!({ "type": "unsubscribed", "subscription": subscription })
        }
        ("unsubscribe", None) => error_reply(ApiError::field(
            "subscription",
            "say which subscription to stop",
        )),
        (other, _) => error_reply(ApiError::field(
            "type",
            format!(
                "unknown message type `{}`; use subscribe or unsubscribe",
                crate::error::clip(other)
            ),
        )),
    }
}
