//! Webhooks against a real HTTP receiver on 127.0.0.1 started by each test: a finished
//! run with a `callback_url` is POSTed as the JSON `runs show --json` prints, signed
//! when a secret is set, retried with backoff on errors, timeouts and non-2xx answers,
//! and every attempt is recorded and shown by `kairos runs show`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cli::{Node, blocks, cli, cli_json, fails, hello, node_builder, noop};
use hmac::{Hmac, KeyInit, Mac};
use kairos::{Admin, Enqueue, ManualClock, Registry, RunDelivery, RunStatus, TaskDef};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------
// A tiny HTTP/1.1 receiver

/// What the receiver does with a request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// Answers with this status.
    Status(u16),
    /// Reads the request and never answers (the connection stays open).
    Hang,
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver on 127.0.0.1 answering requests in turn with `script`, then 200.
struct Receiver {
    base: String,
    seen: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(script: &[Reply]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = script.to_vec();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut hung = Vec::new();
            let mut n = 0;
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let reply = script.get(n).copied().unwrap_or(Reply::Status(200));
                n += 1;
                let Some(req) = read_request(&mut stream).await else {
                    continue;
                };
                log.lock().unwrap().push(req);
                match reply {
                    Reply::Status(code) => {
                        let body = if code == 200 { "ok" } else { "oops" };
                        let head = format!(
                            "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            if code == 200 {
                                "OK"
                            } else {
                                "Internal Server Error"
                            },
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                    // Kept open until the receiver goes.
                    Reply::Hang => hung.push(stream),
                }
            }
        });
        Receiver { base, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads one request (head and `Content-Length` body), bounded in time.
async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers.get("content-length")?.parse().ok()?;
        let mut body = buf[head_end..].to_vec();
        while body.len() < len {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Received {
            method,
            path,
            headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

// ---------------------------------------------------------------------------------
// Helpers

fn registry() -> Registry {
    Registry::from_tasks([
        TaskDef::new("hello", hello, "tests/runtime_webhooks.rs"),
        TaskDef::new("noop", noop, "tests/runtime_webhooks.rs"),
        TaskDef::new("fails", fails, "tests/runtime_webhooks.rs"),
    ])
    .unwrap()
}

/// The signature a receiver computes: HMAC-SHA256 of `"<timestamp>.<body>"`, in hex.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Waits (bounded) until run `id` has `n` delivery attempts recorded, and returns them.
async fn wait_deliveries(admin: &Admin, id: i64, n: usize) -> Vec<RunDelivery> {
    common::wait_until(&format!("{n} deliveries of run {id}"), || async {
        admin.deliveries(id).await.unwrap().len() >= n
    })
    .await;
    let d = admin.deliveries(id).await.unwrap();
    assert_eq!(d.len(), n, "{d:#?}");
    d
}

// ---------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_finished_run_is_posted_once_signed_and_shown() {
    for db in common::databases("webhooks_success").await {
        let receiver = Receiver::start(&[]).await;
        let node = Node::start_with(
            &db.url,
            node_builder(&db.url, registry(), None).webhook_secret("s3cret"),
        )
        .await;
        let url = receiver.url("/hooks/kairos?src=test");
        let id = node
            .handle
            .enqueue(
                Enqueue::new("hello")
                    .params(json!({"n": 1}))
                    .callback_url(&url),
            )
            .await
            .unwrap();
        let plain = node.handle.enqueue(Enqueue::new("noop")).await.unwrap();
        let d = wait_deliveries(&node.admin, id, 1).await;
        let run = node.admin.run(id).await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded, "{}", db.name);
        assert_eq!(
            (d[0].attempt, d[0].status_code, &d[0].error, d[0].delivered),
            (1, Some(200), &None, true),
            "{}",
            db.name
        );
        assert_eq!(d[0].url, url);

        let reqs = receiver.requests();
        assert_eq!(reqs.len(), 1, "{reqs:#?}");
        let r = &reqs[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/hooks/kairos?src=test")
        );
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(
            r.header("user-agent"),
            concat!("kairos/", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(r.header("x-kairos-run-id"), id.to_string());
        assert_eq!(r.header("x-kairos-delivery"), "1");
        // The body is the run as `runs show --json` prints it, read after it finished.
        let body = r.json();
        assert_eq!(body, serde_json::to_value(&run).unwrap(), "{}", db.name);
        assert_eq!(
            (&body["id"], &body["status"], &body["result"]),
            (&json!(id), &json!("succeeded"), &json!({"n": 1}))
        );
        // Signed over "<timestamp>.<body>", with a timestamp of now.
        let ts = r.header("x-kairos-timestamp");
        let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
        assert!((0..60).contains(&age), "timestamp {ts}");
        assert_eq!(
            r.header("x-kairos-signature"),
            expected_signature("s3cret", ts, &r.body)
        );
        assert!(kairos::webhook::verify(
            b"s3cret",
            ts,
            &r.body,
            r.header("x-kairos-signature")
        ));
        assert!(!kairos::webhook::verify(
            b"wrong",
            ts,
            &r.body,
            r.header("x-kairos-signature")
        ));

        // `runs show`: a deliveries array in JSON, a deliveries block in text.
        let shown = cli_json(&db.url, &["runs", "show", &id.to_string()]).await;
        let d0 = &shown["deliveries"][0];
        assert_eq!(
            (
                &d0["attempt"],
                &d0["status_code"],
                &d0["error"],
                &d0["delivered"],
                &d0["url"]
            ),
            (
                &json!(1),
                &json!(200),
                &Value::Null,
                &json!(true),
                &json!(url)
            ),
            "{shown:#}"
        );
        assert!(d0["at"].is_string(), "{shown:#}");
        let text = cli(&db.url, &["runs", "show", &id.to_string()])
            .await
            .ok()
            .stdout;
        assert!(text.contains("\ndeliveries:\n  "), "{text}");
        assert!(text.contains("  attempt 1  delivered (HTTP 200)"), "{text}");
        // A run without a callback URL is not delivered, and shows an empty array.
        common::wait_status(&node.admin, plain, RunStatus::Succeeded).await;
        let shown = cli_json(&db.url, &["runs", "show", &plain.to_string()]).await;
        assert_eq!(shown["deliveries"], json!([]), "{shown:#}");
        assert!(node.admin.deliveries(plain).await.unwrap().is_empty());
        assert!(node.admin.deliveries(plain + 100).await.is_err());
        assert_eq!(receiver.requests().len(), 1);
        node.stop().await;
    }
}

#[tokio::test]
async fn a_500_is_retried_and_each_delivery_recorded() {
    for db in common::databases("webhooks_retry").await {
        let receiver = Receiver::start(&[Reply::Status(500)]).await;
        let node = Node::start_with(
            &db.url,
            node_builder(&db.url, registry(), None).webhook_retry_delay(Duration::from_millis(50)),
        )
        .await;
        // A failed run is delivered too, once, with its final state.
        let id = node
            .handle
            .enqueue(
                Enqueue::new("fails")
                    .max_retries(0)
                    .callback_url(receiver.url("/failed")),
            )
            .await
            .unwrap();
        let d = wait_deliveries(&node.admin, id, 2).await;
        assert_eq!(
            (d[0].attempt, d[0].status_code, d[0].delivered),
            (1, Some(500), false),
            "{}: {d:#?}",
            db.name
        );
        assert_eq!(
            d[0].error.as_deref(),
            Some("HTTP 500 Internal Server Error: oops")
        );
        assert_eq!(
            (d[1].attempt, d[1].status_code, &d[1].error, d[1].delivered),
            (2, Some(200), &None, true),
            "{}: {d:#?}",
            db.name
        );
        assert!(d[1].at >= d[0].at + chrono::Duration::milliseconds(50));
        let reqs = receiver.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            reqs.iter()
                .map(|r| r.header("x-kairos-delivery"))
                .collect::<Vec<_>>(),
            ["1", "2"]
        );
        // The same body both times; unsigned without a secret.
        assert_eq!(reqs[0].body, reqs[1].body);
        assert_eq!(reqs[0].json()["status"], "failed");
        assert_eq!(reqs[0].json()["error"], "attempt 1 failed");
        assert_eq!(reqs[0].header("x-kairos-signature"), "");
        let text = cli(&db.url, &["runs", "show", &id.to_string()])
            .await
            .ok()
            .stdout;
        assert!(
            text.contains("  attempt 1  failed: HTTP 500 Internal Server Error: oops"),
            "{text}"
        );
        assert!(text.contains("  attempt 2  delivered (HTTP 200)"), "{text}");
        node.stop().await;
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_without_touching_the_run() {
    for db in common::databases("webhooks_timeout").await {
        let receiver = Receiver::start(&[Reply::Hang, Reply::Hang, Reply::Hang]).await;
        let node = Node::start_with(
            &db.url,
            node_builder(&db.url, registry(), None)
                .webhook_timeout(Duration::from_millis(200))
                .webhook_retry_delay(Duration::from_millis(50))
                .webhook_max_attempts(2),
        )
        .await;
        let started = std::time::Instant::now();
        let id = node
            .handle
            .enqueue(Enqueue::new("hello").callback_url(receiver.url("/slow")))
            .await
            .unwrap();
        // Runs keep finishing while the receiver hangs.
        let other = node.handle.enqueue(Enqueue::new("noop")).await.unwrap();
        common::wait_status(&node.admin, other, RunStatus::Succeeded).await;
        let d = wait_deliveries(&node.admin, id, 2).await;
        for (i, x) in d.iter().enumerate() {
            assert_eq!(
                (x.attempt, x.status_code, x.delivered),
                (i as u32 + 1, None, false),
                "{}: {d:#?}",
                db.name
            );
            assert_eq!(
                x.error.as_deref(),
                Some("no response within 200ms (the request timeout)"),
                "{}",
                db.name
            );
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        // Two attempts, then it gave up: no third request.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.requests().len(), 2);
        assert_eq!(node.admin.deliveries(id).await.unwrap().len(), 2);
        let run = node.admin.run(id).await.unwrap();
        assert_eq!((run.status, run.error), (RunStatus::Succeeded, None));
        let text = cli(&db.url, &["runs", "show", &id.to_string()])
            .await
            .ok()
            .stdout;
        assert!(
            text.contains("  attempt 2  failed: no response within 200ms"),
            "{text}"
        );
        node.stop().await;
    }
}

/// A delivery hanging at shutdown gets only what is left of the grace period: the node
/// stops about when its runs were given up, not a webhook timeout later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_delivery_does_not_stretch_the_shutdown_past_its_grace() {
    let db = common::sqlite();
    let receiver = Receiver::start(&[Reply::Hang]).await;
    let registry = Registry::from_tasks([
        TaskDef::new("hello", hello, "tests/runtime_webhooks.rs"),
        TaskDef::new("waits", blocks, "tests/runtime_webhooks.rs"),
    ])
    .unwrap();
    let node = Node::start_with(
        &db.url,
        node_builder(&db.url, registry, None)
            .shutdown_grace(Duration::from_secs(3))
            .webhook_timeout(Duration::from_secs(30)),
    )
    .await;
    node.handle
        .enqueue(Enqueue::new("hello").callback_url(receiver.url("/hangs")))
        .await
        .unwrap();
    common::wait_until("the delivery in flight", || async {
        !receiver.requests().is_empty()
    })
    .await;
    let busy = node.handle.enqueue(Enqueue::new("waits")).await.unwrap();
    common::wait_status(&node.admin, busy, RunStatus::Running).await;

    let asked = std::time::Instant::now();
    node.stop().await;
    let took = asked.elapsed();
    // The run holds the whole 3 s grace; the delivery then gets half a second, where
    // it used to get the grace period again (over 6 s in all).
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_failed_delivery() {
    // A port nothing listens on (bound, then released).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let db = common::sqlite();
    let node = Node::start_with(
        &db.url,
        node_builder(&db.url, registry(), None).webhook_max_attempts(1),
    )
    .await;
    let id = node
        .handle
        .enqueue(Enqueue::new("noop").callback_url(format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap();
    let d = wait_deliveries(&node.admin, id, 1).await;
    let error = d[0].error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with(&format!("cannot connect to 127.0.0.1:{port}: "))
            && error.to_lowercase().contains("refused"),
        "{error}"
    );
    assert!(!d[0].delivered);
    node.stop().await;
}

#[tokio::test]
async fn a_job_with_a_callback_url_in_jobs_toml_delivers_its_fired_runs() {
    for db in common::databases("webhooks_jobs_toml").await {
        let receiver = Receiver::start(&[]).await;
        let jobs_toml = format!(
            "[webhooks]\n\
             secret = \"from jobs.toml\"\n\
             timeout = \"2s\"\n\
             max_attempts = 3\n\
             retry_delay = \"100ms\"\n\
             \n\
             [[jobs]]\n\
             name = \"hourly_hello\"\n\
             task = \"hello\"\n\
             interval = \"1h\"\n\
             params = {{ region = \"eu\" }}\n\
             callback_url = \"{}\"\n",
            receiver.url("/jobs")
        );
        let t0 = "2026-03-01T12:00:00Z".parse().unwrap();
        let clock = ManualClock::new(t0);
        let node = Node::start_with(
            &db.url,
            node_builder(&db.url, registry(), Some(&jobs_toml)).clock(clock.clone()),
        )
        .await;
        clock.advance(Duration::from_secs(3601));
        common::wait_until("the job's run", || async { receiver.requests().len() == 1 }).await;
        let r = &receiver.requests()[0];
        let body = r.json();
        let id = body["id"].as_i64().unwrap();
        assert_eq!(
            (&body["job"], &body["status"], &body["result"]),
            (
                &json!("hourly_hello"),
                &json!("succeeded"),
                &json!({"region": "eu"})
            ),
            "{}",
            db.name
        );
        assert_eq!(r.header("x-kairos-run-id"), id.to_string());
        let ts = r.header("x-kairos-timestamp");
        assert_eq!(
            r.header("x-kairos-signature"),
            expected_signature("from jobs.toml", ts, &r.body)
        );
        let d = wait_deliveries(&node.admin, id, 1).await;
        assert!(d[0].delivered, "{}: {d:#?}", db.name);
        // `jobs show` tells where the job's runs go.
        let shown = cli(&db.url, &["jobs", "show", "hourly_hello"])
            .await
            .ok()
            .stdout;
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("callback url") && l.ends_with(&receiver.url("/jobs"))),
            "{shown}"
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn runs_that_end_without_running_are_delivered_once_across_nodes() {
    for db in common::databases("webhooks_orphans").await {
        let receiver = Receiver::start(&[]).await;
        // Two nodes sweep for such runs; each run is claimed by one of them.
        let builder = || {
            node_builder(&db.url, registry(), None)
                .maintenance_interval(Duration::from_millis(50))
                .webhook_secret("s3cret")
        };
        let a = Node::start_with(&db.url, builder()).await;
        let b = Node::start_with(&db.url, builder()).await;
        let later = Duration::from_secs(3600);
        // Paused nodes start nothing: the run outlives its time to live in the queue.
        a.admin.set_nodes_paused(None, true).await.unwrap();
        let expires = a
            .handle
            .enqueue(
                Enqueue::new("noop")
                    .ttl(Duration::from_millis(100))
                    .callback_url(receiver.url("/expired")),
            )
            .await
            .unwrap();
        let cancelled = a
            .handle
            .enqueue(
                Enqueue::new("noop")
                    .delay(later)
                    .callback_url(receiver.url("/cancelled")),
            )
            .await
            .unwrap();
        // Cancelled from another process, as `kairos runs cancel` does.
        a.admin.cancel_run(cancelled).await.unwrap();
        common::wait_until("both delivered", || async {
            receiver.requests().len() >= 2
        })
        .await;
        // More sweeps pass: nothing is delivered twice.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut reqs = receiver.requests();
        reqs.sort_by(|x, y| x.path.cmp(&y.path));
        assert_eq!(reqs.len(), 2, "{}: {reqs:#?}", db.name);
        for (r, id, status) in [
            (&reqs[0], cancelled, "cancelled"),
            (&reqs[1], expires, "expired"),
        ] {
            let body = r.json();
            assert_eq!((&body["id"], &body["status"]), (&json!(id), &json!(status)));
            assert_eq!(
                body,
                serde_json::to_value(a.admin.run(id).await.unwrap()).unwrap()
            );
            let ts = r.header("x-kairos-timestamp");
            assert_eq!(
                r.header("x-kairos-signature"),
                expected_signature("s3cret", ts, &r.body)
            );
            let d = wait_deliveries(&a.admin, id, 1).await;
            assert_eq!(
                (d[0].attempt, d[0].status_code, &d[0].error, d[0].delivered),
                (1, Some(200), &None, true),
                "{}: {d:#?}",
                db.name
            );
        }
        a.stop().await;
        b.stop().await;
    }
}
