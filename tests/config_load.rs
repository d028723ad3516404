//! `jobs.toml` loading: a full file parses into the expected model, and every kind of
//! mistake is reported at its exact line and column with a hint on how to fix it.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use kairos::config::{Config, ConfigError, Trigger};
use kairos::schedule::Tz;
use serde_json::json;

const FULL: &str = r#"# kairos configuration
[scheduler]
database_url = "sqlite://kairos.db"
max_workers = 16
default_timeout = "30m"
max_retries = 2
retry_delay = "10s"
timezone = "Asia/Shanghai"
shutdown_grace = "45s"

[tasks.sync_emails]
schedule = "*/5 * * * *"
timezone = "Europe/Paris"
enabled = false
max_instances = 1
max_retries = 3
retry_delay = "1m"
timeout = "5m"
priority = 5
queue = "mail"

[tasks.cleanup]
interval = "1h30m"

[[jobs]]
name = "report_eu"
task = "daily_report"
schedule = "0 7 * * MON-FRI"
timezone = "Europe/Berlin"
params = { region = "eu", limits = [1, 2.5], nested = { on = true } }
enabled = true
priority = 2

[[jobs]]
name = "report_once"
task = "daily_report"
at = 2020-01-02T03:04:05+01:00

[[jobs]]
name = "report_tick"
task = "daily_report"
interval = "90s"
enabled = false
[jobs.params]
region = "us"
"#;

/// Parses `text` as `jobs.toml` and returns the error's line, column and message.
fn error(text: &str) -> (usize, usize, String) {
    match Config::parse(text, "jobs.toml") {
        Ok(c) => panic!("expected an error, parsed {c:#?}"),
        Err(ConfigError::Invalid {
            file,
            line,
            column,
            message,
        }) => {
            assert_eq!(file, "jobs.toml");
            (line, column, message)
        }
        Err(e) => panic!("expected ConfigError::Invalid, got {e:?}"),
    }
}

/// Asserts the error is at `line:column` and its message contains every fragment.
#[track_caller]
fn assert_error(text: &str, line: usize, column: usize, fragments: &[&str]) {
    let (l, c, message) = error(text);
    assert_eq!((l, c), (line, column), "wrong position for: {message}");
    for f in fragments {
        assert!(message.contains(f), "`{message}` does not contain `{f}`");
    }
}

