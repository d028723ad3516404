//! `Config::resolve`: checking `jobs.toml` against the task registry and merging
//! config > macro > `[scheduler]` defaults into job specs and task policies.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::future::BoxFuture;
use kairos::config::{Config, ConfigError};
use kairos::schedule::{CronSchedule, Schedule, Tz};
use kairos::task::TaskOutcome;
use kairos::test_support::{JobSpec, TaskPolicy};
use kairos::{JobPolicy, JobSource};
use kairos::{Registry, TaskContext, TaskDef};
use serde_json::json;

fn h(_: TaskContext, _: serde_json::Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async { Ok(None) })
}

/// A registry like the one the macro examples produce.
fn registry() -> Registry {
    Registry::from_tasks([
        // interval_minutes = 15, max_retries = 3
        TaskDef {
            interval: Some(Duration::from_secs(15 * 60)),
            max_retries: Some(3),
            ..TaskDef::new("sync_emails", h, "src/mail.rs:10")
        },
        // schedule = "0 0 * * *", timezone = "Asia/Shanghai", max_instances = 1
        TaskDef {
            schedule: Some("0 0 * * *"),
            timezone: Some("Asia/Shanghai"),
            max_instances: Some(1),
            ..TaskDef::new("daily_report", h, "src/report.rs:20")
        },
        // no schedule, every policy field set
        TaskDef {
            timeout: Some(Duration::from_secs(30 * 60)),
            max_retries: Some(5),
            retry_delay: Some(Duration::from_secs(600)),
            priority: Some(1),
            max_instances: Some(2),
            queue: Some("docs"),
            ..TaskDef::new("process_document", h, "src/docs.rs:30")
        },
        // cron without a zone
        TaskDef {
            schedule: Some("*/10 * * * *"),
            ..TaskDef::new("ping", h, "src/ping.rs:1")
        },
        // nothing at all
        TaskDef::new("cleanup", h, "src/cleanup.rs:1"),
    ])
    .unwrap()
}

fn resolve(text: &str) -> (Vec<JobSpec>, std::collections::HashMap<String, TaskPolicy>) {
    Config::parse(text, "jobs.toml")
        .unwrap()
        .resolve(&registry())
        .unwrap()
}

fn cron(expr: &str, tz: Tz) -> Schedule {
    Schedule::Cron(CronSchedule::parse(expr, tz).unwrap())
}

#[track_caller]
fn assert_resolve_error(text: &str, line: usize, column: usize, fragments: &[&str]) {
    let config = Config::parse(text, "jobs.toml").unwrap();
    match config.resolve(&registry()) {
        Err(ConfigError::Invalid {
            file,
            line: l,
            column: c,
            message,
        }) => {
            assert_eq!(file, "jobs.toml");
            assert_eq!((l, c), (line, column), "wrong position for: {message}");
            for f in fragments {
                assert!(message.contains(f), "`{message}` does not contain `{f}`");
            }
        }
        other => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}

fn job<'a>(jobs: &'a [JobSpec], name: &str) -> &'a JobSpec {
    jobs.iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no job `{name}` in {jobs:#?}"))
}

#[test]
fn no_file_gives_the_macro_jobs_and_defaults() {
    let (jobs, policies) = Config::default().resolve(&registry()).unwrap();
    let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["daily_report", "ping", "sync_emails"]);

    assert_eq!(
        jobs[0],
        JobSpec {
            name: "daily_report".into(),
            task: "daily_report".into(),
            schedule: cron("0 0 * * *", Tz::Asia__Shanghai),
            params: json!({}),
            enabled: true,
            priority: None,
            policy: JobPolicy::default(),
            source: JobSource::Code,
            callback_url: None,
        }
    );
    assert_eq!(jobs[1].schedule, cron("*/10 * * * *", Tz::UTC));
    assert_eq!(
        jobs[2].schedule,
        Schedule::Every(Duration::from_secs(15 * 60))
    );

    assert_eq!(policies.len(), 5);
    assert_eq!(
        policies["cleanup"],
        TaskPolicy {
            max_instances: None,
            max_retries: 0,
            retry_delay: Duration::from_secs(10),
            timeout: Duration::from_secs(30 * 60),
            priority: 0,
            queue: "default".into(),
            job_policy: JobPolicy::default(),
        }
    );
    assert_eq!(
        policies["process_document"],
        TaskPolicy {
            max_instances: Some(2),
            max_retries: 5,
            retry_delay: Duration::from_secs(600),
            timeout: Duration::from_secs(30 * 60),
            priority: 1,
            queue: "docs".into(),
            job_policy: JobPolicy::default(),
        }
    );
}

