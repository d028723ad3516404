//! Behaviour of tasks defined with `#[kairos::task]`: what lands in the registered
//! `TaskDef`, how params are read, and how return values become outcomes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use kairos::{FailedRun, Registry, TaskContext, TaskDef, TaskError};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[kairos::task]
async fn plain() {}

#[kairos::task(name = "everything", schedule = "0 0 * * *", timezone = "Asia/Shanghai",
               max_instances = 2, max_retries = 5, retry_delay = "1m30s", timeout = "30m",
               priority = -7, queue = "reports", on_failure = record_failure)]
async fn every_key() {}

static FAILURES: AtomicU32 = AtomicU32::new(0);

async fn record_failure(run: FailedRun) {
    assert_eq!(run.task, "everything");
    FAILURES.fetch_add(1, Ordering::SeqCst);
}

#[kairos::task(interval_minutes = 15)]
async fn every_quarter_hour(ctx: TaskContext) -> u32 {
    ctx.attempt()
}

#[kairos::task]
async fn with_params(
    count: u32,
    ctx: TaskContext,
    doc_id: String,
    by_ref: &kairos::TaskContext,
    note: Option<String>,
) -> anyhow::Result<Value> {
    assert_eq!(ctx.run_id(), by_ref.run_id());
    Ok(json!({"doc_id": doc_id, "count": count, "note": note, "task": ctx.task()}))
}

#[derive(Serialize)]
struct Report {
    pages: u32,
}

#[kairos::task]
async fn returns_report(pages: u32) -> Result<Report, String> {
    if pages == 0 {
        Err("no pages".into())
    } else {
        Ok(Report { pages })
    }
}

#[kairos::task]
async fn fails_with_context() -> anyhow::Result<()> {
    Err(anyhow::anyhow!("connection refused")).context("cannot reach the mail server")
}

#[kairos::task]
async fn returns_unit_ok() -> anyhow::Result<()> {
    Ok(())
}

#[kairos::task]
async fn returns_plain(n: i64) -> Vec<i64> {
    vec![n, n * 2]
}

fn registry() -> Registry {
    Registry::from_inventory().expect("no duplicate task names")
}

fn task(name: &str) -> TaskDef {
    *registry()
        .get(name)
        .unwrap_or_else(|| panic!("task `{name}` is not registered"))
}

fn ctx(name: &str) -> TaskContext {
    TaskContext::new(
        1,
        name,
        None,
        chrono::Utc::now(),
        1,
        CancellationToken::new(),
    )
}

async fn call(name: &str, params: Value) -> Result<Option<Value>, TaskError> {
    (task(name).handler)(ctx(name), params).await
}

fn invalid(msg: &str) -> Result<Option<Value>, TaskError> {
    Err(TaskError::InvalidParams(msg.to_string()))
}

#[test]
fn defaults_and_name() {
    let t = task("plain");
    assert_eq!(t.name, "plain");
    assert_eq!(t.schedule, None);
    assert_eq!(t.timezone, None);
    assert_eq!(t.interval, None);
    assert_eq!(t.max_instances, None);
    assert_eq!(t.max_retries, None);
    assert_eq!(t.retry_delay, None);
    assert_eq!(t.timeout, None);
    assert_eq!(t.priority, None);
    assert_eq!(t.queue, None);
    assert!(t.on_failure.is_none());
    // The location is the line of the function's name, in this file.
    assert_eq!(t.location, concat!(file!(), ":14"));
    assert!(
        registry().get("every_key").is_none(),
        "`name` replaces the fn name"
    );
}

