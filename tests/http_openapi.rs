//! The OpenAPI document agrees with the router: every documented path and method is
//! served (not 404 for the route, not 405), every method left out of a documented
//! path is 405, and the responses of real requests carry only the keys their
//! documented schemas name (the record schemas are written by hand, so this is what
//! keeps them true).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use kairos::http::HttpOptions;
use kairos::{Admin, Registry, TaskDef};
use reqwest::Method;
use serde_json::{Value, json};

use common::cli::{Node, hello, node_builder};
use common::http::Api;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn setup(url: &str) -> (Node, Api) {
    let registry =
        Registry::from_tasks([TaskDef::new("hello", hello, "tests/http_openapi.rs")]).unwrap();
    let node = Node::start_with(url, node_builder(url, registry, None)).await;
    let api = Api::start(Admin::connect(url).await.unwrap(), HttpOptions::new()).await;
    (node, api)
}

/// `path` with sample values for its parameters.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1").replace("{name}", "sample")
}

/// Sends `method` to `path` and returns the status and the error code (if JSON),
/// without reading an endless event stream.
async fn probe(base: &str, method: &str, path: &str) -> (u16, Option<String>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = client.request(m, format!("{base}{path}"));
    if method == "post" || method == "patch" || method == "put" {
        req = req.header("content-type", "application/json").body("{}");
    }
    let resp = req.send().await.expect("answered");
    let status = resp.status().as_u16();
    let json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return (status, None);
    }
    let v: Value = resp.json().await.unwrap_or_default();
    (status, v["error"]["code"].as_str().map(str::to_string))
}

#[tokio::test]
async fn every_documented_route_is_served_and_no_other_method_is() {
    let db = common::sqlite();
    let (node, api) = setup(&db.url).await;
    let doc = api.get("/api/v1/openapi.json").await.expect(200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc, serde_json::to_value(kairos::http::openapi()).unwrap());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{:?}", paths.keys());
    let mut served = 0;
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        for method in METHODS {
            let (status, code) = probe(&api.base, method, &concrete(path)).await;
            if let Some(op) = item.get(method) {
                served += 1;
                let id = op["operationId"].as_str().expect("an operationId");
                assert!(
                    operation_ids.insert(id.to_string()),
                    "operationId {id} twice"
                );
                assert_ne!(status, 405, "{method} {path} is documented but not served");
                assert_ne!(
                    code.as_deref(),
                    Some("no_route"),
                    "{method} {path} is documented but not routed"
                );
                assert!(status < 500, "{method} {path}: {status}");
            } else {
                assert_eq!(
                    (status, code.as_deref()),
                    (405, Some("method_not_allowed")),
                    "{method} {path} is served but not documented"
                );
            }
        }
    }
    assert!(served >= 31, "{served} operations");
    // Routes reach the router only through the table that also builds the document:
    // a route added beside it (`.route(...)`) would be served but undocumented. The one
    // exception is the dashboard's page and assets, which are not API endpoints.
    let table: String = std::fs::read_to_string("src/http/mod.rs")
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter(|l| l.trim() != ".merge(dashboard::routes())")
        .collect();
    for call in [".route(", ".nest(", ".merge(", ".route_service("] {
        assert!(
            !table.contains(call),
            "src/http/mod.rs adds a route with `{call}`: use `.routes(routes!(...))`"
        );
    }
    node.stop().await;
}

