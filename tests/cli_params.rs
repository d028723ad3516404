//! Params checked at the door by the standalone `kairos` binary: it has no compiled
//! tasks, so it checks a run's params against the JSON Schema the node published for
//! each `#[kairos::task]`. Wrong types, missing and unknown params are refused (exit
//! 1, naming the parameter and the expected type) for `enqueue`, `enqueue --batch` and
//! `jobs create`/`update`; valid params are enqueued and the run succeeds.

mod common;

use kairos::{Registry, RunStatus};
use serde_json::json;

use common::cli::{Node, cli};

/// A report for `region` over the last `days` (7 when left out).
#[kairos::task]
async fn report(region: String, days: Option<u32>) -> anyhow::Result<String> {
    Ok(format!("{region}/{}", days.unwrap_or(7)))
}

// ---------------------------------------------------------------------------------
// Running the binary

/// `kairos enqueue report --params PARAMS`, expected to be refused: its error line.
async fn refused(url: &str, params: &str) -> String {
    let out = cli(url, &["enqueue", "report", "--params", params]).await;
    assert_eq!(out.code, 1, "{params} is refused: {out:#?}");
    out.fails()
}

// ---------------------------------------------------------------------------------
// A node running `report`

/// A node running every `#[kairos::task]` of this file.
async fn start_node(url: &str) -> Node {
    let registry = Registry::from_inventory().expect("no duplicate task");
    assert!(registry.get("report").is_some_and(|t| t.params.is_some()));
    Node::start(url, registry, None).await
}

// ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_published_schema_lists_the_parameters_and_their_types() {
    for db in common::databases("the_published_schema_lists_the_parameters").await {
        let node = start_node(&db.url).await;
        let out = cli(&db.url, &["tasks", "list", "--json"]).await;
        assert_eq!(out.code, 0, "{out:#?}");
        let tasks = out.json();
        let report = tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "report")
            .expect("report is published")
            .clone();
        let schema = &report["params_schema"];
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], json!(["region"]));
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["region"]["type"], "string");
        assert!(schema["properties"]["days"].is_object(), "{schema}");
        let text = cli(&db.url, &["tasks", "list"]).await;
        assert!(
            text.stdout.contains("region") && text.stdout.contains("days"),
            "the PARAMS column: {text:#?}"
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn a_param_of_the_wrong_type_is_refused_naming_it_and_the_type() {
    for db in common::databases("a_param_of_the_wrong_type_is_refused").await {
        let node = start_node(&db.url).await;
        let err = refused(&db.url, r#"{"region": 5}"#).await;
        assert!(err.contains("region"), "{err}");
        assert!(err.contains("string"), "names the expected type: {err}");
        assert!(err.contains("report"), "names the task: {err}");

        let err = refused(&db.url, r#"{"region": "eu", "days": "seven"}"#).await;
        assert!(err.contains("days"), "{err}");
        assert!(err.contains("integer"), "names the expected type: {err}");

        let err = refused(&db.url, r#"{"region": "eu", "days": -1}"#).await;
        assert!(err.contains("days"), "a u32 is not negative: {err}");

        let err = refused(&db.url, r#"{"region": "eu", "days": 1.5}"#).await;
        assert!(err.contains("days"), "a u32 is whole: {err}");

        let err = refused(&db.url, r#"{"region": "eu", "days": 4294967296}"#).await;
        assert!(err.contains("days"), "a u32 fits 32 bits: {err}");

        let err = refused(&db.url, r#"{"region": null}"#).await;
        assert!(err.contains("region"), "a String is not null: {err}");

        assert_eq!(node.total_runs().await, 0, "nothing was enqueued");
        node.stop().await;
    }
}

#[tokio::test]
async fn missing_and_unknown_params_are_refused_naming_them() {
    for db in common::databases("missing_and_unknown_params_are_refused").await {
        let node = start_node(&db.url).await;
        let err = refused(&db.url, "{}").await;
        assert!(err.contains("region"), "names the missing param: {err}");
        assert!(
            err.contains("missing") || err.contains("required"),
            "says it is missing: {err}"
        );

        let out = cli(&db.url, &["enqueue", "report"]).await;
        assert_eq!(out.code, 1, "no params at all misses `region`: {out:#?}");
        assert!(out.stderr.contains("region"), "{out:#?}");

        let err = refused(&db.url, r#"{"region": "eu", "colour": "red"}"#).await;
        assert!(err.contains("colour"), "names the unknown param: {err}");

        let err = refused(&db.url, r#"{"regoin": "eu"}"#).await;
        assert!(err.contains("regoin"), "{err}");
        assert!(err.contains("region"), "{err}");

        let err = refused(&db.url, r#"["eu"]"#).await;
        assert!(err.contains("object"), "{err}");

        let out = cli(
            &db.url,
            &[
                "enqueue",
                "report",
                "--params",
                r#"{"region": 5}"#,
                "--json",
            ],
        )
        .await;
        assert_eq!(out.code, 1, "{out:#?}");
        assert_eq!(out.json()["error"]["code"], "invalid_params");

        assert_eq!(node.total_runs().await, 0, "nothing was enqueued");
        node.stop().await;
    }
}

#[tokio::test]
async fn valid_params_are_enqueued_and_the_run_succeeds() {
    for db in common::databases("valid_params_are_enqueued").await {
        let node = start_node(&db.url).await;
        for (params, result) in [
            (r#"{"region": "eu"}"#, "eu/7"),
            (r#"{"region": "apac", "days": 30}"#, "apac/30"),
            (r#"{"region": "us", "days": null}"#, "us/7"),
        ] {
            let out = cli(
                &db.url,
                &["enqueue", "report", "--params", params, "--json"],
            )
            .await;
            assert_eq!(out.code, 0, "{out:#?}");
            let id = out.json()["id"].as_i64().expect("an id");
            let run = common::wait_status(&node.admin, id, RunStatus::Succeeded).await;
            assert_eq!(run.result, Some(json!(result)), "{params}");
        }
        node.stop().await;
    }
}

#[tokio::test]
async fn a_batch_with_bad_params_enqueues_nothing_and_names_the_line() {
    for db in common::databases("a_batch_with_bad_params_enqueues_nothing").await {
        let node = start_node(&db.url).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runs.jsonl");
        std::fs::write(
            &file,
            [
                r#"{"task": "report", "params": {"region": "eu"}}"#,
                r#"{"task": "report", "params": {"region": "us", "days": 3}}"#,
                r#"{"task": "report", "params": {"region": 5}}"#,
                r#"{"task": "report", "params": {"region": "eu", "extra": 1}}"#,
            ]
            .join("\n"),
        )
        .unwrap();
        let out = cli(&db.url, &["enqueue", "--batch", file.to_str().unwrap()]).await;
        assert_eq!(out.code, 1, "{out:#?}");
        assert!(
            out.stderr.contains("runs.jsonl:3"),
            "names line 3: {out:#?}"
        );
        assert!(
            out.stderr.contains("runs.jsonl:4"),
            "names line 4: {out:#?}"
        );
        assert!(!out.stderr.contains("runs.jsonl:1"), "{out:#?}");
        assert!(
            out.stderr.contains("region") && out.stderr.contains("extra"),
            "{out:#?}"
        );
        assert_eq!(node.total_runs().await, 0, "all or nothing");
        node.stop().await;
    }
}

#[tokio::test]
async fn jobs_get_their_params_checked_too() {
    for db in common::databases("jobs_get_their_params_checked_too").await {
        let node = start_node(&db.url).await;
        let out = cli(
            &db.url,
            &[
                "jobs",
                "create",
                "weekly",
                "--task",
                "report",
                "--schedule",
                "0 6 * * 1",
                "--params",
                r#"{"region": 5}"#,
            ],
        )
        .await;
        assert_eq!(out.code, 1, "{out:#?}");
        assert!(
            out.stderr.contains("region") && out.stderr.contains("string"),
            "{out:#?}"
        );
        let out = cli(
            &db.url,
            &[
                "jobs",
                "create",
                "weekly",
                "--task",
                "report",
                "--schedule",
                "0 6 * * 1",
            ],
        )
        .await;
        assert_eq!(
            out.code, 1,
            "a job without params misses `region`: {out:#?}"
        );
        assert!(node.admin.jobs().await.unwrap().is_empty());

        let out = cli(
            &db.url,
            &[
                "jobs",
                "create",
                "weekly",
                "--task",
                "report",
                "--schedule",
                "0 6 * * 1",
                "--params",
                r#"{"region": "eu"}"#,
            ],
        )
        .await;
        assert_eq!(out.code, 0, "{out:#?}");
        let out = cli(
            &db.url,
            &["jobs", "update", "weekly", "--params", r#"{"days": 3}"#],
        )
        .await;
        assert_eq!(out.code, 1, "{out:#?}");
        assert!(out.stderr.contains("region"), "{out:#?}");
        let job = node.admin.job("weekly").await.unwrap();
        assert_eq!(job.params, json!({"region": "eu"}), "unchanged");

        // A manual run of the job carries its checked params and succeeds.
        let out = cli(&db.url, &["jobs", "trigger", "weekly", "--json"]).await;
        assert_eq!(out.code, 0, "{out:#?}");
        let id = out.json()["id"].as_i64().unwrap();
        let run = common::wait_status(&node.admin, id, RunStatus::Succeeded).await;
        assert_eq!(run.result, Some(json!("eu/7")));
        node.stop().await;
    }
}