#[test]
fn precedence_is_config_then_macro_then_defaults() {
    let (_, policies) = resolve(
        r#"
[scheduler]
default_timeout = "2m"
max_retries = 7
retry_delay = "3s"

[tasks.process_document]
max_retries = 9
queue = "bulk"

[tasks.sync_emails]
max_instances = 4
timeout = "1m"
priority = -3
"#,
    );
    // config over macro, macro over defaults
    let p = &policies["process_document"];
    assert_eq!(p.max_retries, 9);
    assert_eq!(p.queue, "bulk");
    assert_eq!(p.timeout, Duration::from_secs(30 * 60)); // macro beats default "2m"
    assert_eq!(p.retry_delay, Duration::from_secs(600));
    assert_eq!(p.priority, 1);
    assert_eq!(p.max_instances, Some(2));

    let s = &policies["sync_emails"];
    assert_eq!(s.max_retries, 3); // macro beats default 7
    assert_eq!(s.max_instances, Some(4));
    assert_eq!(s.timeout, Duration::from_secs(60));
    assert_eq!(s.retry_delay, Duration::from_secs(3)); // default
    assert_eq!(s.priority, -3);

    let c = &policies["cleanup"];
    assert_eq!(c.max_retries, 7);
    assert_eq!(c.timeout, Duration::from_secs(120));
    assert_eq!(c.retry_delay, Duration::from_secs(3));
}

#[test]
fn disabled_task_keeps_its_job_but_disabled() {
    let (jobs, policies) = resolve("[tasks.sync_emails]\nenabled = false\n");
    let j = job(&jobs, "sync_emails");
    assert!(!j.enabled);
    assert_eq!(j.schedule, Schedule::Every(Duration::from_secs(15 * 60)));
    assert!(policies.contains_key("sync_emails"));
    assert!(job(&jobs, "daily_report").enabled);
}

#[test]
fn config_schedule_replaces_macro_interval_and_vice_versa() {
    let (jobs, _) = resolve(
        "[tasks.sync_emails]\nschedule = \"*/5 * * * *\"\n\n[tasks.daily_report]\ninterval = \"6h\"\n",
    );
    // macro interval → config cron, in the default zone (no task zone)
    assert_eq!(
        job(&jobs, "sync_emails").schedule,
        cron("*/5 * * * *", Tz::UTC)
    );
    // macro cron → config interval
    assert_eq!(
        job(&jobs, "daily_report").schedule,
        Schedule::Every(Duration::from_secs(6 * 3600))
    );
}

#[test]
fn task_without_macro_schedule_gets_a_job_from_config() {
    let (jobs, _) = resolve("[tasks.cleanup]\ninterval = \"1d\"\nenabled = false\n");
    let j = job(&jobs, "cleanup");
    assert_eq!(j.schedule, Schedule::Every(Duration::from_secs(86400)));
    assert_eq!(j.source, JobSource::Code);
    assert!(!j.enabled);
    // A policy-only override does not create a job.
    let (jobs, _) = resolve("[tasks.process_document]\nmax_retries = 1\n");
    assert!(jobs.iter().all(|j| j.name != "process_document"));
}

#[test]
fn default_timezone_applies_to_cron_without_a_zone() {
    let (jobs, _) = resolve(
        r#"
[scheduler]
timezone = "America/New_York"

[tasks.daily_report]
schedule = "30 6 * * *"

[[jobs]]
name = "ping_paris"
task = "ping"
schedule = "0 12 * * *"
timezone = "Europe/Paris"

[[jobs]]
name = "ping_default"
task = "ping"
schedule = "0 13 * * *"
"#,
    );
    // macro cron without zone → default zone
    assert_eq!(
        job(&jobs, "ping").schedule,
        cron("*/10 * * * *", Tz::America__New_York)
    );
    // config cron on a task with a macro zone → the macro zone (task's zone beats default)
    assert_eq!(
        job(&jobs, "daily_report").schedule,
        cron("30 6 * * *", Tz::Asia__Shanghai)
    );
    assert_eq!(
        job(&jobs, "ping_paris").schedule,
        cron("0 12 * * *", Tz::Europe__Paris)
    );
    assert_eq!(
        job(&jobs, "ping_default").schedule,
        cron("0 13 * * *", Tz::America__New_York)
    );
}

