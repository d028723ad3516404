//! The HTTP API over real HTTP on 127.0.0.1, served as `kairos serve` serves it (over
//! an admin connected to the database, tasks from the catalogue a running node
//! published) and embedded over a node's own admin: every endpoint of runs, jobs,
//! queues, nodes, tasks, stats, health and metrics, with bad input (malformed JSON,
//! wrong types, unknown keys and filters, unknown tasks, oversized bodies) and the
//! token rules. On SQLite, and on PostgreSQL when `KAIROS_TEST_POSTGRES_URL` is set.

mod common;

use std::time::Duration;

use kairos::http::HttpOptions;
use kairos::task::TaskOutcome;
use kairos::{Admin, LogLevel, ParamDef, Registry, RunStatus, TaskContext, TaskDef};
use reqwest::Method;
use serde_json::{Value, json};

use common::cli::{Node, blocks, fails, hello, node_builder};
use common::http::Api;

fn logs(ctx: TaskContext, _: Value) -> futures::future::BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.log(LogLevel::Info, "first line");
        ctx.log(LogLevel::Warn, "second line");
        Ok(None)
    })
}

const DOC_ID: &[ParamDef] = &[ParamDef {
    name: "doc_id",
    rust_type: "String",
    required: true,
    schema: || json!({ "type": "string" }),
}];

/// A node with `hello`, `fails` (one quick retry), `blocks`, `send` (queue `mail`),
/// `logs` and `process` (a required string param `doc_id`).
async fn start_node(url: &str) -> Node {
    let here = "tests/http_api.rs";
    let registry = Registry::from_tasks([
        TaskDef::new("hello", hello, here),
        TaskDef {
            max_retries: Some(1),
            retry_delay: Some(Duration::from_millis(10)),
            ..TaskDef::new("fails", fails, here)
        },
        TaskDef::new("blocks", blocks, here),
        TaskDef {
            queue: Some("mail"),
            ..TaskDef::new("send", hello, here)
        },
        TaskDef::new("logs", logs, here),
        TaskDef {
            params: Some(DOC_ID),
            ..TaskDef::new("process", hello, here)
        },
    ])
    .unwrap();
    let builder = node_builder(url, registry, None).cancel_grace(Duration::from_millis(300));
    Node::start_with(url, builder).await
}

/// The API as `kairos serve` runs it: over an admin connected to the database.
async fn serve(url: &str, opts: HttpOptions) -> Api {
    Api::start(Admin::connect(url).await.expect("connect"), opts).await
}

/// Polls the API until run `id` has `status`.
async fn wait_status(api: &Api, id: i64, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let run = api.get(&format!("/api/v1/runs/{id}")).await.expect(200);
        if run["status"] == status {
            return run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {id} did not become {status}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn runs_are_created_read_and_listed_with_filters() {
    for db in common::databases("runs_are_created_read_and_listed_with_filters").await {
        let node = start_node(&db.url).await;
        let api = serve(&db.url, HttpOptions::new()).await;

        // Created: 201 with the run and its estimate; it runs.
        let created = api
            .post(
                "/api/v1/runs",
                &json!({"task": "hello", "params": {"x": 1}, "tags": {"kb": "7"}}),
            )
            .await
            .expect(201);
        assert_eq!(created["existing"], false);
        assert_eq!(created["run"]["task"], "hello");
        assert_eq!(created["run"]["params"], json!({"x": 1}));
        let id = created["run"]["id"].as_i64().unwrap();
        let done = wait_status(&api, id, "succeeded").await;
        assert_eq!(done["result"], json!({"x": 1}));
        assert_eq!(
            node.admin.run(id).await.unwrap().status,
            RunStatus::Succeeded
        );

        // A delayed run is queued with an estimate.
        let later = api
            .post(
                "/api/v1/runs",
                &json!({"task": "send", "delay": "1h", "priority": 3, "idempotency_key": "k1",
                        "params": {"to": "a"}}),
            )
            .await
            .expect(201);
        let later_id = later["run"]["id"].as_i64().unwrap();
        assert_eq!(later["run"]["status"], "queued");
        assert_eq!(later["run"]["queue"], "mail");
        assert_eq!(later["run"]["priority"], 3);
        assert!(later["estimate"]["start"].is_string(), "{later}");
        // The same request with the same key: 200 and the same run.
        let again = api
            .post(
                "/api/v1/runs",
                &json!({"task": "send", "delay": "1h", "idempotency_key": "k1", "params": {"to": "a"}}),
            )
            .await
            .expect(200);
        assert_eq!(again["existing"], true);
        assert_eq!(again["run"]["id"], later_id);
        // Another request with that key: 409.
        let e = api
            .post(
                "/api/v1/runs",
                &json!({"task": "send", "idempotency_key": "k1", "params": {"to": "b"}}),
            )
            .await
            .error(409, "idempotency_conflict");
        assert_eq!(e["details"]["run_id"], later_id);
        // In a batch too: the batch is refused, naming the item.
        let e = api
            .post(
                "/api/v1/runs/batch",
                &json!({"runs": [{"task": "send", "params": {"to": "c"}},
                                 {"task": "hello", "idempotency_key": "k1"}]}),
            )
            .await
            .error(400, "invalid_batch");
        assert_eq!(e["details"]["errors"][0]["index"], 1, "{e}");
        assert_eq!(
            e["details"]["errors"][0]["code"], "idempotency_conflict",
            "{e}"
        );
        assert_eq!(e["details"]["errors"][0]["run_id"], later_id, "{e}");

        // One run.
        let shown = api
            .get(&format!("/api/v1/runs/{later_id}"))
            .await
            .expect(200);
        assert_eq!(shown["id"], later_id);
        assert_eq!(shown["status"], "queued");
        assert!(shown["estimate"]["ahead"].is_u64(), "{shown}");
        api.get("/api/v1/runs/999999").await.error(404, "not_found");
        let e = api
            .get("/api/v1/runs/abc")
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "id");

        // Listing with filters and pagination.
        for i in 0..3 {
            api.post(
                "/api/v1/runs",
                &json!({"task": "send", "delay": "1h", "tags": {"batch": "b", "i": i.to_string()}}),
            )
            .await
            .expect(201);
        }
        let page = api
            .get("/api/v1/runs?status=queued&queue=mail&page=1&page_size=2")
            .await
            .expect(200);
        assert_eq!(page["total"], 4);
        assert_eq!(page["page_size"], 2);
        assert_eq!(page["runs"].as_array().unwrap().len(), 2);
        let page2 = api
            .get("/api/v1/runs?status=queued&queue=mail&page=2&page_size=2")
            .await
            .expect(200);
        assert_eq!(page2["runs"].as_array().unwrap().len(), 2);
        let tagged = api
            .get("/api/v1/runs?tag=batch%3Db&tag=i%3D1")
            .await
            .expect(200);
        assert_eq!(tagged["total"], 1);
        let by_task = api
            .get("/api/v1/runs?task=hello&status=succeeded,failed&created_after=1h")
            .await
            .expect(200);
        assert_eq!(by_task["total"], 1);
        assert_eq!(by_task["runs"][0]["id"], id);
        let none = api.get("/api/v1/runs?created_before=1h").await.expect(200);
        assert_eq!(none["total"], 0);
        let rfc = api
            .get("/api/v1/runs?created_after=2000-01-01T00:00:00Z")
            .await
            .expect(200);
        assert_eq!(rfc["total"], 5);

        // Invalid and unknown filters: 400 naming them, never 500.
        let e = api
            .get("/api/v1/runs?status=done")
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "status");
        let e = api
            .get("/api/v1/runs?colour=red")
            .await
            .error(400, "unknown_parameter");
        assert_eq!(e["details"]["field"], "colour");
        let e = api
            .get("/api/v1/runs?created_after=yesterday")
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "created_after");
        // Swapped bounds could match nothing: said so, not an empty page.
        let e = api
            .get("/api/v1/runs?created_after=1h&created_before=2h")
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "created_after");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("is not before created_before"),
            "{e}"
        );
        let e = api
            .get("/api/v1/runs?page=x")
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "page");
        let e = api
            .get("/api/v1/runs?page_size=100000")
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "page_size");
        let e = api
            .get("/api/v1/runs?tag=novalue")
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "tag");
        api.get("/api/v1/runs?job=nope")
            .await
            .error(404, "not_found");
        node.stop().await;
    }
}

