//! Jobs through the `kairos` binary: `jobs create` (cron with a zone and a DST rule,
//! interval, once), `update`, `delete` (with or without history), `pause`, `resume`,
//! `trigger`, against a running node; jobs made at run time (source `api`) survive a
//! restart with a jobs.toml that does not mention them, declared jobs are refused
//! `update`/`delete` with a clear message, and paused or disabled jobs show no next run.

mod common;

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use kairos::schedule::Schedule;
use kairos::{DisabledReason, JobSource, Registry, RunOrigin, RunStatus, TaskDef};
use serde_json::{Value, json};

use common::cli::{Node, blocks, cli, cli_at_once, cli_with_config, hello};

// ---------------------------------------------------------------------------------
// Reading the output

/// The cell under `column` in the row whose first cell is `row`, in an aligned table.
fn cell(table: &str, row: &str, column: &str) -> String {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let start = header
        .find(column)
        .unwrap_or_else(|| panic!("no column {column}: {table}"));
    let line = lines
        .find(|l| l.split_whitespace().next() == Some(row))
        .unwrap_or_else(|| panic!("no row {row}: {table}"));
    line.get(start..)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("")
        .to_string()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"))
        .with_timezone(&Utc)
}

// ---------------------------------------------------------------------------------
// A node

/// A node running the tasks `hello` and `blocks`, with `jobs_toml` as its configuration.
async fn start_node(url: &str, jobs_toml: &str) -> Node {
    let registry = Registry::from_tasks([
        TaskDef::new("hello", hello, "tests/cli_jobs.rs"),
        TaskDef::new("blocks", blocks, "tests/cli_jobs.rs"),
    ])
    .unwrap();
    Node::start(url, registry, Some(jobs_toml)).await
}

const DECLARES_NIGHTLY: &str = r#"
[[jobs]]
name = "nightly"
task = "hello"
schedule = "0 3 * * *"
params = { who = "nightly" }
"#;

const DECLARES_OTHER: &str = r#"
[[jobs]]
name = "other"
task = "hello"
interval = "1h"
"#;

// ---------------------------------------------------------------------------------
// create, list, update

#[tokio::test]
async fn jobs_created_with_cron_interval_or_at_are_listed_with_source_api() {
    for db in common::databases("jobs_created_are_listed_with_source_api").await {
        let node = start_node(&db.url, "").await;
        let url = db.url.as_str();
        let tokyo = cli(
            url,
            &[
                "jobs",
                "create",
                "tokyo",
                "--task",
                "hello",
                "--schedule",
                "0 9 * * *",
                "--timezone",
                "Asia/Tokyo",
                "--dst",
                "skip",
                "--json",
            ],
        )
        .await
        .ok()
        .json();
        assert_eq!(tokyo["source"], "api");
        assert_eq!(tokyo["schedule"]["kind"], "cron");
        assert_eq!(tokyo["schedule"]["cron"], "0 9 * * *");
        assert_eq!(tokyo["schedule"]["timezone"], "Asia/Tokyo");
        assert_eq!(tokyo["schedule"]["dst"], "skip");
        let next = time(&tokyo["next_run_at"]);
        assert_eq!(
            (next.hour(), next.minute()),
            (0, 0),
            "09:00 in Tokyo is 00:00 UTC"
        );
        assert!(next > Utc::now());

        let out = cli(
            url,
            &[
                "jobs",
                "create",
                "quarter",
                "--task",
                "hello",
                "--interval",
                "15m",
                "--params",
                r#"{"who":"q"}"#,
                "--priority",
                "-3",
            ],
        )
        .await
        .ok();
        assert!(out.stdout.contains("created job `quarter`"), "{out:#?}");

        let at = (Utc::now() + chrono::Duration::days(1))
            .with_nanosecond(0)
            .unwrap();
        let at_text = at.to_rfc3339();
        cli(
            url,
            &[
                "jobs", "create", "once", "--task", "hello", "--at", &at_text,
            ],
        )
        .await
        .ok();

        let quarter = node.admin.job("quarter").await.unwrap();
        assert_eq!(quarter.source, JobSource::Api);
        assert_eq!(quarter.schedule, Schedule::Every(Duration::from_secs(900)));
        assert_eq!(quarter.params, json!({"who": "q"}));
        assert_eq!(quarter.priority, Some(-3));
        let once = node.admin.job("once").await.unwrap();
        assert_eq!(once.schedule, Schedule::Once(at));
        assert_eq!(once.next_run_at, Some(at));

        let table = cli(url, &["jobs", "list"]).await.ok().stdout;
        for name in ["tokyo", "quarter", "once"] {
            assert_eq!(cell(&table, name, "SOURCE"), "api", "{table}");
            assert_eq!(cell(&table, name, "STATE"), "active", "{table}");
        }
        let list = cli(url, &["jobs", "list", "--json"]).await.ok().json();
        let kinds: Vec<(&str, &str)> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["name"].as_str().unwrap(),
                    j["schedule"]["kind"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [("once", "once"), ("quarter", "interval"), ("tokyo", "cron")],
            "by name"
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn a_cron_job_without_a_timezone_uses_the_configured_default() {
    let db = common::sqlite();
    let node = start_node(&db.url, "").await;
    let config = "[scheduler]\ntimezone = \"Asia/Tokyo\"\n";
    let args = [
        "jobs",
        "create",
        "j",
        "--task",
        "hello",
        "--schedule",
        "0 9 * * *",
        "--json",
    ];
    let job = cli_with_config(&db.url, Some(config), &args)
        .await
        .ok()
        .json();
    assert_eq!(job["schedule"]["timezone"], "Asia/Tokyo", "{job}");
    let args = [
        "jobs",
        "create",
        "k",
        "--task",
        "hello",
        "--schedule",
        "0 9 * * *",
        "--json",
    ];
    let job = cli(&db.url, &args).await.ok().json();
    assert_eq!(job["schedule"]["timezone"], "UTC", "{job}");
    node.stop().await;
}

#[tokio::test]
async fn jobs_create_refuses_bad_definitions() {
    let db = common::sqlite();
    let node = start_node(&db.url, DECLARES_OTHER).await;
    let url = db.url.as_str();
    create_hourly(url, "j").await;
    let err = cli(
        url,
        &["jobs", "create", "j", "--task", "hello", "--interval", "2h"],
    )
    .await
    .fails();
    assert!(err.contains("already exists"), "{err}");
    let err = cli(
        url,
        &[
            "jobs",
            "create",
            "other",
            "--task",
            "hello",
            "--interval",
            "2h",
        ],
    )
    .await
    .fails();
    assert!(
        err.contains("already exists") && err.contains("jobs.toml"),
        "{err}"
    );
    let err = cli(
        url,
        &["jobs", "create", "k", "--task", "helo", "--interval", "1h"],
    )
    .await
    .fails();
    assert!(err.contains("did you mean `hello`"), "{err}");
    let err = cli(
        url,
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--schedule",
            "0 9 * * *",
            "--timezone",
            "Mars/Base",
        ],
    )
    .await
    .fails();
    assert!(err.contains("Mars/Base"), "{err}");
    // Each firing is a stored run: nothing finer than a second.
    let err = cli(
        url,
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--interval",
            "500ms",
        ],
    )
    .await;
    assert_eq!(err.code, 2, "a usage error: {err:#?}");
    assert!(
        err.stderr.contains("500ms is shorter than a second"),
        "{err:#?}"
    );
    for usage in [
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--interval",
            "1h",
            "--misfire",
            "catch_up",
            "--max-catch-up",
            "100001",
        ][..],
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--schedule",
            "@daily",
            "--dst",
            "sometimes",
        ][..],
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--schedule",
            "@daily",
            "--interval",
            "1h",
        ],
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--interval",
            "1h",
            "--at",
            "2030-01-01T00:00:00Z",
        ],
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--timezone",
            "UTC",
        ],
    ] {
        let out = cli(url, usage).await;
        assert_eq!(out.code, 2, "{usage:?}: {out:#?}");
    }
    let names: Vec<String> = node
        .admin
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(names, ["j", "other"]);
    node.stop().await;
}