#[test]
fn every_key_lands_in_task_def() {
    let t = task("everything");
    assert_eq!(t.schedule, Some("0 0 * * *"));
    assert_eq!(t.timezone, Some("Asia/Shanghai"));
    assert_eq!(t.interval, None);
    assert_eq!(t.max_instances, Some(2));
    assert_eq!(t.max_retries, Some(5));
    assert_eq!(t.retry_delay, Some(Duration::from_secs(90)));
    assert_eq!(t.timeout, Some(Duration::from_secs(30 * 60)));
    assert_eq!(t.priority, Some(-7));
    assert_eq!(t.queue, Some("reports"));
    assert!(t.on_failure.is_some());
    assert_eq!(
        task("every_quarter_hour").interval,
        Some(Duration::from_secs(15 * 60))
    );
}

#[tokio::test]
async fn on_failure_calls_the_users_fn() {
    let hook = task("everything").on_failure.unwrap();
    // `FailedRun` is `#[non_exhaustive]` and has no public constructor yet, so outside
    // kairos only the hidden helper can build one.
    let run = kairos::FailedRun::new(7, "everything", None, 3, "boom", Value::Null);
    hook(run).await;
    assert_eq!(FAILURES.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn context_is_passed() {
    assert_eq!(
        call("every_quarter_hour", Value::Null).await,
        Ok(Some(json!(1)))
    );
}

#[tokio::test]
async fn params_are_read_by_name() {
    assert_eq!(
        call(
            "with_params",
            json!({"doc_id": "d1", "count": 3, "note": "hi"})
        )
        .await,
        Ok(Some(
            json!({"doc_id": "d1", "count": 3, "note": "hi", "task": "with_params"})
        ))
    );
}

#[tokio::test]
async fn option_param_may_be_missing() {
    assert_eq!(
        call("with_params", json!({"doc_id": "d1", "count": 3})).await,
        Ok(Some(
            json!({"doc_id": "d1", "count": 3, "note": null, "task": "with_params"})
        ))
    );
}

#[tokio::test]
async fn bad_params_are_invalid() {
    assert_eq!(
        call("with_params", json!({"count": 3})).await,
        invalid("missing parameter `doc_id` (String)")
    );
    assert_eq!(
        call("with_params", json!({"doc_id": "d1", "count": "x"})).await,
        invalid("parameter `count`: invalid type: string \"x\", expected u32")
    );
    assert_eq!(
        call(
            "with_params",
            json!({"doc_id": "d1", "count": 3, "dco_id": 1})
        )
        .await,
        invalid("unknown parameter `dco_id`; the task takes: count, doc_id, note")
    );
    assert_eq!(
        call("with_params", json!(["d1", 3])).await,
        invalid("params must be a JSON object with the keys count, doc_id, note; got an array")
    );
    assert_eq!(
        call("plain", json!({"x": 1})).await,
        invalid("unknown parameter `x`; the task takes no parameters")
    );
    assert!(call("plain", json!({})).await.is_ok());
    let err = call("with_params", json!({})).await.unwrap_err();
    assert!(err.is_permanent());
}

#[tokio::test]
async fn results_become_outcomes() {
    assert_eq!(
        call("returns_report", json!({"pages": 4})).await,
        Ok(Some(json!({"pages": 4})))
    );
    assert_eq!(
        call("returns_report", json!({"pages": 0})).await,
        Err(TaskError::Failed("no pages".into()))
    );
    assert_eq!(
        call("fails_with_context", Value::Null).await,
        Err(TaskError::Failed(
            "cannot reach the mail server: connection refused".into()
        ))
    );
    assert_eq!(call("returns_unit_ok", Value::Null).await, Ok(None));
    assert_eq!(call("plain", Value::Null).await, Ok(None));
    assert_eq!(
        call("returns_plain", json!({"n": 21})).await,
        Ok(Some(json!([21, 42])))
    );
}

#[tokio::test]
async fn user_fn_is_still_callable() {
    assert_eq!(returns_plain(2).await, vec![2, 4]);
    assert_eq!(returns_report(1).await.unwrap().pages, 1);
    every_key().await;
    let c = ctx("with_params");
    let v = with_params(1, c.clone(), "d".into(), &c, None)
        .await
        .unwrap();
    assert_eq!(v["doc_id"], "d");
}