#[tokio::test]
async fn enqueue_input_is_checked_field_by_field() {
    for db in common::databases("enqueue_input_is_checked_field_by_field").await {
        let node = start_node(&db.url).await;
        let api = serve(&db.url, HttpOptions::new().body_limit(4096)).await;
        let bad = |body: Value, code: &'static str, field: &'static str| {
            let api = &api;
            async move {
                let e = api.post("/api/v1/runs", &body).await.error(400, code);
                assert_eq!(e["details"]["field"], field, "{body}: {e}");
            }
        };
        bad(json!({"task": "nope"}), "unknown_task", "task").await;
        bad(
            json!({"task": "process", "params": {}}),
            "invalid_params",
            "params",
        )
        .await;
        bad(
            json!({"task": "process", "params": {"doc_id": 5}}),
            "invalid_params",
            "params",
        )
        .await;
        bad(
            json!({"task": "process", "params": [1]}),
            "invalid_params",
            "params",
        )
        .await;
        bad(
            json!({"task": "hello", "priority": "high"}),
            "invalid_input",
            "priority",
        )
        .await;
        bad(
            json!({"task": "hello", "max_retries": -1}),
            "invalid_input",
            "max_retries",
        )
        .await;
        bad(json!({"task": 5}), "invalid_input", "task").await;
        // The field names where the value is; no "at line 1 column 11" beside it.
        let e = api
            .post("/api/v1/runs", &json!({"task": 5}))
            .await
            .error(400, "invalid_input");
        assert_eq!(
            e["message"], "task: invalid type: integer `5`, expected a string",
            "{e}"
        );
        bad(json!({"params": {}}), "invalid_input", "task").await;
        bad(
            json!({"task": "hello", "colour": "red"}),
            "invalid_input",
            "colour",
        )
        .await;
        // An unknown key gets every valid one, however many; only the echoed key is
        // clipped.
        let e = api
            .post("/api/v1/runs", &json!({"task": "hello", "prio": 1}))
            .await
            .error(400, "invalid_input");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.starts_with("prio: unknown field `prio`, expected one of `task`,")
                && message.contains("`ttl`, `callback_url`")
                && !message.contains("characters)"),
            "{e}"
        );
        let long = "k".repeat(500);
        let e = api
            .post("/api/v1/runs", &json!({"task": "hello", long.as_str(): 1}))
            .await
            .error(400, "invalid_input");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains("… (500 characters)`, expected one of `task`,")
                && message.contains("`callback_url`")
                && message.chars().count() < 500,
            "{e}"
        );
        let e = api
            .post(
                "/api/v1/runs",
                &json!({"task": "hello", "delay": "x".repeat(500)}),
            )
            .await
            .error(400, "invalid_input");
        assert!(
            e["message"].as_str().unwrap().chars().count() < 300,
            "a long value is clipped: {e}"
        );
        bad(
            json!({"task": "hello", "delay": "soon"}),
            "invalid_input",
            "delay",
        )
        .await;
        // A bad time says what a good one looks like.
        for (run_at, says) in [
            (
                json!("tomorrow"),
                "`tomorrow` is not an RFC 3339 time such as 2026-12-01T09:00:00Z",
            ),
            (
                json!("2026-12-01"),
                "`2026-12-01` is not an RFC 3339 time such as 2026-12-01T09:00:00Z",
            ),
            (
                json!(5),
                "expected an RFC 3339 time such as 2026-12-01T09:00:00Z",
            ),
        ] {
            let body = json!({"task": "hello", "run_at": run_at});
            let e = api
                .post("/api/v1/runs", &body)
                .await
                .error(400, "invalid_input");
            assert_eq!(e["details"]["field"], "run_at", "{body}: {e}");
            let message = e["message"].as_str().unwrap();
            assert!(
                message.starts_with("run_at: ") && message.contains(says),
                "{body}: {e}"
            );
        }
        bad(
            json!({"task": "hello", "delay": "1m", "run_at": "2030-01-01T00:00:00Z"}),
            "invalid_input",
            "run_at",
        )
        .await;
        bad(
            json!({"task": "hello", "timeout": "0s"}),
            "invalid_input",
            "timeout",
        )
        .await;
        bad(
            json!({"task": "hello", "tags": {"a=b": "c"}}),
            "invalid_input",
            "tags",
        )
        .await;
        bad(
            json!({"task": "hello", "callback_url": "ftp://x"}),
            "invalid_input",
            "callback_url",
        )
        .await;
        bad(
            json!({"task": "hello", "idempotency_key": ""}),
            "invalid_input",
            "idempotency_key",
        )
        .await;

        // Not JSON, empty, not an object, the wrong content type, too large.
        let e = api
            .post_raw("/api/v1/runs", "{\"task\": \"hello\",")
            .await
            .error(400, "malformed_json");
        assert!(e["details"]["line"].is_u64());
        api.post_raw("/api/v1/runs", "")
            .await
            .error(400, "malformed_json");
        // Not an object: said so, rather than serde's reading of an array as fields.
        for (body, kind) in [
            ("[1, 2]", "an array"),
            (" \"hello\"", "a string"),
            ("42", "a number"),
            ("null", "null"),
        ] {
            let e = api
                .post_raw("/api/v1/runs", body)
                .await
                .error(400, "invalid_input");
            assert_eq!(e["details"]["field"], "body", "{body}: {e}");
            assert_eq!(
                e["message"],
                format!(
                    "the request body must be a JSON object ({{\"key\": value, ...}}), not {kind}"
                ),
                "{body}: {e}"
            );
        }
        // Invalid JSON that is not an object is still malformed JSON.
        api.post_raw("/api/v1/runs", "[1, 2")
            .await
            .error(400, "malformed_json");
        api.send(
            Method::POST,
            "/api/v1/runs",
            Some((b"task=hello".to_vec(), "application/x-www-form-urlencoded")),
            None,
        )
        .await
        .error(415, "unsupported_media_type");
        api.post_empty("/api/v1/runs")
            .await
            .error(415, "unsupported_media_type");
        // Also where the endpoint reads no body: text sent there is refused, nothing
        // sent is fine.
        api.send(
            Method::POST,
            "/api/v1/nodes/pause",
            Some((b"please".to_vec(), "text/plain")),
            None,
        )
        .await
        .error(415, "unsupported_media_type");
        assert!(
            node.admin.nodes().await.unwrap().iter().all(|n| !n.paused),
            "the refused pause paused a node"
        );
        let resumed = api.post_empty("/api/v1/nodes/resume").await;
        assert_eq!(resumed.status, 200, "{}", resumed.text);
        let huge = json!({"task": "hello", "params": {"blob": "x".repeat(10_000)}});
        api.post("/api/v1/runs", &huge)
            .await
            .error(413, "payload_too_large");

        // Nothing was enqueued by any of it.
        assert_eq!(node.total_runs().await, 0);

        // A good time is still read as chrono reads it, at any offset, and null is none.
        let later = api
            .post(
                "/api/v1/runs",
                &json!({"task": "hello", "run_at": "2099-12-01T10:00:00+01:00"}),
            )
            .await
            .expect(201);
        assert_eq!(later["run"]["run_at"], "2099-12-01T09:00:00Z", "{later}");
        api.post(
            "/api/v1/runs",
            &json!({"task": "send", "run_at": null, "delay": "1h"}),
        )
        .await
        .expect(201);

        // Unknown routes and methods answer in the same JSON shape.
        api.get("/api/v1/nothing").await.error(404, "no_route");
        api.delete("/api/v1/runs")
            .await
            .error(405, "method_not_allowed");
        // axum's own rejections (here: a path part that is not UTF-8) are rewritten
        // into the same shape.
        api.get("/api/v1/jobs/%FF").await.error(400, "bad_request");
        node.stop().await;
    }
}