/// `--timezone` and `--dst` only mean something for a cron `--schedule`: with
/// `--interval` or `--at` they are a usage error, not silently dropped.
#[tokio::test]
async fn timezone_and_dst_without_a_cron_schedule_are_usage_errors() {
    let db = common::sqlite();
    let node = start_node(&db.url, "").await;
    create_hourly(&db.url, "j").await;
    for args in [
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--interval",
            "1h",
            "--timezone",
            "Asia/Tokyo",
        ][..],
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--interval",
            "1h",
            "--dst",
            "skip",
        ],
        &[
            "jobs",
            "create",
            "k",
            "--task",
            "hello",
            "--at",
            "2030-01-01T00:00:00Z",
            "--timezone",
            "Asia/Tokyo",
        ],
        &[
            "jobs",
            "update",
            "j",
            "--interval",
            "2h",
            "--timezone",
            "Asia/Tokyo",
        ],
    ] {
        let out = cli(&db.url, args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
    }
    assert!(node.admin.job("k").await.is_err(), "no job was created");
    node.stop().await;
}

/// `kairos jobs create NAME --task hello --interval 1h`, which must succeed.
async fn create_hourly(url: &str, name: &str) {
    cli(
        url,
        &[
            "jobs",
            "create",
            name,
            "--task",
            "hello",
            "--interval",
            "1h",
        ],
    )
    .await
    .ok();
}

/// `kairos jobs update c1 ARGS --json`.
async fn update(url: &str, args: &[&str]) -> common::cli::Output {
    let mut all = vec!["jobs", "update", "c1"];
    all.extend_from_slice(args);
    all.push("--json");
    cli(url, &all).await
}

