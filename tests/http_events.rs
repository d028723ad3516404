//! Live events over HTTP: Server-Sent Events filtered by query and WebSocket
//! subscriptions, served as `kairos serve` serves them (reading the database's event
//! log, so a node's events reach them) and embedded over a node's own admin; a
//! listener that falls behind gets a `dropped` notice and is disconnected.

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use kairos::http::HttpOptions;
use kairos::{Admin, Registry, TaskDef};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::cli::{Node, hello, node_builder};
use common::http::Api;

/// Takes 150 ms: ends during its node's shutdown (200 ms of grace) when started just
/// before.
fn nap(
    _: kairos::TaskContext,
    _: Value,
) -> futures::future::BoxFuture<'static, kairos::task::TaskOutcome> {
    Box::pin(async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok(None)
    })
}

async fn start_node(url: &str) -> Node {
    let registry = Registry::from_tasks([
        TaskDef::new("hello", hello, "tests/http_events.rs"),
        TaskDef::new("nap", nap, "tests/http_events.rs"),
    ])
    .unwrap();
    Node::start_with(url, node_builder(url, registry, None)).await
}

/// An open SSE response, read event by event.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(api: &Api, query: &str) -> Sse {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/events{query}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut sse = Sse {
            resp,
            buf: String::new(),
        };
        let (name, _) = sse.next().await.expect("the subscribed event");
        assert_eq!(name, "subscribed");
        sse
    }

    /// The next event's name and data; `None` at the end of the stream or after 10 s.
    async fn next(&mut self) -> Option<(String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if name.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// Reads until an event named `name` matching `f`; fails after 10 s.
    async fn until(&mut self, name: &str, f: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.next().await {
                Some((n, v)) if n == name && f(&v) => return v,
                Some(_) => continue,
                None => panic!("no `{name}` event came"),
            }
        }
    }
}