#[tokio::test]
async fn batches_are_all_or_nothing_with_every_bad_item_reported() {
    for db in common::databases("batches_are_all_or_nothing").await {
        let node = start_node(&db.url).await;
        let api = serve(&db.url, HttpOptions::new()).await;
        let e = api
            .post(
                "/api/v1/runs/batch",
                &json!({"runs": [
                    {"task": "hello"},
                    {"task": "nope"},
                    {"task": "hello", "priority": "x"},
                    {"task": "process", "params": {}},
                    {"task": "hello", "delay": "later"},
                ]}),
            )
            .await
            .error(400, "invalid_batch");
        let errors = e["details"]["errors"].as_array().unwrap();
        let at: Vec<(i64, &str)> = errors
            .iter()
            .map(|e| (e["index"].as_i64().unwrap(), e["code"].as_str().unwrap()))
            .collect();
        assert_eq!(
            at,
            [
                (1, "unknown_task"),
                (2, "invalid_input"),
                (3, "invalid_params"),
                (4, "invalid_input")
            ],
            "{e}"
        );
        assert_eq!(errors[1]["field"], "runs[2].priority");
        let e = api
            .post(
                "/api/v1/runs/batch",
                &json!({"runs": [{"task": "hello", "prio": 1}]}),
            )
            .await
            .error(400, "invalid_batch");
        let item = &e["details"]["errors"][0];
        assert!(
            item["message"]
                .as_str()
                .unwrap()
                .contains("`ttl`, `callback_url`"),
            "{e}"
        );
        // The body is an object, and so is each run.
        api.post_raw("/api/v1/runs/batch", "[{\"task\": \"hello\"}]")
            .await
            .error(400, "invalid_input");
        let e = api
            .post(
                "/api/v1/runs/batch",
                &json!({"runs": [{"task": "hello"}, ["hello"]]}),
            )
            .await
            .error(400, "invalid_batch");
        assert_eq!(e["details"]["errors"].as_array().unwrap().len(), 1, "{e}");
        let item = &e["details"]["errors"][0];
        assert_eq!(
            (&item["index"], &item["field"]),
            (&json!(1), &json!("runs[1]")),
            "{e}"
        );
        assert!(
            item["message"]
                .as_str()
                .unwrap()
                .contains("must be a JSON object, as POST /api/v1/runs takes a run, not an array"),
            "{e}"
        );
        assert_eq!(errors[3]["field"], "runs[4].delay");
        assert_eq!(node.total_runs().await, 0, "nothing enqueued");

        let ok = api
            .post(
                "/api/v1/runs/batch",
                &json!({"runs": [
                    {"task": "send", "delay": "1h", "idempotency_key": "b1"},
                    {"task": "send", "delay": "1h", "tags": {"k": "v"}},
                ]}),
            )
            .await
            .expect(201);
        assert_eq!(ok["enqueued"], 2);
        assert_eq!(ok["runs"].as_array().unwrap().len(), 2);
        let again = api
            .post(
                "/api/v1/runs/batch",
                &json!({"runs": [{"task": "send", "delay": "1h", "idempotency_key": "b1"}]}),
            )
            .await
            .expect(201);
        assert_eq!(again["enqueued"], 0);
        assert_eq!(again["runs"][0]["existing"], true);
        assert_eq!(again["runs"][0]["id"], ok["runs"][0]["id"]);
        assert_eq!(node.total_runs().await, 2);

        api.post("/api/v1/runs/batch", &json!({"runs": []}))
            .await
            .error(400, "invalid_input");
        api.post("/api/v1/runs/batch", &json!([{"task": "hello"}]))
            .await
            .error(400, "invalid_input");
        node.stop().await;
    }
}