/// `jobs update` flags are each optional: a new `--schedule` keeps the job's zone and
/// DST rule, `--timezone` or `--dst` alone change those of a cron job, and on an
/// interval job they are refused naming the flag's field and why.
#[tokio::test]
async fn jobs_update_keeps_the_zone_of_a_new_schedule_and_changes_it_alone() {
    let db = common::sqlite();
    let node = start_node(&db.url, "").await;
    let url = db.url.as_str();
    cli(
        url,
        &[
            "jobs",
            "create",
            "c1",
            "--task",
            "hello",
            "--schedule",
            "0 3 * * *",
            "--paused",
        ],
    )
    .await
    .ok();
    let job = update(
        url,
        &["--schedule", "0 3 * * *", "--timezone", "Asia/Tokyo"],
    )
    .await
    .ok()
    .json();
    assert_eq!(job["schedule"]["timezone"], "Asia/Tokyo", "{job}");

    let job = update(url, &["--schedule", "0 4 * * *"]).await.ok().json();
    assert_eq!(job["schedule"]["cron"], "0 4 * * *", "{job}");
    assert_eq!(
        job["schedule"]["timezone"], "Asia/Tokyo",
        "zone kept: {job}"
    );

    let job = update(url, &["--dst", "skip"]).await.ok().json();
    assert_eq!(job["schedule"]["dst"], "skip", "{job}");
    assert_eq!(job["schedule"]["timezone"], "Asia/Tokyo", "{job}");
    let job = update(url, &["--timezone", "Europe/Paris"])
        .await
        .ok()
        .json();
    assert_eq!(
        job["schedule"]["cron"], "0 4 * * *",
        "expression kept: {job}"
    );
    assert_eq!(job["schedule"]["timezone"], "Europe/Paris", "{job}");
    assert_eq!(job["schedule"]["dst"], "skip", "DST rule kept: {job}");
    let job = update(url, &["--schedule", "0 5 * * *"]).await.ok().json();
    assert_eq!(
        (&job["schedule"]["timezone"], &job["schedule"]["dst"]),
        (&json!("Europe/Paris"), &json!("skip")),
        "{job}"
    );

    cli(
        url,
        &[
            "jobs",
            "create",
            "h1",
            "--task",
            "hello",
            "--interval",
            "1h",
            "--paused",
        ],
    )
    .await
    .ok();
    for (flag, value, field) in [
        ("--timezone", "Asia/Tokyo", "timezone: "),
        ("--dst", "skip", "dst: "),
    ] {
        let err = cli(url, &["jobs", "update", "h1", flag, value])
            .await
            .fails();
        assert!(err.contains(field), "{err}");
        assert!(
            err.contains("job `h1` fires `every 1h`, not on a cron schedule"),
            "{err}"
        );
    }
    assert_eq!(
        node.admin.job("h1").await.unwrap().schedule,
        Schedule::Every(Duration::from_secs(3600))
    );
    node.stop().await;
}