#[test]
fn full_file_parses_into_the_model() {
    let c = Config::parse(FULL, "jobs.toml").unwrap();
    assert_eq!(c.file.as_deref(), Some("jobs.toml"));

    assert_eq!(
        c.scheduler.database_url.as_deref(),
        Some("sqlite://kairos.db")
    );
    assert_eq!(c.scheduler.max_workers, Some(16));
    assert_eq!(c.scheduler.shutdown_grace, Some(Duration::from_secs(45)));
    assert_eq!(c.defaults.timeout, Duration::from_secs(30 * 60));
    assert_eq!(c.defaults.max_retries, 2);
    assert_eq!(c.defaults.retry_delay, Duration::from_secs(10));
    assert_eq!(c.defaults.timezone, Tz::Asia__Shanghai);
    assert_eq!(c.defaults.priority, 0);

    assert_eq!(c.tasks.len(), 2);
    let s = &c.tasks["sync_emails"];
    assert_eq!((s.pos.line, s.pos.column), (11, 8));
    let trigger = s.trigger.as_ref().unwrap();
    assert_eq!(trigger.value, Trigger::Cron("*/5 * * * *".into()));
    assert_eq!((trigger.pos.line, trigger.pos.column), (12, 12));
    assert_eq!(s.timezone.as_ref().unwrap().value, Tz::Europe__Paris);
    assert_eq!(s.enabled, Some(false));
    assert_eq!(s.max_instances, Some(1));
    assert_eq!(s.max_retries, Some(3));
    assert_eq!(s.retry_delay, Some(Duration::from_secs(60)));
    assert_eq!(s.timeout, Some(Duration::from_secs(300)));
    assert_eq!(s.priority, Some(5));
    assert_eq!(s.queue.as_deref(), Some("mail"));

    let cl = &c.tasks["cleanup"];
    assert_eq!(
        cl.trigger.as_ref().unwrap().value,
        Trigger::Every(Duration::from_secs(90 * 60))
    );
    assert_eq!(cl.enabled, None);
    assert_eq!(cl.max_retries, None);
    assert_eq!(cl.timezone, None);

    assert_eq!(c.jobs.len(), 3);
    let eu = &c.jobs[0];
    assert_eq!((eu.pos.line, eu.pos.column), (25, 1));
    assert_eq!(eu.name.value, "report_eu");
    assert_eq!((eu.name.pos.line, eu.name.pos.column), (26, 8));
    assert_eq!(eu.task.value, "daily_report");
    assert_eq!((eu.task.pos.line, eu.task.pos.column), (27, 8));
    assert_eq!(eu.trigger.value, Trigger::Cron("0 7 * * MON-FRI".into()));
    assert_eq!(eu.timezone.as_ref().unwrap().value, Tz::Europe__Berlin);
    assert_eq!(
        eu.params,
        json!({"region": "eu", "limits": [1, 2.5], "nested": {"on": true}})
    );
    assert!(eu.enabled);
    assert_eq!(eu.priority, Some(2));

    // A past `at` is fine; the offset is honoured.
    let once = &c.jobs[1];
    assert_eq!(
        once.trigger.value,
        Trigger::Once(Utc.with_ymd_and_hms(2020, 1, 2, 2, 4, 5).unwrap())
    );
    assert_eq!(once.params, json!({}));
    assert!(once.enabled);
    assert_eq!(once.priority, None);

    let tick = &c.jobs[2];
    assert_eq!(tick.trigger.value, Trigger::Every(Duration::from_secs(90)));
    assert!(!tick.enabled);
    assert_eq!(tick.params, json!({"region": "us"}));
}

#[test]
fn empty_file_is_the_default_config() {
    let c = Config::parse("# nothing\n", "jobs.toml").unwrap();
    let d = Config::default();
    assert_eq!(c.defaults, d.defaults);
    assert!(c.tasks.is_empty() && c.jobs.is_empty());
    assert_eq!(c.scheduler.max_workers, None);
    assert_eq!(d.file, None);
}