#[tokio::test]
async fn runs_are_cancelled_retried_deleted_cleaned_up_and_logged() {
    for db in common::databases("runs_are_cancelled_retried_deleted").await {
        let node = start_node(&db.url).await;
        let api = serve(&db.url, HttpOptions::new()).await;
        let post = |body: Value| {
            let api = &api;
            async move {
                api.post("/api/v1/runs", &body).await.expect(201)["run"]["id"]
                    .as_i64()
                    .unwrap()
            }
        };

        // Cancel a queued run; cancelling it again is a conflict.
        let queued = post(json!({"task": "send", "delay": "1h"})).await;
        let c = api
            .post_empty(&format!("/api/v1/runs/{queued}/cancel"))
            .await
            .expect(200);
        assert_eq!(c["outcome"], "cancelled");
        assert_eq!(c["run"]["status"], "cancelled");
        api.post_empty(&format!("/api/v1/runs/{queued}/cancel"))
            .await
            .error(409, "conflict");
        api.post_empty("/api/v1/runs/424242/cancel")
            .await
            .error(404, "not_found");

        // Cancel a running run: requested, then cancelled by its node.
        let running = post(json!({"task": "blocks"})).await;
        wait_status(&api, running, "running").await;
        // A running run cannot be deleted (it blocks until cancelled, so it still runs).
        api.delete(&format!("/api/v1/runs/{running}"))
            .await
            .error(409, "conflict");
        let c = api
            .post_empty(&format!("/api/v1/runs/{running}/cancel"))
            .await
            .expect(200);
        assert_eq!(c["outcome"], "requested");
        wait_status(&api, running, "cancelled").await;

        // Retry a failed run; retrying a queued one is a conflict.
        let failed = post(json!({"task": "fails"})).await;
        wait_status(&api, failed, "failed").await;
        let r = api
            .post_empty(&format!("/api/v1/runs/{failed}/retry"))
            .await
            .expect(200);
        assert_eq!(r["id"], failed);
        let later = post(json!({"task": "send", "delay": "1h"})).await;
        api.post_empty(&format!("/api/v1/runs/{later}/retry"))
            .await
            .error(409, "conflict");

        // Logs.
        let logged = post(json!({"task": "logs"})).await;
        wait_status(&api, logged, "succeeded").await;
        let l = api
            .get(&format!("/api/v1/runs/{logged}/logs"))
            .await
            .expect(200);
        let lines: Vec<&str> = l["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        assert_eq!(lines, ["first line", "second line"]);
        let after = l["logs"][0]["id"].as_i64().unwrap();
        let rest = api
            .get(&format!("/api/v1/runs/{logged}/logs?after={after}"))
            .await
            .expect(200);
        assert_eq!(rest["logs"].as_array().unwrap().len(), 1);
        api.get("/api/v1/runs/777777/logs")
            .await
            .error(404, "not_found");
        api.get(&format!("/api/v1/runs/{logged}/logs?tail=1"))
            .await
            .error(400, "unknown_parameter");
        let e = api
            .get(&format!("/api/v1/runs/{logged}/logs?limit=0"))
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "limit");

        // Delete.
        let d = api
            .delete(&format!("/api/v1/runs/{queued}"))
            .await
            .expect(200);
        assert_eq!(
            d,
            json!({"id": queued, "deleted": true, "status": "cancelled"})
        );
        assert!(node.admin.run(queued).await.is_err());
        api.delete(&format!("/api/v1/runs/{queued}"))
            .await
            .error(404, "not_found");

        // Cleanup: bad input, then every finished run older than nothing.
        api.post("/api/v1/runs/cleanup", &json!({"older_than": "x"}))
            .await
            .error(400, "invalid_input");
        let e = api
            .post(
                "/api/v1/runs/cleanup",
                &json!({"older_than": "1s", "status": ["queued"]}),
            )
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "status");
        api.post("/api/v1/runs/cleanup", &json!({"status": ["failed"]}))
            .await
            .error(400, "invalid_input");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let c = api
            .post(
                "/api/v1/runs/cleanup",
                &json!({"older_than": "1ms", "status": ["succeeded"]}),
            )
            .await
            .expect(200);
        assert_eq!(c["deleted"], 1, "{c}");
        assert!(node.admin.run(logged).await.is_err());
        node.stop().await;
    }
}

