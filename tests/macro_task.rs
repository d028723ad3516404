//! Behaviour of tasks defined with `#[kairos::task]`: what lands in the registered
//! `TaskDef` (policies, published params and their schema), how params are read and
//! checked, and how return values become outcomes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use kairos::schedule::DstPolicy;
use kairos::{FailedRun, Misfire, Overlap, Registry, TaskContext, TaskDef, TaskError};
use serde::{Deserialize, Serialize};
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

#[kairos::task(
    schedule = "30 2 * * *",
    timezone = "Europe/Paris",
    misfire = "catch_up",
    max_catch_up = 12,
    misfire_grace = "1m30s",
    overlap = "queue",
    dst = "both"
)]
async fn policies() {}

#[kairos::task(
    schedule = "@daily",
    misfire = "skip",
    overlap = "replace",
    dst = "skip",
    misfire_grace = "0s"
)]
async fn other_policies() {}

#[kairos::task(
    schedule = "@daily",
    misfire = "run_once",
    overlap = "skip",
    dst = "debian"
)]
async fn default_policies() {}

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

#[derive(Deserialize)]
struct Custom {
    #[allow(dead_code)]
    a: u8,
}

type MaybeCount = Option<i64>;

#[kairos::task]
#[allow(clippy::too_many_arguments)]
async fn typed(
    region: String,
    ctx: &TaskContext,
    count: Option<u32>,
    tags: Vec<String>,
    at: chrono::DateTime<chrono::Utc>,
    limits: HashMap<String, u8>,
    extra: serde_json::Value,
    custom: Custom,
    maybe: MaybeCount,
    label: Cow<'_, str>,
) -> String {
    let _ = (ctx, count, tags, at, limits, extra, custom.a, maybe);
    format!("{region}/{label}")
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
    assert_eq!(t.misfire, None);
    assert_eq!(t.max_catch_up, None);
    assert_eq!(t.misfire_grace, None);
    assert_eq!(t.overlap, None);
    assert_eq!(t.dst, None);
    // A task without parameters publishes that it takes none.
    assert_eq!(t.params.map(<[_]>::len), Some(0));
    assert!(t.check_params.is_some());
    // The location is the line of the function's name, in this file.
    assert_eq!(t.location, concat!(file!(), ":18"));
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

#[test]
fn policies_land_in_task_def() {
    let t = task("policies");
    assert_eq!(t.misfire, Some(Misfire::CatchUp));
    assert_eq!(t.max_catch_up, Some(12));
    assert_eq!(t.misfire_grace, Some(Duration::from_secs(90)));
    assert_eq!(t.overlap, Some(Overlap::Queue));
    assert_eq!(t.dst, Some(DstPolicy::Both));

    let t = task("other_policies");
    assert_eq!(t.misfire, Some(Misfire::Skip));
    assert_eq!(t.max_catch_up, None);
    assert_eq!(t.misfire_grace, Some(Duration::ZERO));
    assert_eq!(t.overlap, Some(Overlap::Replace));
    assert_eq!(t.dst, Some(DstPolicy::Skip));

    let t = task("default_policies");
    assert_eq!(t.misfire, Some(Misfire::RunOnce));
    assert_eq!(t.overlap, Some(Overlap::Skip));
    assert_eq!(t.dst, Some(DstPolicy::Debian));
    assert_eq!(t.misfire_grace, None);
}

#[test]
fn params_are_published_in_order() {
    let params = task("typed").params.unwrap();
    let published: Vec<(&str, &str, bool)> = params
        .iter()
        .map(|p| (p.name, p.rust_type, p.required))
        .collect();
    assert_eq!(
        published,
        [
            ("region", "String", true),
            ("count", "Option<u32>", false),
            ("tags", "Vec<String>", true),
            ("at", "chrono::DateTime<chrono::Utc>", true),
            ("limits", "HashMap<String, u8>", true),
            ("extra", "serde_json::Value", true),
            ("custom", "Custom", true),
            // An alias of `Option` is optional too: decided by type, not by spelling.
            ("maybe", "MaybeCount", false),
            ("label", "Cow<'_, str>", true),
        ]
    );
}

#[test]
fn params_schema_of_several_types() {
    assert_eq!(
        task("typed").params_schema(),
        json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-rust-type": "String"},
                "count": {
                    "anyOf": [
                        {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                        {"type": "null"},
                    ],
                    "x-rust-type": "Option<u32>",
                },
                "tags": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-rust-type": "Vec<String>",
                },
                "at": {
                    "type": "string",
                    "format": "date-time",
                    "x-rust-type": "chrono::DateTime<chrono::Utc>",
                },
                "limits": {
                    "type": "object",
                    "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 255},
                    "x-rust-type": "HashMap<String, u8>",
                },
                "extra": {"x-rust-type": "serde_json::Value"},
                // Types kairos does not know accept any value in the schema.
                "custom": {"x-rust-type": "Custom"},
                "maybe": {
                    "anyOf": [
                        {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX},
                        {"type": "null"},
                    ],
                    "x-rust-type": "MaybeCount",
                },
                "label": {"x-rust-type": "Cow<'_, str>"},
            },
            "required": ["region", "tags", "at", "limits", "extra", "custom", "label"],
            "additionalProperties": false,
        })
    );
    assert_eq!(
        task("plain").params_schema(),
        json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false})
    );
}

