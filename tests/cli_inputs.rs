//! No input makes the `kairos` binary panic (exit status 101): out-of-range numbers,
//! pages and sizes, delays and intervals too long to ever come, huge counts, very long
//! or malformed cron expressions, extreme times. Each is refused with a one-line error
//! (exit 1, or 2 for what the argument parser rejects) or handled.

mod common;

use kairos::{Admin, Registry, RunFilter, TaskDef};

use common::cli::{Kairos, Output, node_builder, noop};

/// Runs `kairos ARGS` against `url` from an empty working folder, with
/// `RUST_BACKTRACE=1` so a panic would show.
fn kairos(url: &str, args: &[&str]) -> Output {
    Kairos::new(args).url(url).env("RUST_BACKTRACE", "1").run()
}

/// [`kairos`] off the async runtime.
async fn cli(url: &str, args: &[&str]) -> Output {
    Kairos::new(args)
        .url(url)
        .env("RUST_BACKTRACE", "1")
        .spawn()
        .await
}

/// Asserts that `out` is a refusal: exit `status`, an `error:` first line, no panic.
#[track_caller]
fn assert_refused(args: &[&str], out: &Output, status: i32) {
    assert_ne!(out.code, 101, "kairos panicked on {args:?}: {out:#?}");
    assert_eq!(out.code, status, "{args:?}: {out:#?}");
    assert!(out.stderr.starts_with("error: "), "{args:?}: {out:#?}");
    assert!(out.stdout.is_empty(), "{args:?}: {out:#?}");
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("internal error"),
        "{args:?}: {out:#?}"
    );
}

/// A database whose catalogue holds the task `t` (a node was built on it).
async fn database_with_task_t() -> common::TestDb {
    let db = common::sqlite();
    let registry = Registry::from_tasks([TaskDef::new("t", noop, "tests/cli_inputs.rs")]).unwrap();
    node_builder(&db.url, registry, None)
        .build()
        .await
        .expect("build a node");
    db
}

#[tokio::test]
async fn numbers_out_of_range_are_usage_errors() {
    let db = database_with_task_t().await;
    for args in [
        &["runs", "list", "--limit", "9223372036854775808"][..],
        &["runs", "list", "--limit", "18446744073709551616"],
        &["runs", "list", "--page", "0"],
        &["runs", "list", "--page-size", "0"],
        &["runs", "list", "--page", "-1"],
        &["runs", "list", "--page-size", "10001"],
        &["runs", "show", "9223372036854775808"],
        &["runs", "show", "abc"],
        &["enqueue", "t", "--priority", "2147483648"],
        &["enqueue", "t", "--max-retries", "4294967296"],
        &["enqueue", "t", "--max-retries", "-1"],
        &["enqueue", "t", "--max-retries", "10001"],
        &[
            "cron",
            "next",
            "* * * * *",
            "--count",
            "18446744073709551616",
        ],
        &["cron", "next", "* * * * *", "--count", "0"],
        &[
            "jobs",
            "create",
            "j",
            "--task",
            "t",
            "--interval",
            "1h",
            "--max-catch-up",
            "0",
        ],
        &["jobs", "slots", "j", "--limit", "0"],
    ] {
        let out = cli(&db.url, args).await;
        assert_refused(args, &out, 2);
    }
    let out = cli(&db.url, &["runs", "show", "abc"]).await;
    assert!(
        out.stderr
            .contains("`abc` is not a run id (a whole number)"),
        "{out:#?}"
    );
}

/// A negative delay, time to live or timeout is refused for being negative, not taken
/// for an unknown flag.
#[tokio::test]
async fn negative_durations_are_refused_as_negative() {
    let db = database_with_task_t().await;
    for args in [
        &["enqueue", "t", "--in", "-5m"][..],
        &["enqueue", "t", "--ttl", "-1s"],
        &["enqueue", "t", "--timeout", "-3s"],
    ] {
        let out = cli(&db.url, args).await;
        assert_refused(args, &out, 2);
        assert!(
            out.stderr.contains("negative durations are not allowed"),
            "{args:?}: {out:#?}"
        );
    }
}