#[tokio::test]
async fn jobs_are_created_changed_paused_triggered_and_deleted() {
    for db in common::databases("jobs_are_created_changed").await {
        let node = start_node(&db.url).await;
        let api = serve(&db.url, HttpOptions::new()).await;
        // `hello` has no max_instances: its runs overlap freely, whatever `overlap` says.
        let e = api
            .post(
                "/api/v1/jobs",
                &json!({"name": "nightly", "task": "hello", "schedule": "0 3 * * *",
                        "overlap": "skip"}),
            )
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "overlap", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("no max_instances"),
            "{e}"
        );
        let e = api
            .post(
                "/api/v1/jobs",
                &json!({"name": "nightly", "task": "hello", "schedule": "0 3 * * *",
                        "max_catch_up": 3}),
            )
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], "max_catch_up", "{e}");
        let job = api
            .post(
                "/api/v1/jobs",
                &json!({"name": "nightly", "task": "hello", "schedule": "0 3 * * *",
                        "timezone": "Europe/Paris", "params": {"x": 1}, "misfire": "catch_up",
                        "max_catch_up": 3}),
            )
            .await
            .expect(201);
        assert_eq!(job["name"], "nightly");
        assert_eq!(job["schedule"]["kind"], "cron");
        assert_eq!(job["schedule"]["timezone"], "Europe/Paris");
        assert_eq!(job["max_catch_up"], 3);
        assert_eq!(job["source"], "api");
        assert!(job["next_run_at"].is_string());
        api.post(
            "/api/v1/jobs",
            &json!({"name": "nightly", "task": "hello", "interval": "1h"}),
        )
        .await
        .error(409, "conflict");

        // Bad definitions name their field.
        for (body, field) in [
            (json!({"name": "a", "task": "hello"}), "schedule"),
            (
                json!({"name": "a", "task": "hello", "schedule": "61 * * * *"}),
                "schedule",
            ),
            (
                json!({"name": "a", "task": "hello", "interval": "1h", "schedule": "* * * * *"}),
                "schedule",
            ),
            (
                json!({"name": "a", "task": "hello", "interval": "often"}),
                "interval",
            ),
            (
                json!({"name": "a", "task": "hello", "schedule": "* * * * *", "timezone": "Mars/Base"}),
                "timezone",
            ),
            (
                json!({"name": "a", "task": "hello", "interval": "1h", "misfire": "never"}),
                "misfire",
            ),
            (
                json!({"name": "a", "task": "process", "interval": "1h"}),
                "params",
            ),
            (
                json!({"name": "a", "task": "nope", "interval": "1h"}),
                "task",
            ),
            (
                json!({"name": "a", "task": "hello", "interval": "1h", "every": 5}),
                "every",
            ),
            (
                json!({"name": " a", "task": "hello", "interval": "1h"}),
                "name",
            ),
            (
                json!({"name": "a\nFAKE", "task": "hello", "interval": "1h"}),
                "name",
            ),
            (
                json!({"name": "a", "task": "hello", "at": "next monday"}),
                "at",
            ),
        ] {
            let a = api.post("/api/v1/jobs", &body).await;
            assert_eq!(a.status, 400, "{body}: {a:?}");
            assert_eq!(
                a.json()["error"]["details"]["field"],
                field,
                "{body}: {a:?}"
            );
        }

        let list = api.get("/api/v1/jobs").await.expect(200);
        assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
        let shown = api.get("/api/v1/jobs/nightly").await.expect(200);
        assert_eq!(shown["name"], "nightly");
        assert!(shown["recent_runs"].as_array().unwrap().is_empty());
        api.get("/api/v1/jobs/nighty").await.error(404, "not_found");

        // PATCH: the interval replaces the cron schedule; null priority resets.
        let changed = api
            .patch(
                "/api/v1/jobs/nightly",
                &json!({"interval": "1h", "priority": 4, "misfire": "skip"}),
            )
            .await
            .expect(200);
        assert_eq!(changed["schedule"]["kind"], "interval");
        assert_eq!(changed["priority"], 4);
        assert_eq!(changed["misfire"], "skip");
        let reset = api
            .patch("/api/v1/jobs/nightly", &json!({"priority": null}))
            .await
            .expect(200);
        assert_eq!(reset["priority"], Value::Null);
        // `paused` pauses and resumes, alone or beside a change.
        let paused = api
            .patch(
                "/api/v1/jobs/nightly",
                &json!({"paused": true, "priority": 2}),
            )
            .await
            .expect(200);
        assert_eq!(
            (paused["paused"].clone(), paused["priority"].clone()),
            (json!(true), json!(2))
        );
        assert!(node.admin.job("nightly").await.unwrap().paused);
        let resumed = api
            .patch("/api/v1/jobs/nightly", &json!({"paused": false}))
            .await
            .expect(200);
        assert_eq!(resumed["paused"], false);
        assert!(!node.admin.job("nightly").await.unwrap().paused);
        api.patch("/api/v1/jobs/ghost", &json!({"paused": true}))
            .await
            .error(404, "not_found");
        api.patch("/api/v1/jobs/nightly", &json!({}))
            .await
            .error(400, "invalid_input");
        api.patch("/api/v1/jobs/nightly", &json!({"priority": "x"}))
            .await
            .error(400, "invalid_input");
        let e = api
            .patch("/api/v1/jobs/nightly", &json!({"at": "noon"}))
            .await
            .error(400, "invalid_input");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("at: `noon` is not an RFC 3339 time such as 2026-12-01T09:00:00Z"),
            "{e}"
        );
        let e = api
            .patch("/api/v1/jobs/nightly", &json!([4]))
            .await
            .error(400, "invalid_input");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("the request body must be a JSON object"),
            "{e}"
        );
        let e = api
            .patch("/api/v1/jobs/nightly", &json!({"prio": 1}))
            .await
            .error(400, "invalid_input");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.starts_with("prio: unknown field `prio`, expected one of `schedule`,")
                && message.contains("`overlap`, `callback_url`")
                && !message.contains("characters)"),
            "{e}"
        );
        api.patch("/api/v1/jobs/ghost", &json!({"priority": 1}))
            .await
            .error(404, "not_found");

        // Pause, resume, trigger, slots.
        let p = api
            .post_empty("/api/v1/jobs/nightly/pause")
            .await
            .expect(200);
        assert_eq!(p["paused"], true);
        assert!(node.admin.job("nightly").await.unwrap().paused);
        let r = api
            .post_empty("/api/v1/jobs/nightly/resume")
            .await
            .expect(200);
        assert_eq!(r["paused"], false);
        let t = api
            .post_empty("/api/v1/jobs/nightly/trigger")
            .await
            .expect(201);
        assert_eq!(t["origin"], "manual");
        assert_eq!(t["job"], "nightly");
        let run = t["id"].as_i64().unwrap();
        wait_status(&api, run, "succeeded").await;
        let slots = api
            .get("/api/v1/jobs/nightly/slots?since=1h&limit=10")
            .await
            .expect(200);
        assert!(slots["slots"].is_array());
        api.get("/api/v1/jobs/nightly/slots?limit=0")
            .await
            .error(400, "invalid_input");
        api.post_empty("/api/v1/jobs/ghost/pause")
            .await
            .error(404, "not_found");

        // Delete (keeping history), then it is gone.
        let d = api
            .delete("/api/v1/jobs/nightly?keep_history=true")
            .await
            .expect(200);
        assert_eq!(d["deleted"], true);
        assert_eq!(d["runs_deleted"], 0);
        assert!(node.admin.job("nightly").await.is_err());
        assert!(node.admin.run(run).await.is_ok(), "history kept");
        api.delete("/api/v1/jobs/nightly")
            .await
            .error(404, "not_found");
        api.delete("/api/v1/jobs/x?keep_history=maybe")
            .await
            .error(400, "invalid_input");
        node.stop().await;
    }
}