#[test]
fn config_timezone_beats_macro_timezone() {
    let (jobs, _) = resolve("[tasks.daily_report]\ntimezone = \"Europe/Paris\"\n");
    assert_eq!(
        job(&jobs, "daily_report").schedule,
        cron("0 0 * * *", Tz::Europe__Paris)
    );
}

#[test]
fn config_jobs_become_specs_sorted_by_name() {
    let (jobs, _) = resolve(
        r#"
[[jobs]]
name = "zz_report"
task = "daily_report"
schedule = "0 7 * * MON-FRI"
params = { region = "eu" }
priority = 2

[[jobs]]
name = "aa_docs_once"
task = "process_document"
at = 2020-01-01T00:00:00Z
params = { doc_id = "42" }
enabled = false

[[jobs]]
name = "mm_cleanup"
task = "cleanup"
interval = "10m"
"#,
    );
    let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "aa_docs_once",
            "daily_report",
            "mm_cleanup",
            "ping",
            "sync_emails",
            "zz_report"
        ]
    );
    assert_eq!(
        job(&jobs, "zz_report"),
        &JobSpec {
            name: "zz_report".into(),
            task: "daily_report".into(),
            schedule: cron("0 7 * * MON-FRI", Tz::UTC),
            params: json!({"region": "eu"}),
            enabled: true,
            priority: Some(2),
            policy: JobPolicy::default(),
            source: JobSource::Config,
            callback_url: None,
        }
    );
    let once = job(&jobs, "aa_docs_once");
    assert_eq!(
        once.schedule,
        Schedule::Once(Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap())
    );
    assert!(!once.enabled);
    assert_eq!(once.params, json!({"doc_id": "42"}));
    assert_eq!(
        job(&jobs, "mm_cleanup").schedule,
        Schedule::Every(Duration::from_secs(600))
    );
}

#[test]
fn unknown_task_in_tasks_table_suggests_the_closest() {
    assert_resolve_error(
        "[tasks.sync_emial]\nmax_retries = 1\n",
        1,
        8,
        &[
            "unknown task `sync_emial`; did you mean `sync_emails`?",
            "registered tasks: cleanup, daily_report, ping, process_document, sync_emails",
        ],
    );
}

#[test]
fn unknown_task_in_job_suggests_the_closest() {
    assert_resolve_error(
        "[[jobs]]\nname = \"r\"\ntask = \"daily_reprot\"\ninterval = \"1m\"\n",
        3,
        8,
        &[
            "unknown task `daily_reprot`; did you mean `daily_report`?",
            "registered tasks:",
        ],
    );
    // Nothing close: no suggestion, still the list.
    assert_resolve_error(
        "[[jobs]]\nname = \"r\"\ntask = \"send_invoices\"\ninterval = \"1m\"\n",
        3,
        8,
        &["unknown task `send_invoices`; registered tasks: cleanup"],
    );
}

#[test]
fn unknown_task_reported_in_file_order() {
    // `[tasks.zzz]` sorts after `aaa` by name but comes first in the file.
    assert_resolve_error(
        "[tasks.zzz]\nmax_retries = 1\n\n[tasks.aaa]\nmax_retries = 1\n",
        1,
        8,
        &["unknown task `zzz`"],
    );
}

#[test]
fn unknown_task_with_empty_registry() {
    let config = Config::parse("[tasks.x]\nenabled = false\n", "jobs.toml").unwrap();
    let e = config.resolve(&Registry::default()).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with("jobs.toml:1:8: unknown task `x`: no task is registered"),
        "{shown}"
    );
}

#[test]
fn job_name_equal_to_a_task_job_is_a_duplicate() {
    assert_resolve_error(
        "[[jobs]]\nname = \"daily_report\"\ntask = \"daily_report\"\ninterval = \"1m\"\n",
        2,
        8,
        &[
            "job name `daily_report` is already the name of task `daily_report`'s own job",
            "#[kairos::task] at src/report.rs:20",
            "another `name`",
        ],
    );
    // Scheduled only by config: the message says so.
    assert_resolve_error(
        "[tasks.cleanup]\ninterval = \"1h\"\n\n[[jobs]]\nname = \"cleanup\"\ntask = \"ping\"\ninterval = \"1m\"\n",
        5,
        8,
        &["[tasks.cleanup] at 2:12"],
    );
    // A task without any schedule has no own job, so its name is free.
    let (jobs, _) =
        resolve("[[jobs]]\nname = \"cleanup\"\ntask = \"cleanup\"\ninterval = \"1m\"\n");
    assert_eq!(job(&jobs, "cleanup").source, JobSource::Config);
}

