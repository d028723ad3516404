//! `kairos serve` as a real process: it starts on a loopback port over the database
//! the CLI uses, answers `/health` and the API, honours the token, stops on SIGTERM,
//! and refuses a non-loopback address without a token before touching anything.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kairos::{Registry, TaskDef};
use serde_json::{Value, json};

use common::cli::{Kairos, Node, hello, node_builder};

/// A running `kairos serve` and the address it printed.
struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(url: &str, args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kairos"))
            .args(["serve", "--bind", "127.0.0.1:0", "--json"])
            .args(args)
            .env("KAIROS_DATABASE_URL", url)
            .env_remove("KAIROS_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kairos serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the first line");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not the listening line ({e}): {line:?}"));
        let base = v["listening"].as_str().expect("the address").to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{v}");
        Serve { child, base }
    }

    /// SIGTERM, then the exit status (fails after 10 s).
    fn terminate(self) -> i32 {
        self.terminate_within(Duration::from_secs(10))
    }

    /// SIGTERM, then the exit status (fails after `limit`).
    fn terminate_within(mut self, limit: Duration) -> i32 {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "kairos serve did not stop within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn request(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answered");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn kairos_serve_answers_health_and_the_api_and_stops_on_sigterm() {
    let db = common::sqlite();
    let registry =
        Registry::from_tasks([TaskDef::new("hello", hello, "tests/http_serve.rs")]).unwrap();
    let node = Node::start_with(&db.url, node_builder(&db.url, registry, None)).await;
    let serve = Serve::start(&db.url, &[], &[]);

    let (status, health) = request(
        reqwest::Method::GET,
        format!("{}/health", serve.base),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["healthy"], true);
    assert!(health["live_workers"].as_u64().unwrap() > 0, "{health}");

    // No token on loopback: changes are open.
    let (status, created) = request(
        reqwest::Method::POST,
        format!("{}/api/v1/runs", serve.base),
        None,
        Some(json!({"task": "hello", "params": {"n": 1}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["run"]["id"].as_i64().unwrap();
    common::wait_status(&node.admin, id, kairos::RunStatus::Succeeded).await;

    assert_eq!(serve.terminate(), 0);
    node.stop().await;
}

#[tokio::test]
async fn kairos_serve_with_a_token_and_protected_reads() {
    let db = common::sqlite();
    Kairos::new(&["migrate"]).url(&db.url).run().ok();
    let token = "a-long-random-token";
    let serve = Serve::start(
        &db.url,
        &["--protect-reads"],
        &[("KAIROS_ADMIN_TOKEN", token)],
    );
    let runs = format!("{}/api/v1/runs", serve.base);
    let (status, e) = request(reqwest::Method::GET, runs.clone(), None, None).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, e) = request(reqwest::Method::GET, runs.clone(), Some("wrong"), None).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, page) = request(reqwest::Method::GET, runs, Some(token), None).await;
    assert_eq!((status, &page["total"]), (200, &json!(0)));
    // No node runs against this database: unhealthy, with the reason, and open.
    let (status, health) = request(
        reqwest::Method::GET,
        format!("{}/health", serve.base),
        None,
        None,
    )
    .await;
    assert_eq!(status, 503, "{health}");
    assert!(
        health["reasons"][0]
            .as_str()
            .unwrap()
            .contains("no node is running")
    );
    assert_eq!(serve.terminate(), 0);
}

/// Event streams never end by themselves, and a graceful shutdown waits for open
/// requests: on SIGTERM the server ends them (SSE: the stream ends; WebSocket: close
/// 1001) and stops at once, rather than stream on until its grace period runs out.
#[tokio::test]
async fn kairos_serve_ends_live_event_streams_on_sigterm() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let db = common::sqlite();
    Kairos::new(&["migrate"]).url(&db.url).run().ok();
    let serve = Serve::start(&db.url, &[], &[]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut sse = Vec::new();
    for _ in 0..2 {
        let mut s = client
            .get(format!("{}/api/v1/events", serve.base))
            .send()
            .await
            .expect("the event stream");
        assert_eq!(s.status(), 200);
        let first = s.chunk().await.unwrap().expect("the first event");
        assert!(
            String::from_utf8_lossy(&first).contains("event: subscribed"),
            "{first:?}"
        );
        sse.push(s);
    }
    let ws_url = format!("{}/api/v1/ws", serve.base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    ws.send(Message::Text(r#"{"type": "subscribe"}"#.into()))
        .await
        .unwrap();
    let subscribed = ws.next().await.unwrap().unwrap();
    assert!(
        subscribed.to_string().contains("subscribed"),
        "{subscribed}"
    );

    let started = Instant::now();
    let status =
        tokio::task::spawn_blocking(move || serve.terminate_within(Duration::from_secs(5)))
            .await
            .unwrap();
    assert_eq!(status, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
    // Each stream ended cleanly, not cut off by the process exiting.
    for mut s in sse {
        assert!(matches!(s.chunk().await, Ok(None)), "the SSE stream ended");
    }
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // It left the event subscribers on its way out: nodes stop writing events for it
    // now, not when its subscription would have expired.
    use kairos::sea_orm::{ConnectionTrait, Database, Statement};
    let conn = Database::connect(&db.url).await.unwrap();
    let left = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM kairos_subscribers",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(left, 0, "the subscription outlived the server");
}

#[test]
fn kairos_serve_refuses_a_non_loopback_address_without_a_token() {
    let db = common::sqlite();
    // The database does not even exist: the refusal comes first.
    let out = Kairos::new(&["serve", "--bind", "0.0.0.0:0"])
        .url(&db.url)
        .run();
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("refusing"), "{out:#?}");
    assert!(out.stderr.contains("KAIROS_ADMIN_TOKEN"), "{out:#?}");
    assert!(out.stdout.is_empty(), "{out:#?}");

    let out = Kairos::new(&["serve", "--bind", "[::]:0", "--json"])
        .url(&db.url)
        .run();
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(out.json()["error"]["code"], "usage");

    // An empty token is no token, nor is one of spaces.
    for empty in ["", "   "] {
        let out = Kairos::new(&["serve", "--bind", "0.0.0.0:0"])
            .url(&db.url)
            .env("KAIROS_ADMIN_TOKEN", empty)
            .run();
        assert_eq!(out.code, 2, "{empty:?}: {out:#?}");
        assert!(out.stderr.contains("empty"), "{out:#?}");
    }

    // Protected reads need a token.
    let out = Kairos::new(&["serve", "--protect-reads"])
        .url(&db.url)
        .run();
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(!db.dir().unwrap().join("kairos.db").exists());
}

#[tokio::test]
async fn kairos_serve_takes_its_token_from_jobs_toml() {
    let db = common::sqlite();
    Kairos::new(&["migrate"]).url(&db.url).run().ok();
    let config = db.dir().unwrap().join("jobs.toml");
    std::fs::write(&config, "[http]\ntoken = \"from-the-config\"\n").unwrap();
    let config = config.to_str().unwrap();
    let serve = Serve::start(&db.url, &["--config", config, "--protect-reads"], &[]);
    let runs = format!("{}/api/v1/runs", serve.base);
    let (status, _) = request(reqwest::Method::GET, runs.clone(), None, None).await;
    assert_eq!(status, 401);
    let (status, _) = request(reqwest::Method::GET, runs, Some("from-the-config"), None).await;
    assert_eq!(status, 200);
    assert_eq!(serve.terminate(), 0);
    // The environment wins over the file.
    let serve = Serve::start(
        &db.url,
        &["--config", config, "--protect-reads"],
        &[("KAIROS_ADMIN_TOKEN", "from-the-environment")],
    );
    let runs = format!("{}/api/v1/runs", serve.base);
    let (status, _) = request(
        reqwest::Method::GET,
        runs.clone(),
        Some("from-the-config"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = request(
        reqwest::Method::GET,
        runs,
        Some("from-the-environment"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(serve.terminate(), 0);
}