/// PATCH keys are each optional: a new `schedule` keeps the job's `timezone` and `dst`,
/// those alone change a cron job's, and on an interval job (or with `interval` at
/// creation) they are refused naming the key that was given.
#[tokio::test]
async fn a_job_keeps_its_zone_across_a_new_schedule_and_changes_it_alone() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let api = serve(&db.url, HttpOptions::new()).await;
    api.post(
        "/api/v1/jobs",
        &json!({"name": "c1", "task": "hello", "schedule": "0 3 * * *",
                "timezone": "Asia/Tokyo", "dst": "both", "paused": true}),
    )
    .await
    .expect(201);
    let job = api
        .patch("/api/v1/jobs/c1", &json!({"schedule": "0 4 * * *"}))
        .await
        .expect(200);
    assert_eq!(job["schedule"]["cron"], "0 4 * * *", "{job}");
    assert_eq!(
        job["schedule"]["timezone"], "Asia/Tokyo",
        "zone kept: {job}"
    );
    assert_eq!(job["schedule"]["dst"], "both", "DST rule kept: {job}");
    let job = api
        .patch("/api/v1/jobs/c1", &json!({"timezone": "Europe/Paris"}))
        .await
        .expect(200);
    assert_eq!(job["schedule"]["cron"], "0 4 * * *", "{job}");
    assert_eq!(job["schedule"]["timezone"], "Europe/Paris", "{job}");
    assert_eq!(job["schedule"]["dst"], "both", "{job}");
    let job = api
        .patch("/api/v1/jobs/c1", &json!({"dst": "skip"}))
        .await
        .expect(200);
    assert_eq!(job["schedule"]["timezone"], "Europe/Paris", "{job}");
    assert_eq!(job["schedule"]["dst"], "skip", "{job}");

    api.post(
        "/api/v1/jobs",
        &json!({"name": "h1", "task": "hello", "interval": "1h", "paused": true}),
    )
    .await
    .expect(201);
    for (body, field) in [
        (json!({"timezone": "Asia/Tokyo"}), "timezone"),
        (json!({"dst": "skip"}), "dst"),
    ] {
        let e = api
            .patch("/api/v1/jobs/h1", &body)
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], field, "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("job `h1` fires `every 1h`, not on a cron schedule"),
            "{e}"
        );
    }
    for (body, field) in [
        (
            json!({"name": "a", "task": "hello", "interval": "1h", "dst": "skip"}),
            "dst",
        ),
        (
            json!({"name": "a", "task": "hello", "at": "2030-01-01T00:00:00Z", "timezone": "UTC"}),
            "timezone",
        ),
        (json!({"name": "a", "task": "hello", "dst": "skip"}), "dst"),
    ] {
        let e = api
            .post("/api/v1/jobs", &body)
            .await
            .error(400, "invalid_input");
        assert_eq!(e["details"]["field"], field, "{body}: {e}");
    }
    node.stop().await;
}