/// A job name with a control character could forge a line of `jobs list`: it is
/// refused, naming the character. A job that already has such a name (stored before
/// the rule) can still be shown and deleted.
#[tokio::test]
async fn job_names_with_control_characters_are_refused_but_old_ones_still_work() {
    let db = common::sqlite();
    let node = start_node(&db.url, "").await;
    let url = db.url.as_str();
    for (name, what) in [
        (
            "evil\nJOB_FAKE cleanup every 1s active",
            "a newline (U+000A)",
        ),
        ("tab\there", "a tab (U+0009)"),
        ("bell\u{7}", "U+0007"),
        (
            "nightly\u{202E}pukcab",
            "an invisible character that hides or reorders text, U+202E",
        ),
        ("zero\u{200B}width", "U+200B"),
    ] {
        let err = cli(
            url,
            &[
                "jobs",
                "create",
                name,
                "--task",
                "hello",
                "--interval",
                "1h",
                "--paused",
            ],
        )
        .await
        .fails();
        assert!(err.starts_with("error: name: the job name `"), "{err}");
        assert!(err.contains(what), "{err}");
        assert!(err.contains("is not allowed"), "{err}");
    }
    assert!(node.admin.jobs().await.unwrap().is_empty());

    cli(
        url,
        &[
            "jobs",
            "create",
            "old",
            "--task",
            "hello",
            "--interval",
            "1h",
            "--paused",
        ],
    )
    .await
    .ok();
    let app = kairos::sea_orm::Database::connect(url).await.unwrap();
    kairos::sea_orm::ConnectionTrait::execute_unprepared(
        &app,
        "UPDATE kairos_jobs SET name = 'old' || char(10) || 'line' WHERE name = 'old'",
    )
    .await
    .unwrap();
    let shown = cli(url, &["jobs", "show", "old\nline", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(shown["name"], "old\nline");
    cli(url, &["jobs", "delete", "old\nline"]).await.ok();
    assert!(node.admin.jobs().await.unwrap().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn jobs_made_at_run_time_survive_a_restart_with_a_jobs_toml_that_omits_them() {
    for db in common::databases("jobs_made_at_run_time_survive_a_restart").await {
        let node = start_node(&db.url, DECLARES_OTHER).await;
        create_hourly(&db.url, "made").await;
        let before = node.admin.job("made").await.unwrap();
        node.stop().await;

        let node = start_node(&db.url, DECLARES_OTHER).await;
        let after = node.admin.job("made").await.unwrap();
        assert!(after.enabled, "{after:?}");
        assert_eq!(after.disabled_reason, None);
        assert_eq!(after.source, JobSource::Api);
        assert_eq!(after.schedule, before.schedule);
        assert_eq!(after.next_run_at, before.next_run_at, "its slots go on");
        node.stop().await;

        // Even a node with no jobs.toml at all keeps it.
        let node = start_node(&db.url, "").await;
        let table = cli(&db.url, &["jobs", "list"]).await.ok().stdout;
        assert_eq!(cell(&table, "made", "STATE"), "active", "{table}");
        assert_eq!(cell(&table, "made", "SOURCE"), "api", "{table}");
        assert_eq!(cell(&table, "other", "STATE"), "disabled", "{table}");
        node.stop().await;
    }
}

#[tokio::test]
async fn jobs_update_changes_the_schedule() {
    for db in common::databases("jobs_update_changes_the_schedule").await {
        let node = start_node(&db.url, "").await;
        let url = db.url.as_str();
        create_hourly(url, "j").await;
        let updated = cli(url, &["jobs", "update", "j", "--interval", "2h", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(updated["schedule"]["interval_ms"], 7_200_000);
        assert_eq!(
            node.admin.job("j").await.unwrap().schedule,
            Schedule::Every(Duration::from_secs(7200))
        );

        let out = cli(
            url,
            &[
                "jobs",
                "update",
                "j",
                "--schedule",
                "30 6 * * *",
                "--timezone",
                "Europe/Paris",
            ],
        )
        .await
        .ok();
        assert!(out.stdout.contains("updated job `j`"), "{out:#?}");
        let job = node.admin.job("j").await.unwrap();
        assert!(matches!(job.schedule, Schedule::Cron(_)), "{job:?}");
        let next = job
            .next_run_at
            .expect("a next run")
            .with_timezone(&chrono_tz::Europe::Paris);
        assert_eq!((next.hour(), next.minute()), (6, 30));
        assert_eq!(job.source, JobSource::Api);

        let out = cli(
            url,
            &[
                "jobs",
                "update",
                "j",
                "--params",
                r#"{"who":"new"}"#,
                "--priority",
                "4",
            ],
        )
        .await
        .ok();
        assert!(out.stdout.contains("updated"), "{out:#?}");
        let job = node.admin.job("j").await.unwrap();
        assert_eq!(
            (job.params.clone(), job.priority),
            (json!({"who": "new"}), Some(4))
        );
        assert!(
            matches!(job.schedule, Schedule::Cron(_)),
            "the schedule stays"
        );

        // A priority and a callback URL can be taken away again.
        cli(
            url,
            &[
                "jobs",
                "update",
                "j",
                "--callback-url",
                "http://127.0.0.1:9/h",
            ],
        )
        .await
        .ok();
        let job = node.admin.job("j").await.unwrap();
        assert_eq!(job.callback_url.as_deref(), Some("http://127.0.0.1:9/h"));
        cli(
            url,
            &["jobs", "update", "j", "--no-priority", "--no-callback-url"],
        )
        .await
        .ok();
        let job = node.admin.job("j").await.unwrap();
        assert_eq!((job.priority, job.callback_url), (None, None));
        let out = cli(
            url,
            &["jobs", "update", "j", "--priority", "1", "--no-priority"],
        )
        .await;
        assert_eq!(out.code, 2, "{out:#?}");

        // Policies that could never act are refused: `hello` has no max_instances, and
        // the job's misfire policy is not catch_up.
        let err = cli(url, &["jobs", "update", "j", "--overlap", "replace"])
            .await
            .fails();
        assert!(
            err.contains("overlap") && err.contains("no max_instances"),
            "{err}"
        );
        let err = cli(url, &["jobs", "update", "j", "--max-catch-up", "3"])
            .await
            .fails();
        assert!(err.contains("applies only with misfire catch_up"), "{err}");
        cli(
            url,
            &[
                "jobs",
                "update",
                "j",
                "--misfire",
                "catch_up",
                "--max-catch-up",
                "3",
            ],
        )
        .await
        .ok();
        assert_eq!(node.admin.job("j").await.unwrap().policy.max_catch_up, 3);
        // Away from catch_up, the bound goes back to the default with it.
        cli(url, &["jobs", "update", "j", "--misfire", "run_once"])
            .await
            .ok();
        let policy = node.admin.job("j").await.unwrap().policy;
        assert_eq!(
            (policy.misfire, policy.max_catch_up),
            (
                kairos::Misfire::RunOnce,
                kairos::JobPolicy::default().max_catch_up
            )
        );

        // Paused and resumed with other changes, or alone.
        let out = cli(
            url,
            &[
                "--json",
                "jobs",
                "update",
                "j",
                "--paused",
                "--priority",
                "4",
            ],
        )
        .await
        .ok()
        .json();
        let job = node.admin.job("j").await.unwrap();
        assert_eq!((job.paused, job.priority), (true, Some(4)));
        assert_eq!(out["paused"], true, "{out}");
        cli(url, &["jobs", "update", "j", "--no-paused"]).await.ok();
        assert!(!node.admin.job("j").await.unwrap().paused);

        let out = cli(url, &["jobs", "update", "j"]).await;
        assert_eq!(out.code, 2, "a usage error: {out:#?}");
        assert!(out.stderr.contains("nothing to change"), "{out:#?}");
        node.stop().await;
    }
}

#[tokio::test]
async fn declared_jobs_cannot_be_updated_or_deleted() {
    for db in common::databases("declared_jobs_cannot_be_updated_or_deleted").await {
        let node = start_node(&db.url, DECLARES_NIGHTLY).await;
        let before = node.admin.job("nightly").await.unwrap();
        assert_eq!(before.source, JobSource::Config);
        let err = cli(&db.url, &["jobs", "update", "nightly", "--interval", "5m"])
            .await
            .fails();
        assert!(
            err.contains("nightly") && err.contains("jobs.toml"),
            "{err}"
        );
        let err = cli(&db.url, &["jobs", "delete", "nightly"]).await.fails();
        assert!(
            err.contains("nightly") && err.contains("jobs.toml"),
            "{err}"
        );
        assert!(
            err.contains("kairos jobs pause nightly"),
            "offers pausing: {err}"
        );
        assert_eq!(
            node.admin.job("nightly").await.unwrap(),
            before,
            "unchanged"
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn updating_a_paused_job_keeps_it_paused_without_a_next_run() {
    for db in common::databases("updating_a_paused_job_keeps_it_paused").await {
        let node = start_node(&db.url, "").await;
        let url = db.url.as_str();
        cli(
            url,
            &[
                "jobs",
                "create",
                "j",
                "--task",
                "hello",
                "--interval",
                "1h",
                "--paused",
            ],
        )
        .await
        .ok();
        let updated = cli(url, &["jobs", "update", "j", "--interval", "2h", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(updated["paused"], true, "{updated}");
        assert!(updated["next_run_at"].is_null(), "{updated}");
        let table = cli(url, &["jobs", "list"]).await.ok().stdout;
        assert_eq!(cell(&table, "j", "STATE"), "paused", "{table}");
        assert_eq!(cell(&table, "j", "NEXT RUN"), "-", "{table}");

        cli(url, &["jobs", "resume", "j"]).await.ok();
        let job = node.admin.job("j").await.unwrap();
        assert_eq!(job.schedule, Schedule::Every(Duration::from_secs(7200)));
        assert!(job.next_run_at.is_some(), "{job:?}");
        node.stop().await;
    }
}

#[tokio::test]
async fn a_job_created_at_a_time_already_past_runs_once() {
    for db in common::databases("a_job_created_at_a_time_already_past").await {
        let node = start_node(&db.url, "").await;
        let at = (Utc::now() - chrono::Duration::hours(1))
            .with_nanosecond(0)
            .unwrap();
        cli(
            &db.url,
            &[
                "jobs",
                "create",
                "late",
                "--task",
                "hello",
                "--at",
                &at.to_rfc3339(),
            ],
        )
        .await
        .ok();
        let admin = node.admin.clone();
        common::wait_until("the run of `late`", || {
            let admin = admin.clone();
            async move {
                let page = admin
                    .runs(&kairos::RunFilter::new().job("late"))
                    .await
                    .unwrap();
                page.runs.iter().any(|r| r.status == RunStatus::Succeeded)
            }
        })
        .await;
        let page = node
            .admin
            .runs(&kairos::RunFilter::new().job("late"))
            .await
            .unwrap();
        assert_eq!(page.total, 1, "{page:?}");
        assert_eq!(page.runs[0].scheduled_for, at, "stamped with its slot");
        let job = node.admin.job("late").await.unwrap();
        assert_eq!(job.next_run_at, None, "a once job is done after its run");
        node.stop().await;
    }
}

/// Passes on SQLite (its write transactions are serialised); on PostgreSQL the
/// losers get the raw unique-index violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_one_name_from_several_processes_at_once_makes_one_job() {
    for db in common::databases("creating_one_name_from_several_processes").await {
        let node = start_node(&db.url, "").await;
        for round in 0..5 {
            let name = format!("same{round}");
            let each = (1..=6)
                .map(|h| {
                    [
                        "jobs",
                        "create",
                        &name,
                        "--task",
                        "hello",
                        "--interval",
                        &format!("{h}h"),
                    ]
                    .map(String::from)
                    .to_vec()
                })
                .collect();
            let outs = cli_at_once(&db.url, each).await;
            let created = outs.iter().filter(|o| o.code == 0).count();
            assert_eq!(created, 1, "{outs:#?}");
            for o in outs.iter().filter(|o| o.code != 0) {
                assert_eq!(o.code, 1, "{o:#?}");
                assert!(
                    o.stderr.contains("already exists"),
                    "a clear refusal, not a database error: {o:#?}"
                );
            }
        }
        assert_eq!(node.admin.jobs().await.unwrap().len(), 5);
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// delete

#[tokio::test]
async fn jobs_delete_removes_finished_runs_unless_keep_history() {
    for db in common::databases("jobs_delete_removes_finished_runs").await {
        let node = start_node(&db.url, "").await;
        let url = db.url.as_str();
        let mut runs = Vec::new();
        for name in ["gone", "kept"] {
            create_hourly(url, name).await;
            let run = cli(url, &["jobs", "trigger", name, "--json"])
                .await
                .ok()
                .json();
            let id = run["id"].as_i64().unwrap();
            common::wait_status(&node.admin, id, RunStatus::Succeeded).await;
            runs.push(id);
        }

        let d = cli(url, &["jobs", "delete", "gone", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(
            d,
            json!({"name": "gone", "deleted": true, "runs_cancelled": 0, "runs_deleted": 1})
        );
        assert!(node.admin.job("gone").await.is_err(), "the job is gone");
        let err = cli(url, &["runs", "show", &runs[0].to_string()])
            .await
            .fails();
        assert!(
            err.contains("no run"),
            "its finished run went with it: {err}"
        );

        let out = cli(url, &["jobs", "delete", "kept", "--keep-history"])
            .await
            .ok();
        assert!(out.stdout.contains("deleted job `kept`"), "{out:#?}");
        assert!(node.admin.job("kept").await.is_err(), "the job is gone");
        let run = node.admin.run(runs[1]).await.expect("its run is kept");
        assert_eq!(run.status, RunStatus::Succeeded);
        // A kept run still names its job, and is found by it.
        assert_eq!(run.job.as_deref(), Some("kept"), "{run:?}");
        let listed = cli(url, &["runs", "list", "--job", "kept", "--json"])
            .await
            .ok()
            .json();
        let listed: Vec<i64> = listed["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(listed, vec![runs[1]]);
        // A job made anew under another name does not take the deleted one's id: the
        // kept run stays the deleted job's.
        create_hourly(url, "fresh").await;
        let fresh = node.admin.job("fresh").await.unwrap();
        assert_ne!(Some(fresh.id), run.job_id, "{fresh:?}");
        assert_eq!(
            node.admin.run(runs[1]).await.unwrap().job.as_deref(),
            Some("kept")
        );
        let none = cli(url, &["runs", "list", "--job", "fresh", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(none["runs"], json!([]));

        let err = cli(url, &["jobs", "delete", "kept"]).await.fails();
        assert!(err.contains("no job named `kept`"), "{err}");
        // A new job that takes the name starts without the old one's history, in
        // `runs list --job` and in `jobs show`.
        create_hourly(url, "kept").await;
        let listed = cli(url, &["runs", "list", "--job", "kept", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(listed["runs"], json!([]), "{listed}");
        let shown = cli(url, &["jobs", "show", "kept"]).await.ok().stdout;
        assert!(
            shown.trim_end().ends_with("(none)"),
            "no recent runs: {shown}"
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn jobs_delete_cancels_the_jobs_queued_runs() {
    for db in common::databases("jobs_delete_cancels_the_jobs_queued_runs").await {
        let node = start_node(&db.url, "").await;
        let url = db.url.as_str();
        cli(url, &["nodes", "pause"]).await.ok();
        create_hourly(url, "j").await;
        let run = cli(url, &["jobs", "trigger", "j", "--json"])
            .await
            .ok()
            .json();
        let id = run["id"].as_i64().unwrap();
        let d = cli(url, &["jobs", "delete", "j", "--keep-history", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(d["runs_cancelled"], 1, "{d}");
        assert_eq!(
            node.admin.run(id).await.unwrap().status,
            RunStatus::Cancelled
        );
        cli(url, &["nodes", "resume"]).await.ok();
        node.stop().await;
    }
}

#[tokio::test]
async fn jobs_delete_stops_the_jobs_running_run() {
    for db in common::databases("jobs_delete_stops_the_jobs_running_run").await {
        let node = start_node(&db.url, "").await;
        let url = db.url.as_str();
        cli(
            url,
            &[
                "jobs",
                "create",
                "j",
                "--task",
                "blocks",
                "--interval",
                "1h",
            ],
        )
        .await
        .ok();
        let run = cli(url, &["jobs", "trigger", "j", "--json"])
            .await
            .ok()
            .json();
        let id = run["id"].as_i64().unwrap();
        common::wait_status(&node.admin, id, RunStatus::Running).await;
        let d = cli(url, &["jobs", "delete", "j", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(
            d["runs_cancelled"], 1,
            "the running run is asked to stop: {d}"
        );
        let run = common::wait_status(&node.admin, id, RunStatus::Cancelled).await;
        assert_eq!(
            run.job.as_deref(),
            Some("j"),
            "a run that outlived its job still names it"
        );
        assert_eq!(
            run.error.as_deref(),
            Some("cancelled: its job was deleted"),
            "{run:?}"
        );
        // Its history says so too, once: not an operator's cancel.
        let shown = cli(url, &["runs", "show", &id.to_string()])
            .await
            .ok()
            .stdout;
        assert!(
            shown.contains("  cancelled: its job was deleted"),
            "{shown}"
        );
        assert!(
            !shown.contains("operator") && !shown.contains("cancelled: cancelled"),
            "{shown}"
        );
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// pause, resume, disabled jobs

/// The `state` line of `jobs show NAME`.
async fn shown_state(url: &str, name: &str) -> String {
    let show = cli(url, &["jobs", "show", name]).await.ok().stdout;
    show.lines()
        .find_map(|l| l.strip_prefix("state"))
        .unwrap_or_else(|| panic!("no state line: {show}"))
        .trim()
        .to_string()
}

/// A job disabled because it left jobs.toml can still be paused, resumed and
/// triggered: the pause is the operator's, the disabling the declaration's, and each
/// command says the job stays disabled and how to enable it. `jobs show` shows both.
#[tokio::test]
async fn a_job_that_left_jobs_toml_is_paused_resumed_and_triggered_saying_it_stays_disabled() {
    for db in common::databases("a_job_that_left_jobs_toml_is_paused_resumed").await {
        start_node(&db.url, DECLARES_NIGHTLY).await.stop().await;
        let node = start_node(&db.url, DECLARES_OTHER).await;
        let url = db.url.as_str();
        let job = node.admin.job("nightly").await.unwrap();
        assert!(!job.enabled);
        assert_eq!(job.disabled_reason, Some(DisabledReason::Undeclared));

        let out = cli(url, &["jobs", "pause", "nightly"]).await.ok().stdout;
        assert!(out.contains("paused job `nightly`"), "{out}");
        assert!(
            out.contains("no longer declared in code or jobs.toml"),
            "{out}"
        );
        assert!(out.contains("stays paused until resumed"), "{out}");
        assert!(
            !out.contains("until resumed;"),
            "no slots to speak of: {out}"
        );
        let job = node.admin.job("nightly").await.unwrap();
        assert!(job.paused && !job.enabled, "{job:?}");
        assert_eq!(
            shown_state(url, "nightly").await,
            "disabled (undeclared), paused"
        );
        let table = cli(url, &["jobs", "list"]).await.ok().stdout;
        let row = table.lines().find(|l| l.starts_with("nightly ")).unwrap();
        assert!(row.contains(" disabled, paused "), "{table}");

        let out = cli(url, &["jobs", "resume", "nightly"]).await.ok().stdout;
        assert!(out.contains("resumed job `nightly`"), "{out}");
        assert!(out.contains("still fires nothing"), "{out}");
        assert!(out.contains("kairos jobs delete nightly"), "{out}");
        let job = node.admin.job("nightly").await.unwrap();
        assert!(!job.paused && !job.enabled, "{job:?}");
        assert_eq!(job.next_run_at, None, "still fires nothing");
        assert_eq!(shown_state(url, "nightly").await, "disabled (undeclared)");

        let out = cli(url, &["jobs", "trigger", "nightly"]).await.ok().stdout;
        assert!(out.contains("triggered job `nightly`: run "), "{out}");
        assert!(out.contains("no longer declared"), "{out}");
        assert!(out.contains("so only this run happens"), "{out}");
        let page = node
            .admin
            .runs(&kairos::RunFilter::new().job("nightly"))
            .await
            .unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.runs[0].origin, RunOrigin::Manual);

        // It cannot be changed: its error says it is no longer declared.
        let err = cli(url, &["jobs", "update", "nightly", "--priority", "3"])
            .await
            .fails();
        assert!(
            err.contains("no longer is") && err.contains("kairos jobs delete nightly"),
            "{err}"
        );

        // A job no longer declared may be deleted.
        cli(url, &["jobs", "delete", "nightly"]).await.ok();
        assert!(node.admin.job("nightly").await.is_err());
        node.stop().await;
    }
}

#[tokio::test]
async fn a_job_disabled_in_jobs_toml_is_paused_and_resumed_pointing_at_enabled_false() {
    let db = common::sqlite();
    let toml = format!("{DECLARES_NIGHTLY}enabled = false\n");
    let node = start_node(&db.url, &toml).await;
    let url = db.url.as_str();
    let job = node.admin.job("nightly").await.unwrap();
    assert_eq!(job.disabled_reason, Some(DisabledReason::Config));
    let out = cli(url, &["jobs", "pause", "nightly"]).await.ok().stdout;
    assert!(out.contains("`enabled = false` in jobs.toml"), "{out}");
    assert_eq!(
        shown_state(url, "nightly").await,
        "disabled (config), paused"
    );
    let paused = cli(url, &["jobs", "show", "nightly", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(
        (&paused["enabled"], &paused["paused"]),
        (&json!(false), &json!(true))
    );
    let out = cli(url, &["jobs", "resume", "nightly"]).await.ok().stdout;
    assert!(out.contains("still fires nothing"), "{out}");
    assert!(out.contains("set `enabled = true` there"), "{out}");
    assert_eq!(shown_state(url, "nightly").await, "disabled (config)");
    let out = cli(url, &["jobs", "trigger", "nightly"]).await.ok().stdout;
    assert!(out.contains("only this run happens"), "{out}");
    node.stop().await;
}

#[tokio::test]
async fn a_misspelt_job_name_gets_a_suggestion_from_every_job_command() {
    for db in common::databases("a_misspelt_job_name_gets_a_suggestion").await {
        let node = start_node(&db.url, "").await;
        create_hourly(&db.url, "hourly_hello").await;
        for args in [
            &["jobs", "pause", "hourly_helo"][..],
            &["jobs", "resume", "hourly_helo"],
            &["jobs", "trigger", "hourly_helo"],
            &["jobs", "show", "hourly_helo"],
            &["jobs", "slots", "hourly_helo"],
            &["jobs", "update", "hourly_helo", "--interval", "2h"],
            &["jobs", "delete", "hourly_helo"],
            &["runs", "list", "--job", "hourly_helo"],
        ] {
            let err = cli(&db.url, args).await.fails();
            assert!(
                err.contains("no job named `hourly_helo`"),
                "{args:?}: {err}"
            );
            assert!(
                err.contains("did you mean `hourly_hello`"),
                "{args:?}: {err}"
            );
        }
        let job = node.admin.job("hourly_hello").await.unwrap();
        assert!(!job.paused && job.enabled);
        node.stop().await;
    }
}

/// Pausing and resuming say what becomes of the slots that pass meanwhile: however
/// recent, they are missed, and under the default `run_once` one run stands for them.
#[tokio::test]
async fn pause_and_resume_say_what_becomes_of_the_slots_that_pass() {
    let db = common::sqlite();
    let node = start_node(&db.url, "").await;
    let url = db.url.as_str();
    cli(
        url,
        &[
            "jobs",
            "create",
            "ticks",
            "--task",
            "hello",
            "--schedule",
            "* * * * * *",
        ],
    )
    .await
    .ok();
    let out = cli(url, &["jobs", "pause", "ticks"]).await.ok().stdout;
    assert!(
        out.contains("it fires nothing until resumed")
            && out.contains("follow its misfire policy (`run_once`)"),
        "{out}"
    );
    let paused_at = Utc::now();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    // Still paused at this time: the resume comes after.
    let resumed_at = Utc::now();
    let out = cli(url, &["jobs", "resume", "ticks"]).await.ok().stdout;
    assert!(
        out.contains("passed while it was paused")
            && out.contains("(`run_once`): one run now stands for them"),
        "{out}"
    );
    // The resume took effect somewhere before this: on a loaded machine, slots after
    // `resumed_at` may have passed while still paused, and the run that stands for
    // them all is stamped with the latest.
    let resumed_by = Utc::now();
    let after_pause = |t: DateTime<Utc>| t > paused_at + chrono::Duration::milliseconds(500);
    common::wait_until("the run standing for the paused slots", || async {
        let slots = node.admin.job_slots("ticks", paused_at, 100).await.unwrap();
        slots.iter().any(|s| {
            after_pause(s.scheduled_for)
                && s.scheduled_for <= resumed_by
                && s.outcome == kairos::SlotOutcome::Ran
        })
    })
    .await;
    // Slots wholly inside the pause: at least two, covered by one run (one of them, or
    // a later one that passed before the resume took effect).
    let slots = node.admin.job_slots("ticks", paused_at, 100).await.unwrap();
    let within: Vec<_> = slots
        .iter()
        .filter(|s| after_pause(s.scheduled_for) && s.scheduled_for < resumed_at)
        .collect();
    let ran = within
        .iter()
        .filter(|s| s.outcome == kairos::SlotOutcome::Ran)
        .count();
    let coalesced = within
        .iter()
        .filter(|s| s.outcome == kairos::SlotOutcome::Coalesced)
        .count();
    assert!(
        within.len() >= 2 && ran <= 1 && coalesced >= 1 && ran + coalesced == within.len(),
        "{within:#?}"
    );
    node.stop().await;
}

#[tokio::test]
async fn paused_and_disabled_jobs_show_no_next_run() {
    for db in common::databases("paused_and_disabled_jobs_show_no_next_run").await {
        let toml = format!("{DECLARES_NIGHTLY}enabled = false\n");
        let node = start_node(&db.url, &toml).await;
        let url = db.url.as_str();
        create_hourly(url, "active").await;
        cli(
            url,
            &[
                "jobs",
                "create",
                "held",
                "--task",
                "hello",
                "--interval",
                "1h",
                "--paused",
            ],
        )
        .await
        .ok();

        let table = cli(url, &["jobs", "list"]).await.ok().stdout;
        assert_eq!(cell(&table, "held", "STATE"), "paused", "{table}");
        assert_eq!(cell(&table, "held", "NEXT RUN"), "-", "{table}");
        assert_eq!(cell(&table, "nightly", "STATE"), "disabled", "{table}");
        assert_eq!(cell(&table, "nightly", "NEXT RUN"), "-", "{table}");
        let next = cell(&table, "active", "NEXT RUN");
        let next = DateTime::parse_from_rfc3339(&next).expect("a time for an active job");
        assert!(next > Utc::now(), "{table}");

        let list = cli(url, &["jobs", "list", "--json"]).await.ok().json();
        for j in list.as_array().unwrap() {
            let has_next = !j["next_run_at"].is_null();
            assert_eq!(has_next, j["name"] == "active", "{j}");
        }

        let paused = cli(url, &["jobs", "pause", "active", "--json"])
            .await
            .ok()
            .json();
        assert!(paused["next_run_at"].is_null(), "{paused}");
        let table = cli(url, &["jobs", "list"]).await.ok().stdout;
        assert_eq!(cell(&table, "active", "NEXT RUN"), "-", "{table}");
        let show = cli(url, &["jobs", "show", "active"]).await.ok().stdout;
        assert!(
            show.lines()
                .any(|l| l.starts_with("next run") && l.trim_end().ends_with('-')),
            "{show}"
        );

        let out = cli(url, &["jobs", "resume", "active"]).await.ok();
        assert!(out.stdout.contains("resumed job `active`"), "{out:#?}");
        let job = node.admin.job("active").await.unwrap();
        assert!(
            job.next_run_at
                .is_some_and(|t| t > Utc::now() - chrono::Duration::seconds(1)),
            "{job:?}"
        );
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// trigger

#[tokio::test]
async fn jobs_trigger_makes_a_manual_run_of_the_job() {
    for db in common::databases("jobs_trigger_makes_a_manual_run").await {
        let node = start_node(&db.url, DECLARES_NIGHTLY).await;
        let out = cli(&db.url, &["jobs", "trigger", "nightly"]).await.ok();
        assert!(
            out.stdout.contains("triggered job `nightly`: run"),
            "{out:#?}"
        );
        let id: i64 = out
            .stdout
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .expect("the run id ends the line");
        let run = common::wait_status(&node.admin, id, RunStatus::Succeeded).await;
        assert_eq!(run.origin, RunOrigin::Manual);
        assert_eq!(run.job.as_deref(), Some("nightly"));
        assert_eq!(
            run.result,
            Some(json!({"who": "nightly"})),
            "the job's params"
        );

        let show = cli(&db.url, &["runs", "show", &id.to_string()])
            .await
            .ok()
            .stdout;
        assert!(
            show.lines()
                .any(|l| l.starts_with("origin") && l.contains("manual")),
            "{show}"
        );
        let page = cli(&db.url, &["runs", "list", "--job", "nightly", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(page["total"], 1);
        assert_eq!(page["runs"][0]["origin"], "manual");

        // Triggering does not move the job's schedule.
        let job = node.admin.job("nightly").await.unwrap();
        let next = job.next_run_at.expect("a next run");
        assert_eq!((next.hour(), next.minute()), (3, 0));
        node.stop().await;
    }
}