#[tokio::test]
async fn durations_too_long_to_ever_come_are_refused() {
    let db = database_with_task_t().await;
    for args in [
        &["enqueue", "t", "--in", "100000000d"][..],
        &["enqueue", "t", "--in", "99999999999999999999s"],
        &["enqueue", "t", "--timeout", "100000000d"],
        &[
            "jobs",
            "create",
            "x",
            "--task",
            "t",
            "--interval",
            "100000000d",
        ],
        &[
            "jobs",
            "create",
            "x",
            "--task",
            "t",
            "--interval",
            "1h",
            "--misfire-grace",
            "100000000d",
        ],
        &["runs", "list", "--created-after", "100000000d"],
        &["jobs", "list", "--connect-timeout", "100000000d"],
    ] {
        let out = cli(&db.url, args).await;
        assert_ne!(out.code, 101, "kairos panicked on {args:?}: {out:#?}");
        assert!(out.code == 1 || out.code == 2, "{args:?}: {out:#?}");
        assert!(out.stderr.starts_with("error: "), "{args:?}: {out:#?}");
    }
    // What the parser lets through is refused at the door: zero, or beyond 100 years.
    let args = &["enqueue", "t", "--timeout", "0s"];
    assert_refused(args, &cli(&db.url, args).await, 1);
    // An interval under a second is a usage error, naming the flag.
    let args = &["jobs", "create", "x", "--task", "t", "--interval", "0s"];
    let out = cli(&db.url, args).await;
    assert_refused(args, &out, 2);
    assert!(out.stderr.contains("--interval"), "{out:#?}");
    let admin = Admin::connect(&db.url).await.unwrap();
    assert_eq!(admin.runs(&RunFilter::new()).await.unwrap().total, 0);
    assert!(admin.jobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn extreme_times_do_not_panic() {
    let db = database_with_task_t().await;
    for args in [
        &["enqueue", "t", "--at", "9999-12-31T23:59:59Z"][..],
        &["enqueue", "t", "--at", "0001-01-01T00:00:00Z"],
        &[
            "jobs",
            "create",
            "far",
            "--task",
            "t",
            "--at",
            "9999-12-31T23:59:59Z",
        ],
        &[
            "jobs",
            "create",
            "past",
            "--task",
            "t",
            "--at",
            "1970-01-01T00:00:00Z",
        ],
        &[
            "jobs",
            "create",
            "yearly",
            "--task",
            "t",
            "--schedule",
            "@yearly",
            "--timezone",
            "Pacific/Kiritimati",
        ],
        &["runs", "list", "--created-after", "36500d"],
        &["runs", "list", "--created-before", "0001-01-01T00:00:00Z"],
        &[
            "runs",
            "list",
            "--page",
            "1000000000",
            "--page-size",
            "10000",
        ],
        &["runs", "show", "--", "-9223372036854775808"],
        &["jobs", "slots", "far", "--since", "36500d"],
        &["cron", "next", "@yearly", "--from", "9999-12-31T23:59:59Z"],
        &["cron", "next", "59 23 31 12 *", "--count", "10000"],
        &[
            "cron",
            "next",
            "0 0 29 2 *",
            "--tz",
            "Pacific/Kiritimati",
            "--from",
            "9999-01-01T00:00:00Z",
        ],
        &["jobs", "list"],
        &["runs", "list"],
    ] {
        let out = cli(&db.url, args).await;
        assert_ne!(out.code, 101, "kairos panicked on {args:?}: {out:#?}");
        assert!(
            !out.stderr.contains("panicked") && !out.stderr.contains("internal error"),
            "{args:?}: {out:#?}"
        );
    }
}

#[tokio::test]
async fn oversized_text_input_is_refused_without_panicking() {
    let db = database_with_task_t().await;
    let long = "n".repeat(10_000);
    let long_tag = format!("k={long}");
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(50_000), "]".repeat(50_000));
    for args in [
        &[
            "jobs",
            "create",
            long.as_str(),
            "--task",
            "t",
            "--interval",
            "1h",
        ][..],
        &["jobs", "pause", long.as_str()],
        &["enqueue", long.as_str()],
        &["enqueue", "t", "--tag", long_tag.as_str()],
        &["enqueue", "t", "--idempotency-key", long.as_str()],
        &["enqueue", "t", "--params", deep.as_str()],
        &["runs", "list", "--tag", "=x"],
        &["runs", "list", "--status", "exploded"],
    ] {
        let out = cli(&db.url, args).await;
        assert_ne!(out.code, 101, "kairos panicked: {out:#?}");
        assert!(out.code == 1 || out.code == 2, "{out:#?}");
        assert!(out.stderr.starts_with("error: "), "{out:#?}");
    }
    let admin = Admin::connect(&db.url).await.unwrap();
    assert_eq!(admin.runs(&RunFilter::new()).await.unwrap().total, 0);
    assert!(admin.jobs().await.unwrap().is_empty());
}

/// Like a cron expression, any input echoed in an error is clipped to ~80 characters.
#[tokio::test]
async fn long_input_is_echoed_clipped_in_errors() {
    let db = database_with_task_t().await;
    let long = "n".repeat(10_000);
    for args in [
        &["jobs", "pause", long.as_str()][..],
        &["enqueue", long.as_str()],
        &[
            "jobs",
            "create",
            "x",
            "--task",
            long.as_str(),
            "--interval",
            "1h",
        ],
        &["runs", "list", "--job", long.as_str()],
        &["queues", "pause", long.as_str()],
        &["nodes", "pause", long.as_str()],
        &["enqueue", "t", "--in", long.as_str()],
        &["runs", "list", "--created-after", long.as_str()],
        &["runs", "list", "--status", long.as_str()],
    ] {
        let out = cli(&db.url, args).await;
        assert!(out.code == 1 || out.code == 2, "{out:#?}");
        assert!(
            out.stderr.len() < 500,
            "{:?}: the error echoes {} bytes: {}…",
            &args[..2],
            out.stderr.len(),
            out.stderr.chars().take(120).collect::<String>()
        );
    }
}

#[test]
fn a_ten_thousand_character_cron_expression_is_echoed_clipped() {
    for expr in [
        "1 ".repeat(5_000),
        format!("{} * * * *", "1,".repeat(5_000)),
        "*".repeat(10_000),
    ] {
        let args = ["cron", "next", expr.as_str()];
        let out = kairos("sqlite://unused.db", &args);
        assert_refused(&["cron", "next", "<long>"], &out, 1);
        let line = out.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{line}");
        // The expression is echoed with at most ~80 of its characters.
        let longest_run = line
            .split('`')
            .map(|part| part.chars().count())
            .max()
            .unwrap();
        assert!(longest_run < 300, "{} characters: {line}", line.len());
        assert!(line.len() < 500, "{} characters: {line}", line.len());
    }
}

#[tokio::test]
async fn a_long_cron_expression_for_a_job_is_echoed_clipped() {
    let db = database_with_task_t().await;
    let expr = "1 ".repeat(5_000);
    let out = cli(
        &db.url,
        &["jobs", "create", "j", "--task", "t", "--schedule", &expr],
    )
    .await;
    assert_refused(&["jobs", "create", "--schedule", "<long>"], &out, 1);
    assert!(out.stderr.len() < 500, "{}", out.stderr);
}

#[tokio::test]
async fn a_step_larger_than_its_field_is_rejected() {
    let db = database_with_task_t().await;
    for expr in [
        "*/61 * * * *",
        "0 */25 * * *",
        "0 0 */32 * *",
        "0 0 * */13 *",
        "0 0 * * */8",
        "*/61 * * * * *",
    ] {
        let args = ["cron", "next", expr];
        let out = kairos("sqlite://unused.db", &args);
        assert_refused(&args, &out, 1);
        assert!(
            out.stderr.contains(expr),
            "echoes the expression: {}",
            out.stderr
        );
        let args = ["jobs", "create", "j", "--task", "t", "--schedule", expr];
        let out = cli(&db.url, &args).await;
        assert_refused(&args, &out, 1);
    }
    assert!(
        Admin::connect(&db.url)
            .await
            .unwrap()
            .jobs()
            .await
            .unwrap()
            .is_empty()
    );
}

/// A tag key given twice is refused, rather than its first value silently replaced.
#[tokio::test]
async fn a_tag_key_given_twice_is_refused() {
    let db = database_with_task_t().await;
    let out = cli(&db.url, &["enqueue", "t", "--tag", "a=b", "--tag", "a=c"]).await;
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(
        out.stderr.trim_end(),
        "error: --tag: key `a` is given twice; a run has one value per tag key"
    );
    let admin = Admin::connect(&db.url).await.unwrap();
    assert_eq!(admin.runs(&RunFilter::new()).await.unwrap().total, 0);
}