#[test]
fn task_timezone_needs_a_cron_schedule() {
    assert_resolve_error(
        "[tasks.sync_emails]\ntimezone = \"Europe/Paris\"\n",
        2,
        12,
        &["only applies to a cron schedule", "runs on an interval"],
    );
    assert_resolve_error(
        "[tasks.cleanup]\ntimezone = \"Europe/Paris\"\n",
        2,
        12,
        &["has no effect", "no cron schedule"],
    );
}

#[test]
fn a_task_s_callback_url_needs_a_schedule_of_its_own() {
    assert_resolve_error(
        "[tasks.cleanup]\ncallback_url = \"https://example.com/hook\"\n",
        2,
        16,
        &[
            "`callback_url` in [tasks.cleanup] has no effect",
            "--callback-url",
            "[[jobs]]",
        ],
    );
    // With a schedule of its own, the job's runs are delivered there.
    let (jobs, _) = resolve("[tasks.sync_emails]\ncallback_url = \"https://example.com/hook\"\n");
    assert_eq!(
        job(&jobs, "sync_emails").callback_url.as_deref(),
        Some("https://example.com/hook")
    );
}

#[test]
fn bad_hand_registered_task_is_reported_with_its_location() {
    let registry = Registry::from_tasks([TaskDef {
        schedule: Some("not cron"),
        ..TaskDef::new("bad", h, "src/bad.rs:7")
    }])
    .unwrap();
    match Config::default().resolve(&registry) {
        Err(ConfigError::Other(m)) => {
            assert!(m.contains("task `bad` (at src/bad.rs:7)"), "{m}");
            assert!(m.contains("invalid cron expression"), "{m}");
        }
        other => panic!("expected Other, got {other:?}"),
    }
}

#[kairos::task(name = "typed_report")]
async fn typed_report(region: String, days: Option<u32>) -> String {
    format!("{region}{days:?}")
}