#[tokio::test]
async fn sse_delivers_this_processs_and_a_nodes_events_filtered() {
    for db in common::databases("sse_delivers_events").await {
        let node = start_node(&db.url).await;
        // As `kairos serve`: events come through the database's event log.
        let api = Api::start(Admin::connect(&db.url).await.unwrap(), HttpOptions::new()).await;
        api.post(
            "/api/v1/jobs",
            &json!({"name": "tick", "task": "hello", "schedule": "0 3 1 1 *"}),
        )
        .await
        .expect(201);
        let mut jobs = Sse::open(&api, "?job=tick&kind=job_paused,job_resumed").await;
        let mut all = Sse::open(&api, "").await;

        api.post_empty("/api/v1/jobs/tick/pause").await.expect(200);
        let e = jobs.until("job_paused", |_| true).await;
        assert_eq!(e["job"], "tick");
        assert_eq!(e["task"], "hello", "a job's event names its task: {e}");
        api.post_empty("/api/v1/jobs/tick/resume").await.expect(200);
        jobs.until("job_resumed", |e| e["job"] == "tick").await;

        // The node notices the listener within its heartbeat and logs its events too:
        // enqueue until a run's `run_finished` (written by the node) arrives.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen_finish = false;
        while !seen_finish {
            assert!(Instant::now() < deadline, "no run_finished from the node");
            let id = api
                .post("/api/v1/runs", &json!({"task": "hello"}))
                .await
                .expect(201)["run"]["id"]
                .as_i64()
                .unwrap();
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                match all.next().await {
                    Some((n, e)) if n == "run_finished" && e["run_id"] == id => {
                        assert_eq!(e["data"]["status"], "succeeded");
                        assert_eq!(e["node_id"], node.id.as_str());
                        seen_finish = true;
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }

        // Bad filters are 400 in the error shape, before any stream starts.
        api.get("/api/v1/events?run=abc")
            .await
            .error(400, "invalid_input");
        api.get("/api/v1/events?kind=exploded")
            .await
            .error(400, "invalid_input");
        api.get("/api/v1/events?since=1h")
            .await
            .error(400, "unknown_parameter");
        // Filters naming nothing known: refused as `GET /api/v1/runs` refuses them.
        let e = api
            .get("/api/v1/events?task=helo")
            .await
            .error(400, "unknown_task");
        assert!(e["message"].as_str().unwrap().contains("hello"), "{e}");
        api.get("/api/v1/events?job=nope")
            .await
            .error(404, "not_found");
        api.get("/api/v1/events?run=987654")
            .await
            .error(404, "not_found");

        // A run that ends while its node shuts down is written for watchers too, and
        // the node's `node_left` comes after it.
        let nap = api
            .post("/api/v1/runs", &json!({"task": "nap"}))
            .await
            .expect(201)["run"]["id"]
            .as_i64()
            .unwrap();
        common::wait_status(&node.admin, nap, kairos::RunStatus::Running).await;
        let node_id = node.id.clone();
        node.stop().await;
        let mut finished = false;
        loop {
            let (name, e) = tokio::time::timeout(Duration::from_secs(10), all.next())
                .await
                .expect("no node_left")
                .expect("the stream ended");
            if name == "run_finished" && e["run_id"] == nap {
                finished = true;
            }
            if name == "node_left" && e["data"]["node_id"] == node_id.as_str() {
                break;
            }
        }
        assert!(finished, "{}: the run that ended at shutdown", db.name);
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(api: &Api) -> Ws {
    let url = format!("{}/api/v1/ws", api.base.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON message (fails after 10 s); `None` once the server closed.
async fn ws_next(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")?;
        match msg.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

#[tokio::test]
async fn websocket_subscriptions_select_runs_jobs_and_tags() {
    for db in common::databases("websocket_subscriptions").await {
        let node = start_node(&db.url).await;
        let api = Api::start(Admin::connect(&db.url).await.unwrap(), HttpOptions::new()).await;
        api.post(
            "/api/v1/jobs",
            &json!({"name": "tick", "task": "hello", "schedule": "0 3 1 1 *"}),
        )
        .await
        .expect(201);
        let mut ws = ws_connect(&api).await;

        ws_send(&mut ws, json!({"type": "subscribe", "job": "tick"})).await;
        assert_eq!(
            ws_next(&mut ws).await.unwrap(),
            json!({"type": "subscribed", "subscription": 1})
        );
        ws_send(&mut ws, json!({"type": "subscribe", "tag": "team=a"})).await;
        assert_eq!(ws_next(&mut ws).await.unwrap()["subscription"], 2);

        // Bad messages get an error and the connection stays open.
        ws_send(&mut ws, json!({"type": "subscribe", "run": "x"})).await;
        let e = ws_next(&mut ws).await.unwrap();
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["details"]["field"], "run");
        // A subscription naming nothing known would wait forever: refused as the
        // event stream's filters are.
        for (bad, code) in [
            (json!({"type": "subscribe", "job": "tock"}), "not_found"),
            (json!({"type": "subscribe", "run": 987654}), "not_found"),
            (json!({"type": "subscribe", "task": "helo"}), "unknown_task"),
        ] {
            ws_send(&mut ws, bad.clone()).await;
            let e = ws_next(&mut ws).await.unwrap();
            assert_eq!(
                (e["type"].as_str(), e["error"]["code"].as_str()),
                (Some("error"), Some(code)),
                "{bad}: {e}"
            );
        }
        ws.send(Message::Text("not json".into())).await.unwrap();
        assert_eq!(
            ws_next(&mut ws).await.unwrap()["error"]["code"],
            "malformed_json"
        );
        ws_send(&mut ws, json!({"type": "unsubscribe", "subscription": 9})).await;
        assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "error");

        api.post_empty("/api/v1/jobs/tick/pause").await.expect(200);
        let m = ws_next(&mut ws).await.unwrap();
        assert_eq!(m["type"], "event");
        assert_eq!(m["subscriptions"], json!([1]));
        assert_eq!(m["event"]["kind"], "job_paused");

        // A tagged run's events match the tag subscription only.
        api.post(
            "/api/v1/runs",
            &json!({"task": "hello", "delay": "1h", "tags": {"team": "a"}}),
        )
        .await
        .expect(201);
        let m = ws_next(&mut ws).await.unwrap();
        assert_eq!(m["subscriptions"], json!([2]));
        assert_eq!(m["event"]["kind"], "run_queued");
        assert_eq!(m["event"]["tags"]["team"], "a");

        ws_send(&mut ws, json!({"type": "unsubscribe", "subscription": 1})).await;
        assert_eq!(
            ws_next(&mut ws).await.unwrap(),
            json!({"type": "unsubscribed", "subscription": 1})
        );
        api.post_empty("/api/v1/jobs/tick/resume").await.expect(200);
        api.post(
            "/api/v1/runs",
            &json!({"task": "hello", "delay": "1h", "tags": {"team": "a"}}),
        )
        .await
        .expect(201);
        // The job event no longer comes; the next message is the run's.
        let m = ws_next(&mut ws).await.unwrap();
        assert_eq!(m["event"]["kind"], "run_queued", "{m}");

        // Without the upgrade headers: a 400 in the error shape.
        api.get("/api/v1/ws").await.error(400, "bad_request");
        node.stop().await;
    }
}

/// Browsers let any page open a WebSocket to any address, so the handshake refuses an
/// `Origin` that is not the server's own (403, no upgrade); clients that send none, and
/// pages served by the API itself, are let in.
#[tokio::test]
async fn a_websocket_from_another_origin_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let api = Api::start(Admin::connect(&db.url).await.unwrap(), HttpOptions::new()).await;
    let url = format!("{}/api/v1/ws", api.base.replace("http://", "ws://"));
    let with_origin = |origin: &str| {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        req
    };

    for origin in [
        "http://evil.example",
        "null",
        &api.base.replace("127.0.0.1", "evil.example"),
    ] {
        match tokio_tungstenite::connect_async(with_origin(origin)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 403, "{origin}: {resp:?}");
                let body: Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                        .unwrap_or_else(|e| panic!("{origin}: not JSON ({e}): {resp:?}"));
                assert_eq!(body["error"]["code"], "forbidden", "{origin}: {body}");
            }
            Ok((_, resp)) => panic!("{origin}: upgraded: {resp:?}"),
            Err(e) => panic!("{origin}: {e}"),
        }
    }

    // The server's own origin (the dashboard) and no origin at all are served.
    let (mut ws, _) = tokio_tungstenite::connect_async(with_origin(&api.base))
        .await
        .expect("same-origin upgrade");
    ws_send(&mut ws, json!({"type": "subscribe"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "subscribed");
    let mut ws = ws_connect(&api).await;
    ws_send(&mut ws, json!({"type": "subscribe"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "subscribed");
    node.stop().await;
}

#[tokio::test]
async fn a_listener_that_falls_behind_is_dropped_with_a_notice() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    // Embedded over the node's admin: events come from its own stream.
    let api = Api::start(node.handle.admin().clone(), HttpOptions::new()).await;
    let mut ws = ws_connect(&api).await;
    ws_send(&mut ws, json!({"type": "subscribe"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "subscribed");
    let mut sse = Sse::open(&api, "").await;

    // One batch publishes more events at once than a listener may fall behind by.
    let runs: Vec<Value> = (0..6000)
        .map(|_| json!({"task": "hello", "delay": "1h"}))
        .collect();
    api.post("/api/v1/runs/batch", &json!({ "runs": runs }))
        .await
        .expect(201);

    let mut dropped = false;
    while let Some(m) = ws_next(&mut ws).await {
        if m["type"] == "dropped" {
            dropped = true;
        }
    }
    assert!(
        dropped,
        "the WebSocket got the dropped notice, then was closed"
    );
    let mut sse_dropped = false;
    while let Some((name, _)) = sse.next().await {
        if name == "dropped" {
            sse_dropped = true;
        }
    }
    assert!(
        sse_dropped,
        "the event stream ended with the dropped notice"
    );
    // The scheduler went on: every run is there.
    assert_eq!(node.total_runs().await, 6000);
    node.stop().await;
}

#[tokio::test]
async fn an_embedding_app_ends_its_event_streams_with_its_graceful_shutdown() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let stop = kairos::http::CancellationToken::new();
    let api = Api::start_until(
        node.handle.admin().clone(),
        HttpOptions::new().stop_streams(stop.clone()),
        stop.clone(),
    )
    .await;
    let mut ws = ws_connect(&api).await;
    ws_send(&mut ws, json!({"type": "subscribe"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "subscribed");
    let mut sse = Sse::open(&api, "").await;

    stop.cancel();
    // Both streams end, so the graceful shutdown has no open request to wait for.
    let began = Instant::now();
    assert_eq!(sse.next().await, None);
    assert_eq!(ws_next(&mut ws).await, None);
    while !api.has_stopped() {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the server did not shut down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;
}

/// A client that closes gets the server's close frame back (a clean close, 1000), not
/// a dropped connection (1006 in a browser).
#[tokio::test]
async fn a_websocket_closed_by_the_client_is_closed_cleanly() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let api = Api::start(Admin::connect(&db.url).await.unwrap(), HttpOptions::new()).await;
    let mut ws = ws_connect(&api).await;
    ws_send(&mut ws, json!({"type": "subscribe", "task": "hello"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "subscribed");
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer within 10 s");
    match answer {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    node.stop().await;
}