#[test]
fn at_accepts_an_rfc3339_string() {
    let c = Config::parse(
        "[[jobs]]\nname = \"x\"\ntask = \"t\"\nat = \"2030-05-06T07:08:09Z\"\n",
        "jobs.toml",
    )
    .unwrap();
    assert_eq!(
        c.jobs[0].trigger.value,
        Trigger::Once(Utc.with_ymd_and_hms(2030, 5, 6, 7, 8, 9).unwrap())
    );
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.toml");
    std::fs::write(&path, FULL).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.jobs.len(), 3);

    std::fs::write(&path, "[scheduler]\nmax_workers = 0\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}:2:15: ", path.display())),
        "{shown}"
    );

    let missing = dir.path().join("nope.toml");
    match Config::load(&missing) {
        Err(ConfigError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn display_is_file_line_column_message() {
    let e = Config::parse("[scheduler]\ntimezone = \"Mars/Base\"\n", "jobs.toml").unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with(
            "jobs.toml:2:12: `timezone` in [scheduler]: unknown time zone `Mars/Base`"
        ),
        "{shown}"
    );
}

#[test]
fn syntax_error() {
    assert_error("[scheduler]\nmax_workers = \n", 2, 15, &["invalid TOML"]);
    assert_error(
        "[scheduler]\ntimezone = UTC\n",
        2,
        12,
        &["invalid TOML", "quoted"],
    );
    assert_error(
        "[tasks.a]\nenabled = true\n[tasks.a]\n",
        3,
        8,
        &[
            "duplicate key",
            "a table may appear only once: put all its keys under one header",
        ],
    );
    assert_error(
        "[tasks.a]\nenabled = true\nenabled = false\n",
        3,
        1,
        &["duplicate key", "a key may appear only once in a table"],
    );
}

#[test]
fn unknown_top_level_key() {
    assert_error(
        "[task.sync]\nenabled = false\n",
        1,
        2,
        &[
            "unknown top-level key `task`",
            "did you mean `tasks`?",
            "[[jobs]]",
        ],
    );
}

#[test]
fn unknown_key_in_scheduler() {
    assert_error(
        "[scheduler]\nmax_workers = 4\nmax_worker = 2\n",
        3,
        1,
        &[
            "unknown key `max_worker` in [scheduler]",
            "did you mean `max_workers`?",
            "valid keys: database_url, max_workers, default_timeout",
        ],
    );
    // No suggestion when nothing is close, but still the list.
    assert_error(
        "[scheduler]\npoll_interval = \"1s\"\n",
        2,
        1,
        &["unknown key `poll_interval` in [scheduler]; valid keys: database_url"],
    );
}

#[test]
fn unknown_key_in_task() {
    assert_error(
        "[tasks.sync]\nmax_retry = 3\n",
        2,
        1,
        &[
            "unknown key `max_retry` in [tasks.sync]",
            "did you mean `max_retries`?",
            "valid keys: schedule, interval, timezone",
        ],
    );
}

#[test]
fn unknown_key_in_job() {
    assert_error(
        "[[jobs]]\nname = \"a\"\ntask = \"t\"\nschedule = \"* * * * *\"\n  timeout = \"5m\"\n",
        5,
        3,
        &[
            "unknown key `timeout` in [[jobs]]",
            "valid keys: name, task, schedule",
        ],
    );
}

#[test]
fn bad_cron() {
    assert_error(
        "[tasks.sync]\nschedule = \"61 * * * *\"\n",
        2,
        12,
        &[
            "`schedule` in [tasks.sync]",
            "invalid cron expression `61 * * * *`",
            "write 5 fields",
        ],
    );
    assert_error(
        "[[jobs]]\nname = \"a\"\ntask = \"t\"\nschedule = \"every day\"\n",
        4,
        12,
        &[
            "`schedule` in [[jobs]]",
            "invalid cron expression",
            "@hourly",
        ],
    );
}

#[test]
fn bad_zone() {
    assert_error(
        "[tasks.sync]\nschedule = \"0 * * * *\"\ntimezone = \"Europe/Pari\"\n",
        3,
        12,
        &[
            "unknown time zone `Europe/Pari`",
            "use an IANA name",
            "did you mean `Europe/Paris`?",
        ],
    );
}

#[test]
fn bad_duration() {
    assert_error(
        "[scheduler]\ndefault_timeout = \"5x\"\n",
        2,
        19,
        &[
            "`default_timeout` in [scheduler]",
            "invalid duration `5x`",
            "use d, h, m, s or ms",
        ],
    );
    assert_error(
        "[tasks.t]\ntimeout = 300\n",
        2,
        11,
        &[
            "`timeout` in [tasks.t] must be a duration string, found an integer",
            "timeout = \"5m\"",
        ],
    );
    assert_error(
        "[tasks.t]\ninterval = \"0s\"\n",
        2,
        12,
        &["must be greater than zero"],
    );
}

#[test]
fn wrong_types_and_ranges() {
    assert_error(
        "[scheduler]\nmax_workers = \"16\"\n",
        2,
        15,
        &["must be an integer, found a string", "max_workers = 16"],
    );
    assert_error(
        "[tasks.t]\nenabled = \"no\"\n",
        2,
        11,
        &["must be `true` or `false`", "enabled = false"],
    );
    assert_error(
        "[tasks.t]\nmax_instances = 0\n",
        2,
        17,
        &["out of range", "at least 1"],
    );
    assert_error(
        "[tasks.t]\nmax_retries = -1\n",
        2,
        15,
        &["out of range", "0 to 10000"],
    );
    assert_error(
        "[scheduler]\nmax_retries = 100000\n",
        2,
        15,
        &["out of range", "0 to 10000"],
    );
    assert_error(
        "[scheduler]\nmax_workers = 100000000\n",
        2,
        15,
        &["out of range", "1 to 100000"],
    );
    assert_error(
        "[scheduler]\ndatabase_url = \"mysql://u:secret@x/y\"\n",
        2,
        16,
        &["names no supported database", "mysql://u:", "sqlite://"],
    );
    assert_error(
        "[tasks.t]\nqueue = \"\"\n",
        2,
        9,
        &["is empty", "queue = \"mail\""],
    );
    assert_error(
        "tasks = 3\n",
        1,
        9,
        &[
            "`tasks` must hold one table per task",
            "[tasks.<task name>]",
        ],
    );
    assert_error(
        "[tasks]\nsync = 1\n",
        2,
        8,
        &["must be a table", "[tasks.sync]"],
    );
    assert_error(
        "[jobs]\nname = \"a\"\n",
        1,
        1,
        &["array of tables", "[[jobs]]"],
    );
}

#[test]
fn schedule_and_interval_together() {
    assert_error(
        "[tasks.sync]\nschedule = \"0 * * * *\"\ninterval = \"15m\"\n",
        3,
        1,
        &["sets both `schedule` (at 2:12) and `interval`", "keep one"],
    );
    assert_error(
        "[[jobs]]\nname = \"a\"\ntask = \"t\"\ninterval = \"1m\"\nat = 2030-01-01T00:00:00Z\n",
        5,
        1,
        &[
            "sets both `interval` (at 4:12) and `at`",
            "keep exactly one",
        ],
    );
}

#[test]
fn timezone_without_cron() {
    assert_error(
        "[tasks.sync]\ninterval = \"15m\"\ntimezone = \"UTC\"\n",
        3,
        12,
        &["only applies to a cron `schedule`", "remove `timezone`"],
    );
    assert_error(
        "[[jobs]]\nname = \"a\"\ntask = \"t\"\ninterval = \"1m\"\ntimezone = \"UTC\"\n",
        5,
        12,
        &["only applies to a cron `schedule`", "remove `timezone`"],
    );
}

#[test]
fn at_needs_an_offset() {
    assert_error(
        "[[jobs]]\nname = \"a\"\ntask = \"t\"\nat = 2030-01-01T00:00:00\n",
        4,
        6,
        &["has no UTC offset", "2025-06-01T09:00:00Z"],
    );
    assert_error(
        "[[jobs]]\nname = \"a\"\ntask = \"t\"\nat = \"tomorrow\"\n",
        4,
        6,
        &["not a valid time", "RFC 3339"],
    );
}

#[test]
fn params_must_be_a_table() {
    assert_error(
        "[[jobs]]\nname = \"a\"\ntask = \"t\"\ninterval = \"1m\"\nparams = [1, 2]\n",
        5,
        10,
        &[
            "`params` in [[jobs]] must be a table",
            "found an array",
            "params = { region = \"eu\" }",
        ],
    );
}

#[test]
fn missing_keys_in_job() {
    assert_error(
        "[scheduler]\n\n[[jobs]]\nname = \"a\"\nschedule = \"* * * * *\"\n",
        3,
        1,
        &["has no `task`", "task = \""],
    );
    assert_error(
        "[[jobs]]\ntask = \"t\"\nschedule = \"* * * * *\"\n",
        1,
        1,
        &["has no `name`", "name = \""],
    );
    assert_error(
        "[[jobs]]\nname = \"a\"\ntask = \"t\"\n",
        1,
        1,
        &["has no `schedule`", "interval = \"15m\"", "at = "],
    );
}

#[test]
fn duplicate_job_names_in_the_file() {
    assert_error(
        "[[jobs]]\nname = \"a\"\ntask = \"t\"\ninterval = \"1m\"\n\n[[jobs]]\nname = \"a\"\ntask = \"u\"\ninterval = \"2m\"\n",
        7,
        8,
        &[
            "job name `a` is already used by the [[jobs]] entry at 2:8",
            "unique `name`",
        ],
    );
}

#[test]
fn queues_and_policy_keys_parse() {
    let text = r#"
[scheduler]
connect_timeout = "2s"

[queues.mail]
concurrency = 1
rate_limit = "100/1m"

[queues.bulk]
rate_limit = "5/1s"

[tasks.sync_emails]
misfire = "catch_up"
max_catch_up = 4
misfire_grace = "10s"
overlap = "queue"
dst = "both"

[[jobs]]
name = "eu"
task = "daily_report"
schedule = "30 2 * * *"
misfire = "skip"
dst = "skip"
"#;
    let c = Config::parse(text, "jobs.toml").unwrap();
    assert_eq!(c.scheduler.connect_timeout, Some(Duration::from_secs(2)));
    let mail = c.queues["mail"];
    assert_eq!(mail.concurrency, Some(1));
    let rate = mail.rate_limit.unwrap();
    assert_eq!((rate.count, rate.window), (100, Duration::from_secs(60)));
    assert_eq!(c.queues["bulk"].concurrency, None);
    let p = &c.tasks["sync_emails"].policy;
    assert_eq!(p.misfire, Some(kairos::Misfire::CatchUp));
    assert_eq!(p.max_catch_up.as_ref().map(|n| n.value), Some(4));
    assert_eq!(p.misfire_grace, Some(Duration::from_secs(10)));
    assert_eq!(
        p.overlap.as_ref().map(|o| o.value),
        Some(kairos::Overlap::Queue)
    );
    // Where each is written, for resolution's errors.
    assert_eq!(
        p.overlap.as_ref().map(|o| o.pos.to_string()).as_deref(),
        Some("16:11")
    );
    assert_eq!(
        p.dst.as_ref().map(|d| d.value),
        Some(kairos::schedule::DstPolicy::Both)
    );
    assert_eq!(c.jobs[0].policy.misfire, Some(kairos::Misfire::Skip));
}

#[test]
fn bad_policy_values_name_the_valid_ones() {
    assert_error(
        "[tasks.t]\nmisfire = \"runonce\"\n",
        2,
        11,
        &[
            "`misfire` in [tasks.t] is `runonce`",
            "skip, run_once, catch_up",
            "did you mean `run_once`?",
        ],
    );
    assert_error(
        "[tasks.t]\noverlap = \"wait\"\n",
        2,
        11,
        &["skip, queue, replace"],
    );
    assert_error("[tasks.t]\nmax_catch_up = 0\n", 2, 16, &["1 to 100000"]);
    assert_error(
        "[[jobs]]\nname = \"j\"\ntask = \"t\"\ninterval = \"1m\"\ndst = \"skip\"\n",
        5,
        7,
        &["`dst`", "only applies to a cron `schedule`"],
    );
}

#[test]
fn bad_queues_are_reported_where_they_are_written() {
    assert_error(
        "[queues.mail]\nconcurrency = 0\n",
        2,
        15,
        &["concurrency", "1 to 4294967295"],
    );
    assert_error(
        "[queues.mail]\nrate_limit = \"100\"\n",
        2,
        14,
        &["has no `/`", "100/1m"],
    );
    assert_error(
        "[queues.mail]\nrate_limit = \"0/1m\"\n",
        2,
        14,
        &["from 1 to 4294967295"],
    );
    assert_error(
        "[queues.mail]\nrate_limit = \"5/0s\"\n",
        2,
        14,
        &["longer than zero"],
    );
    assert_error(
        "[queues.mail]\nconcurency = 2\n",
        2,
        1,
        &["unknown key `concurency`", "did you mean `concurrency`?"],
    );
}

#[test]
fn intervals_too_long_to_ever_fire_are_errors() {
    assert_error(
        "[[jobs]]\nname = \"j\"\ntask = \"t\"\ninterval = \"100000000d\"\n",
        4,
        12,
        &["too long", "100 years"],
    );
}

#[test]
fn ended_nodes_are_kept_seven_days_unless_retention_says_otherwise() {
    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(Config::default().retention.nodes_kept(), week);
    let c = Config::parse("[retention]\nnodes = \"36h\"\n", "jobs.toml").unwrap();
    assert_eq!(c.retention.nodes_kept(), Duration::from_secs(36 * 3600));
    assert_error(
        "[retention]\nnodes = \"0s\"\n",
        2,
        9,
        &["greater than zero", "nodes = \"7d\""],
    );
}

#[test]
fn a_node_name_is_read_and_one_that_cannot_be_shown_or_typed_is_refused() {
    let c = Config::parse("[scheduler]\nnode_name = \"mailer-1\"\n", "jobs.toml").unwrap();
    assert_eq!(c.scheduler.node_name.as_deref(), Some("mailer-1"));
    assert_eq!(Config::default().scheduler.node_name, None);
    assert_error(
        "[scheduler]\nnode_name = \"\"\n",
        2,
        13,
        &["empty", "node_name = \"worker-1\""],
    );
    assert_error(
        "[scheduler]\nnode_name = \"a\\tb\"\n",
        2,
        13,
        &["node_name", "control character"],
    );
    let long = "n".repeat(101);
    assert_error(
        &format!("[scheduler]\nnode_name = \"{long}\"\n"),
        2,
        13,
        &["101 characters", "at most 100"],
    );
}

#[test]
fn a_job_name_with_a_control_character_is_refused_naming_it() {
    assert_error(
        "[[jobs]]\nname = \"evil\\nJOB_FAKE cleanup every 1s active\"\ntask = \"cleanup\"\ninterval = \"1h\"\n",
        2,
        8,
        &["[[jobs]] name", "a newline (U+000A)", "not allowed"],
    );
    assert_error(
        "[[jobs]]\nname = \"a\\u001bb\"\ntask = \"cleanup\"\ninterval = \"1h\"\n",
        2,
        8,
        &["an escape (U+001B)", "at character 2"],
    );
    // One that would show as another name, and one too long to show at all.
    assert_error(
        "[[jobs]]\nname = \"report\\u202Ecod.exe\"\ntask = \"cleanup\"\ninterval = \"1h\"\n",
        2,
        8,
        &[
            "[[jobs]] name",
            "invisible character",
            "U+202E",
            "at character 7",
        ],
    );
    let long = "j".repeat(201);
    assert_error(
        &format!("[[jobs]]\nname = \"{long}\"\ntask = \"cleanup\"\ninterval = \"1h\"\n"),
        2,
        8,
        &["201 characters long", "1 to 200 characters"],
    );
    // The longest name allowed is read.
    let name = "j".repeat(200);
    let c = Config::parse(
        &format!("[[jobs]]\nname = \"{name}\"\ntask = \"cleanup\"\ninterval = \"1h\"\n"),
        "jobs.toml",
    )
    .unwrap();
    assert_eq!(c.jobs[0].name.value, name);
}

#[test]
fn a_queue_name_with_a_control_character_is_refused_naming_it() {
    assert_error(
        "[queues.\"mail\\u0007\"]\nconcurrency = 1\n",
        1,
        9,
        &["the queue name", "U+0007", "not allowed"],
    );
    assert_error(
        "[tasks.cleanup]\nqueue = \"a\\nb\"\n",
        2,
        9,
        &["queue: the queue name", "a newline (U+000A)"],
    );
}

#[test]
fn intervals_under_a_second_and_huge_catch_ups_are_refused() {
    assert_error(
        "[[jobs]]\nname = \"fast\"\ntask = \"cleanup\"\ninterval = \"500ms\"\n",
        4,
        12,
        &[
            "interval",
            "500ms is shorter than a second",
            "interval = \"1s\"",
        ],
    );
    assert_error(
        "[tasks.cleanup]\ninterval = \"10ms\"\n",
        2,
        12,
        &["shorter than a second"],
    );
    assert_error(
        "[tasks.cleanup]\nmisfire = \"catch_up\"\nmax_catch_up = 100001\n",
        3,
        16,
        &["max_catch_up", "1 to 100000"],
    );
}