/// Every key of `value` is a property its schema documents (following `$ref`,
/// `allOf`, `oneOf`/`anyOf` and array items); `at` names the place for messages.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], value, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema[key].as_array() {
            if value.is_null() {
                return Ok(());
            }
            let mut errors = Vec::new();
            for alt in alts.iter().filter(|a| a["type"] != "null") {
                match conforms(doc, alt, value, at) {
                    Ok(()) => return Ok(()),
                    Err(e) => errors.push(e),
                }
            }
            return Err(errors.join(" / "));
        }
    }
    let mut props = serde_json::Map::new();
    collect_properties(doc, schema, &mut props);
    match value {
        Value::Object(m) if !props.is_empty() => {
            for (k, v) in m {
                let Some(s) = props.get(k) else {
                    return Err(format!("{at}.{k} is not in the schema"));
                };
                conforms(doc, s, v, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    conforms(doc, s, v, &format!("{at}[{i}]"))?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn collect_properties(doc: &Value, schema: &Value, out: &mut serde_json::Map<String, Value>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        collect_properties(doc, &doc["components"]["schemas"][name], out);
    }
    if let Some(p) = schema["properties"].as_object() {
        out.extend(p.clone());
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            collect_properties(doc, s, out);
        }
    }
}

/// The documented schema of `method path`'s answer with `status`.
fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let s = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    assert!(!s.is_null(), "no schema for {method} {path} {status}");
    s
}

#[tokio::test]
async fn responses_carry_only_documented_keys() {
    for db in common::databases("responses_carry_only_documented_keys").await {
        let (node, api) = setup(&db.url).await;
        let doc = api.get("/api/v1/openapi.json").await.expect(200);
        let created = api
            .post(
                "/api/v1/runs",
                &json!({"task": "hello", "delay": "1h", "tags": {"a": "b"}}),
            )
            .await;
        let id = created.expect(201)["run"]["id"].as_i64().unwrap();
        let job = api
            .post(
                "/api/v1/jobs",
                &json!({"name": "j", "task": "hello", "schedule": "0 3 * * *"}),
            )
            .await;
        job.expect(201);
        let cases: Vec<(&str, &str, String, u16, Value)> = vec![
            ("/api/v1/runs", "post", String::new(), 201, created.json()),
            ("/api/v1/jobs", "post", String::new(), 201, job.json()),
            (
                "/api/v1/runs/{id}",
                "get",
                format!("/api/v1/runs/{id}"),
                200,
                Value::Null,
            ),
            (
                "/api/v1/runs",
                "get",
                "/api/v1/runs".into(),
                200,
                Value::Null,
            ),
            (
                "/api/v1/jobs/{name}",
                "get",
                "/api/v1/jobs/j".into(),
                200,
                Value::Null,
            ),
            (
                "/api/v1/jobs",
                "get",
                "/api/v1/jobs".into(),
                200,
                Value::Null,
            ),
            (
                "/api/v1/queues",
                "get",
                "/api/v1/queues".into(),
                200,
                Value::Null,
            ),
            (
                "/api/v1/nodes",
                "get",
                "/api/v1/nodes".into(),
                200,
                Value::Null,
            ),
            (
                "/api/v1/tasks",
                "get",
                "/api/v1/tasks".into(),
                200,
                Value::Null,
            ),
            (
                "/api/v1/stats",
                "get",
                "/api/v1/stats".into(),
                200,
                Value::Null,
            ),
            ("/health", "get", "/health".into(), 200, Value::Null),
            (
                "/api/v1/runs/{id}",
                "get",
                "/api/v1/runs/999".into(),
                404,
                Value::Null,
            ),
        ];
        let mut checked = BTreeSet::new();
        for (path, method, url, status, body) in cases {
            let body = if body.is_null() {
                api.get(&url).await.expect(status)
            } else {
                body
            };
            let schema = response_schema(&doc, path, method, status);
            conforms(&doc, schema, &body, &format!("{method} {path}"))
                .unwrap_or_else(|e| panic!("{e}\n{body:#}"));
            checked.insert(path);
        }
        assert!(checked.len() >= 9);
        node.stop().await;
    }
}

/// A run's result and checkpoint are whatever JSON the task returned or saved (`3`,
/// `"done"`, an object): the document must not claim they are objects, or a client
/// validating against it rejects real answers.
#[tokio::test]
async fn a_run_s_result_may_be_any_json_and_bad_parameters_are_documented() {
    let db = common::sqlite();
    let (node, api) = setup(&db.url).await;
    let doc = api.get("/api/v1/openapi.json").await.expect(200);
    for field in ["result", "checkpoint"] {
        let schema = &doc["components"]["schemas"]["Run"]["properties"][field];
        assert!(!schema.is_null(), "{field} is documented");
        let text = schema.to_string();
        assert!(
            !text.contains("\"object\"") && !text.contains("\"string\""),
            "{field}: {text}"
        );
    }
    // Every operation documents the 400 that a bad or unknown parameter gets.
    for (path, method, url) in [
        ("/api/v1/runs/{id}/logs", "get", "/api/v1/runs/abc/logs"),
        ("/api/v1/jobs", "get", "/api/v1/jobs?x=1"),
    ] {
        api.get(url).await.expect(400);
        let schema = response_schema(&doc, path, method, 400);
        assert!(schema.to_string().contains("ErrorBody"), "{path}: {schema}");
    }
    node.stop().await;
}