#[test]
fn job_params_are_checked_against_the_task_at_their_place_in_the_file() {
    let registry = Registry::from_tasks(
        Registry::from_inventory()
            .unwrap()
            .tasks()
            .into_iter()
            .filter(|t| t.name == "typed_report")
            .copied(),
    )
    .unwrap();
    let text = "[[jobs]]\nname = \"r\"\ntask = \"typed_report\"\ninterval = \"1h\"\nparams = { region = 5 }\n";
    let config = Config::parse(text, "jobs.toml").unwrap();
    match config.resolve(&registry) {
        Err(ConfigError::Invalid {
            line,
            column,
            message,
            ..
        }) => {
            assert_eq!((line, column), (5, 10), "{message}");
            assert!(message.contains("`region`"), "{message}");
            assert!(message.contains("string"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let missing = "[[jobs]]\nname = \"r\"\ntask = \"typed_report\"\ninterval = \"1h\"\n";
    let err = Config::parse(missing, "jobs.toml")
        .unwrap()
        .resolve(&registry)
        .unwrap_err()
        .to_string();
    // No `params` at all: the error points at the `task` that asks for them.
    assert!(err.starts_with("jobs.toml:3:8:"), "{err}");
    assert!(err.contains("missing parameter `region` (String)"), "{err}");
    let ok = "[[jobs]]\nname = \"r\"\ntask = \"typed_report\"\ninterval = \"1h\"\nparams = { region = \"eu\" }\n";
    assert!(
        Config::parse(ok, "jobs.toml")
            .unwrap()
            .resolve(&registry)
            .is_ok()
    );
}

#[kairos::task(name = "scheduled_report", schedule = "0 3 * * *")]
async fn scheduled_report(region: String) -> String {
    region
}

/// The registry of the macro tasks in this file named `names`.
fn macro_tasks(names: &[&str]) -> Registry {
    Registry::from_tasks(
        Registry::from_inventory()
            .unwrap()
            .tasks()
            .into_iter()
            .filter(|t| names.contains(&t.name))
            .copied(),
    )
    .unwrap()
}

/// A task's own job fires with no params, so scheduling a task that has a required
/// parameter (in jobs.toml or in the macro) would fail every run: the node refuses it,
/// pointing at the schedule and saying how to give params. Disabled, it passes.
#[test]
fn a_task_with_a_required_param_cannot_be_scheduled_without_params() {
    let registry = macro_tasks(&["typed_report", "scheduled_report"]);
    let resolve = |text: &str| Config::parse(text, "jobs.toml").unwrap().resolve(&registry);
    for (text, key) in [
        (
            "[tasks.scheduled_report]\nenabled = false\n\n[tasks.typed_report]\nschedule = \"*/2 * * * * *\"\n",
            "schedule",
        ),
        (
            "[tasks.scheduled_report]\nenabled = false\n\n[tasks.typed_report]\ninterval = \"1h\"\n",
            "interval",
        ),
    ] {
        match resolve(text) {
            Err(ConfigError::Invalid {
                line,
                column,
                message,
                ..
            }) => {
                assert_eq!((line, column), (5, 12), "{message}");
                for f in [
                    "task `typed_report`",
                    "missing parameter `region` (String)",
                    &format!("remove `{key}` from [tasks.typed_report]"),
                    "[[jobs]] entry with `task = \"typed_report\"`",
                    "`params = { region = ... }`",
                ] {
                    assert!(message.contains(f), "`{message}` does not contain `{f}`");
                }
            }
            other => panic!("{other:?}"),
        }
    }

    // Scheduled by the macro: named with its location.
    match resolve("") {
        Err(ConfigError::Other(m)) => {
            for f in [
                "task `scheduled_report` (at tests/config_resolve.rs",
                "#[kairos::task]",
                "missing parameter `region` (String)",
                "`params = { region = ... }`",
            ] {
                assert!(m.contains(f), "`{m}` does not contain `{f}`");
            }
        }
        other => panic!("{other:?}"),
    }

    let (jobs, _) = resolve(
        "[tasks.scheduled_report]\nenabled = false\n\n[tasks.typed_report]\ninterval = \"1h\"\nenabled = false\n",
    )
    .unwrap();
    assert!(jobs.iter().all(|j| !j.enabled), "{jobs:#?}");
}

#[test]
fn policies_merge_config_over_macro_over_defaults() {
    let registry = Registry::from_tasks([TaskDef {
        schedule: Some("30 2 * * *"),
        misfire: Some(kairos::Misfire::Skip),
        overlap: Some(kairos::Overlap::Queue),
        max_instances: Some(2),
        dst: Some(kairos::schedule::DstPolicy::Both),
        ..TaskDef::new("nightly", h, "src/n.rs:1")
    }])
    .unwrap();
    let text = "[tasks.nightly]\nmisfire = \"catch_up\"\nmax_catch_up = 2\n\n[[jobs]]\nname = \"n2\"\ntask = \"nightly\"\nschedule = \"0 3 * * *\"\noverlap = \"replace\"\n";
    let (jobs, policies) = Config::parse(text, "jobs.toml")
        .unwrap()
        .resolve(&registry)
        .unwrap();
    let p = &policies["nightly"].job_policy;
    assert_eq!(p.misfire, kairos::Misfire::CatchUp, "config over macro");
    assert_eq!(p.max_catch_up, 2);
    assert_eq!(p.overlap, kairos::Overlap::Queue, "macro over default");
    assert_eq!(p.misfire_grace, Duration::from_secs(30), "default");
    let own = job(&jobs, "nightly");
    assert_eq!(own.policy, *p);
    let Schedule::Cron(c) = &own.schedule else {
        panic!()
    };
    assert_eq!(c.dst(), kairos::schedule::DstPolicy::Both);
    let n2 = job(&jobs, "n2");
    assert_eq!(
        n2.policy.overlap,
        kairos::Overlap::Replace,
        "[[jobs]] over the task's"
    );
    assert_eq!(
        n2.policy.misfire,
        kairos::Misfire::CatchUp,
        "the task's policy is the base"
    );
}

/// Policy keys that could never act are refused where they are written: a
/// `max_catch_up` where nothing catches up, an `overlap` on a task without
/// `max_instances` (its runs overlap freely, whatever `overlap` says).
#[test]
fn policy_keys_that_cannot_act_are_refused() {
    let registry = Registry::from_tasks([
        TaskDef::new("plain", h, "src/p.rs:1"),
        TaskDef {
            overlap: Some(kairos::Overlap::Skip),
            ..TaskDef::new("says_skip", h, "src/s.rs:7")
        },
    ])
    .unwrap();
    let resolve = |text: &str| {
        Config::parse(text, "jobs.toml")
            .unwrap()
            .resolve(&registry)
            .map(|_| ())
    };
    let job = |extra: &str| {
        format!(
            "[tasks.says_skip]\nmax_instances = 1\n\n[[jobs]]\nname = \"j\"\ntask = \"plain\"\ninterval = \"1h\"\n{extra}"
        )
    };
    for (text, at, words) in [
        (
            job("max_catch_up = 3\n"),
            (8, 16),
            "`max_catch_up` applies only with `misfire = \"catch_up\"`, and the misfire policy of [[jobs]] `j` is `run_once`",
        ),
        (
            job("overlap = \"skip\"\n"),
            (8, 11),
            "`overlap = \"skip\"` of [[jobs]] `j` has no effect",
        ),
        (
            "[tasks.says_skip]\nmax_instances = 1\n\n[tasks.plain]\nmax_catch_up = 4\n".to_string(),
            (5, 16),
            "the misfire policy of task `plain` is `run_once`",
        ),
        (
            "[tasks.says_skip]\nmax_instances = 1\n\n[tasks.plain]\noverlap = \"replace\"\n"
                .to_string(),
            (5, 11),
            "add `max_instances = 1` to [tasks.plain] or remove `overlap`",
        ),
    ] {
        match resolve(&text) {
            Err(ConfigError::Invalid {
                line,
                column,
                message,
                ..
            }) => {
                assert_eq!((line, column), at, "{message}");
                assert!(message.contains(words), "{message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // The macro's overlap without max_instances anywhere: named with its location.
    match resolve("") {
        Err(ConfigError::Other(m)) => assert!(
            m.contains("task `says_skip` (at src/s.rs:7) sets `overlap = \"skip\"`"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // Fine: max_catch_up on a task whose [[jobs]] entry catches up, and an overlap
    // with max_instances.
    resolve(&format!(
        "{}\n[tasks.plain]\nmax_catch_up = 4\nmax_instances = 2\noverlap = \"queue\"\n",
        job("misfire = \"catch_up\"\n")
    ))
    .unwrap();
}

/// An error about a key of a `[[jobs]]` entry written first in the file points at the
/// key, not at the entry's header on line 1, and one about `params` the entry lacks
/// points at its `task`.
#[test]
fn errors_of_the_first_jobs_entry_point_at_the_key_not_at_1_1() {
    let registry = Registry::from_tasks([TaskDef::new("t", h, "src/t.rs:1")]).unwrap();
    let err = Config::parse(
        "[[jobs]]\nname = \"x\"\ntask = \"t\"\ninterval = \"1h\"\noverlap = \"queue\"\n",
        "jobs.toml",
    )
    .unwrap()
    .resolve(&registry)
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("jobs.toml:5:11: `overlap = \"queue\"` of [[jobs]] `x` has no effect"),
        "{err}"
    );

    // The same in a [tasks.*] table: at `overlap`, not at the table's name.
    let err = Config::parse(
        "[tasks.t]\nretry_delay = \"1m\"\noverlap = \"queue\"\n",
        "jobs.toml",
    )
    .unwrap()
    .resolve(&registry)
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("jobs.toml:3:11: `overlap = \"queue\"` of [tasks.t] has no effect"),
        "{err}"
    );

    let registry = macro_tasks(&["typed_report"]);
    let err = Config::parse(
        "[[jobs]]\nname = \"x\"\ntask = \"typed_report\"\ninterval = \"1h\"\n",
        "jobs.toml",
    )
    .unwrap()
    .resolve(&registry)
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("jobs.toml:3:8: params of [[jobs]] `x` do not fit task `typed_report`"),
        "{err}"
    );
    // Inline, the entry's keys are found the same way.
    let err = Config::parse(
        "jobs = [{ name = \"x\", task = \"typed_report\", interval = \"1h\" }]\n",
        "jobs.toml",
    )
    .unwrap()
    .resolve(&registry)
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("jobs.toml:1:30: params of [[jobs]] `x`"),
        "{err}"
    );
}