#[tokio::test]
async fn check_params_gives_the_runs_verdict() {
    let good = json!({
        "region": "eu", "tags": ["a"], "at": "2024-05-01T12:00:00Z", "limits": {"x": 1},
        "extra": [null], "custom": {"a": 1}, "label": "l",
    });
    let check = task("typed").check_params.unwrap();
    assert_eq!(check(&good), Ok(()));
    assert_eq!(call("typed", good).await, Ok(Some(json!("eu/l"))));

    let cases = [
        ("with_params", json!({"doc_id": "d1", "count": 3})),
        ("with_params", json!({"count": 3})),
        (
            "with_params",
            json!({"doc_id": "d1", "count": "x", "dco_id": 1}),
        ),
        ("with_params", json!(["d1", 3])),
        ("plain", json!({"x": 1})),
        ("plain", Value::Null),
        (
            "typed",
            json!({"region": 5, "tags": [], "at": "tomorrow", "limits": {}, "extra": 1,
                   "custom": {"b": 1}, "label": "l"}),
        ),
    ];
    for (name, params) in cases {
        let check = task(name).check_params.unwrap();
        let verdict = check(&params);
        let run = call(name, params.clone()).await.map(|_| ());
        assert_eq!(verdict, run, "{name} with {params}");
    }
    assert_eq!(
        (task("with_params").check_params.unwrap())(&json!({"count": 3})),
        Err(TaskError::InvalidParams(
            "missing parameter `doc_id` (String)".into()
        ))
    );
    assert_eq!(
        (task("typed").check_params.unwrap())(&json!({
            "region": 5, "tags": [], "at": "tomorrow", "limits": {}, "extra": 1,
            "custom": {"b": 1}, "label": "l",
        })),
        Err(TaskError::InvalidParams(
            "parameter `region`: invalid type: integer `5`, expected a string; \
             parameter `at`: input contains invalid characters; \
             parameter `custom`: missing field `a`"
                .into()
        ))
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

/// Everything the macro accepts, written where nothing but `kairos` is imported: the
/// expansion names what it needs through `kairos`, so it compiles without the user's
/// module importing `inventory`, `serde_json` or `futures`.
mod no_imports {
    use kairos::{FailedRun, TaskContext};

    #[derive(serde::Serialize)]
    pub(crate) struct Report {
        pub(crate) pages: u32,
    }

    #[kairos::task(
        name = "sync_emails",
        interval_minutes = 15,
        max_retries = 3,
        misfire = "skip",
        misfire_grace = "0s",
        overlap = "replace"
    )]
    async fn sync_emails(ctx: TaskContext) -> anyhow::Result<()> {
        let _ = ctx.attempt();
        Ok(())
    }

    #[kairos::task(
        name = "daily_report",
        schedule = "0 0 * * *",
        timezone = "Asia/Shanghai",
        max_instances = 1,
        misfire = "catch_up",
        max_catch_up = 24,
        misfire_grace = "5m",
        overlap = "queue",
        dst = "both"
    )]
    async fn daily_report() -> anyhow::Result<()> {
        Ok(())
    }

    #[kairos::task(name = "process_document", timeout = "30m", max_retries = 5,
                   retry_delay = "10m", priority = -1, max_instances = 2, queue = "docs",
                   on_failure = notify_admin)]
    pub(crate) async fn process_document(
        ctx: TaskContext,
        doc_id: String,
        pages: Option<u32>,
    ) -> anyhow::Result<Report> {
        let _ = (ctx, doc_id);
        Ok(Report {
            pages: pages.unwrap_or(1),
        })
    }

    async fn notify_admin(run: FailedRun) {
        let _ = run.error;
    }

    #[kairos::task(schedule = "@hourly")]
    async fn borrowed_context(ctx: &kairos::TaskContext, mut count: u64) -> u64 {
        count += u64::from(ctx.attempt());
        count
    }

    pub(crate) mod nested {
        #[kairos::task]
        pub(crate) async fn in_a_module() -> &'static str {
            "done"
        }
    }
}

#[tokio::test]
async fn tasks_written_without_imports_register_and_stay_callable() {
    let registry = registry();
    for name in [
        "sync_emails",
        "daily_report",
        "process_document",
        "borrowed_context",
        "in_a_module",
    ] {
        assert!(registry.get(name).is_some(), "`{name}` is not registered");
    }
    assert_eq!(task("daily_report").max_instances, Some(1));
    assert_eq!(task("process_document").queue, Some("docs"));
    assert_eq!(no_imports::nested::in_a_module().await, "done");
    let out = call("process_document", json!({"doc_id": "d", "pages": 3}))
        .await
        .unwrap();
    assert_eq!(out, Some(json!({"pages": 3})));
}