#[tokio::test]
async fn queues_nodes_tasks_stats_health_and_metrics() {
    for db in common::databases("queues_nodes_tasks_stats_health_and_metrics").await {
        let node = start_node(&db.url).await;
        let api = serve(&db.url, HttpOptions::new()).await;
        let id = api
            .post(
                "/api/v1/runs",
                &json!({"task": "hello", "tags": {"team": "a"}}),
            )
            .await
            .expect(201)["run"]["id"]
            .as_i64()
            .unwrap();
        wait_status(&api, id, "succeeded").await;
        api.post("/api/v1/runs", &json!({"task": "send", "delay": "1h"}))
            .await
            .expect(201);

        let q = api.get("/api/v1/queues").await.expect(200);
        let mail = q["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "mail")
            .cloned()
            .expect("the mail queue");
        assert_eq!(mail["queued"], 1);
        let p = api
            .post_empty("/api/v1/queues/mail/pause")
            .await
            .expect(200);
        assert_eq!(p["paused"], true);
        let r = api
            .post_empty("/api/v1/queues/mail/resume")
            .await
            .expect(200);
        assert_eq!(r["paused"], false);
        api.post_empty("/api/v1/queues/nope/pause")
            .await
            .error(404, "not_found");

        let n = api.get("/api/v1/nodes").await.expect(200);
        assert_eq!(n["nodes"][0]["id"], node.id.as_str());
        assert_eq!(n["nodes"][0]["alive"], true);
        assert!(n["nodes"][0]["heartbeat_at"].is_string());
        let p = api
            .post_empty(&format!("/api/v1/nodes/{}/pause", node.id))
            .await
            .expect(200);
        assert_eq!(p["nodes"][0]["paused"], true);
        // By the name it goes by (`<hostname>:<pid>` here) as well as by its id.
        let name = n["nodes"][0]["name"].as_str().unwrap().to_string();
        assert!(name.ends_with(&format!(":{}", std::process::id())), "{n}");
        let p = api
            .post_empty(&format!("/api/v1/nodes/{name}/resume"))
            .await
            .expect(200);
        assert_eq!(p["nodes"][0]["paused"], false);
        assert_eq!(p["nodes"][0]["id"], node.id.as_str());
        api.post_empty("/api/v1/nodes/ghost/pause")
            .await
            .error(404, "not_found");

        let t = api.get("/api/v1/tasks").await.expect(200);
        let names: Vec<&str> = t["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"process"), "{names:?}");

        let s = api.get("/api/v1/stats").await.expect(200);
        assert_eq!(s["counts"]["succeeded"], 1);
        assert_eq!(s["queued"], 1);
        let s = api.get("/api/v1/stats?tag=team%3Da").await.expect(200);
        assert_eq!(s["counts"]["succeeded"], 1);
        assert_eq!(s["queued"], 0);
        let s = api
            .get("/api/v1/stats?tag=team%3Db&task=hello")
            .await
            .expect(200);
        assert_eq!(s["counts"]["succeeded"], 0);
        api.get("/api/v1/stats?tag=team")
            .await
            .error(400, "invalid_input");
        api.get("/api/v1/stats?window=1h")
            .await
            .error(400, "unknown_parameter");

        let h = api.get("/health").await.expect(200);
        assert_eq!(h["healthy"], true);
        api.get("/health?max_age=soon")
            .await
            .error(400, "invalid_input");
        api.get("/health?max_age=0s")
            .await
            .error(400, "invalid_input");

        let m = api.get("/metrics").await;
        assert_eq!(m.status, 200);
        assert!(m.content_type.starts_with("text/plain"), "{m:?}");
        for line in [
            "kairos_runs{task=\"hello\",status=\"succeeded\"} 1",
            "kairos_runs{task=\"send\",status=\"queued\"} 1",
            "kairos_queue_queued{queue=\"mail\"} 1",
            "kairos_run_duration_seconds_count{task=\"hello\"} 1",
            "kairos_runs_finished_last_hour{task=\"hello\",status=\"succeeded\"} 1",
            &format!("kairos_node_alive{{node=\"{}\"}} 1", node.id),
            "# TYPE kairos_cron_firing_lateness_seconds histogram",
        ] {
            assert!(
                m.text.lines().any(|l| l == line),
                "missing `{line}` in:\n{}",
                m.text
            );
        }

        // Once the node is gone, health is 503 with the reason.
        node.stop().await;
        let h = api.get("/health?max_age=1s").await.expect(503);
        assert_eq!(h["healthy"], false);
        assert!(!h["reasons"].as_array().unwrap().is_empty());
    }
}

/// `POST /api/v1/nodes/pause` and `/resume` act on every node, as `kairos nodes pause`
/// and `resume` without an id do: a node that starts while every node is paused is
/// paused too, and resuming lifts a pause by id as well. Both need the token.
#[tokio::test]
async fn every_node_is_paused_and_resumed_at_once() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let token = "s3cret-token-for-tests";
    let api = serve(&db.url, HttpOptions::new().token(token)).await;
    for path in ["/api/v1/nodes/pause", "/api/v1/nodes/resume"] {
        api.post_empty(path).await.error(401, "unauthorized");
    }
    let api = api.with_token(token);
    let paused = |v: &Value, id: &str| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("node {id} in {v}"))["paused"]
            .clone()
    };
    let p = api.post_empty("/api/v1/nodes/pause").await.expect(200);
    assert_eq!(paused(&p, &node.id), true, "{p}");

    let first = node.id.clone();
    node.stop().await;
    let later = start_node(&db.url).await;
    let n = api.get("/api/v1/nodes").await.expect(200);
    assert_eq!(paused(&n, &later.id), true, "a node started later: {n}");

    api.post_empty("/api/v1/nodes/resume").await.expect(200);
    api.post_empty(&format!("/api/v1/nodes/{}/pause", later.id))
        .await
        .expect(200);
    let r = api.post_empty("/api/v1/nodes/resume").await.expect(200);
    assert_eq!(paused(&r, &first), false, "{r}");
    assert_eq!(paused(&r, &later.id), false, "a pause by id is lifted: {r}");
    later.stop().await;
}

#[tokio::test]
async fn a_token_guards_changes_and_optionally_reads() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let token = "s3cret-token-for-tests";
    let api = serve(&db.url, HttpOptions::new().token(token)).await;
    let body = json!({"task": "send", "delay": "1h"});

    // Reads are open; changes need the token: missing 401, wrong 403.
    api.get("/api/v1/runs").await.expect(200);
    let a = api
        .send(
            Method::POST,
            "/api/v1/runs",
            Some((body.to_string().into_bytes(), "application/json")),
            None,
        )
        .await;
    a.error(401, "unauthorized");
    assert!(!a.text.contains(token));
    api.send(
        Method::POST,
        "/api/v1/runs",
        Some((body.to_string().into_bytes(), "application/json")),
        Some("wrong"),
    )
    .await
    .error(403, "forbidden");
    api.send(Method::POST, "/api/v1/jobs/x/pause", None, None)
        .await
        .error(401, "unauthorized");
    assert_eq!(node.total_runs().await, 0, "nothing done without the token");
    api.send(
        Method::POST,
        "/api/v1/runs",
        Some((body.to_string().into_bytes(), "application/json")),
        Some(token),
    )
    .await
    .expect(201);

    // A browser on another origin may not change anything, token or not.
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/queues/mail/pause", api.base))
        .header("origin", "http://evil.example")
        .header("authorization", format!("Bearer {token}"));
    req = req.header("content-type", "application/json");
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // With protected reads, reads need it too; /health and the document do not.
    let api = serve(&db.url, HttpOptions::new().token(token).protect_reads(true)).await;
    api.get("/api/v1/runs").await.error(401, "unauthorized");
    api.get("/metrics").await.error(401, "unauthorized");
    api.get("/health").await.expect(200);
    api.get("/api/v1/openapi.json").await.expect(200);
    api.send(Method::GET, "/api/v1/runs", None, Some("nope"))
        .await
        .error(403, "forbidden");
    let api = api.with_token(token);
    assert_eq!(api.get("/api/v1/runs").await.expect(200)["total"], 1);
    // The scheme's case does not matter; another scheme is refused.
    for (header, status) in [
        (format!("BEARER {token}"), 200),
        (format!("bearer {token}"), 200),
        (format!("Basic {token}"), 401),
    ] {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/runs", api.base))
            .header("authorization", header.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{header}");
    }
    node.stop().await;
}

/// DNS rebinding: a page on another site whose name now points at 127.0.0.1 sends a
/// `Host` (and a matching `Origin`) of that site. Without a token, such requests are
/// refused, reads and event streams included; the real loopback names are served.
#[tokio::test]
async fn without_a_token_only_loopback_host_names_are_served() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let api = serve(&db.url, HttpOptions::new()).await;
    let port = api.base.rsplit(':').next().unwrap().to_string();
    let evil = format!("evil.example:{port}");
    let evil_origin = format!("http://{evil}");
    let rebound = [("host", evil.as_str()), ("origin", evil_origin.as_str())];

    let e = api
        .send_with(
            Method::POST,
            "/api/v1/queues/default/pause",
            None,
            None,
            &rebound,
        )
        .await
        .error(403, "forbidden");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("loopback") && message.contains("token"),
        "says what to do: {message}"
    );
    let queues = api.get("/api/v1/queues").await.expect(200);
    let default = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .expect("the default queue");
    assert_eq!(
        default["paused"], false,
        "the queue was not paused: {queues}"
    );
    for path in ["/api/v1/runs", "/metrics", "/api/v1/events"] {
        api.send_with(Method::GET, path, None, None, &rebound[..1])
            .await
            .error(403, "forbidden");
    }

    // Loopback names and addresses, however spelled, are served; so are the open
    // endpoints, which hold no secrets.
    for host in [
        format!("localhost:{port}"),
        format!("kairos.localhost:{port}"),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
    ] {
        api.send_with(Method::GET, "/api/v1/runs", None, None, &[("host", &host)])
            .await
            .expect(200);
    }
    api.send_with(Method::GET, "/health", None, None, &rebound[..1])
        .await
        .expect(200);

    // With a token, the token guards changes, whatever the server is called.
    let token = "s3cret-token-for-tests";
    let api = serve(&db.url, HttpOptions::new().token(token)).await;
    let host = [("host", "kairos.example.com")];
    api.send_with(Method::GET, "/api/v1/runs", None, None, &host)
        .await
        .expect(200);
    api.send_with(
        Method::POST,
        "/api/v1/queues/default/pause",
        None,
        None,
        &host,
    )
    .await
    .error(401, "unauthorized");
    api.send_with(
        Method::POST,
        "/api/v1/queues/default/pause",
        None,
        Some(token),
        &host,
    )
    .await
    .expect(200);
    node.stop().await;
}

/// The database refuses connections and cuts those open while the API runs: every
/// answer is 503 `database_unavailable` with `Retry-After`, as the CLI would say, and
/// the API answers normally once the database is back.
#[tokio::test]
async fn a_database_outage_is_503_database_unavailable() {
    let Some(db) = common::postgres("http_outage").await else {
        return;
    };
    kairos::test_support::sync_jobs(&db.url, &[], chrono::Utc::now())
        .await
        .unwrap();
    let api = serve(&db.url, HttpOptions::new()).await;
    api.get("/api/v1/runs").await.expect(200);

    db.cut_off().await;
    // The first request may meet a pooled connection that was cut, later ones a server
    // that refuses new ones; both are the database being unavailable.
    for path in ["/api/v1/runs", "/api/v1/jobs", "/api/v1/queues"] {
        let a = api.get(path).await;
        a.error(503, "database_unavailable");
        assert_eq!(a.headers["retry-after"], "5", "{a:#?}");
    }
    api.post_empty("/api/v1/jobs/nightly/pause")
        .await
        .error(503, "database_unavailable");

    db.reopen().await;
    api.get("/api/v1/runs").await.expect(200);
}

#[tokio::test]
async fn the_router_embeds_over_a_nodes_own_admin() {
    for db in common::databases("the_router_embeds_over_a_nodes_own_admin").await {
        let node = start_node(&db.url).await;
        let api = Api::start(node.handle.admin().clone(), HttpOptions::new()).await;
        let id = api
            .post(
                "/api/v1/runs",
                &json!({"task": "hello", "params": {"a": 1}}),
            )
            .await
            .expect(201)["run"]["id"]
            .as_i64()
            .unwrap();
        wait_status(&api, id, "succeeded").await;
        // Tasks are the node's own registry's.
        api.post("/api/v1/runs", &json!({"task": "nope"}))
            .await
            .error(400, "unknown_task");
        node.stop().await;
    }
}

/// Two items of one batch with one key and different requests: the second is refused
/// naming the first item, not a run that the refusal itself rolls back; the same
/// request twice in a batch is one run.
#[tokio::test]
async fn one_key_twice_in_a_batch_names_the_first_item() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let api = serve(&db.url, HttpOptions::new()).await;
    // Two items of one batch with one key: the second is refused naming the first
    // item, not a run that the refusal rolls back; the same request twice is one run.
    let before = node.total_runs().await;
    let e = api
        .post(
            "/api/v1/runs/batch",
            &json!({"runs": [{"task": "send", "delay": "1h", "params": {"to": "d"}, "idempotency_key": "k2"},
                             {"task": "send", "delay": "1h", "params": {"to": "e"}, "idempotency_key": "k2"}]}),
        )
        .await
        .error(400, "invalid_batch");
    assert_eq!(e["details"]["errors"][0]["index"], 1, "{e}");
    let message = e["details"]["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("also given to runs[0] of this batch"),
        "{e}"
    );
    assert!(e["details"]["errors"][0]["run_id"].is_null(), "{e}");
    assert_eq!(node.total_runs().await, before);
    let same =
        json!({"task": "send", "delay": "1h", "params": {"to": "d"}, "idempotency_key": "k2"});
    let ok = api
        .post("/api/v1/runs/batch", &json!({"runs": [same, same]}))
        .await
        .expect(201);
    assert_eq!(
        ok["runs"][0]["run"]["id"], ok["runs"][1]["run"]["id"],
        "{ok}"
    );
    assert_eq!(node.total_runs().await, before + 1);
    node.stop().await;
}

/// A request that changes something takes its input from its body: a query parameter
/// there is refused rather than ignored (`?dry_run=1` must not enqueue a real run).
#[tokio::test]
async fn query_parameters_on_changes_are_refused_not_ignored() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let api = serve(&db.url, HttpOptions::new()).await;
    let e = api
        .post("/api/v1/runs?dry_run=1", &json!({"task": "hello"}))
        .await
        .error(400, "unknown_parameter");
    assert_eq!(e["details"]["field"], "dry_run", "{e}");
    assert_eq!(node.total_runs().await, 0);
    api.post("/api/v1/queues/default/pause?all=1", &json!({}))
        .await
        .error(400, "unknown_parameter");
    // DELETE of a job reads its own.
    api.post(
        "/api/v1/jobs",
        &json!({"name": "j", "task": "hello", "interval": "1h"}),
    )
    .await
    .expect(201);
    api.send(
        Method::DELETE,
        "/api/v1/jobs/j?keep_history=true",
        None,
        None,
    )
    .await
    .expect(200);
    node.stop().await;
}
